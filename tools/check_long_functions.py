#!/usr/bin/env python3
"""Lists the functions of `crates/*/src` (outside tests) longer than a limit that have no reason
written above them: a doc comment containing "Long because". Exits 1 when there is one.

    python3 tools/check_long_functions.py [--limit 80] [--all]

`--all` lists the long functions with a reason too. Lengths count lines from `fn` to the closing
brace, found by counting braces outside strings and `//` comments (good enough for this code
base: it is a map for the next engineer, not a parser)."""

import argparse
import os
import re
import sys

FN = re.compile(r"\s*(pub(\([^)]*\))?\s+)?(async\s+)?(unsafe\s+)?(const\s+)?fn\s+(\w+)")


def strip(line):
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return re.sub(r"//.*", "", line)


def functions(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        if re.match(r"\s*#\[cfg\(test\)\]", lines[i]):
            return  # tests sit at the end of each file
        m = FN.match(lines[i])
        if m:
            j, depth, started = i, 0, False
            while j < len(lines):
                s = strip(lines[j])
                if not started and ";" in s and "{" not in s:
                    break  # a declaration without a body
                for ch in s:
                    if ch == "{":
                        depth += 1
                        started = True
                    elif ch == "}":
                        depth -= 1
                if started and depth == 0:
                    break
                j += 1
            if started:
                k = i - 1
                while k >= 0 and lines[k].strip().startswith("#["):
                    k -= 1
                doc = []
                while k >= 0 and lines[k].strip().startswith("//"):
                    doc.append(lines[k])
                    k -= 1
                reason = any("long because" in d.lower() for d in doc)
                yield m.group(6), i + 1, j - i + 1, reason
                i = j
        i += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=80)
    ap.add_argument("--all", action="store_true")
    args = ap.parse_args()
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates")
    rows = []
    for crate in sorted(os.listdir(root)):
        src = os.path.join(root, crate, "src")
        for base, _, files in os.walk(src):
            for f in sorted(files):
                if f.endswith(".rs"):
                    p = os.path.join(base, f)
                    for name, line, n, reason in functions(p):
                        if n > args.limit:
                            rows.append((n, os.path.relpath(p, os.path.join(root, "..")), line, name, reason))
    rows.sort(reverse=True)
    unexplained = [r for r in rows if not r[4]]
    for n, p, line, name, reason in rows if args.all else unexplained:
        print(f"{n:4} {p}:{line} {name}{'  (reason given)' if reason else ''}")
    print(f"{len(rows)} functions over {args.limit} lines, {len(unexplained)} without a reason")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
