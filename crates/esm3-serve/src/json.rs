//! The Forge protocol's JSON: parsing what the `esm` client sends (spec §9) into our types and
//! writing back exactly the keys it reads.
//!
//! Parsing is by hand over `serde_json::Value` rather than derived, so that every error names
//! the JSON path of the offending value (`inputs.coordinates[12][1][0]`) and what was expected.

use serde_json::{json, Map, Value};

use esm3_generate::{EsmProtein, GenerationConfig, ProteinTensor, Schedule, Strategy, Track};
use esm3_models::schema::vocab;
use esm3_protein::residue_constants::ATOM_TYPE_NUM;
use esm3_tokens::function::FunctionAnnotation;

/// A request the client got wrong: answered 400 (or 422) with this message.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRequest(pub String);

impl std::fmt::Display for BadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type R<T> = Result<T, BadRequest>;

fn bad<T>(path: &str, expected: &str, got: &Value) -> R<T> {
    let mut shown = got.to_string();
    if shown.len() > 60 {
        let cut = (0..=60)
            .rev()
            .find(|&i| shown.is_char_boundary(i))
            .unwrap_or(0);
        shown.truncate(cut);
        shown.push('…');
    }
    Err(BadRequest(format!(
        "{path}: expected {expected}, got {shown}"
    )))
}

/// Parses a request body. Python's `json` writes `NaN`, `Infinity` and `-Infinity` for
/// non-finite floats (older httpx sends them): `NaN` is read as null, the client's own
/// spelling of a missing value; an infinity has no meaning in any request field and is refused
/// with its byte offset rather than altered.
pub fn parse_body(bytes: &[u8]) -> R<Value> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| BadRequest(format!("request body is not UTF-8: {e}")))?;
    let cleaned = replace_non_finite(text)?;
    let value: Value = serde_json::from_str(cleaned.as_deref().unwrap_or(text))
        .map_err(|e| BadRequest(format!("request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return bad("request body", "a JSON object", &value);
    }
    Ok(value)
}

/// `NaN` tokens outside strings → `null`; `Infinity` tokens are an error. `None` when the text
/// has no such token (the common case: no copy).
fn replace_non_finite(text: &str) -> R<Option<String>> {
    if !text.contains("NaN") && !text.contains("Infinity") {
        return Ok(None);
    }
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut i, mut start, mut in_string) = (0, 0, false);
    while i < b.len() {
        let c = b[i];
        if in_string {
            match c {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else if c == b'"' {
            in_string = true;
        } else if text[i..].starts_with("NaN") {
            out.push_str(&text[start..i]);
            out.push_str("null");
            i += 3;
            start = i;
            continue;
        } else if text[i..].starts_with("Infinity") || text[i..].starts_with("-Infinity") {
            return Err(BadRequest(format!(
                "request body: an infinite number at byte {i}; send finite values (null for a missing one)"
            )));
        }
        i += 1;
    }
    out.push_str(&text[start..]);
    Ok(Some(out))
}

/// `body[key]`, with absent and null both `None`.
fn field<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

pub fn object<'a>(v: &'a Value, path: &str) -> R<&'a Map<String, Value>> {
    v.as_object().map_or_else(|| bad(path, "an object", v), Ok)
}

pub fn string(v: &Value, path: &str) -> R<String> {
    v.as_str()
        .map(str::to_string)
        .map_or_else(|| bad(path, "a string", v), Ok)
}

fn opt_string(obj: &Value, key: &str, path: &str) -> R<Option<String>> {
    field(obj, key)
        .map(|v| string(v, &format!("{path}.{key}")))
        .transpose()
}

fn array<'a>(v: &'a Value, path: &str) -> R<&'a Vec<Value>> {
    v.as_array().map_or_else(|| bad(path, "a list", v), Ok)
}

fn float(v: &Value, path: &str) -> R<f32> {
    v.as_f64()
        .map(|x| x as f32)
        .map_or_else(|| bad(path, "a number", v), Ok)
}

fn int(v: &Value, path: &str) -> R<i64> {
    if let Some(i) = v.as_i64() {
        return Ok(i);
    }
    // Tensors of ids may arrive as floats (`1.0`) from a float tensor's `tolist()`.
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => Ok(f as i64),
        _ => bad(path, "an integer", v),
    }
}

fn usize_of(v: &Value, path: &str) -> R<usize> {
    let i = int(v, path)?;
    usize::try_from(i).map_or_else(|_| bad(path, "a non-negative integer", v), Ok)
}

