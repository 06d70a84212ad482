//! From a parsed request body to a [`Job`]: which endpoints exist for which model kind, and
//! the limits every request is held to before it may queue.

use serde_json::Value;

use esm3_generate::Track;

use crate::engine::{Job, LogitsConfig, SamplingConfig, TrackSampling};
use crate::json::{self, BadRequest};

/// The endpoints of the `esm` client (spec §9.3), by model kind.
pub const ESM3_ENDPOINTS: [&str; 8] = [
    "encode",
    "decode",
    "generate",
    "generate_tensor",
    "forward_and_sample",
    "logits",
    "fold",
    "inverse_fold",
];
pub const ESMC_ENDPOINTS: [&str; 3] = ["encode", "decode", "logits"];

type R<T> = Result<T, BadRequest>;

fn inputs(body: &Value) -> R<&Value> {
    match body.get("inputs") {
        Some(v) if v.is_object() => Ok(v),
        Some(v) => Err(BadRequest(format!("inputs: expected an object, got {v}"))),
        None => Err(BadRequest("the request has no `inputs`".into())),
    }
}

fn flag(obj: &Value, key: &str, path: &str) -> R<bool> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(BadRequest(format!(
            "{path}.{key}: expected true or false, got {v}"
        ))),
    }
}

fn logits_config(body: &Value) -> R<LogitsConfig> {
    let Some(c) = body.get("logits_config").filter(|v| !v.is_null()) else {
        return Err(BadRequest("the request has no `logits_config`".into()));
    };
    json::object(c, "logits_config")?;
    let mut tracks = Vec::new();
    for t in Track::ALL {
        if flag(c, t.name(), "logits_config")? {
            tracks.push(t);
        }
    }
    let ith = match c.get("ith_hidden_layer") {
        None | Some(Value::Null) => -1,
        Some(v) => v.as_i64().ok_or_else(|| {
            BadRequest(format!(
                "logits_config.ith_hidden_layer: expected an integer, got {v}"
            ))
        })?,
    };
    Ok(LogitsConfig {
        tracks,
        residue_annotations: flag(c, "residue_annotations", "logits_config")?,
        return_embeddings: flag(c, "return_embeddings", "logits_config")?,
        return_hidden_states: flag(c, "return_hidden_states", "logits_config")?,
        ith_hidden_layer: ith,
    })
}

fn track_sampling(v: &Value, path: &str) -> R<TrackSampling> {
    json::object(v, path)?;
    let num = |k: &str, default: f32| -> R<f32> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x
                .as_f64()
                .map(|f| f as f32)
                .ok_or_else(|| BadRequest(format!("{path}.{k}: expected a number, got {x}"))),
        }
    };
    let invalid_ids = match v.get("invalid_ids") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_i64().ok_or_else(|| {
                    BadRequest(format!("{path}.invalid_ids: expected integers, got {x}"))
                })
            })
            .collect::<R<_>>()?,
        Some(x) => {
            return Err(BadRequest(format!(
                "{path}.invalid_ids: expected a list, got {x}"
            )))
        }
    };
    let topk =
        match v.get("topk_logprobs") {
            None | Some(Value::Null) => 0,
            Some(x) => x.as_u64().filter(|&k| k <= 32).ok_or_else(|| {
                BadRequest(format!("{path}.topk_logprobs: expected 0 to 32, got {x}"))
            })? as usize,
        };
    let only = match v.get("only_sample_masked_tokens") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(x) => {
            return Err(BadRequest(format!(
                "{path}.only_sample_masked_tokens: expected true or false, got {x}"
            )))
        }
    };
    let c = TrackSampling {
        temperature: num("temperature", 1.0)?,
        top_p: num("top_p", 1.0)?,
        only_sample_masked_tokens: only,
        invalid_ids,
        topk_logprobs: topk,
    };
    // Written so that NaN fails too.
    let sane = c.temperature >= 0.0 && c.top_p > 0.0 && c.top_p <= 1.0;
    if !sane {
        return Err(BadRequest(format!(
            "{path}: temperature must be ≥ 0 and top_p in (0, 1], got {} and {}",
            c.temperature, c.top_p
        )));
    }
    Ok(c)
}

fn sampling_config(body: &Value) -> R<SamplingConfig> {
    let mut config = SamplingConfig::default();
    if let Some(s) = body.get("sampling_config").filter(|v| !v.is_null()) {
        json::object(s, "sampling_config")?;
        for t in Track::ALL {
            if let Some(v) = s.get(t.name()).filter(|v| !v.is_null()) {
                config.tracks.push((
                    t,
                    track_sampling(v, &format!("sampling_config.{}", t.name()))?,
                ));
            }
        }
    }
    if let Some(e) = body.get("embedding_config").filter(|v| !v.is_null()) {
        json::object(e, "embedding_config")?;
        config.mean_embedding = flag(e, "sequence", "embedding_config")?;
        config.per_residue_embedding = flag(e, "per_residue", "embedding_config")?;
    }
    Ok(config)
}

