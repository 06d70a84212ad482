//! The pipeline on the random-weight bundle (`fixtures/random-bundle-d64`): residue annotations
//! from `EsmProtein` into the model input and back, and batched generation equal to generating
//! one protein at a time.

use std::path::{Path, PathBuf};

use esm3_generate::{
    batch_input, Esm3Pipeline, EsmProtein, GenerationConfig, PaddingAttention, Strategy, Track,
};
use esm3_models::LoadOptions;
use esm3_tokens::function::FunctionAnnotation;
use esm3_tokens::residue::{ResidueMode, ResidueVocabulary, NONE};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn bundle() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/random-bundle-d64")
}

fn pipeline() -> Esm3Pipeline {
    let mut p = Esm3Pipeline::load(&bundle(), &LoadOptions::default()).unwrap();
    // Ids: calcium 4, heme 5, zinc 6, atp 7.
    p.residues = Some(ResidueVocabulary::from_rows([
        ("zinc".to_string(), 9),
        ("heme".to_string(), 9),
        ("atp".to_string(), 2),
        ("calcium".to_string(), 10),
    ]));
    p
}

fn annotated(len: usize, annotations: &[(&str, usize, usize)]) -> EsmProtein {
    EsmProtein {
        sequence: Some("MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"[..len].to_string()),
        residue_annotations: Some(
            annotations
                .iter()
                .map(|&(l, a, b)| FunctionAnnotation::new(l, a, b))
                .collect(),
        ),
        ..Default::default()
    }
}

#[test]
fn residue_annotations_reach_the_model_input_and_decode_back() {
    let pipe = pipeline();
    let protein = annotated(20, &[("zinc", 3, 9), ("heme", 5, 12)]);
    let t = pipe.encode(&protein).unwrap();
    let rows = t.residue_annotations.as_ref().unwrap();
    assert_eq!(rows.len(), 22);
    // BOS/EOS rows empty; uncovered residues `<none>`; covered ones their ids, ascending.
    assert_eq!(rows[0], [0; 16]);
    assert_eq!(rows[21], [0; 16]);
    assert_eq!(rows[1][..2], [NONE as i64, 0]);
    assert_eq!(rows[3][..2], [6, 0]);
    assert_eq!(rows[5][..3], [5, 6, 0]);
    assert_eq!(rows[12][..2], [5, 0]);
    assert_eq!(rows[13][..2], [NONE as i64, 0]);

    // In a batch with a shorter protein, the ids sit in the model's residue_annotation_tokens,
    // the shorter one padded with empty rows.
    let short = pipe.encode(&annotated(8, &[("atp", 2, 2)])).unwrap();
    let input = batch_input(&[t.clone(), short], PaddingAttention::Masked);
    let ids = input.residue_annotation_tokens.unwrap();
    assert_eq!(ids.shape, vec![2, 22, 16]);
    let row = |b: usize, i: usize| &ids.data[(b * 22 + i) * 16..(b * 22 + i + 1) * 16];
    for (i, expected) in rows.iter().enumerate() {
        assert_eq!(row(0, i), expected.as_slice(), "row {i}");
    }
    assert_eq!(row(1, 2)[..2], [7, 0]);
    assert_eq!(row(1, 1)[..2], [NONE as i64, 0]);
    for i in 10..22 {
        assert!(row(1, i).iter().all(|&x| x == 0), "padding row {i}");
    }

    // Tokens → labels: spans of at least 5 residues come back exactly.
    let mut back = pipe.decode(&t).unwrap().residue_annotations.unwrap();
    back.sort_by(|a, b| a.label.cmp(&b.label));
    assert_eq!(
        back,
        vec![
            FunctionAnnotation::new("heme", 5, 12),
            FunctionAnnotation::new("zinc", 3, 9)
        ]
    );
}

#[test]
fn residue_annotation_errors_name_the_label_and_range() {
    let mut pipe = pipeline();
    let e = pipe
        .encode(&annotated(10, &[("iron", 1, 4)]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown residue-annotation label \"iron\"") && e.contains("4 labels"),
        "{e}"
    );
    let e = pipe
        .encode(&annotated(10, &[("zinc", 8, 12)]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("8..12") && e.contains("length 10"), "{e}");
    // Reference mode validates but leaves the track empty, like the SDK.
    pipe.residue_mode = ResidueMode::Reference;
    let t = pipe.encode(&annotated(10, &[("zinc", 2, 8)])).unwrap();
    assert!(t.residue_annotations.unwrap().iter().all(|r| r == &[0; 16]));
    pipe.residues = None;
    let e = pipe
        .encode(&annotated(10, &[("zinc", 2, 8)]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("residue_annotations.csv"), "{e}");
}

#[test]
fn residue_head_predictions_are_valid_ids() {
    let pipe = pipeline();
    let tensors = [
        pipe.encode(&annotated(12, &[])).unwrap(),
        pipe.encode(&annotated(7, &[])).unwrap(),
    ];
    let rows = pipe.predict_residue_annotations(&tensors).unwrap();
    assert_eq!(rows[0].len(), 14);
    assert_eq!(rows[1].len(), 9);
    for r in &rows {
        assert_eq!(r[0], [0; 16]);
        assert_eq!(r[r.len() - 1], [0; 16]);
        assert!(r.iter().flatten().all(|&id| (0..1478).contains(&id)));
    }
}

fn fold_config() -> GenerationConfig {
    let mut c = GenerationConfig::new(Track::Structure);
    c.strategy = Strategy::Entropy;
    c.temperature = 0.0;
    c.temperature_annealing = false;
    c.num_steps = 6;
    c
}

#[test]
fn batched_generation_equals_one_at_a_time() {
    let pipe = pipeline();
    let proteins: Vec<EsmProtein> = [9, 30, 17, 5]
        .iter()
        .map(|&n| annotated(n, &[]))
        .map(|mut p| {
            p.residue_annotations = None;
            p
        })
        .collect();
    for plan in [
        vec![fold_config()],
        // Random strategy and sampling: each protein draws from its own generator.
        vec![GenerationConfig::new(Track::Structure), {
            let mut c = GenerationConfig::new(Track::SecondaryStructure);
            c.temperature = 0.8;
            c
        }],
    ] {
        let alone: Vec<EsmProtein> = proteins
            .iter()
            .map(|p| {
                let mut rng = ChaCha20Rng::seed_from_u64(3);
                pipe.generate(p, &plan, &mut rng, |_, _, _| {}).unwrap()
            })
            .collect();
        let mut rngs: Vec<ChaCha20Rng> = (0..proteins.len())
            .map(|_| ChaCha20Rng::seed_from_u64(3))
            .collect();
        let mut refs: Vec<&mut ChaCha20Rng> = rngs.iter_mut().collect();
        let batched = pipe
            .generate_batch(&proteins, &plan, &mut refs, |_, _, _| {})
            .unwrap();
        for (a, b) in alone.iter().zip(batched) {
            let b = b.unwrap();
            assert_eq!(a.sequence, b.sequence);
            assert_eq!(a.secondary_structure, b.secondary_structure);
            // Same structure tokens ⇒ the same decoded coordinates (NaN = the last residue's O,
            // so compare their text).
            assert_eq!(
                format!("{:?}", a.coordinates),
                format!("{:?}", b.coordinates)
            );
            assert_eq!(a.plddt, b.plddt);
        }
    }
}
