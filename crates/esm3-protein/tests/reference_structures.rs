//! The reader against the reference package's own (biotite) reader, on fixtures written by
//! tools/reference/make_structure_fixtures.py, and normalisation against the reference's.

use std::path::PathBuf;

use esm3_protein::chain::MISSING;
use esm3_protein::{read_chain, ProteinChain, Vec3};
use serde_json::Value;

fn fixtures() -> Vec<(String, Value)> {
    let dir = esm3_test_support::reference_fixtures().join("structures");
    let mut cases: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect();
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        cases.len() >= 10,
        "expected 10 structure fixtures, found {}",
        cases.len()
    );
    cases
}

fn structures_dir() -> PathBuf {
    esm3_test_support::shared_data().join("structures")
}

/// Sparse `[position, slot, x, y, z]` rows written into a dense atom37 array.
fn fill(atom37: &mut [[Vec3; 37]], rows: &Value) {
    for row in rows.as_array().unwrap() {
        let r: Vec<f64> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        atom37[r[0] as usize][r[1] as usize] = [r[2] as f32, r[3] as f32, r[4] as f32];
    }
}

fn ins_code(v: &Value) -> char {
    v.as_str().unwrap().chars().next().unwrap_or(' ')
}

fn reference_chain(case: &Value) -> ProteinChain {
    let r = &case["reference"];
    let sequence = r["sequence"].as_str().unwrap().to_owned();
    let n = sequence.len();
    let mut atom37 = vec![[MISSING; 37]; n];
    fill(&mut atom37, &r["atoms"]);
    ProteinChain::new(
        "ref",
        case["chain_id"].as_str().unwrap(),
        sequence,
        atom37,
        r["residue_index"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap() as i32)
            .collect(),
        r["insertion_code"]
            .as_array()
            .unwrap()
            .iter()
            .map(ins_code)
            .collect(),
        vec![1.0; n],
    )
    .unwrap()
}

fn assert_close(ours: &[[Vec3; 37]], want: &[[Vec3; 37]], tolerance: f32, what: &str) {
    assert_eq!(ours.len(), want.len(), "{what}");
    for (i, (a, b)) in ours.iter().zip(want).enumerate() {
        for slot in 0..37 {
            for k in 0..3 {
                let (x, y) = (a[slot][k], b[slot][k]);
                let ok = (x.is_nan() && y.is_nan()) || (x - y).abs() <= tolerance;
                assert!(
                    ok,
                    "{what}: residue {i} atom {slot}: ours {:?}, reference {:?}",
                    a[slot], b[slot]
                );
            }
        }
    }
}