fn seed(body: &Value) -> R<u64> {
    match body.get("seed") {
        None | Some(Value::Null) => Ok(rand::random()),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| BadRequest(format!("seed: expected a non-negative integer, got {v}"))),
    }
}

fn esmc_ids(body: &Value) -> R<Vec<i64>> {
    let v = inputs(body)?
        .get("sequence")
        .filter(|v| !v.is_null())
        .ok_or_else(|| BadRequest("inputs.sequence is missing".into()))?;
    let a = v.as_array().ok_or_else(|| {
        BadRequest(format!(
            "inputs.sequence: expected a list of token ids, got {v}"
        ))
    })?;
    let ids = a
        .iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_i64().filter(|id| (0..64).contains(id)).ok_or_else(|| {
                BadRequest(format!(
                    "inputs.sequence[{i}]: expected a token id 0..64, got {x}"
                ))
            })
        })
        .collect::<R<Vec<_>>>()?;
    if ids.len() < 2 {
        return Err(BadRequest(
            "inputs.sequence: the ids need BOS and EOS".into(),
        ));
    }
    Ok(ids)
}

/// The job of an ESM3 endpoint.
pub fn esm3_job(endpoint: &str, body: &Value) -> R<Job> {
    Ok(match endpoint {
        "encode" => Job::Encode(json::protein(inputs(body)?, "inputs")?),
        "decode" => Job::Decode(json::tensor(inputs(body)?, "inputs")?),
        "generate" => Job::Generate {
            protein: json::protein(inputs(body)?, "inputs")?,
            config: json::generation_config(body)?,
            seed: seed(body)?,
        },
        "generate_tensor" => Job::GenerateTensor {
            tensor: json::tensor(inputs(body)?, "inputs")?,
            config: json::generation_config(body)?,
            seed: seed(body)?,
        },
        "forward_and_sample" => Job::ForwardAndSample {
            tensor: json::tensor(inputs(body)?, "inputs")?,
            config: sampling_config(body)?,
            seed: seed(body)?,
        },
        "logits" => Job::Logits {
            tensor: json::tensor(inputs(body)?, "inputs")?,
            config: logits_config(body)?,
        },
        "fold" => {
            let s = body
                .get("sequence")
                .filter(|v| !v.is_null())
                .ok_or_else(|| BadRequest("fold: the request has no `sequence`".into()))?;
            let sequence = json::string(s, "sequence")?;
            if sequence.is_empty() {
                return Err(BadRequest("sequence: empty".into()));
            }
            Job::Fold { sequence }
        }
        "inverse_fold" => {
            let c = body
                .get("coordinates")
                .filter(|v| !v.is_null())
                .ok_or_else(|| {
                    BadRequest("inverse_fold: the request has no `coordinates`".into())
                })?;
            let protein = json::protein(&serde_json::json!({ "coordinates": c }), "request")?;
            let cfg = body
                .get("inverse_folding_config")
                .cloned()
                .unwrap_or(Value::Null);
            let sampling = if cfg.is_null() {
                TrackSampling {
                    temperature: 1.0,
                    top_p: 1.0,
                    only_sample_masked_tokens: true,
                    invalid_ids: Vec::new(),
                    topk_logprobs: 0,
                }
            } else {
                track_sampling(&cfg, "inverse_folding_config")?
            };
            Job::InverseFold {
                coordinates: protein.coordinates.expect("given"),
                invalid_ids: sampling.invalid_ids,
                temperature: sampling.temperature,
                seed: seed(body)?,
            }
        }
        other => return Err(unknown_endpoint(other, &ESM3_ENDPOINTS)),
    })
}

/// The job of an ESM C endpoint.
pub fn esmc_job(endpoint: &str, body: &Value) -> R<Job> {
    Ok(match endpoint {
        "encode" => {
            let v = inputs(body)?
                .get("sequence")
                .filter(|v| !v.is_null())
                .ok_or_else(|| BadRequest("inputs.sequence is missing".into()))?;
            Job::EsmcEncode {
                sequence: json::string(v, "inputs.sequence")?,
            }
        }
        "decode" => Job::EsmcDecode {
            ids: esmc_ids(body)?,
        },
        "logits" => Job::EsmcLogits {
            ids: esmc_ids(body)?,
            config: logits_config(body)?,
        },
        other => return Err(unknown_endpoint(other, &ESMC_ENDPOINTS)),
    })
}

fn unknown_endpoint(name: &str, known: &[&str]) -> BadRequest {
    BadRequest(format!(
        "no endpoint `{name}` for this model; it serves {}",
        known.join(", ")
    ))
}