/// `[L][37][3]` with null for a missing coordinate (NaN).
fn coordinates(v: &Value, path: &str) -> R<Vec<[[f32; 3]; ATOM_TYPE_NUM]>> {
    array(v, path)?
        .iter()
        .enumerate()
        .map(|(i, residue)| {
            let p = format!("{path}[{i}]");
            let atoms = array(residue, &p)?;
            if atoms.len() != ATOM_TYPE_NUM {
                return bad(&p, "37 atoms (atom37 order)", &json!(atoms.len()));
            }
            let mut row = [[f32::NAN; 3]; ATOM_TYPE_NUM];
            for (a, atom) in atoms.iter().enumerate() {
                let pa = format!("{p}[{a}]");
                let xyz = array(atom, &pa)?;
                if xyz.len() != 3 {
                    return bad(&pa, "3 coordinates", &json!(xyz.len()));
                }
                for (k, x) in xyz.iter().enumerate() {
                    row[a][k] = if x.is_null() {
                        f32::NAN
                    } else {
                        float(x, &format!("{pa}[{k}]"))?
                    };
                }
            }
            Ok(row)
        })
        .collect()
}

fn annotations(v: &Value, path: &str) -> R<Vec<FunctionAnnotation>> {
    array(v, path)?
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let p = format!("{path}[{i}]");
            // [label, start, end] as the client sends it, or {label, start, end}.
            let (label, start, end) = match a {
                Value::Array(t) if t.len() == 3 => (&t[0], &t[1], &t[2]),
                Value::Object(o) => match (o.get("label"), o.get("start"), o.get("end")) {
                    (Some(l), Some(s), Some(e)) => (l, s, e),
                    _ => return bad(&p, "{label, start, end}", a),
                },
                _ => return bad(&p, "[label, start, end]", a),
            };
            Ok(FunctionAnnotation {
                label: string(label, &format!("{p}[0]"))?,
                start: usize_of(start, &format!("{p}[1]"))?,
                end: usize_of(end, &format!("{p}[2]"))?,
            })
        })
        .collect()
}

/// An `ESMProtein` as `generate` and `encode` send it.
pub fn protein(v: &Value, path: &str) -> R<EsmProtein> {
    object(v, path)?;
    let sasa = field(v, "sasa")
        .map(|s| {
            array(s, &format!("{path}.sasa"))?
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    if x.is_null() {
                        Ok(None)
                    } else {
                        float(x, &format!("{path}.sasa[{i}]")).map(Some)
                    }
                })
                .collect::<R<Vec<_>>>()
        })
        .transpose()?;
    let protein = EsmProtein {
        sequence: opt_string(v, "sequence", path)?,
        secondary_structure: opt_string(v, "secondary_structure", path)?,
        sasa,
        coordinates: field(v, "coordinates")
            .map(|c| coordinates(c, &format!("{path}.coordinates")))
            .transpose()?,
        function_annotations: field(v, "function")
            .map(|f| annotations(f, &format!("{path}.function")))
            .transpose()?
            .filter(|a| !a.is_empty()),
        ..Default::default()
    };
    if protein.is_empty() {
        return Err(BadRequest(format!(
            "{path}: the protein is empty (give a sequence, secondary_structure, sasa or coordinates)"
        )));
    }
    protein
        .check()
        .map_err(|e| BadRequest(format!("{path}: {e}")))?;
    Ok(protein)
}

fn ids(v: &Value, path: &str) -> R<Vec<i64>> {
    array(v, path)?
        .iter()
        .enumerate()
        .map(|(i, x)| int(x, &format!("{path}[{i}]")))
        .collect()
}

fn rows<const N: usize>(v: &Value, path: &str) -> R<Vec<[i64; N]>> {
    array(v, path)?
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let p = format!("{path}[{i}]");
            let row = ids(r, &p)?;
            <[i64; N]>::try_from(row.as_slice())
                .map_or_else(|_| bad(&p, &format!("{N} ids"), r), Ok)
        })
        .collect()
}

/// An `ESMProteinTensor` (`generate_tensor`, `forward_and_sample`, `logits`, `decode`): ids per
/// track with BOS/EOS slots, coordinates `[L+2][37][3]`.
pub fn tensor(v: &Value, path: &str) -> R<ProteinTensor> {
    object(v, path)?;
    let p = |k: &str| format!("{path}.{k}");
    let t = ProteinTensor {
        sequence: field(v, "sequence")
            .map(|x| ids(x, &p("sequence")))
            .transpose()?,
        structure: field(v, "structure")
            .map(|x| ids(x, &p("structure")))
            .transpose()?,
        secondary_structure: field(v, "secondary_structure")
            .map(|x| ids(x, &p("secondary_structure")))
            .transpose()?,
        sasa: field(v, "sasa").map(|x| ids(x, &p("sasa"))).transpose()?,
        function: field(v, "function")
            .map(|x| rows::<8>(x, &p("function")))
            .transpose()?,
        residue_annotations: field(v, "residue_annotation")
            .or_else(|| field(v, "residue_annotations"))
            .map(|x| rows::<16>(x, &p("residue_annotation")))
            .transpose()?,
        coordinates: field(v, "coordinates")
            .map(|x| coordinates(x, &p("coordinates")))
            .transpose()?,
    };
    let n = t
        .check_lengths()
        .map_err(|e| BadRequest(format!("{path}: {e}")))?;
    if n < 2 {
        return Err(BadRequest(format!(
            "{path}: the tensor has {n} slots; it needs BOS and EOS around at least one residue"
        )));
    }
    check_ids(&t, path)?;
    Ok(t)
}

