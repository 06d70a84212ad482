//! SS8 and SASA tokenizers against ids produced by the reference package
//! (fixtures/reference/geometry/tokenizers.json, tools/reference/make_sasa_fixtures.py).

use esm3_tokens::{sasa, ss8};
use serde_json::Value;

fn fixture() -> Value {
    let path = esm3_test_support::reference_fixtures().join("geometry/tokenizers.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Python's json writes the special ids' NaN midpoints as a bare NaN.
    serde_json::from_str(&text.replace("NaN", "null")).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn ss8_matches_the_reference() {
    let f = fixture();
    let vocab: Vec<&str> = f["ss8_vocab"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(vocab, ss8::VOCAB);
    for case in f["ss8"].as_array().unwrap() {
        assert_eq!(
            ss8::encode(case["input"].as_str().unwrap()).unwrap(),
            ids(&case["ids"]),
            "{case}"
        );
    }
    for case in f["ss8_decode"].as_array().unwrap() {
        assert_eq!(
            ss8::decode(&ids(&case["ids"])).unwrap(),
            case["text"].as_str().unwrap()
        );
    }
}

#[test]
fn sasa_matches_the_reference() {
    let f = fixture();
    let vocab: Vec<String> = f["sasa_vocab"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let ours: Vec<String> = (0..sasa::VOCAB_SIZE as u32)
        .map(|i| sasa::token(i).unwrap())
        .collect();
    assert_eq!(ours, vocab);
    for case in f["sasa"].as_array().unwrap() {
        let values: Vec<Option<f32>> = case["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().map(|x| x as f32))
            .collect();
        assert_eq!(sasa::encode(&values).unwrap(), ids(&case["ids"]), "{case}");
    }
    for (id, m) in f["sasa_midpoints"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            sasa::midpoint(id as u32),
            m.as_f64().map(|x| x as f32),
            "id {id}"
        );
    }
}
