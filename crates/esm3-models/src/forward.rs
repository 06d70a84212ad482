//! The forward door: named input tensors in, named output tensors out, for every model type.
//!
//! Names are the reference modules' forward arguments and output fields, so a safetensors file
//! written from Python can be fed as is, and outputs compared name by name.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;

use crate::array::HostArray;
use crate::error::{ModelError, Result};
use crate::esm3::Esm3Input;
use crate::esmc::EsmcInput;
use crate::model_dir::LoadedModel;
use crate::structure_decoder::StructureDecoderInput;
use crate::structure_encoder::StructureEncoderInput;

pub const ESM3_INPUTS: [&str; 11] = [
    "sequence_tokens",
    "structure_tokens",
    "ss8_tokens",
    "sasa_tokens",
    "function_tokens",
    "residue_annotation_tokens",
    "average_plddt",
    "per_res_plddt",
    "structure_coords",
    "chain_id",
    "sequence_id",
];

pub const ESMC_INPUTS: [&str; 2] = ["sequence_tokens", "sequence_id"];

pub const STRUCTURE_ENCODER_INPUTS: [&str; 4] =
    ["coords", "attention_mask", "sequence_id", "residue_index"];

pub const STRUCTURE_DECODER_INPUTS: [&str; 3] =
    ["structure_tokens", "attention_mask", "sequence_id"];

fn reject_unknown(named: &HashMap<String, Tensor>, accepted: &[&str], model: &str) -> Result<()> {
    let mut unknown: Vec<&str> = named
        .keys()
        .map(String::as_str)
        .filter(|k| !accepted.contains(k))
        .collect();
    unknown.sort();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(ModelError::Input(format!(
        "unknown input tensor(s) {unknown:?} for a {model} model; accepted: {}",
        accepted.join(", ")
    )))
}

fn ids(named: &HashMap<String, Tensor>, name: &str) -> Result<Option<HostArray<i64>>> {
    named
        .get(name)
        .map(|t| HostArray::ids_from_tensor(name, t))
        .transpose()
}

fn reals(named: &HashMap<String, Tensor>, name: &str) -> Result<Option<HostArray<f32>>> {
    named
        .get(name)
        .map(|t| HostArray::reals_from_tensor(name, t))
        .transpose()
}

pub fn esm3_input(named: &HashMap<String, Tensor>) -> Result<Esm3Input> {
    reject_unknown(named, &ESM3_INPUTS, "esm3")?;
    Ok(Esm3Input {
        sequence_tokens: ids(named, "sequence_tokens")?,
        structure_tokens: ids(named, "structure_tokens")?,
        ss8_tokens: ids(named, "ss8_tokens")?,
        sasa_tokens: ids(named, "sasa_tokens")?,
        function_tokens: ids(named, "function_tokens")?,
        residue_annotation_tokens: ids(named, "residue_annotation_tokens")?,
        average_plddt: reals(named, "average_plddt")?,
        per_res_plddt: reals(named, "per_res_plddt")?,
        structure_coords: reals(named, "structure_coords")?,
        chain_id: ids(named, "chain_id")?,
        sequence_id: ids(named, "sequence_id")?,
    })
}

pub fn esmc_input(named: &HashMap<String, Tensor>) -> Result<EsmcInput> {
    reject_unknown(named, &ESMC_INPUTS, "esmc")?;
    Ok(EsmcInput {
        sequence_tokens: ids(named, "sequence_tokens")?,
        sequence_id: ids(named, "sequence_id")?,
    })
}

/// Encoder inputs: `coords` `[B, L, 3|37, 3]` (required), `attention_mask`, `sequence_id`,
/// `residue_index` `[B, L]` (integers; masks may be any integer dtype, non-zero = real).
pub fn structure_encoder_input(named: &HashMap<String, Tensor>) -> Result<StructureEncoderInput> {
    reject_unknown(named, &STRUCTURE_ENCODER_INPUTS, "esm3_structure_encoder")?;
    Ok(StructureEncoderInput {
        coords: reals(named, "coords")?.ok_or_else(|| {
            ModelError::Input("the structure encoder needs `coords` [B, L, 3|37, 3]".into())
        })?,
        attention_mask: ids(named, "attention_mask")?,
        sequence_id: ids(named, "sequence_id")?,
        residue_index: ids(named, "residue_index")?,
    })
}

/// Decoder inputs: `structure_tokens` `[B, L]` with BOS/EOS (required), `attention_mask`,
/// `sequence_id`.
pub fn structure_decoder_input(named: &HashMap<String, Tensor>) -> Result<StructureDecoderInput> {
    reject_unknown(named, &STRUCTURE_DECODER_INPUTS, "esm3_structure_decoder")?;
    Ok(StructureDecoderInput {
        structure_tokens: ids(named, "structure_tokens")?.ok_or_else(|| {
            ModelError::Input("the structure decoder needs `structure_tokens` [B, L]".into())
        })?,
        attention_mask: ids(named, "attention_mask")?,
        sequence_id: ids(named, "sequence_id")?,
    })
}

pub const FUNCTION_DECODER_INPUTS: [&str; 1] = ["token_ids"];

/// Function decoder input: `token_ids` `[N, 8]` function ids (one row per position).
pub fn function_decoder_input(named: &HashMap<String, Tensor>) -> Result<HostArray<i64>> {
    reject_unknown(named, &FUNCTION_DECODER_INPUTS, "esm3_function_decoder")?;
    ids(named, "token_ids")?
        .ok_or_else(|| ModelError::Input("the function decoder needs `token_ids` [N, 8]".into()))
}

/// Runs any loaded model on named inputs and returns its named outputs (f32; token ids i64).
pub fn forward_named(
    model: &LoadedModel,
    named: &HashMap<String, Tensor>,
) -> Result<Vec<(String, Tensor)>> {
    let owned = |v: Vec<(&'static str, &Tensor)>| {
        v.into_iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect()
    };
    Ok(match model {
        LoadedModel::Esm3(m) => owned(m.forward(&esm3_input(named)?)?.named()),
        LoadedModel::Esmc(m) => owned(m.forward(&esmc_input(named)?)?.named()),
        LoadedModel::StructureEncoder(m) => {
            owned(m.forward(&structure_encoder_input(named)?)?.named())
        }
        LoadedModel::StructureDecoder(m) => {
            owned(m.forward(&structure_decoder_input(named)?)?.named())
        }
        LoadedModel::FunctionDecoder(m) => {
            owned(m.forward(&function_decoder_input(named)?)?.named())
        }
    })
}

/// Reads inputs from a safetensors file (onto the CPU; models move what they need).
pub fn read_inputs(path: &Path) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        return Err(ModelError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "input file not found"),
        ));
    }
    candle_core::safetensors::load(path, &candle_core::Device::Cpu).map_err(|e| {
        ModelError::Unreadable {
            path: path.to_path_buf(),
            message: format!("{e} (expected a safetensors file of named input tensors)"),
        }
    })
}

pub fn write_outputs(path: &Path, outputs: &[(String, Tensor)]) -> Result<()> {
    let map: HashMap<String, Tensor> = outputs
        .iter()
        .map(|(n, t)| {
            Ok((
                n.clone(),
                t.to_device(&candle_core::Device::Cpu)?.contiguous()?,
            ))
        })
        .collect::<Result<_>>()?;
    candle_core::safetensors::save(&map, path).map_err(|e| ModelError::Unreadable {
        path: path.to_path_buf(),
        message: format!("cannot write outputs: {e}"),
    })
}