/// Rows of each token track's embedding table (spec §1.7).
fn vocabulary_size(track: Track) -> i64 {
    (match track {
        Track::Sequence => vocab::SEQUENCE,
        Track::Structure => vocab::STRUCTURE_EMBED,
        Track::SecondaryStructure => vocab::SS8,
        Track::Sasa => vocab::SASA,
        Track::Function => vocab::FUNCTION,
    }) as i64
}

/// Ids outside a track's vocabulary would index past an embedding table.
fn check_ids(t: &ProteinTensor, path: &str) -> R<()> {
    for track in [
        Track::Sequence,
        Track::Structure,
        Track::SecondaryStructure,
        Track::Sasa,
    ] {
        let Some(v) = t.ids(track) else { continue };
        let limit = vocabulary_size(track);
        if let Some((i, &x)) = v
            .iter()
            .enumerate()
            .find(|(_, &x)| !(0..limit).contains(&x))
        {
            return Err(BadRequest(format!(
                "{path}.{}[{i}]: id {x} is outside the track's vocabulary 0..{limit}",
                track.name()
            )));
        }
    }
    if let Some(rows) = &t.function {
        if let Some(i) = rows
            .iter()
            .position(|r| r.iter().any(|&x| !(0..vocab::FUNCTION as i64).contains(&x)))
        {
            return Err(BadRequest(format!(
                "{path}.function[{i}]: function ids are 0..260"
            )));
        }
    }
    if let Some(rows) = &t.residue_annotations {
        if let Some(i) = rows
            .iter()
            .position(|r| r.iter().any(|&x| !(0..vocab::RESIDUE as i64).contains(&x)))
        {
            return Err(BadRequest(format!(
                "{path}.residue_annotation[{i}]: residue-annotation ids are 0..1478"
            )));
        }
    }
    Ok(())
}

/// The generation fields the client puts at the top level of `generate`/`generate_tensor`.
pub fn generation_config(body: &Value) -> R<GenerationConfig> {
    let mut c = GenerationConfig::default();
    if let Some(t) = field(body, "track") {
        let name = string(t, "track")?;
        c.track = Track::from_name(&name).map_or_else(
            || {
                Err(BadRequest(format!(
                    "track: `{name}` is not a track (expected sequence, structure, secondary_structure, sasa or function)"
                )))
            },
            Ok,
        )?;
    }
    if let Some(v) = field(body, "invalid_ids") {
        c.invalid_ids = ids(v, "invalid_ids")?;
    }
    if let Some(v) = field(body, "schedule") {
        c.schedule = match string(v, "schedule")?.as_str() {
            "cosine" => Schedule::Cosine,
            "linear" => Schedule::Linear,
            _ => return bad("schedule", "`cosine` or `linear`", v),
        };
    }
    if let Some(v) = field(body, "strategy") {
        c.strategy = match string(v, "strategy")?.as_str() {
            "random" => Strategy::Random,
            "entropy" => Strategy::Entropy,
            _ => return bad("strategy", "`random` or `entropy`", v),
        };
    }
    if let Some(v) = field(body, "num_steps") {
        c.num_steps = usize_of(v, "num_steps")?;
    }
    if let Some(v) = field(body, "temperature") {
        c.temperature = float(v, "temperature")?;
    }
    if let Some(v) = field(body, "top_p") {
        c.top_p = float(v, "top_p")?;
    }
    if let Some(v) = field(body, "temperature_annealing") {
        c.temperature_annealing = v
            .as_bool()
            .map_or_else(|| bad("temperature_annealing", "true or false", v), Ok)?;
    }
    if let Some(v) = field(body, "condition_on_coordinates_only") {
        c.condition_on_coordinates_only = v.as_bool().map_or_else(
            || bad("condition_on_coordinates_only", "true or false", v),
            Ok,
        )?;
    }
    c.validate().map_err(BadRequest)?;
    Ok(c)
}