/// Our chains equal the reference reader's on every residue it keeps, with alternate
/// locations resolved by occupancy; the residues only we keep are the file's HETATM ones.
#[test]
fn chains_match_the_reference_reader() {
    for (name, case) in fixtures() {
        let chain_id = case["chain_id"].as_str().unwrap();
        let ours = read_chain(
            &structures_dir().join(case["file"].as_str().unwrap()),
            Some(chain_id),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let hetero: Vec<(i32, char, String)> = case["hetero_residues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h[0].as_i64().unwrap() as i32,
                    ins_code(&h[1]),
                    h[2].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let is_hetero = |i: usize| {
            hetero
                .iter()
                .find(|h| h.0 == ours.residue_index[i] && h.1 == ours.insertion_code[i])
        };
        let letters: Vec<char> = ours.sequence.chars().collect();
        let kept: Vec<usize> = (0..ours.len())
            .filter(|&i| is_hetero(i).is_none())
            .collect();
        for i in (0..ours.len()).filter(|&i| is_hetero(i).is_some()) {
            let (_, _, res_name) = is_hetero(i).unwrap();
            // Hetero residues we keep: selenomethionine as M with Se in SD, others as X.
            if res_name == "MSE" {
                assert_eq!(letters[i], 'M', "{name} residue {i}");
                assert!(
                    ours.atom37[i][18][0].is_finite(),
                    "{name}: MSE without SD at {i}"
                );
            } else {
                assert_eq!(letters[i], 'X', "{name} residue {i} ({res_name})");
            }
        }
        let reference = reference_chain(&case);
        // Microheterogeneity (two residue names in alternate locations): biotite's "first
        // altloc" keeps both names as two residues with one number; we keep one residue, with
        // the name of the higher-occupancy CA. Check that, then compare everything else.
        let key = |c: &ProteinChain, i: usize| (c.residue_index[i], c.insertion_code[i]);
        let ref_letters: Vec<char> = reference.sequence.chars().collect();
        let doubled: Vec<(i32, char)> = (1..reference.len())
            .filter(|&i| key(&reference, i) == key(&reference, i - 1))
            .map(|i| key(&reference, i))
            .collect();
        for k in &doubled {
            let ours_at: Vec<usize> = kept
                .iter()
                .copied()
                .filter(|&i| key(&ours, i) == *k)
                .collect();
            assert_eq!(ours_at.len(), 1, "{name}: residue {k:?}");
            let names: Vec<char> = (0..reference.len())
                .filter(|&i| key(&reference, i) == *k)
                .map(|i| ref_letters[i])
                .collect();
            assert!(
                names.contains(&letters[ours_at[0]]),
                "{name}: residue {k:?} is {} not one of {names:?}",
                letters[ours_at[0]]
            );
        }
        let kept: Vec<usize> = kept
            .into_iter()
            .filter(|&i| !doubled.contains(&key(&ours, i)))
            .collect();
        let single: Vec<usize> = (0..reference.len())
            .filter(|&i| !doubled.contains(&key(&reference, i)))
            .collect();
        let reference = ProteinChain::new(
            "ref",
            reference.chain_id.clone(),
            single.iter().map(|&i| ref_letters[i]).collect::<String>(),
            single.iter().map(|&i| reference.atom37[i]).collect(),
            single.iter().map(|&i| reference.residue_index[i]).collect(),
            single
                .iter()
                .map(|&i| reference.insertion_code[i])
                .collect(),
            vec![1.0; single.len()],
        )
        .unwrap();
        let ours_seq: String = kept.iter().map(|&i| letters[i]).collect();
        assert_eq!(ours_seq, reference.sequence, "{name}");
        let ours_index: Vec<i32> = kept.iter().map(|&i| ours.residue_index[i]).collect();
        assert_eq!(ours_index, reference.residue_index, "{name}");
        let ours_ins: Vec<char> = kept.iter().map(|&i| ours.insertion_code[i]).collect();
        assert_eq!(ours_ins, reference.insertion_code, "{name}");
        let mut want_all = reference_chain(&case).atom37;
        fill(&mut want_all, &case["occupancy_differs"]);
        let want: Vec<[Vec3; 37]> = single.iter().map(|&i| want_all[i]).collect();
        let ours_atoms: Vec<[Vec3; 37]> = kept.iter().map(|&i| ours.atom37[i]).collect();
        assert_close(&ours_atoms, &want, 1e-3, &name);
        println!(
            "{name}: {} residues as the reference, {} hetero kept, {} microheterogeneous",
            kept.len(),
            ours.len() - kept.len() - doubled.len(),
            doubled.len()
        );
    }
}

/// `normalize_coordinates` equals the reference's, as closely as the reference's own float32
/// arithmetic allows.
///
/// The frame of the *mean* backbone is ill-conditioned: averaged over a folded chain, N, CA and
/// C land within 0.06–0.5 Å of each other, so single roundings of the ~50 Å mean turn the frame
/// measurably. The fixture records how far the reference's float32 output is from the same
/// formula in float64 (up to ~3e-3 Å); two float32 implementations may each be that far off.
#[test]
fn normalization_matches_the_reference() {
    for (name, case) in fixtures() {
        let reference = reference_chain(&case);
        let mut want = vec![[MISSING; 37]; reference.len()];
        fill(&mut want, &case["normalized_atoms"]);
        let ours = reference.normalize_coordinates();
        let reference_error = case["normalized_float32_error"].as_f64().unwrap() as f32;
        let tolerance = 1e-4 + 2.0 * reference_error;
        let worst = ours
            .atom37
            .iter()
            .flatten()
            .zip(want.iter().flatten())
            .flat_map(|(a, b)| (0..3).map(move |k| (a[k] - b[k]).abs()))
            .filter(|d| !d.is_nan())
            .fold(0f32, f32::max);
        println!("{name}: max |ours - reference| {worst:.2e} Å; reference vs float64 {reference_error:.2e} Å");
        assert_close(&ours.atom37, &want, tolerance, &name);
    }
}
