//! From dataset records (`esm3-data`) to what each objective trains on.

use esm3_data::{ChainRecord, Dataset};
use esm3_tokens::sequence as seq_vocab;

use crate::noise::TrainingProtein;
use crate::vqvae::objective::StructureExample;
use crate::{Result, TrainError};

fn data_err(e: esm3_data::DataError) -> TrainError {
    TrainError::Msg(e.to_string())
}

/// A record as a trunk training protein (every track it has; structure tokens as written by
/// `esm3 data tokenize`).
pub fn training_protein(r: &ChainRecord) -> TrainingProtein {
    TrainingProtein {
        sequence: r.sequence.clone(),
        structure_tokens: r.structure_tokens.clone(),
        backbone: r.backbone.clone(),
        ss8: r.ss8.clone(),
        sasa: r.sasa.clone(),
        function_tokens: None,
        residue_annotations: None,
    }
}

/// A record with coordinates as a VQ-VAE example (ESM sequence ids; unknown letters → X).
pub fn structure_example(r: &ChainRecord) -> Option<StructureExample> {
    let backbone = r.backbone.clone()?;
    let unk = seq_vocab::char_id('X').unwrap_or(seq_vocab::UNK);
    let sequence = r
        .sequence
        .chars()
        .map(|c| seq_vocab::char_id(c).unwrap_or(unk))
        .collect();
    Some(StructureExample { backbone, sequence })
}

/// The split's records; errors name the dataset and list the splits it has.
pub fn load_split(dataset: &Dataset, split: &str) -> Result<Vec<ChainRecord>> {
    dataset.split(split).map_err(data_err)
}

pub fn open(dir: &std::path::Path) -> Result<Dataset> {
    Dataset::open(dir).map_err(data_err)
}

/// Encodes every chain with coordinates of every split with a structure encoder (a model
/// directory) and stores the codes in the dataset; `on_chain` is called once per chain.
pub fn tokenize_dataset(
    dataset: &Dataset,
    encoder_dir: &std::path::Path,
    on_chain: &dyn Fn(),
) -> Result<usize> {
    let model = esm3_models::ModelDir::open(encoder_dir)?;
    let encoder = match model.load(&esm3_models::LoadOptions::default())? {
        esm3_models::model_dir::LoadedModel::StructureEncoder(e) => e,
        _ => {
            return Err(TrainError::Msg(format!(
                "{}: not a structure encoder (config model_type must be esm3_structure_encoder)",
                encoder_dir.display()
            )))
        }
    };
    let mut total = 0;
    for split in dataset.split_names() {
        let records = load_split(dataset, split)?;
        let mut tokens = Vec::new();
        for r in records.iter() {
            let Some(bb) = &r.backbone else { continue };
            let mut coords = Vec::with_capacity(bb.len() * 9);
            for res in bb {
                for atom in res {
                    coords.extend_from_slice(atom);
                }
            }
            let codes = encoder.encode(
                &esm3_models::HostArray::new(vec![bb.len(), 3, 3], coords),
                None,
            )?;
            tokens.push((r.name.clone(), codes));
            on_chain();
        }
        total += tokens.len();
        dataset
            .write_structure_tokens(split, &tokens)
            .map_err(data_err)?;
    }
    Ok(total)
}

/// Chains with coordinates in all splits (for progress bars).
pub fn count_with_coords(dataset: &Dataset) -> Result<usize> {
    let mut n = 0;
    for split in dataset.split_names() {
        n += load_split(dataset, split)?
            .iter()
            .filter(|r| r.has_coords())
            .count();
    }
    Ok(n)
}