/// Coordinates for JSON: NaN (and the ±inf of BOS/EOS rows) as null.
pub fn coordinates_json(c: &[[[f32; 3]; ATOM_TYPE_NUM]]) -> Value {
    Value::Array(
        c.iter()
            .map(|r| {
                Value::Array(
                    r.iter()
                        .map(|a| Value::Array(a.iter().map(|&x| finite(x)).collect()))
                        .collect(),
                )
            })
            .collect(),
    )
}

pub fn finite(x: f32) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

fn annotations_json(a: &Option<Vec<FunctionAnnotation>>) -> Value {
    match a {
        Some(list) => Value::Array(
            list.iter()
                .map(|f| json!([f.label, f.start, f.end]))
                .collect(),
        ),
        None => Value::Null,
    }
}

/// An `ESMProtein` as the client reads it (`generate`, `decode`): every key present.
pub fn protein_json(p: &EsmProtein) -> Value {
    let mut function = p.function_annotations.clone();
    if let Some(r) = &p.residue_annotations {
        // The SDK keeps residue annotations among the function annotations.
        function
            .get_or_insert_with(Vec::new)
            .extend(r.iter().cloned());
    }
    json!({
        "sequence": p.sequence,
        "secondary_structure": p.secondary_structure,
        "sasa": p.sasa.as_ref().map(|v| v.iter().map(|x| x.map_or(Value::Null, finite)).collect::<Vec<_>>()),
        "function": annotations_json(&function),
        "coordinates": p.coordinates.as_deref().map(coordinates_json),
        "plddt": p.plddt.as_ref().map(|v| v.iter().map(|&x| finite(x)).collect::<Vec<_>>()),
        "ptm": p.ptm.map(finite),
    })
}

/// An `ESMProteinTensor` as the client reads it (`encode`, `generate_tensor`).
pub fn tensor_json(t: &ProteinTensor) -> Value {
    json!({
        "sequence": t.sequence,
        "structure": t.structure,
        "secondary_structure": t.secondary_structure,
        "sasa": t.sasa,
        "function": t.function,
        "residue_annotation": t.residue_annotations,
        "coordinates": t.coordinates.as_deref().map(coordinates_json),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_is_null_and_infinity_is_refused_outside_strings() {
        let v = parse_body(br#"{"a": [1.0, NaN], "s": "NaN Infinity"}"#).unwrap();
        assert_eq!(v["a"][1], Value::Null);
        assert_eq!(v["s"], "NaN Infinity");
        let e = parse_body(br#"{"a": [-Infinity]}"#).unwrap_err();
        assert!(e.0.contains("byte 7"), "{e}");
        assert!(parse_body(b"[1]").unwrap_err().0.contains("object"));
        assert!(parse_body(b"{\"a\": ")
            .unwrap_err()
            .0
            .contains("not valid JSON"));
    }

    #[test]
    fn errors_name_the_path_and_the_expectation() {
        let v: Value =
            serde_json::from_str(r#"{"sequence": "MKV", "coordinates": [[[1,2,3]], [], []]}"#)
                .unwrap();
        let e = protein(&v, "inputs").unwrap_err();
        assert_eq!(
            e.0,
            "inputs.coordinates[0]: expected 37 atoms (atom37 order), got 1"
        );
        let v: Value = serde_json::from_str(r#"{"sequence": [0, 99, 2]}"#).unwrap();
        let e = tensor(&v, "inputs").unwrap_err();
        assert!(e.0.contains("inputs.sequence[1]: id 99"), "{e}");
        let e = generation_config(&json!({"track": "colour"})).unwrap_err();
        assert!(e.0.contains("`colour` is not a track"), "{e}");
    }

    #[test]
    fn a_protein_survives_the_round_trip_through_json() {
        let mut c = vec![[[f32::NAN; 3]; ATOM_TYPE_NUM]; 2];
        c[0][1] = [1.5, -2.0, 3.25];
        let p = EsmProtein {
            sequence: Some("MK".into()),
            sasa: Some(vec![Some(1.0), None]),
            coordinates: Some(c),
            function_annotations: Some(vec![FunctionAnnotation {
                label: "IPR000001".into(),
                start: 1,
                end: 2,
            }]),
            ..Default::default()
        };
        let v = protein_json(&p);
        for key in [
            "sequence",
            "secondary_structure",
            "sasa",
            "function",
            "coordinates",
            "plddt",
            "ptm",
        ] {
            assert!(v.get(key).is_some(), "{key} missing");
        }
        let back = protein(&v, "outputs").unwrap();
        assert_eq!(back.sequence, p.sequence);
        assert_eq!(back.sasa, p.sasa);
        assert_eq!(back.function_annotations, p.function_annotations);
        let (a, b) = (back.coordinates.unwrap(), p.coordinates.unwrap());
        assert_eq!(a[0][1], b[0][1]);
        assert!(a[1][0][0].is_nan());
    }
}
