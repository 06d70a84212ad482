//! `esm3 generate`, `fold` and `inverse-fold` end to end on a small random-weight model bundle
//! (the reference fixtures: ESM3 d64 + VQ-VAE encoder and decoder). Checks that every prompt
//! constraint holds exactly in the output files.

mod common;
use common::*;

use std::path::{Path, PathBuf};

use esm3_protein::read_chain;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

/// ESM3 with structure_encoder/ and structure_decoder/ beside it.
fn bundle(root: &Path) -> PathBuf {
    let m = root.join("model");
    copy_dir(&fixtures().join("esm3_d64/model"), &m);
    copy_dir(
        &fixtures().join("esm3_structure_encoder_d64/model"),
        &m.join("structure_encoder"),
    );
    copy_dir(
        &fixtures().join("esm3_structure_decoder_d64/model"),
        &m.join("structure_decoder"),
    );
    m
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn unconditional_generation_writes_files_and_is_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let model = bundle(tmp.path());
    let out = tmp.path().join("out");
    let run = |dir: &Path, seed: &str, extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--length",
            "30",
            "-n",
            "2",
            "--num-steps",
            "6",
            "--seed",
            seed,
            "-o",
            s(dir),
            "--model-dir",
            s(&model),
        ];
        args.extend_from_slice(extra);
        esm3(&args)
    };
    ok(&run(&out, "7", &[]));
    for i in 0..2 {
        let summary = json(&out.join(format!("design_{i}.json")));
        assert_eq!(summary["length"], 30);
        // Attempt k of design i is seed 7 + i + 2k: the written one and the rejected ones
        // together are exactly the attempts made, and a rejected one really failed the check.
        let attempts = summary["attempts"].as_u64().unwrap();
        assert!((1..=4).contains(&attempts), "{summary}");
        let rejected = summary["rejected_attempts"].as_array().unwrap();
        assert_eq!(rejected.len() as u64, attempts - 1, "{summary}");
        let mut seeds: Vec<u64> = rejected
            .iter()
            .map(|r| r["seed"].as_u64().unwrap())
            .collect();
        seeds.push(summary["seed"].as_u64().unwrap());
        seeds.sort_unstable();
        let expected: Vec<u64> = (0..attempts).map(|k| 7 + i + 2 * k).collect();
        assert_eq!(seeds, expected, "{summary}");
        for r in rejected {
            assert_eq!(r["complexity"]["passes"], false, "{r}");
            let seq = r["sequence"].as_str().unwrap();
            let report = esm3_protein::complexity::sequence_complexity(seq);
            assert_eq!(
                r["complexity"]["longest_homopolymer"],
                report.longest_homopolymer
            );
        }
        let passes = summary["complexity"]["passes"].as_bool().unwrap();
        assert!(
            passes || attempts == 4,
            "a failing design is retried to the limit: {summary}"
        );
        if !passes {
            // The least repetitive attempt is the one written.
            let written = summary["complexity"]["low_complexity_fraction"]
                .as_f64()
                .unwrap();
            for r in rejected {
                assert!(written <= r["complexity"]["low_complexity_fraction"].as_f64().unwrap());
            }
        }
        let ptm = summary["ptm"].as_f64().unwrap();
        let plddt = summary["mean_plddt"].as_f64().unwrap();
        assert!(
            (0.0..=1.0).contains(&ptm) && (0.0..=1.0).contains(&plddt),
            "{summary}"
        );
        let chain = read_chain(&out.join(format!("design_{i}.pdb")), None).unwrap();
        assert_eq!(chain.len(), 30);
        // The random-weight model may emit gap tokens, which have no residue name: UNK (X)
        // in the structure file, kept as sampled in the summary.
        let as_written: String = summary["sequence"]
            .as_str()
            .unwrap()
            .chars()
            .map(|c| if matches!(c, '-' | '.') { 'X' } else { c })
            .collect();
        assert_eq!(chain.sequence, as_written);
        assert!(!chain.sequence.contains('_'));
        // pLDDT (0–100) is in the B-factor column.
        let mean_b = chain.b_factor.iter().sum::<f32>() / 30.0;
        assert!(
            (mean_b as f64 - 100.0 * plddt).abs() < 0.05,
            "{mean_b} vs {plddt}"
        );
        let text = std::fs::read_to_string(out.join(format!("design_{i}.pdb"))).unwrap();
        assert!(
            text.contains("pLDDT"),
            "the PDB header must say B-factors hold pLDDT"
        );
    }
    // Written backbones are physical (checked here from the file, not from our checker) and
    // the JSON's relax RMSD is the distance from the raw decoder output `--no-relax` writes.
    let raw = tmp.path().join("raw");
    ok(&run(&raw, "7", &["--no-relax"]));
    for i in 0..2 {
        let relaxed = read_chain(&out.join(format!("design_{i}.pdb")), None).unwrap();
        let unrelaxed = read_chain(&raw.join(format!("design_{i}.pdb")), None).unwrap();
        let summary = json(&out.join(format!("design_{i}.json")));
        let raw_summary = json(&raw.join(format!("design_{i}.json")));
        assert_eq!(summary["relax"]["applied"], true, "{summary}");
        assert_eq!(raw_summary["relax"]["applied"], false, "{raw_summary}");
        assert_eq!(
            summary["ptm"], raw_summary["ptm"],
            "pTM is the model's either way"
        );
        assert_eq!(summary["mean_plddt"], raw_summary["mean_plddt"]);
        let d = |a: [f32; 3], b: [f32; 3]| {
            ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
        };
        let ca: Vec<[f32; 3]> = relaxed.atom37.iter().map(|r| r[1]).collect();
        let in_range = ca
            .windows(2)
            .filter(|w| (d(w[0], w[1]) - 3.8).abs() <= 0.2)
            .count();
        assert!(
            in_range as f64 >= 0.95 * 29.0,
            "{in_range}/29 Cα–Cα in 3.8 ± 0.2 Å"
        );
        for a in 0..30 {
            for b in a + 1..30 {
                assert!(d(ca[a], ca[b]) >= 3.0, "Cα {a}–{b} at {}", d(ca[a], ca[b]));
            }
        }
        let mut sum = 0.0f64;
        for (r, q) in relaxed.atom37.iter().zip(&unrelaxed.atom37) {
            for k in 0..3 {
                sum += (d(r[k], q[k]) as f64).powi(2);
            }
        }
        let moved = (sum / 90.0).sqrt();
        let reported = summary["relax"]["rmsd"].as_f64().unwrap();
        assert!((moved - reported).abs() < 2e-3, "{moved} vs {reported}");
    }
    let again = tmp.path().join("again");
    ok(&run(&again, "7", &[]));
    for f in ["design_0.fasta", "design_1.pdb"] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(again.join(f)).unwrap(),
            "{f}: same seed, same output"
        );
    }
    // The seed a summary names regenerates that design alone, with the check only reporting.
    let seed = json(&out.join("design_1.json"))["seed"].to_string();
    let alone = tmp.path().join("alone");
    let mut args = vec![
        "generate",
        "--length",
        "30",
        "--num-steps",
        "6",
        "--max-attempts",
        "1",
    ];
    args.extend_from_slice(&["--seed", &seed, "-o", s(&alone), "--model-dir", s(&model)]);
    ok(&esm3(&args));
    let single = json(&alone.join("design.json"));
    assert_eq!(single["attempts"], 1);
    assert_eq!(single["rejected_attempts"].as_array().unwrap().len(), 0);
    assert_eq!(
        single["sequence"],
        json(&out.join("design_1.json"))["sequence"]
    );
}

