//! `config.json` of a model directory: the model type and its hyper-parameters.

use esm3_nn::{BlockConfig, FfnKind};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use std::path::Path;

/// Hyper-parameters of an ESM3 trunk (the reference's `ESM3(d_model, n_heads, v_heads, n_layers)`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Esm3Config {
    pub d_model: usize,
    pub n_heads: usize,
    pub v_heads: usize,
    pub n_layers: usize,
}

/// Hyper-parameters of an ESM C trunk (the reference's `ESMC(d_model, n_heads, n_layers)`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EsmcConfig {
    pub d_model: usize,
    pub n_heads: usize,
    pub n_layers: usize,
}

/// Hyper-parameters of the VQ-VAE structure encoder (the reference's
/// `StructureTokenEncoder(d_model, n_heads, v_heads, n_layers, d_out, n_codes)`; `n_heads` is
/// accepted for signature parity but unused: the encoder has geometric attention only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StructureEncoderConfig {
    pub d_model: usize,
    pub n_heads: usize,
    pub v_heads: usize,
    pub n_layers: usize,
    pub d_out: usize,
    pub n_codes: usize,
}

/// Hyper-parameters of the VQ-VAE structure decoder (`StructureTokenDecoder(d_model, n_heads,
/// n_layers)`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StructureDecoderConfig {
    pub d_model: usize,
    pub n_heads: usize,
    pub n_layers: usize,
}

impl StructureEncoderConfig {
    /// `esm3_structure_encoder_v0.pth`.
    pub fn v0() -> Self {
        Self {
            d_model: 1024,
            n_heads: 1,
            v_heads: 128,
            n_layers: 2,
            d_out: 128,
            n_codes: 4096,
        }
    }
}

impl StructureDecoderConfig {
    /// `esm3_structure_decoder_v0.pth`.
    pub fn v0() -> Self {
        Self {
            d_model: 1280,
            n_heads: 20,
            n_layers: 30,
        }
    }
}

/// Hyper-parameters of the function-token decoder (`FunctionTokenDecoderConfig`); the vocabulary
/// sizes follow the keyword vocabulary and InterPro entry list it decodes into.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionDecoderConfig {
    pub d_model: usize,
    pub n_heads: usize,
    pub n_layers: usize,
    pub keyword_vocabulary_size: usize,
    pub num_interpro_classes: usize,
}

