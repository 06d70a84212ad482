//! The encode → generate → decode pipeline over an ESM3 model and its VQ-VAE.
//!
//! A model directory for generation is an ESM3 model directory, optionally with the structure
//! encoder and decoder as sub-directories `structure_encoder/` and `structure_decoder/` (each a
//! model directory of its own, e.g. written by `esm3 import esm3_structure_encoder_v0.pth`).
//! A `residue_annotations.csv` beside `config.json` (the weights repository's
//! `uniref90_and_mgnify90_residue_annotations_gt_1k_proteins.csv`) turns on the residue-annotation
//! track.

use std::path::Path;

use rand::Rng;

use esm3_models::function_decoder::{
    decode_function_tokens, DecoderVocabulary, FunctionTokenDecoder,
};
use esm3_models::model_dir::LoadedModel;
use esm3_models::schema::vocab;
use esm3_models::structure_decoder::StructureTokenDecoder;
use esm3_models::structure_encoder::StructureTokenEncoder;
use esm3_models::{Esm3, HostArray, LoadOptions, ModelDir};
use esm3_protein::residue_constants::ATOM_TYPE_NUM;
use esm3_protein::ProteinChain;
use esm3_tokens::function::{FunctionAnnotation, FunctionData, FunctionTokenizer, Hyperplanes};
use esm3_tokens::residue::{ResidueMode, ResidueVocabulary, LABEL_OFFSET, VOCABULARY_FILE};
use esm3_tokens::sequence::SequenceTokenizer;
use esm3_tokens::{sasa, ss8};

use crate::config::{GenerationConfig, PaddingAttention};
use crate::iterative::{batch_logits, iterative_sampling_per_prompt, GenerationError};
use crate::protein::EsmProtein;
use crate::tensor::ProteinTensor;
use crate::track::Track;

pub const ENCODER_DIR: &str = "structure_encoder";
pub const DECODER_DIR: &str = "structure_decoder";
/// The function decoder sub-directory; its `hyperplanes.safetensors` also drive the tokenizer.
pub const FUNCTION_DIR: &str = "function_decoder";
pub const HYPERPLANES_FILE: &str = "hyperplanes.safetensors";

/// The function track: annotations → tokens (tokenizer) and tokens → annotations (decoder).
pub struct FunctionTrack {
    pub tokenizer: FunctionTokenizer,
    pub decoder: FunctionTokenDecoder,
    pub vocabulary: DecoderVocabulary,
}

pub struct Esm3Pipeline {
    pub esm3: Esm3,
    pub encoder: Option<StructureTokenEncoder>,
    pub decoder: Option<StructureTokenDecoder>,
    pub function: Option<FunctionTrack>,
    /// Residue-annotation labels (`residue_annotations.csv` in the model directory).
    pub residues: Option<ResidueVocabulary>,
    /// Whether given residue annotations reach the model. `Encode` (our default) puts their ids
    /// in the residue track; `Reference` validates them and leaves the track empty, as the
    /// reference SDK does (spec §5.8 QUIRK).
    pub residue_mode: ResidueMode,
    pub padding: PaddingAttention,
}

/// Keeps sampled structure tokens inside a codebook of `n_codes` codes. A trunk trained with a
/// smaller VQ-VAE (the bundled model's has 256 codes) keeps the release's 4,096-way structure
/// head, and its outputs above `n_codes` were never trained: a code from there would decode to
/// an untrained embedding. For the release's 4,096-code tokenizer this changes nothing.
pub fn restrict_to_codebook(config: &mut GenerationConfig, n_codes: usize) {
    if config.track != Track::Structure {
        return;
    }
    let outside = (n_codes as i64)..Track::Structure.samplable_ids().end;
    let known: std::collections::HashSet<i64> = config.invalid_ids.iter().copied().collect();
    config
        .invalid_ids
        .extend(outside.filter(|id| !known.contains(id)));
}

