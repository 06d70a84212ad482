//! The exact set of tensors (reference state-dict names and shapes) each model type has.
//!
//! Used to check a model directory before loading and a `.pth` before importing, so that a
//! missing, extra or mis-shaped tensor is reported by name with the shape we expected.

use std::collections::BTreeMap;

use esm3_nn::ffn::swiglu_hidden;

use crate::config::ModelConfig;

/// Vocabulary sizes fixed by the ESM3 architecture (spec §1, §2.7–2.8).
pub mod vocab {
    pub const SEQUENCE: usize = 64;
    pub const STRUCTURE_EMBED: usize = 4101;
    pub const STRUCTURE_LOGITS: usize = 4096;
    pub const SS8: usize = 11;
    pub const SASA: usize = 19;
    pub const FUNCTION: usize = 260;
    pub const FUNCTION_DEPTH: usize = 8;
    pub const RESIDUE: usize = 1478;
    pub const RESIDUE_SLOTS: usize = 16;
    /// VQ-VAE (spec §3): relative positions clamp to ±32 (+ padding row + offset row).
    pub const RELATIVE_POSITION_BINS: usize = 32;
    /// Decoder backbone head output: translation, two axis vectors, 7 unused torsion pairs.
    pub const AFFINE_PROJECTION: usize = 9 + 7 * 2;
    /// Decoder pairwise head: down-projection / hidden width, and distogram (64) +
    /// direction (16·6) + PAE (64) bins.
    pub const PAIRWISE_WIDTH: usize = 128;
    pub const PAIRWISE_BINS: usize = 64 + 16 * 6 + 64;
    pub const PAE_BINS: usize = 64;
    pub const PLDDT_BINS: usize = 50;
}

pub type Schema = BTreeMap<String, Vec<usize>>;

fn add(s: &mut Schema, name: impl Into<String>, shape: &[usize]) {
    s.insert(name.into(), shape.to_vec());
}

fn head(s: &mut Schema, prefix: &str, d: usize, out: usize) {
    add(s, format!("{prefix}.0.weight"), &[d, d]);
    add(s, format!("{prefix}.0.bias"), &[d]);
    add(s, format!("{prefix}.2.weight"), &[d]);
    add(s, format!("{prefix}.2.bias"), &[d]);
    add(s, format!("{prefix}.3.weight"), &[out, d]);
    add(s, format!("{prefix}.3.bias"), &[out]);
}

/// Plain attention + SwiGLU block without biases, QK-LN on (ESM3 / ESM C trunks).
fn trunk_block(s: &mut Schema, prefix: &str, d: usize) {
    let h = swiglu_hidden(d, 8.0 / 3.0);
    add(s, format!("{prefix}.attn.layernorm_qkv.0.weight"), &[d]);
    add(s, format!("{prefix}.attn.layernorm_qkv.0.bias"), &[d]);
    add(
        s,
        format!("{prefix}.attn.layernorm_qkv.1.weight"),
        &[3 * d, d],
    );
    add(s, format!("{prefix}.attn.out_proj.weight"), &[d, d]);
    add(s, format!("{prefix}.attn.q_ln.weight"), &[d]);
    add(s, format!("{prefix}.attn.k_ln.weight"), &[d]);
    add(s, format!("{prefix}.ffn.0.weight"), &[d]);
    add(s, format!("{prefix}.ffn.0.bias"), &[d]);
    add(s, format!("{prefix}.ffn.1.weight"), &[2 * h, d]);
    add(s, format!("{prefix}.ffn.3.weight"), &[d, h]);
}