impl FunctionDecoderConfig {
    /// `esm3_function_decoder_v0.pth`.
    pub fn v0() -> Self {
        Self {
            d_model: 1024,
            n_heads: 8,
            n_layers: 3,
            keyword_vocabulary_size: 58641,
            num_interpro_classes: 29026,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "model_type", rename_all = "lowercase")]
pub enum ModelConfig {
    Esm3(Esm3Config),
    Esmc(EsmcConfig),
    #[serde(rename = "esm3_structure_encoder")]
    StructureEncoder(StructureEncoderConfig),
    #[serde(rename = "esm3_structure_decoder")]
    StructureDecoder(StructureDecoderConfig),
    #[serde(rename = "esm3_function_decoder")]
    FunctionDecoder(FunctionDecoderConfig),
}

impl Esm3Config {
    /// `esm3-sm-open-v1`, the public 1.4B model.
    pub fn sm_open_v1() -> Self {
        Self {
            d_model: 1536,
            n_heads: 24,
            v_heads: 256,
            n_layers: 48,
        }
    }
}

impl EsmcConfig {
    pub fn esmc_300m() -> Self {
        Self {
            d_model: 960,
            n_heads: 15,
            n_layers: 30,
        }
    }
    pub fn esmc_600m() -> Self {
        Self {
            d_model: 1152,
            n_heads: 18,
            n_layers: 36,
        }
    }
}

fn check_heads(d_model: usize, n_heads: usize, n_layers: usize) -> std::result::Result<(), String> {
    if d_model == 0 || n_heads == 0 || n_layers == 0 {
        return Err("d_model, n_heads and n_layers must be positive".into());
    }
    if !d_model.is_multiple_of(n_heads) {
        return Err(format!(
            "d_model {d_model} is not divisible by n_heads {n_heads}"
        ));
    }
    if !(d_model / n_heads).is_multiple_of(2) {
        return Err(format!(
            "head width d_model/n_heads = {} must be even for rotary embeddings",
            d_model / n_heads
        ));
    }
    Ok(())
}

/// The block the ESM3 trunk, ESM C and the structure decoder share: plain attention without
/// biases, QK LayerNorm, SwiGLU of ratio 8/3, no geometric attention, frameless queries kept.
fn esm_block(d_model: usize, n_heads: usize, residue_scaling: f64) -> BlockConfig {
    BlockConfig {
        d_model,
        n_heads,
        v_heads: None,
        use_plain_attn: true,
        bias: false,
        qk_layernorm: true,
        ffn: FfnKind::SwiGlu,
        expansion_ratio: 8.0 / 3.0,
        residue_scaling,
        mask_and_zero_frameless: false,
    }
}

/// ESM3's and ESM C's residual scaling: √(n_layers / 36).
fn depth_scaling(n_layers: usize) -> f64 {
    (n_layers as f64 / 36.0).sqrt()
}

impl Esm3Config {
    /// The transformer block of layer `layer`, with the constants the reference fixes for
    /// this model (`esm/models/esm3.py`: geometric attention in layer 0 only, frameless queries
    /// masked and zeroed).
    pub fn block(&self, layer: usize) -> BlockConfig {
        BlockConfig {
            v_heads: (layer == 0).then_some(self.v_heads),
            mask_and_zero_frameless: true,
            ..esm_block(self.d_model, self.n_heads, depth_scaling(self.n_layers))
        }
    }
}

impl EsmcConfig {
    /// The transformer block of layer `layer`, with the constants the reference fixes for
    /// this model (`esm/models/esmc.py`).
    pub fn block(&self, _layer: usize) -> BlockConfig {
        esm_block(self.d_model, self.n_heads, depth_scaling(self.n_layers))
    }
}

impl FunctionDecoderConfig {
    /// The transformer block of layer `layer`, with the constants the reference fixes for
    /// this model (`esm/models/function_decoder.py`: biased, GELU, no QK LayerNorm).
    pub fn block(&self, _layer: usize) -> BlockConfig {
        BlockConfig {
            d_model: self.d_model,
            n_heads: self.n_heads,
            v_heads: None,
            use_plain_attn: true,
            bias: true,
            qk_layernorm: false,
            ffn: FfnKind::Gelu,
            expansion_ratio: 4.0,
            residue_scaling: 1.0,
            mask_and_zero_frameless: false,
        }
    }
}

impl StructureDecoderConfig {
    /// The transformer block of layer `layer`, with the constants the reference fixes for
    /// this model (`esm/models/vqvae.py` `StructureTokenDecoder`).
    pub fn block(&self, _layer: usize) -> BlockConfig {
        esm_block(self.d_model, self.n_heads, 1.0)
    }
}

impl StructureEncoderConfig {
    /// The transformer block of layer `layer`, with the constants the reference fixes for
    /// this model (`esm/models/vqvae.py` `StructureTokenEncoder` (`GeometricEncoderStack`)).
    pub fn block(&self, _layer: usize) -> BlockConfig {
        BlockConfig {
            d_model: self.d_model,
            n_heads: self.n_heads,
            v_heads: Some(self.v_heads),
            use_plain_attn: false,
            bias: true,
            qk_layernorm: true,
            ffn: FfnKind::SwiGlu,
            expansion_ratio: 4.0,
            residue_scaling: 1.0,
            // The reference's GeometricEncoderStack leaves its blocks at the default (False).
            mask_and_zero_frameless: false,
        }
    }
}

impl ModelConfig {
    pub fn model_type(&self) -> &'static str {
        match self {
            ModelConfig::Esm3(_) => "esm3",
            ModelConfig::Esmc(_) => "esmc",
            ModelConfig::StructureEncoder(_) => "esm3_structure_encoder",
            ModelConfig::StructureDecoder(_) => "esm3_structure_decoder",
            ModelConfig::FunctionDecoder(_) => "esm3_function_decoder",
        }
    }

    /// Checks the hyper-parameters describe a model the architecture can have.
    pub fn validate(&self) -> std::result::Result<(), String> {
        match self {
            ModelConfig::Esm3(c) => {
                check_heads(c.d_model, c.n_heads, c.n_layers)?;
                if c.d_model % 8 != 0 {
                    return Err(format!(
                        "d_model {} must be divisible by 8 (eight function-token embeddings are concatenated)",
                        c.d_model
                    ));
                }
                if c.v_heads == 0 {
                    return Err("v_heads must be positive".into());
                }
                Ok(())
            }
            ModelConfig::Esmc(c) => check_heads(c.d_model, c.n_heads, c.n_layers),
            ModelConfig::StructureEncoder(c) => {
                if [c.d_model, c.v_heads, c.n_layers, c.d_out, c.n_codes].contains(&0) {
                    return Err(
                        "d_model, v_heads, n_layers, d_out and n_codes must be positive".into(),
                    );
                }
                Ok(())
            }
            ModelConfig::StructureDecoder(c) => check_heads(c.d_model, c.n_heads, c.n_layers),
            ModelConfig::FunctionDecoder(c) => {
                check_heads(c.d_model, c.n_heads, c.n_layers)?;
                if c.keyword_vocabulary_size == 0 || c.num_interpro_classes == 0 {
                    return Err(
                        "keyword_vocabulary_size and num_interpro_classes must be positive".into(),
                    );
                }
                Ok(())
            }
        }
    }