/// The function data directory: `$ESM3_FUNCTION_DATA`, else `data/function` of the repository
/// the binary was built in or sits in.
pub fn function_data_dir() -> std::path::PathBuf {
    if let Some(d) = std::env::var_os("ESM3_FUNCTION_DATA") {
        return d.into();
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(
            exe.ancestors()
                .skip(1)
                .take(4)
                .map(|p| p.join("data/function")),
        );
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/function"));
    candidates.push("data/function".into());
    candidates
        .iter()
        .find(|p| p.is_dir())
        .cloned()
        .unwrap_or_else(|| candidates.last().expect("non-empty").clone())
}

fn err(message: impl Into<String>) -> GenerationError {
    GenerationError::Invalid(message.into())
}

impl Esm3Pipeline {
    /// Loads `dir` (an ESM3 model) and the VQ-VAE sub-directories when present.
    pub fn load(dir: &Path, options: &LoadOptions) -> Result<Self, GenerationError> {
        let LoadedModel::Esm3(esm3) = ModelDir::open(dir)?.load(options)? else {
            return Err(err(format!(
                "{}: generation needs an esm3 model directory",
                dir.display()
            )));
        };
        let encoder = match dir.join(ENCODER_DIR) {
            p if p.join("config.json").is_file() => match ModelDir::open(&p)?.load(options)? {
                LoadedModel::StructureEncoder(e) => Some(e),
                _ => return Err(err(format!("{}: not a structure encoder", p.display()))),
            },
            _ => None,
        };
        let decoder = match dir.join(DECODER_DIR) {
            p if p.join("config.json").is_file() => match ModelDir::open(&p)?.load(options)? {
                LoadedModel::StructureDecoder(d) => Some(d),
                _ => return Err(err(format!("{}: not a structure decoder", p.display()))),
            },
            _ => None,
        };
        let fdir = dir.join(FUNCTION_DIR);
        let function = if fdir.join(HYPERPLANES_FILE).is_file() {
            let LoadedModel::FunctionDecoder(decoder) = ModelDir::open(&fdir)?.load(options)?
            else {
                return Err(err(format!("{}: not a function decoder", fdir.display())));
            };
            let data_dir = function_data_dir();
            let data = FunctionData::load(&data_dir).map_err(|e| {
                err(format!("{e} (the function track needs the data tables: run tools/fetch-function-data.sh)"))
            })?;
            let vocabulary = match DecoderVocabulary::from_model_dir(&fdir)? {
                Some(v) => v,
                None => DecoderVocabulary::from_data(&data),
            };
            let hyperplanes =
                Hyperplanes::read(&fdir.join(HYPERPLANES_FILE)).map_err(|e| err(e.to_string()))?;
            let tokenizer =
                FunctionTokenizer::new(data, hyperplanes).map_err(|e| err(e.to_string()))?;
            Some(FunctionTrack {
                tokenizer,
                decoder,
                vocabulary,
            })
        } else {
            None
        };
        let vocabulary_path = dir.join(VOCABULARY_FILE);
        let residues = if vocabulary_path.is_file() {
            let v =
                ResidueVocabulary::from_csv(&vocabulary_path).map_err(|e| err(e.to_string()))?;
            let room = vocab::RESIDUE - LABEL_OFFSET as usize;
            if v.len() > room {
                return Err(err(format!(
                    "{}: {} residue-annotation labels, but the model's residue track has room for {room}",
                    vocabulary_path.display(),
                    v.len()
                )));
            }
            Some(v)
        } else {
            None
        };
        Ok(Self {
            esm3,
            encoder,
            decoder,
            function,
            residues,
            residue_mode: ResidueMode::Encode,
            padding: PaddingAttention::Masked,
        })
    }

    /// `ESMProtein` → token tracks (spec §6.8). Coordinates are normalised and, when the
    /// structure encoder is present, tokenised; residues without a backbone get the mask token
    /// (the reference gives them the encoder's "no coordinates" code, which only differs when
    /// `condition_on_coordinates_only` is off).
    pub fn encode(&self, p: &EsmProtein) -> Result<ProteinTensor, GenerationError> {
        let n = p.check().map_err(err)?;
        let mut t = ProteinTensor::default();
        if let Some(s) = &p.sequence {
            let ids = SequenceTokenizer::strict()
                .encode(s)
                .map_err(|e| err(format!("sequence: {e}")))?;
            t.sequence = Some(ids.into_iter().map(i64::from).collect());
        }
        if let Some(s) = &p.secondary_structure {
            let ids = ss8::encode(s).map_err(|e| err(format!("secondary_structure: {e}")))?;
            t.secondary_structure = Some(ids.into_iter().map(i64::from).collect());
        }
        if let Some(v) = &p.sasa {
            let ids = sasa::encode(v).map_err(|e| err(format!("sasa: {e}")))?;
            t.sasa = Some(ids.into_iter().map(i64::from).collect());
        }
        if let Some(annotations) = &p.function_annotations {
            let track = self.function.as_ref().ok_or_else(|| {
                err(format!(
                    "function annotations need a {FUNCTION_DIR}/ directory with {HYPERPLANES_FILE} in the model directory"
                ))
            })?;
            let rows = track
                .tokenizer
                .encode(annotations, n)
                .map_err(|e| err(format!("function: {e}")))?;
            t.function = Some(rows.into_iter().map(|r| r.map(i64::from)).collect());
        }
        if let Some(annotations) = &p.residue_annotations {
            let vocabulary = self.residues.as_ref().ok_or_else(|| {
                err(format!(
                    "residue annotations need {VOCABULARY_FILE} (the residue-annotation labels) in the model directory"
                ))
            })?;
            let rows = vocabulary
                .tokenize(annotations, n, self.residue_mode)
                .map_err(|e| err(format!("residue_annotations: {e}")))?;
            let mut ids = Vec::with_capacity(n + 2);
            ids.push([0; 16]);
            ids.extend(rows.into_iter().map(|r| r.map(i64::from)));
            ids.push([0; 16]);
            t.residue_annotations = Some(ids);
        }
        if let Some(coords) = &p.coordinates {
            let chain = ProteinChain::new(
                "prompt",
                "A",
                "X".repeat(n),
                coords.clone(),
                (1..=n as i32).collect(),
                vec![' '; n],
                vec![0.0; n],
            )
            .map_err(|e| err(e.to_string()))?
            .normalize_coordinates();
            if let Some(encoder) = &self.encoder {
                let flat: Vec<f32> = chain.atom37.iter().flatten().flatten().copied().collect();
                let codes = encoder.encode(
                    &HostArray::new(vec![n, ATOM_TYPE_NUM, 3], flat),
                    Some(&(1..=n as i64).collect::<Vec<_>>()),
                )?;
                // A chain break keeps the encoder's code, as the reference does: the forward
                // replaces it by the chain-break token anyway, and decoding a complex needs a
                // code at every position.
                let breaks: Vec<bool> = match &p.sequence {
                    Some(s) => s.chars().map(|c| c == '|').collect(),
                    None => vec![false; n],
                };
                let mut ids = vec![Track::Structure.bos_id()];
                for (i, c) in codes.into_iter().enumerate() {
                    ids.push(if p.has_backbone(i) || breaks[i] {
                        c
                    } else {
                        Track::Structure.mask_id()
                    });
                }
                ids.push(Track::Structure.eos_id());
                t.structure = Some(ids);
            }
            let mut rows = Vec::with_capacity(n + 2);
            rows.push([[f32::INFINITY; 3]; ATOM_TYPE_NUM]);
            rows.extend(chain.atom37);
            rows.push([[f32::INFINITY; 3]; ATOM_TYPE_NUM]);
            t.coordinates = Some(rows);
        }
        Ok(t)
    }

    /// Token tracks → `ESMProtein` (spec §6.9): structure tokens are decoded to backbone
    /// coordinates with pLDDT and pTM when the decoder is present and no position is masked.
    pub fn decode(&self, t: &ProteinTensor) -> Result<EsmProtein, GenerationError> {
        let n = t.check_lengths().map_err(err)?;
        let inner = |v: &Vec<i64>| v[1..n - 1].to_vec();
        let mut p = EsmProtein::default();
        if let Some(s) = &t.sequence {
            let ids: Vec<u32> = s.iter().map(|&x| x as u32).collect();
            p.sequence = Some(
                SequenceTokenizer::strict()
                    .decode(&ids)
                    .map_err(|e| err(e.to_string()))?,
            );
        }
        if let Some(s) = &t.secondary_structure {
            if inner(s).iter().any(|&x| x != 0) {
                let ids: Vec<u32> = s.iter().map(|&x| x as u32).collect();
                let text = ss8::decode(&ids).map_err(|e| err(e.to_string()))?;
                p.secondary_structure = Some(text.replace(ss8::VOCAB[ss8::PAD as usize], "_"));
            }
        }
        if let Some(s) = &t.sasa {
            if inner(s).iter().any(|&x| x != 0) {
                let ids: Vec<u32> = s.iter().map(|&x| x as u32).collect();
                p.sasa = Some(sasa::decode(&ids).map_err(|e| err(e.to_string()))?);
            }
        }
        if let (Some(track), Some(rows)) = (&self.function, &t.function) {
            let inner = &rows[1..n - 1];
            if inner.iter().any(|r| r.iter().any(|&id| id != 0)) {
                let decoded = decode_function_tokens(&track.decoder, &track.vocabulary, inner)?;
                p.function_annotations = Some(
                    decoded
                        .into_iter()
                        .map(|a| FunctionAnnotation::new(a.label, a.start, a.end))
                        .collect(),
                );
            }
        }
        if let (Some(vocabulary), Some(rows)) = (&self.residues, &t.residue_annotations) {
            // Rows include BOS/EOS, so a row index is a 1-based residue.
            let rows: Vec<[u32; 16]> = rows
                .iter()
                .map(|r| r.map(|id| u32::try_from(id).unwrap_or(0)))
                .collect();
            let decoded = vocabulary.decode(&rows);
            if !decoded.is_empty() {
                p.residue_annotations = Some(decoded);
            }
        }
        let structure_complete = t
            .structure
            .as_ref()
            .is_some_and(|s| !inner(s).contains(&Track::Structure.mask_id()));
        match (&self.decoder, &t.structure) {
            (Some(decoder), Some(s)) if structure_complete => {
                let d = decoder.decode_structure(s)?;
                p.coordinates = Some(d.atom37);
                p.plddt = Some(d.plddt);
                p.ptm = Some(d.ptm);
                p.predicted_aligned_error = Some(d.predicted_aligned_error);
            }
            _ => {
                if let Some(c) = &t.coordinates {
                    p.coordinates = Some(c[1..n - 1].to_vec());
                }
            }
        }
        Ok(p)
    }

    /// Residue-annotation ids predicted by the residue head for each tensor (one batched
    /// forward): per residue the 16 highest logits with sigmoid ≥ 0.5 (spec §5.8); BOS/EOS rows
    /// stay empty.
    pub fn predict_residue_annotations(
        &self,
        tensors: &[ProteinTensor],
    ) -> Result<Vec<Vec<[i64; 16]>>, GenerationError> {
        if tensors.is_empty() {
            return Ok(Vec::new());
        }
        let out = batch_logits(&self.esm3, tensors, self.padding)?;
        let mut all = Vec::with_capacity(tensors.len());
        for (i, t) in tensors.iter().enumerate() {
            let n = t.len();
            let logits = out
                .residue_logits
                .get(i)?
                .narrow(0, 0, n)?
                .to_vec2::<f32>()?;
            let mut rows = vec![[0i64; 16]; n];
            for (row, l) in rows.iter_mut().zip(&logits).take(n - 1).skip(1) {
                *row = crate::sampling::sample_residue_position(l);
            }
            all.push(rows);
        }
        Ok(all)
    }

    /// Generates each config's track in turn, feeding each result into the next step.
    pub fn generate(
        &self,
        protein: &EsmProtein,
        plan: &[GenerationConfig],
        rng: &mut impl Rng,
        on_step: impl FnMut(usize, usize, usize),
    ) -> Result<EsmProtein, GenerationError> {
        self.generate_batch(std::slice::from_ref(protein), plan, &mut [rng], on_step)?
            .pop()
            .expect("one protein")
    }

    /// Residue annotations of every finished protein from the residue head.
    fn annotate_residues(
        &self,
        state: &mut [Result<ProteinTensor, GenerationError>],
    ) -> Result<(), GenerationError> {
        let live: Vec<usize> = (0..state.len()).filter(|&i| state[i].is_ok()).collect();
        let tensors: Vec<ProteinTensor> = live
            .iter()
            .map(|&i| state[i].as_ref().expect("live").clone())
            .collect();
        for (&i, rows) in live.iter().zip(self.predict_residue_annotations(&tensors)?) {
            if let Ok(t) = &mut state[i] {
                t.residue_annotations = Some(rows);
            }
        }
        Ok(())
    }

    /// [`generate`](Self::generate) for many proteins at once: every step of `plan` runs as one
    /// batched iterative sampling (one forward per decoding step for the whole batch). Protein
    /// `i` draws only from `rngs[i]` and padding is masked, so each result is the one
    /// `generate` gives with that generator alone. A protein that fails (bad input) comes back
    /// as an error without stopping the others.
    pub fn generate_batch<R: Rng>(
        &self,
        proteins: &[EsmProtein],
        plan: &[GenerationConfig],
        rngs: &mut [&mut R],
        mut on_step: impl FnMut(usize, usize, usize),
    ) -> Result<Vec<Result<EsmProtein, GenerationError>>, GenerationError> {
        assert_eq!(proteins.len(), rngs.len(), "one generator per protein");
        let mut state: Vec<Result<ProteinTensor, GenerationError>> =
            proteins.iter().map(|p| self.encode(p)).collect();
        for (k, config) in plan.iter().enumerate() {
            if config.track == Track::Structure && self.decoder.is_none() {
                tracing::warn!(
                    "no structure decoder: generated structure tokens cannot become coordinates"
                );
            }
            let live: Vec<usize> = (0..state.len()).filter(|&i| state[i].is_ok()).collect();
            if live.is_empty() {
                break;
            }
            let prompts: Vec<ProteinTensor> = live
                .iter()
                .map(|&i| state[i].as_ref().expect("live").clone())
                .collect();
            let mut config = config.clone();
            if let Some(e) = &self.encoder {
                restrict_to_codebook(&mut config, e.n_codes());
            }
            let mut configs = vec![config.clone(); live.len()];
            let mut live_rngs: Vec<&mut R> = rngs
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| state[*i].is_ok())
                .map(|(_, r)| &mut **r)
                .collect();
            let out = iterative_sampling_per_prompt(
                &self.esm3,
                &prompts,
                &mut configs,
                self.padding,
                &mut live_rngs,
                |s, n| on_step(k, s, n),
            )?;
            for (&i, result) in live.iter().zip(out) {
                state[i] = result
                    .map_err(|e| match e {
                        GenerationError::Prompt { message, .. } => err(message),
                        other => other,
                    })
                    .map(|mut t| {
                        // A structure just generated replaces the prompt's coordinates in what
                        // follows.
                        if config.track == Track::Structure {
                            t.coordinates = None;
                        }
                        t
                    });
            }
        }
        // Generating the function track also predicts residue annotations from the residue
        // head of the finished protein, as the reference's `forward_and_sample` does when it
        // samples function tokens.
        let function_generated = plan.iter().any(|c| c.track == Track::Function);
        if function_generated && self.residues.is_some() {
            self.annotate_residues(&mut state)?;
        }
        Ok(state
            .into_iter()
            .zip(proteins)
            .map(|(t, protein)| {
                let mut result = self.decode(&t?)?;
                if result.coordinates.is_none() {
                    result.coordinates = protein.coordinates.clone();
                }
                // Annotations the user gave come back as given unless the function track was
                // generated (decoding tokens back to annotations is lossy), as the SDK does.
                if !function_generated {
                    result.function_annotations = protein.function_annotations.clone();
                    result.residue_annotations = protein.residue_annotations.clone();
                }
                Ok(result)
            })
            .collect())
    }
}

#[cfg(test)]
mod codebook_tests {
    use super::*;

    #[test]
    fn structure_sampling_is_kept_inside_a_small_codebook() {
        let mut c = GenerationConfig::new(Track::Structure);
        c.invalid_ids = vec![3, 300];
        restrict_to_codebook(&mut c, 256);
        let mut ids = c.invalid_ids.clone();
        ids.sort();
        let expected: Vec<i64> = std::iter::once(3).chain(256..4096).collect();
        assert_eq!(ids, expected, "user ids kept, codes 256.. added once");
        assert!(c.validate().is_ok());

        let mut full = GenerationConfig::new(Track::Structure);
        restrict_to_codebook(&mut full, 4096);
        assert!(
            full.invalid_ids.is_empty(),
            "the release tokenizer is untouched"
        );
        let mut seq = GenerationConfig::new(Track::Sequence);
        restrict_to_codebook(&mut seq, 256);
        assert!(seq.invalid_ids.is_empty(), "other tracks are untouched");
    }
}