/// Every tensor name and shape of a model type, in the reference's `state_dict` order.
/// Long because it is that list, one model type an arm: split, the names the loaders must match
/// would be spread over several functions.
pub fn schema(config: &ModelConfig) -> Schema {
    let mut s = Schema::new();
    match config {
        ModelConfig::Esm3(c) => {
            let d = c.d_model;
            add(
                &mut s,
                "encoder.sequence_embed.weight",
                &[vocab::SEQUENCE, d],
            );
            for p in ["plddt_projection", "structure_per_res_plddt_projection"] {
                add(&mut s, format!("encoder.{p}.weight"), &[d, 16]);
                add(&mut s, format!("encoder.{p}.bias"), &[d]);
            }
            add(
                &mut s,
                "encoder.structure_tokens_embed.weight",
                &[vocab::STRUCTURE_EMBED, d],
            );
            add(&mut s, "encoder.ss8_embed.weight", &[vocab::SS8, d]);
            add(&mut s, "encoder.sasa_embed.weight", &[vocab::SASA, d]);
            for k in 0..vocab::FUNCTION_DEPTH {
                add(
                    &mut s,
                    format!("encoder.function_embed.{k}.weight"),
                    &[vocab::FUNCTION, d / 8],
                );
            }
            add(&mut s, "encoder.residue_embed.weight", &[vocab::RESIDUE, d]);
            for n in 0..c.n_layers {
                trunk_block(&mut s, &format!("transformer.blocks.{n}"), d);
            }
            let g = "transformer.blocks.0.geom_attn";
            add(&mut s, format!("{g}.distance_scale_per_head"), &[c.v_heads]);
            add(&mut s, format!("{g}.rotation_scale_per_head"), &[c.v_heads]);
            add(&mut s, format!("{g}.s_norm.weight"), &[d]);
            add(&mut s, format!("{g}.proj.weight"), &[15 * c.v_heads, d]);
            add(&mut s, format!("{g}.out_proj.weight"), &[d, 3 * c.v_heads]);
            add(&mut s, "transformer.norm.weight", &[d]);
            for (name, out) in [
                ("sequence_head", vocab::SEQUENCE),
                ("structure_head", vocab::STRUCTURE_LOGITS),
                ("ss8_head", vocab::SS8),
                ("sasa_head", vocab::SASA),
                ("function_head", vocab::FUNCTION * vocab::FUNCTION_DEPTH),
                ("residue_head", vocab::RESIDUE),
            ] {
                head(&mut s, &format!("output_heads.{name}"), d, out);
            }
        }
        ModelConfig::StructureEncoder(c) => {
            let d = c.d_model;
            let v = c.v_heads;
            let h = swiglu_hidden(d, 4.0);
            for n in 0..c.n_layers {
                let b = format!("transformer.blocks.{n}");
                let g = format!("{b}.geom_attn");
                add(&mut s, format!("{g}.distance_scale_per_head"), &[v]);
                add(&mut s, format!("{g}.rotation_scale_per_head"), &[v]);
                add(&mut s, format!("{g}.s_norm.weight"), &[d]);
                add(&mut s, format!("{g}.s_norm.bias"), &[d]);
                add(&mut s, format!("{g}.proj.weight"), &[15 * v, d]);
                add(&mut s, format!("{g}.proj.bias"), &[15 * v]);
                add(&mut s, format!("{g}.out_proj.weight"), &[d, 3 * v]);
                add(&mut s, format!("{g}.out_proj.bias"), &[d]);
                add(&mut s, format!("{b}.ffn.0.weight"), &[d]);
                add(&mut s, format!("{b}.ffn.0.bias"), &[d]);
                add(&mut s, format!("{b}.ffn.1.weight"), &[2 * h, d]);
                add(&mut s, format!("{b}.ffn.1.bias"), &[2 * h]);
                add(&mut s, format!("{b}.ffn.3.weight"), &[d, h]);
                add(&mut s, format!("{b}.ffn.3.bias"), &[d]);
            }
            add(&mut s, "pre_vq_proj.weight", &[c.d_out, d]);
            add(&mut s, "pre_vq_proj.bias", &[c.d_out]);
            add(&mut s, "codebook.embeddings", &[c.n_codes, c.d_out]);
            // Training-only EMA statistics: unused at inference, but `state_dict()` (and so
            // every checkpoint) has them, and keeping them makes import → export lossless.
            add(&mut s, "codebook.N", &[c.n_codes]);
            add(&mut s, "codebook.z_avg", &[c.n_codes, c.d_out]);
            add(
                &mut s,
                "relative_positional_embedding.embedding.weight",
                &[2 * vocab::RELATIVE_POSITION_BINS + 2, d],
            );
        }
        ModelConfig::FunctionDecoder(c) => {
            let d = c.d_model;
            let f = 4 * d;
            add(
                &mut s,
                "embedding.weight",
                &[2 * vocab::FUNCTION_DEPTH * 8, d],
            );
            for n in 0..c.n_layers {
                let b = format!("decoder.blocks.{n}");
                for (name, shape) in [
                    ("attn.layernorm_qkv.0.weight", vec![d]),
                    ("attn.layernorm_qkv.0.bias", vec![d]),
                    ("attn.layernorm_qkv.1.weight", vec![3 * d, d]),
                    ("attn.layernorm_qkv.1.bias", vec![3 * d]),
                    ("attn.out_proj.weight", vec![d, d]),
                    ("attn.out_proj.bias", vec![d]),
                    ("ffn.0.weight", vec![d]),
                    ("ffn.0.bias", vec![d]),
                    ("ffn.1.weight", vec![f, d]),
                    ("ffn.1.bias", vec![f]),
                    ("ffn.3.weight", vec![d, f]),
                    ("ffn.3.bias", vec![d]),
                ] {
                    add(&mut s, format!("{b}.{name}"), &shape);
                }
            }
            add(&mut s, "decoder.norm.weight", &[d]);
            for (name, out) in [
                ("keyword_logits", c.keyword_vocabulary_size),
                ("keyword_tfidf", c.keyword_vocabulary_size),
                ("interpro_logits", c.num_interpro_classes),
            ] {
                let h = format!("heads.{name}");
                add(&mut s, format!("{h}.0.weight"), &[f, d]);
                add(&mut s, format!("{h}.0.bias"), &[f]);
                add(&mut s, format!("{h}.2.weight"), &[f]);
                add(&mut s, format!("{h}.2.bias"), &[f]);
                add(&mut s, format!("{h}.3.weight"), &[out, f]);
                add(&mut s, format!("{h}.3.bias"), &[out]);
            }
        }
        ModelConfig::StructureDecoder(c) => {
            let d = c.d_model;
            add(&mut s, "embed.weight", &[vocab::STRUCTURE_EMBED, d]);
            for n in 0..c.n_layers {
                trunk_block(&mut s, &format!("decoder_stack.blocks.{n}"), d);
            }
            add(&mut s, "decoder_stack.norm.weight", &[d]);
            let a = "affine_output_projection";
            add(&mut s, format!("{a}.ffn1.weight"), &[d, d]);
            add(&mut s, format!("{a}.ffn1.bias"), &[d]);
            add(&mut s, format!("{a}.norm.weight"), &[d]);
            add(&mut s, format!("{a}.norm.bias"), &[d]);
            let proj = vocab::AFFINE_PROJECTION;
            add(&mut s, format!("{a}.proj.weight"), &[proj, d]);
            add(&mut s, format!("{a}.proj.bias"), &[proj]);
            let p = "pairwise_classification_head";
            let w = vocab::PAIRWISE_WIDTH;
            add(&mut s, format!("{p}.downproject.weight"), &[w, d]);
            add(&mut s, format!("{p}.linear1.weight"), &[w, w]);
            add(&mut s, format!("{p}.norm.weight"), &[w]);
            add(&mut s, format!("{p}.norm.bias"), &[w]);
            let bins = vocab::PAIRWISE_BINS;
            add(&mut s, format!("{p}.linear2.weight"), &[bins, w]);
            add(&mut s, "plddt_head.dense.weight", &[d, d]);
            add(&mut s, "plddt_head.dense.bias", &[d]);
            add(&mut s, "plddt_head.norm.weight", &[d]);
            add(&mut s, "plddt_head.norm.bias", &[d]);
            add(&mut s, "plddt_head.output.weight", &[vocab::PLDDT_BINS, d]);
            add(&mut s, "plddt_head.output.bias", &[vocab::PLDDT_BINS]);
        }
        ModelConfig::Esmc(c) => {
            let d = c.d_model;
            add(&mut s, "embed.weight", &[vocab::SEQUENCE, d]);
            for n in 0..c.n_layers {
                trunk_block(&mut s, &format!("transformer.blocks.{n}"), d);
            }
            add(&mut s, "transformer.norm.weight", &[d]);
            head(&mut s, "sequence_head", d, vocab::SEQUENCE);
        }
    }
    s
}

