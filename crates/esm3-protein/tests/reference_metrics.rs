//! RMSD, GDT-TS and LDDT (CA and all-atom) against the reference's own metric functions on real
//! chain pairs (fixtures/reference/geometry/metrics.json, tools/reference/make_sasa_fixtures.py).

mod oracle;

use esm3_protein::metrics::{gdt_ts, lddt, reference_rmsd, LDDT_CUTOFF};
use esm3_protein::residue_constants::{ATOM_TYPE_NUM, CA};
use esm3_protein::Vec3;

#[test]
fn metrics_match_the_reference_package() {
    let path = esm3_test_support::reference_fixtures().join("geometry/metrics.json");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for case in cases.as_array().unwrap() {
        let chain_id = case["chain"].as_str().unwrap();
        let read = |key: &str| {
            let file = case[key].as_str().unwrap();
            esm3_protein::read_chain(
                &oracle::data_dir().join("structures").join(file),
                Some(chain_id),
            )
            .unwrap()
        };
        let (a, b) = (read("model"), read("reference"));
        let residues: Vec<i32> = case["residues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap() as i32)
            .collect();
        let pick = |c: &esm3_protein::ProteinChain| -> Vec<[Vec3; ATOM_TYPE_NUM]> {
            residues
                .iter()
                .map(|r| {
                    c.atom37[c
                        .residue_index
                        .iter()
                        .position(|x| x == r)
                        .expect("residue present")]
                })
                .collect()
        };
        let (pa, pb) = (pick(&a), pick(&b));
        let present = |p: &Vec3| p.iter().all(|v| v.is_finite());
        // The reference is fed zeros for missing atoms (NaN would poison its masked sums).
        let zeroed = |p: &Vec3| if present(p) { *p } else { [0.0; 3] };

        let ca_a: Vec<Vec3> = pa.iter().map(|r| r[CA]).collect();
        let ca_b: Vec<Vec3> = pb.iter().map(|r| r[CA]).collect();
        let mask_ca: Vec<bool> = ca_b.iter().map(present).collect();
        let l_ca = lddt(&ca_a, &ca_b, &mask_ca, LDDT_CUTOFF).global;

        let flat_a: Vec<Vec3> = pa.iter().flatten().map(zeroed).collect();
        let flat_b: Vec<Vec3> = pb.iter().flatten().map(zeroed).collect();
        let mask_all: Vec<bool> = pb.iter().flatten().map(present).collect();
        let l_all = lddt(&flat_a, &flat_b, &mask_all, LDDT_CUTOFF).global;

        let gdt = gdt_ts(&ca_a, &ca_b, Some(&mask_ca)).unwrap();
        let rmsd = reference_rmsd(&ca_a, &ca_b, None).unwrap();

        let name = format!("{} / {} {chain_id}", case["model"], case["reference"]);
        for (what, ours, theirs, tol) in [
            ("lddt_ca", l_ca, &case["lddt_ca"], 1e-4),
            ("lddt_all_atom", l_all, &case["lddt_all_atom"], 1e-4),
            ("gdt_ts", gdt, &case["gdt_ts"], 1e-6),
            ("rmsd_ca", rmsd, &case["rmsd_ca"], 1e-3),
        ] {
            let theirs = theirs.as_f64().unwrap();
            assert!(
                (ours - theirs).abs() <= tol,
                "{name} {what}: ours {ours} reference {theirs}"
            );
        }
    }
}
