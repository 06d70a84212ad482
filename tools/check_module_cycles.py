#!/usr/bin/env python3
"""Import circles between the modules of each crate: `crate::<module>` paths in non-test,
non-comment code, cycles of up to 6 modules. Run from the repository root:
`python3 tools/check_module_cycles.py`. Paths through `super::` are not followed."""
import os,re
found=False
for crate in sorted(os.listdir('crates')):
    src=f'crates/{crate}/src'
    mods={}
    for root,_,files in os.walk(src):
        for f in files:
            if not f.endswith('.rs'): continue
            p=os.path.join(root,f); rel=os.path.relpath(p,src)[:-3]
            top=rel.split('/')[0]
            if top in ('lib','main'): continue
            text=open(p).read()
            i=text.find('#[cfg(test)]\nmod tests')
            if i>=0: text=text[:i]
            code='\n'.join(l for l in text.splitlines() if not l.strip().startswith('//'))
            refs=set(re.findall(r'crate::([a-z_0-9]+)',code))
            mods.setdefault(top,set()).update(r for r in refs if r!=top)
    g={m:{r for r in rs if r in mods} for m,rs in mods.items()}
    cycles=set()
    def dfs(start,node,path):
        for n in g.get(node,()):
            if n==start: cycles.add(tuple(sorted(path)))
            elif n not in path and len(path)<6: dfs(start,n,path+[n])
    for m in g: dfs(m,m,[m])
    if cycles: found=True; print(crate, sorted(cycles))
print("cycles found" if found else "no module import cycles (non-test code, crate:: paths, up to 6 modules)")
raise SystemExit(1 if found else 0)