/// Compares the tensors a file has with the schema; returns one line per problem.
pub fn check<'a>(
    schema: &Schema,
    found: impl IntoIterator<Item = (&'a str, Vec<usize>)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (name, shape) in found {
        seen.insert(name.to_string());
        match schema.get(name) {
            None => problems.push(format!("unexpected tensor `{name}` with shape {shape:?}")),
            Some(want) if *want != shape => problems.push(format!(
                "tensor `{name}` has shape {shape:?}, expected {want:?}"
            )),
            Some(_) => {}
        }
    }
    for (name, shape) in schema {
        if !seen.contains(name) {
            problems.push(format!(
                "missing tensor `{name}` (expected shape {shape:?})"
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Esm3Config, EsmcConfig};

    fn count(s: &Schema) -> usize {
        s.values().map(|v| v.iter().product::<usize>()).sum()
    }

    #[test]
    fn official_models_have_the_published_sizes() {
        // ≈1.4B parameters for esm3-sm-open-v1, per the spec §8.2.
        let n = count(&schema(&ModelConfig::Esm3(Esm3Config::sm_open_v1())));
        assert!((1_300_000_000..1_500_000_000).contains(&n), "{n}");
        let s = schema(&ModelConfig::Esmc(EsmcConfig::esmc_300m()));
        assert_eq!(s["transformer.blocks.29.ffn.1.weight"], vec![5120, 960]);
        assert_eq!(
            s["transformer.blocks.29.attn.layernorm_qkv.1.weight"],
            vec![2880, 960]
        );
        let s = schema(&ModelConfig::Esmc(EsmcConfig::esmc_600m()));
        assert_eq!(s["transformer.blocks.35.ffn.3.weight"], vec![1152, 3072]);
        let s = schema(&ModelConfig::Esm3(Esm3Config::sm_open_v1()));
        assert_eq!(
            s["transformer.blocks.0.geom_attn.proj.weight"],
            vec![3840, 1536]
        );
        assert_eq!(
            s["transformer.blocks.0.geom_attn.out_proj.weight"],
            vec![1536, 768]
        );
        assert_eq!(s["transformer.blocks.47.ffn.1.weight"], vec![8192, 1536]);
        assert!(!s.contains_key("transformer.blocks.1.geom_attn.proj.weight"));
    }

    #[test]
    fn official_vqvae_models_have_the_published_shapes() {
        use crate::config::{StructureDecoderConfig, StructureEncoderConfig};
        // Spec §8.4: encoder tensors of esm3_structure_encoder_v0.pth.
        let s = schema(&ModelConfig::StructureEncoder(StructureEncoderConfig::v0()));
        let g = "transformer.blocks.1.geom_attn";
        assert_eq!(s[&format!("{g}.proj.weight")], vec![1920, 1024]);
        assert_eq!(s[&format!("{g}.out_proj.weight")], vec![1024, 384]);
        assert_eq!(s["transformer.blocks.0.ffn.1.weight"], vec![8192, 1024]);
        assert_eq!(s["transformer.blocks.0.ffn.3.weight"], vec![1024, 4096]);
        let rel = "relative_positional_embedding.embedding.weight";
        assert_eq!(s[rel], vec![66, 1024]);
        assert_eq!(s["codebook.z_avg"], vec![4096, 128]);
        // Geometric attention only, and an identity final norm.
        assert!(!s.keys().any(|k| k.contains(".attn.")));
        assert!(!s.contains_key("transformer.norm.weight"));
        // Spec §8.5: ≈ 0.62 B parameters in the decoder.
        let s = schema(&ModelConfig::StructureDecoder(StructureDecoderConfig::v0()));
        let n = count(&s);
        assert!((600_000_000..640_000_000).contains(&n), "{n}");
        assert_eq!(s["decoder_stack.blocks.29.ffn.1.weight"], vec![7168, 1280]);
        let pair = "pairwise_classification_head.linear2.weight";
        assert_eq!(s[pair], vec![224, 128]);
        assert_eq!(s["affine_output_projection.proj.weight"], vec![23, 1280]);
        assert_eq!(s["plddt_head.output.bias"], vec![50]);
    }

    #[test]
    fn check_names_every_problem() {
        let s = schema(&ModelConfig::Esmc(EsmcConfig {
            d_model: 64,
            n_heads: 4,
            n_layers: 1,
        }));
        let mut found: Vec<(&str, Vec<usize>)> =
            s.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        found.retain(|(k, _)| *k != "embed.weight");
        found.push(("bogus", vec![1]));
        let i = found
            .iter()
            .position(|(k, _)| *k == "transformer.norm.weight")
            .unwrap();
        found[i].1 = vec![65];
        let p = check(&s, found);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p
            .iter()
            .any(|m| m.contains("missing tensor `embed.weight` (expected shape [64, 64])")));
        assert!(p.iter().any(|m| m.contains("unexpected tensor `bogus`")));
        assert!(p
            .iter()
            .any(|m| m.contains("`transformer.norm.weight` has shape [65], expected [64]")));
    }
}