#[test]
fn prompt_constraints_hold_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let model = bundle(tmp.path());
    let ubq = structures().join("freesasa/1ubq.pdb.gz");
    let prompt = tmp.path().join("p.toml");
    std::fs::write(
        &prompt,
        format!(
            r#"
name = "scaffold"
sequence = "M_____________________________K_"
secondary_structure = "__HHHH__________________________"

[[motif]]
file = "{}"
residues = "11-15"
at = 6

[[generate]]
track = "sequence"
num_steps = 5
invalid_ids = [23, 22]

[[generate]]
track = "structure"
num_steps = 5

[[generate]]
track = "secondary_structure"
num_steps = 4
"#,
            ubq.display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    ok(&esm3(&[
        "generate",
        "--prompt",
        s(&prompt),
        "-o",
        s(&out),
        "--model-dir",
        s(&model),
        "--seed",
        "3",
    ]));
    let summary = json(&out.join("scaffold.json"));
    let seq = summary["sequence"].as_str().unwrap();
    assert_eq!(seq.len(), 32);
    assert_eq!(&seq[0..1], "M");
    assert_eq!(&seq[30..31], "K");
    // Ubiquitin 11-15 = KTITL, fixed by the motif.
    assert_eq!(&seq[5..10], "KTITL");
    assert!(
        !seq.contains('C') && !seq.contains('W'),
        "invalid ids were produced: {seq}"
    );
    let ss = summary["secondary_structure"].as_str().unwrap();
    assert_eq!(&ss[2..6], "HHHH", "given SS8 positions are kept");
    assert!(!ss.contains('_'), "masked SS8 positions are filled: {ss}");
    // Motif coordinates are in the output exactly as in the file (to PDB precision).
    let designed = read_chain(&out.join("scaffold.pdb"), None).unwrap();
    let source = read_chain(&ubq, None).unwrap();
    for k in 0..5 {
        let src = source
            .residue_index
            .iter()
            .position(|&r| r == 11 + k)
            .unwrap();
        for a in 0..37 {
            for c in 0..3 {
                let (x, y) = (
                    designed.atom37[5 + k as usize][a][c],
                    source.atom37[src][a][c],
                );
                assert!(
                    x == y || (x - y).abs() < 1e-3 || (x.is_nan() && y.is_nan()),
                    "motif atom moved: {x} vs {y}"
                );
            }
        }
    }
    assert!(summary["motif_backbone_rmsd"][0].as_f64().is_some());
}

#[test]
fn fold_and_inverse_fold() {
    let tmp = tempfile::tempdir().unwrap();
    let model = bundle(tmp.path());
    let fasta = tmp.path().join("in.fa");
    std::fs::write(&fasta, ">a first\nMKTAYIAKQRQISFVKSHFSRQ\n>b\nGSHMLEDKK\n").unwrap();
    let out = tmp.path().join("folded");
    ok(&esm3(&[
        "fold",
        s(&fasta),
        "-o",
        s(&out),
        "--model-dir",
        s(&model),
        "--num-steps",
        "4",
    ]));
    let a = read_chain(&out.join("a.pdb"), None).unwrap();
    assert_eq!(a.sequence, "MKTAYIAKQRQISFVKSHFSRQ");
    assert!(out.join("b.pdb").is_file() && out.join("b.json").is_file());

    let pdb = structures().join("freesasa/1ubq.pdb.gz");
    let o = esm3(&[
        "inverse-fold",
        s(&pdb),
        "--model-dir",
        s(&model),
        "-n",
        "2",
        "--num-steps",
        "5",
    ]);
    ok(&o);
    let text = String::from_utf8_lossy(&o.stdout);
    let records = esm3_protein::fasta::read_fasta(text.as_bytes(), "stdout").unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].sequence.len(), 76);
    assert!(records[0].description.contains("recovery="));
}

