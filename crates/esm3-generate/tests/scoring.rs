//! Scores against log-probabilities computed with the reference forward on the fixture models
//! (tools/reference/make_generation_fixtures.py, `scoring_fixtures`).

use esm3_generate::embed::embed_sequences;
use esm3_generate::score::{masked_marginals, pseudo_log_likelihood, Variant};
use esm3_models::{LoadOptions, ModelDir};
use esm3_test_support::reference_fixtures;

#[test]
fn pll_and_masked_marginals_match_the_reference_forward() {
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(reference_fixtures().join("scoring/expected.json")).unwrap(),
    )
    .unwrap();
    let sequence = expected["sequence"].as_str().unwrap();
    let variants: Vec<Variant> = expected["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| Variant::parse(v.as_str().unwrap()).unwrap())
        .collect();
    for name in ["esm3_d64", "esmc_d64"] {
        let model = ModelDir::open(reference_fixtures().join(name).join("model"))
            .unwrap()
            .load(&LoadOptions::default())
            .unwrap();
        // A batch size that does not divide the length exercises padding of the last chunk.
        let pll = pseudo_log_likelihood(&model, sequence, 7).unwrap();
        let want = &expected[name];
        for (i, (got, w)) in pll
            .per_residue
            .iter()
            .zip(want["per_residue"].as_array().unwrap())
            .enumerate()
        {
            let d = (*got as f64 - w.as_f64().unwrap()).abs();
            assert!(d < 1e-4, "{name} residue {i}: {got} vs {w}");
        }
        assert!((pll.pll - want["pll"].as_f64().unwrap()).abs() < 1e-3);
        let scores = masked_marginals(&model, sequence, &variants, 2).unwrap();
        for (got, w) in scores
            .iter()
            .zip(want["masked_marginals"].as_array().unwrap())
        {
            assert!(
                (got - w.as_f64().unwrap()).abs() < 1e-4,
                "{name}: {got} vs {w}"
            );
        }
        // Embedding a batch of different lengths gives each protein what it gets alone.
        let batch = embed_sequences(&model, &[sequence, &sequence[..17]], 2, |_| {}).unwrap();
        let alone = embed_sequences(&model, &[&sequence[..17]], 1, |_| {}).unwrap();
        assert_eq!(
            batch[1].per_residue.dims(),
            &[17, batch[0].per_residue.dims()[1]]
        );
        let d = (&batch[1].mean - &alone[0].mean)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-4, "{name}: batched embedding differs by {d}");
        // Batches are filled by length, results come back in input order.
        let lengths = [23usize, 9, 17];
        let inputs: Vec<&str> = lengths.iter().map(|&n| &sequence[..n]).collect();
        let sorted = embed_sequences(&model, &inputs, 2, |_| {}).unwrap();
        for (e, &n) in sorted.iter().zip(&lengths) {
            let alone = embed_sequences(&model, &[&sequence[..n]], 1, |_| {}).unwrap();
            assert_eq!(e.per_residue.dims()[0], n, "{name}: order of the outputs");
            let d = (&e.per_residue - &alone[0].per_residue)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                d < 1e-4,
                "{name}: length {n} embedded in a batch differs by {d}"
            );
        }
    }
}
