//! `--batch-size` of `esm3 fold` and `esm3 inverse-fold` (batched results equal one record at a
//! time, outputs unchanged) and residue annotations in `esm3 generate` prompts, on the
//! random-weight bundle `fixtures/random-bundle-d64`.

mod common;
use common::*;

use std::path::{Path, PathBuf};

use esm3_protein::io::write_pdb;
use esm3_protein::{read_chain, ProteinChain};

fn bundle_dir() -> PathBuf {
    esm3_test_support::repo_root().join("fixtures/random-bundle-d64")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if std::fs::metadata(e.path()).unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Every file of `a` has the same bytes in `b`, and `b` has no others (folders compared inside).
fn same_files(a: &Path, b: &Path) {
    let names = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(a), names(b));
    for n in names(a) {
        if a.join(&n).is_dir() {
            same_files(&a.join(&n), &b.join(&n));
            continue;
        }
        assert!(
            std::fs::read(a.join(&n)).unwrap() == std::fs::read(b.join(&n)).unwrap(),
            "{n} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

#[test]
fn fold_in_batches_equals_one_record_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let fasta = tmp.path().join("in.fa");
    std::fs::write(
        &fasta,
        ">a first\nMKTAYIAKQRQISFVKSHFSRQ\n>b\nGSHMLEDKK\n>c|x\nMQIFVKTLTGKTITLEVEPSDTIENVKAKIQDK\n\
         >d\nMKTAY\n>e\nGSHMLEDKKLLPRTQ\n",
    )
    .unwrap();
    let fold = |dir: &Path, batch: &str| {
        ok(&esm3(&[
            "fold",
            s(&fasta),
            "-o",
            s(dir),
            "--model-dir",
            s(&bundle_dir()),
            "--num-steps",
            "5",
            "--batch-size",
            batch,
        ]))
    };
    let one = tmp.path().join("one");
    let three = tmp.path().join("three");
    fold(&one, "1");
    fold(&three, "3");
    same_files(&one, &three);
    assert!(one.join("c_x.pdb").is_file() && one.join("d.json").is_file());

    let o = esm3(&["fold", s(&fasta), "-o", s(&one), "--batch-size", "0"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--batch-size"), "{}", stderr(&o));
}

#[test]
fn inverse_fold_in_batches_equals_one_design_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let ubq = structures().join("freesasa/1ubq.pdb.gz");
    // A second, shorter structure: ubiquitin's first 40 residues.
    let chain = read_chain(&ubq, None).unwrap();
    let n = 40;
    let short = ProteinChain::new(
        "short",
        "A",
        chain.sequence[..n].to_string(),
        chain.atom37[..n].to_vec(),
        chain.residue_index[..n].to_vec(),
        vec![' '; n],
        vec![0.0; n],
    )
    .unwrap();
    let short_pdb = tmp.path().join("short.pdb");
    let mut buf = Vec::new();
    write_pdb(&short, None, &mut buf).unwrap();
    std::fs::write(&short_pdb, buf).unwrap();
    // Default sampling (temperature 0.1, random order): each design has its own seed.
    let run = |batch: &str| {
        let o = esm3(&[
            "inverse-fold",
            s(&ubq),
            s(&short_pdb),
            "-n",
            "2",
            "--seed",
            "4",
            "--num-steps",
            "5",
            "--batch-size",
            batch,
            "--model-dir",
            s(&bundle_dir()),
        ]);
        ok(&o);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let one = run("1");
    let four = run("4");
    assert_eq!(one, four);
    let records = esm3_protein::fasta::read_fasta(one.as_bytes(), "stdout").unwrap();
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["1ubq_A_0", "1ubq_A_1", "short_A_0", "short_A_1"]);
    assert_eq!(records[2].sequence.len(), 40);
    assert!(records[3].description.starts_with("seed=5 "));
}

/// The bundle plus a small residue-annotation vocabulary.
#[test]
fn generate_in_batches_equals_one_design_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    // Sequence then structure, default sampling: every design has its own seed.
    let run = |dir: &Path, batch: &str| {
        let o = esm3(&[
            "generate",
            "--length",
            "18",
            "-n",
            "3",
            "--seed",
            "11",
            "--num-steps",
            "4",
            "-o",
            s(dir),
            "--model-dir",
            s(&bundle_dir()),
            "--batch-size",
            batch,
        ]);
        ok(&o);
        String::from_utf8(o.stdout).unwrap()
    };
    let one = tmp.path().join("one");
    let batched = tmp.path().join("batched");
    let printed_one = run(&one, "1");
    let printed_batched = run(&batched, "2");
    same_files(&one, &batched);
    assert_eq!(printed_one, printed_batched);
    assert_eq!(printed_one.lines().count(), 3, "{printed_one}");
    assert!(one.join("design_2.pdb").is_file());
}

fn bundle_with_residue_labels(root: &Path) -> PathBuf {
    let m = root.join("model");
    copy_tree(&bundle_dir(), &m);
    std::fs::write(
        m.join("residue_annotations.csv"),
        "label,label_clean,count\nZn site,zinc ion binding site,50\nheme,heme binding site,20\n",
    )
    .unwrap();
    m
}

#[test]
fn prompt_residue_annotations_run_through_generate() {
    let tmp = tempfile::tempdir().unwrap();
    let model = bundle_with_residue_labels(tmp.path());
    let prompt = tmp.path().join("site.toml");
    std::fs::write(
        &prompt,
        "length = 24\n\
         [[residue_annotation]]\nlabel = \"zinc ion binding site\"\nstart = 3\nend = 9\n\
         [[residue_annotation]]\nlabel = \"heme binding site\"\nstart = 15\nend = 20\n\
         [[generate]]\ntrack = \"sequence\"\nnum_steps = 4\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    ok(&generate_prompt(&prompt, &out, &model));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("site.json")).unwrap()).unwrap();
    assert_eq!(summary["length"], 24);
    assert!(!summary["sequence"].as_str().unwrap().contains('_'));
    assert_eq!(
        summary["residue_annotations"],
        serde_json::json!([
            {"label": "zinc ion binding site", "start": 3, "end": 9},
            {"label": "heme binding site", "start": 15, "end": 20},
        ])
    );

    // Each bad prompt fails with a message on stderr, which is returned.
    let fails = |text: &str, model: &Path| -> String {
        std::fs::write(&prompt, text).unwrap();
        let o = generate_prompt(&prompt, &out, model);
        assert!(!o.status.success(), "{text}");
        stderr(&o)
    };

    // Unknown label: an error naming it (the prompt parses; the model's vocabulary refuses it).
    let e = fails(
        "length = 24\n[[residue_annotation]]\nlabel = \"iron site\"\nstart = 3\nend = 9\n",
        &model,
    );
    assert!(
        e.contains("unknown residue-annotation label \"iron site\"") && !e.contains("panicked"),
        "{e}"
    );

    // A range outside the protein: an error naming the prompt file and the item.
    let e = fails(
        "length = 24\n[[residue_annotation]]\nlabel = \"heme binding site\"\nstart = 20\nend = 30\n",
        &model,
    );
    assert!(
        e.contains("site.toml")
            && e.contains(
                "residue_annotation 1 `heme binding site` over 20-30 is outside the protein"
            ),
        "{e}"
    );

    // Without the vocabulary in the model directory: an error saying what is missing.
    let e = fails(
        "length = 24\n[[residue_annotation]]\nlabel = \"heme binding site\"\nstart = 2\nend = 8\n",
        &bundle_dir(),
    );
    assert!(e.contains("residue_annotations.csv"), "{e}");
}