#[test]
fn bad_prompts_are_refused_with_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = bundle(tmp.path());
    let cases = [
        (
            "length = 10\n[[motif]]\nfile = \"X\"\nresidues = \"1-3\"\nat = 9\n",
            "X",
        ),
        (
            "sequence = \"MKT\"\nsecondary_structure = \"HH\"\n",
            "secondary_structure has 2 residues, expected 3",
        ),
        ("length = 0\n", "length must be at least 1"),
        ("length = 99999\n", "beyond the model's limit"),
    ];
    for (text, want) in cases {
        let p = tmp.path().join("bad.toml");
        std::fs::write(&p, text).unwrap();
        let o = generate_prompt(&p, &tmp.path().join("o"), &model);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && e.contains(want) && e.contains("bad.toml"),
            "{text}: {e}"
        );
    }
    let o = esm3(&["generate", "--length", "0", "--model-dir", s(&model)]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("at least 1"));
}

#[test]
fn structure_encode_decode_roundtrip() {
    let tmp = tempfile::tempdir().unwrap();
    let model = bundle(tmp.path());
    let pdb = structures().join("freesasa/1ubq.pdb.gz");
    let o = esm3(&["structure", "encode", s(&pdb), "--model-dir", s(&model)]);
    ok(&o);
    let tokens: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(tokens["structure_tokens"].as_array().unwrap().len(), 76);
    assert_eq!(tokens["chain"], "A");
    let tok_file = tmp.path().join("t.json");
    std::fs::write(&tok_file, &o.stdout).unwrap();
    let out = tmp.path().join("d.pdb");
    ok(&esm3(&[
        "structure",
        "decode",
        s(&tok_file),
        "-o",
        s(&out),
        "--model-dir",
        s(&model),
    ]));
    let decoded = read_chain(&out, None).unwrap();
    assert_eq!(decoded.sequence, tokens["sequence"].as_str().unwrap());
    let o = esm3(&["structure", "roundtrip", s(&pdb), "--model-dir", s(&model)]);
    ok(&o);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(r["ca_rmsd"].as_f64().unwrap() > 0.0 && r["lddt_ca"].as_f64().unwrap() <= 1.0);
    std::fs::write(&tok_file, "[1, 2, 5000]").unwrap();
    let o = esm3(&[
        "structure",
        "decode",
        s(&tok_file),
        "-o",
        s(&out),
        "--model-dir",
        s(&model),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("token 5000 at position 3 is not a structure code"));
}

/// The bundle plus a function decoder (the fixture's small vocabulary) and seeded hyperplanes
/// over the official keyword vocabulary, so annotations tokenize and tokens decode.
fn bundle_with_function(root: &Path) -> PathBuf {
    let m = bundle(root);
    let f = m.join("function_decoder");
    copy_dir(&fixtures().join("esm3_function_decoder_d32/model"), &f);
    for v in ["keywords.txt", "entries.tsv"] {
        std::fs::copy(
            fixtures().join("esm3_function_decoder_d32/vocab").join(v),
            f.join(v),
        )
        .unwrap();
    }
    ok(&esm3(&[
        "function",
        "hyperplanes",
        "--seed",
        "1",
        "--dim",
        "58641",
        "--out",
        s(&f.join("hyperplanes.safetensors")),
    ]));
    m
}

#[test]
fn function_annotations_condition_and_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let model = bundle_with_function(tmp.path());
    let prompt = tmp.path().join("f.toml");
    let write = |text: &str| std::fs::write(&prompt, text).unwrap();
    write(
        "length = 30\n[[function]]\nlabel = \"IPR000719\"\nstart = 3\nend = 20\n[[generate]]\ntrack = \"sequence\"\nnum_steps = 4\n",
    );
    let out = tmp.path().join("o");
    ok(&generate_prompt(&prompt, &out, &model));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("f.json")).unwrap()).unwrap();
    assert_eq!(summary["function_annotations"][0]["label"], "IPR000719");
    assert_eq!(summary["function_annotations"][0]["start"], 3);
    // Generating the function track decodes tokens back to annotations with the decoder.
    write("length = 30\n[[generate]]\ntrack = \"function\"\nnum_steps = 3\n");
    ok(&generate_prompt(&prompt, &out, &model));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("f.json")).unwrap()).unwrap();
    assert!(
        summary["function_annotations"].is_array() || summary["function_annotations"].is_null()
    );
    // Errors name the label.
    write(
        "length = 30\n[[function]]\nlabel = \"not a real keyword at all\"\nstart = 3\nend = 20\n",
    );
    let o = generate_prompt(&prompt, &out, &model);
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains("not a real keyword at all"),
        "{e}"
    );
    write("length = 30\n[[function]]\nlabel = \"IPR000719\"\nstart = 25\nend = 40\n");
    let o = generate_prompt(&prompt, &out, &model);
    assert!(
        stderr(&o).contains("outside the protein (1-30)"),
        "{}",
        stderr(&o)
    );
    // Without a function decoder in the bundle, annotations are refused with the reason.
    write("length = 30\n[[function]]\nlabel = \"IPR000719\"\nstart = 3\nend = 20\n");
    let plain = bundle(&tmp.path().join("plain"));
    let o = generate_prompt(&prompt, &out, &plain);
    assert!(stderr(&o).contains("function_decoder/"), "{}", stderr(&o));
}
