//! Agreement and speed of our DSSP, SASA and TM-align against the external tools.
//!
//! ```text
//! cargo run --release -p esm3-protein --example geometry_report            # agreement + bench
//! cargo run --release -p esm3-protein --example geometry_report -- --bench # bench only
//! ```
//! Agreement uses the committed oracle tables (no tools needed). The bench runs `mkdssp`
//! (Debian `dssp`) and `freesasa` on the largest structures of shared/data and needs them
//! installed (`apt-get install -y dssp freesasa`). Timings are wall-clock, best of 3, and
//! include reading the file on both sides.

#[path = "../tests/oracle/mod.rs"]
mod oracle;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use esm3_protein::metrics::tmscore::tm_align;
use esm3_protein::residue_constants::CA;

fn agreement() {
    let table = oracle::per_residue_table();
    let (mut agree, mut total, mut files) = (0, 0, 0);
    for (file, rows) in &table {
        if let Some((a, t, _)) = oracle::dssp_agreement(file, rows) {
            agree += a;
            total += t;
            files += 1;
        }
    }
    println!(
        "DSSP vs mkdssp 4.2.2: {agree}/{total} residues agree ({:.3}%) over {files} files",
        100.0 * agree as f64 / total as f64
    );

    let (mut rel, mut n) = (0.0, 0usize);
    for (file, rows) in &table {
        let Ok(s) = esm3_protein::read_structure(&oracle::data_dir().join("structures").join(file))
        else {
            continue;
        };
        let chains: Vec<_> = s.chains().iter().collect();
        let sasa = esm3_protein::sasa::chains_sasa(&chains);
        let mut ours = std::collections::HashMap::new();
        for (c, v) in chains.iter().zip(&sasa) {
            let id = if c.chain_id.trim().is_empty() {
                "A".into()
            } else {
                c.chain_id.clone()
            };
            for ((n, i), s) in c.residue_index.iter().zip(&c.insertion_code).zip(v) {
                ours.insert((id.clone(), *n, *i), *s);
            }
        }
        for r in rows {
            if let (Some(t), Some(m)) =
                (r.freesasa, ours.get(&(r.chain.clone(), r.resnum, r.icode)))
            {
                if t > 1.0 {
                    rel += (m - t).abs() / t;
                    n += 1;
                }
            }
        }
    }
    println!(
        "SASA vs FreeSASA 2.1.2 (Lee-Richards): mean |d|/FreeSASA {:.2}% over {n} residues > 1 A^2",
        100.0 * rel / n as f64
    );

    let mut worst: f64 = 0.0;
    let pairs = oracle::pairs_table();
    for p in &pairs {
        let trace = |file: &str, chain: &str| {
            let c = esm3_protein::read_chain(
                &oracle::data_dir().join("structures").join(file),
                (!chain.is_empty()).then_some(chain),
            )
            .unwrap();
            let hetero = oracle::pdb_hetero_residues(file);
            (0..c.len())
                .filter(|&k| {
                    !hetero.contains(&(c.chain_id.clone(), c.residue_index[k], c.insertion_code[k]))
                })
                .map(|k| c.atom37[k][CA])
                .filter(|x| x.iter().all(|v| v.is_finite()))
                .collect::<Vec<_>>()
        };
        let r = tm_align(
            &trace(&p.model_file, &p.model_chain),
            &trace(&p.ref_file, &p.ref_chain),
        )
        .unwrap();
        worst = worst
            .max((r.tm_norm_chain1 - p.tm_norm_model).abs())
            .max((r.tm_norm_chain2 - p.tm_norm_ref).abs());
    }
    println!(
        "TM-align (20190822) pairs: {} pairs, max |d TM-score| {worst:.5}",
        pairs.len()
    );
}

/// Decompressed copy of a structure file that mkdssp and freesasa accept (as the oracle run:
/// PDB reduced to coordinate records with a synthetic HEADER).
fn materialize(rel: &str, dir: &Path) -> PathBuf {
    let raw = std::fs::read(oracle::data_dir().join("structures").join(rel)).unwrap();
    let mut bytes = Vec::new();
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut bytes)
        .unwrap();
    if rel.contains(".cif") {
        let path = dir.join("in.cif");
        std::fs::write(&path, bytes).unwrap();
        return path;
    }
    let mut text = String::from(
        "HEADER    PROTEIN                                 01-JAN-00   XXXX              \n",
    );
    for line in String::from_utf8_lossy(&bytes).lines() {
        let keep = [
            "CRYST1", "ATOM  ", "HETATM", "TER", "MODEL ", "ENDMDL", "END",
        ]
        .iter()
        .any(|k| line.starts_with(k));
        if !keep || (line.starts_with("HETATM") && line.get(17..20) != Some("MSE")) {
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    let path = dir.join("in.pdb");
    std::fs::write(&path, text).unwrap();
    path
}

fn best_of_3(mut f: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn run_tool(cmd: &mut Command) -> bool {
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

fn bench() {
    let manifest =
        std::fs::read_to_string(oracle::data_dir().join("structures/MANIFEST.tsv")).unwrap();
    let failures = std::fs::read_to_string(oracle::data_dir().join("oracles/oracle_failures.tsv"))
        .unwrap_or_default();
    let mut files: Vec<(usize, String)> = manifest
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            // CA-only traces give DSSP nothing to do.
            let usable = !f[0].starts_with("format_pairs/")
                && !failures.contains(f[0])
                && f[12] != "derived-ca-only";
            usable.then(|| (f[7].parse().unwrap_or(0), f[0].to_string()))
        })
        .collect();
    files.sort_by(|a, b| b.cmp(a));
    let dir = std::env::temp_dir().join(format!("esm3-geometry-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!("| structure | residues | ours DSSP (s) | mkdssp (s) | ratio | ours SASA (s) | FreeSASA (s) | ratio |");
    println!("|---|---|---|---|---|---|---|---|");
    for (n, rel) in files.iter().take(5) {
        let path = oracle::data_dir().join("structures").join(rel);
        let input = materialize(rel, &dir);
        let out = dir.join("out.dssp");
        let ours_dssp = best_of_3(|| {
            let s = esm3_protein::read_structure(&path).unwrap();
            let chains: Vec<_> = s.chains().iter().collect();
            std::hint::black_box(esm3_protein::dssp::assign_chains(&chains));
        });
        let mut ok = true;
        let mkdssp = best_of_3(|| {
            ok &= run_tool(
                Command::new("mkdssp")
                    .args(["--output-format", "dssp"])
                    .arg(&input)
                    .arg(&out),
            )
        });
        let ours_sasa = best_of_3(|| {
            let s = esm3_protein::read_structure(&path).unwrap();
            let chains: Vec<_> = s.chains().iter().collect();
            std::hint::black_box(esm3_protein::sasa::chains_sasa(&chains));
        });
        let mut free = Command::new("freesasa");
        if rel.contains(".cif") {
            free.arg("--cif");
        }
        free.arg(&input);
        let freesasa = best_of_3(|| ok &= run_tool(&mut free));
        if !ok {
            eprintln!(
                "{rel}: mkdssp or freesasa failed (installed? apt-get install -y dssp freesasa)"
            );
        }
        println!(
            "| {rel} | {n} | {ours_dssp:.3} | {mkdssp:.3} | {:.2} | {ours_sasa:.3} | {freesasa:.3} | {:.2} |",
            ours_dssp / mkdssp,
            ours_sasa / freesasa
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("(ratio = ours / tool wall time; < 1 means we are faster; file reading included on both sides)");
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        agreement();
    }
    bench();
}