    /// Short description for messages, e.g. `d_model=64 n_heads=4 v_heads=4 n_layers=2`.
    pub fn describe(&self) -> String {
        match self {
            ModelConfig::Esm3(c) => format!(
                "d_model={} n_heads={} v_heads={} n_layers={}",
                c.d_model, c.n_heads, c.v_heads, c.n_layers
            ),
            ModelConfig::Esmc(c) => format!(
                "d_model={} n_heads={} n_layers={}",
                c.d_model, c.n_heads, c.n_layers
            ),
            ModelConfig::StructureEncoder(c) => format!(
                "d_model={} n_heads={} v_heads={} n_layers={} d_out={} n_codes={}",
                c.d_model, c.n_heads, c.v_heads, c.n_layers, c.d_out, c.n_codes
            ),
            ModelConfig::StructureDecoder(c) => format!(
                "d_model={} n_heads={} n_layers={}",
                c.d_model, c.n_heads, c.n_layers
            ),
            ModelConfig::FunctionDecoder(c) => format!(
                "d_model={} n_heads={} n_layers={} keyword_vocabulary_size={} num_interpro_classes={}",
                c.d_model, c.n_heads, c.n_layers, c.keyword_vocabulary_size, c.num_interpro_classes
            ),
        }
    }

    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let config: ModelConfig =
            serde_json::from_str(text).map_err(|e| ModelError::Config {
                path: path.to_path_buf(),
                message: format!(
                    "{e} (expected e.g. {{\"model_type\": \"esm3\", \"d_model\": 1536, \"n_heads\": 24, \"v_heads\": 256, \"n_layers\": 48}} or {{\"model_type\": \"esmc\", ...}})"
                ),
            })?;
        config.validate().map_err(|message| ModelError::Config {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_json(&text, path)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serialises")
    }

    /// Hyper-parameters of the official checkpoints, by their file name.
    pub fn for_official_file(file_name: &str) -> Option<Self> {
        match file_name {
            "esm3_sm_open_v1.pth" => Some(ModelConfig::Esm3(Esm3Config::sm_open_v1())),
            "esmc_300m_2024_12_v0.pth" => Some(ModelConfig::Esmc(EsmcConfig::esmc_300m())),
            "esmc_600m_2024_12_v0.pth" => Some(ModelConfig::Esmc(EsmcConfig::esmc_600m())),
            "esm3_structure_encoder_v0.pth" => {
                Some(ModelConfig::StructureEncoder(StructureEncoderConfig::v0()))
            }
            "esm3_structure_decoder_v0.pth" => {
                Some(ModelConfig::StructureDecoder(StructureDecoderConfig::v0()))
            }
            "esm3_function_decoder_v0.pth" => {
                Some(ModelConfig::FunctionDecoder(FunctionDecoderConfig::v0()))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_model_types_and_rejects_bad_shapes() {
        let p = Path::new("config.json");
        let c = ModelConfig::from_json(
            r#"{"model_type":"esm3","d_model":64,"n_heads":4,"v_heads":4,"n_layers":2}"#,
            p,
        )
        .unwrap();
        assert_eq!(c.model_type(), "esm3");
        let c = ModelConfig::from_json(
            r#"{"model_type":"esmc","d_model":96,"n_heads":2,"n_layers":3}"#,
            p,
        )
        .unwrap();
        assert_eq!(
            c,
            ModelConfig::Esmc(EsmcConfig {
                d_model: 96,
                n_heads: 2,
                n_layers: 3
            })
        );
        let err = ModelConfig::from_json(
            r#"{"model_type":"esm3","d_model":36,"n_heads":2,"v_heads":4,"n_layers":2}"#,
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("divisible by 8"), "{err}");
        let err = ModelConfig::from_json(r#"{"model_type":"bert"}"#, p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.json") && err.contains("bert"), "{err}");
    }

    #[test]
    fn vqvae_model_types_parse_by_their_reference_names() {
        let p = Path::new("config.json");
        let c = ModelConfig::from_json(
            r#"{"model_type":"esm3_structure_encoder","d_model":64,"n_heads":4,"v_heads":4,"n_layers":2,"d_out":16,"n_codes":64}"#,
            p,
        )
        .unwrap();
        assert_eq!(c.model_type(), "esm3_structure_encoder");
        let c = ModelConfig::from_json(
            r#"{"model_type":"esm3_structure_decoder","d_model":64,"n_heads":4,"n_layers":2}"#,
            p,
        )
        .unwrap();
        assert_eq!(c.model_type(), "esm3_structure_decoder");
        let err = ModelConfig::from_json(
            r#"{"model_type":"esm3_structure_encoder","d_model":64,"n_heads":4,"v_heads":4,"n_layers":2,"d_out":16,"n_codes":0}"#,
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("n_codes"), "{err}");
        for name in [
            "esm3_structure_encoder_v0.pth",
            "esm3_structure_decoder_v0.pth",
        ] {
            let c = ModelConfig::for_official_file(name).unwrap();
            assert_eq!(ModelConfig::from_json(&c.to_json(), p).unwrap(), c);
        }
    }

    #[test]
    fn json_roundtrip() {
        let c = ModelConfig::Esm3(Esm3Config::sm_open_v1());
        assert_eq!(
            ModelConfig::from_json(&c.to_json(), Path::new("x")).unwrap(),
            c
        );
    }
}
