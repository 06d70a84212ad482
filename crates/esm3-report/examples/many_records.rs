//! How the report scales: writes N synthetic records of L residues (a helix-like Cα trace,
//! a made-up pLDDT and PAE) through `ReportWriter` and prints the time and the page's size.
//!
//! `cargo run --release -p esm3-report --example many_records -- OUT_DIR [N] [L] [THREADS]`

use std::fmt::Write;
use std::time::Instant;

use esm3_report::{PlotJob, ReportRecord, ReportWriter, PAGE};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).expect("OUT_DIR"));
    let n: usize = args.get(2).map_or(10_000, |v| v.parse().unwrap());
    let l: usize = args.get(3).map_or(100, |v| v.parse().unwrap());
    let threads: usize = args.get(4).map_or(2, |v| v.parse().unwrap());
    let start = Instant::now();
    let mut w = ReportWriter::new(&dir, PAGE, threads).unwrap();
    for k in 0..n {
        let plddt: Vec<f32> = (0..l)
            .map(|i| 40.0 + 50.0 * ((i + k) as f32 * 0.1).sin().abs())
            .collect();
        let pae: Vec<f32> = (0..l * l)
            .map(|x| ((x / l) as f32 - (x % l) as f32).abs().min(30.0))
            .collect();
        let mut pdb = String::new();
        for i in 0..l {
            let t = i as f32 * 100f32.to_radians();
            let (x, y, z) = (2.3 * t.cos(), 2.3 * t.sin(), 1.5 * i as f32);
            writeln!(
                pdb,
                "ATOM  {:>5}  CA  ALA A{:>4}    {x:>8.3}{y:>8.3}{z:>8.3}  1.00{:>6.2}           C",
                i + 1,
                i + 1,
                plddt[i]
            )
            .unwrap();
        }
        pdb.push_str("END\n");
        let name = format!("r{k}");
        w.plot(PlotJob {
            path: dir.join(format!("{name}.png")),
            title: name.clone(),
            plddt: plddt.clone(),
            pae: Some(pae),
            chain_starts: vec![],
        });
        let record = ReportRecord {
            order: k,
            sequence: "A".repeat(l),
            mean_plddt: Some(plddt.iter().sum::<f32>() / l as f32),
            ptm: Some((k % 997) as f32 / 997.0),
            structure_file: Some(format!("{name}.pdb")),
            png: Some(format!("{name}.png")),
            chains: 1,
            name,
            ..Default::default()
        };
        w.add(record, Some(&pdb)).unwrap();
    }
    let page = w.finish("many records").unwrap();
    let secs = start.elapsed().as_secs_f64();
    let size = std::fs::metadata(&page).unwrap().len();
    println!("{n} records of {l} residues, {threads} plot threads: {secs:.1} s ({:.1} ms/record), page {:.1} MB", 1e3 * secs / n as f64, size as f64 / 1e6);
}
