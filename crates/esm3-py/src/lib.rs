//! `esm3rs._native`: the engine behind the `esm3rs` Python package.
//!
//! This layer only converts: Python values in, the library crates' calls, numpy arrays and
//! plain dicts out. The SDK-shaped classes (`ESMProtein`, `GenerationConfig`) are Python
//! dataclasses in `python/esm3rs`, so they print, compare and pickle like any Python object
//! and convert to the official `esm` SDK without touching Rust. Every call that computes
//! releases the GIL.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use numpy::{
    IntoPyArray, PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArray3, PyUntypedArrayMethods,
};
use pyo3::exceptions::{
    PyFileNotFoundError, PyOSError, PyPermissionError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use esm3_generate::design;
use esm3_generate::embed::embed_sequences;
use esm3_generate::prompt::Prompt;
use esm3_generate::score::{masked_marginals, pseudo_log_likelihood, Variant};
use esm3_generate::sequence_model::SequenceModel;
use esm3_generate::{
    batch_logits, Esm3Pipeline, EsmProtein, GenerationConfig, GenerationError, PaddingAttention,
    ProteinTensor, Track,
};
use esm3_models::model_dir::{LoadedModel, WEIGHTS_FILE};
use esm3_models::{Esmc, LoadOptions, ModelDir, ModelError};
use esm3_protein::complexity::ComplexityThresholds;
use esm3_protein::relax::{relax_atom37, RelaxOptions};
use esm3_protein::residue_constants::ATOM_TYPE_NUM;
use esm3_tokens::function::FunctionAnnotation;
use esm3_tokens::residue::LABEL_OFFSET;

type Atom37 = [[f32; 3]; ATOM_TYPE_NUM];

/// User input that is wrong becomes `ValueError` with our message, a missing file
/// `FileNotFoundError`, a model failure `RuntimeError`.
fn generation_err(e: GenerationError) -> PyErr {
    match e {
        GenerationError::Prompt { message, .. } | GenerationError::Invalid(message) => {
            PyValueError::new_err(message)
        }
        GenerationError::Model(e) => model_err(e),
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

fn model_err(e: ModelError) -> PyErr {
    match &e {
        ModelError::Input(message) => PyValueError::new_err(message.clone()),
        ModelError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(e.to_string())
        }
        ModelError::Config { .. }
        | ModelError::Checkpoint { .. }
        | ModelError::Unreadable { .. } => PyValueError::new_err(e.to_string()),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

/// A structure file that cannot be read is an `OSError` of the matching kind
/// (`FileNotFoundError`, `PermissionError`); one that reads but is wrong, a `ValueError`.
fn read_err(e: esm3_protein::io::ReadError) -> PyErr {
    match &e {
        esm3_protein::io::ReadError::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(e.to_string()),
            std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(e.to_string()),
            _ => PyOSError::new_err(e.to_string()),
        },
        _ => PyValueError::new_err(e.to_string()),
    }
}

fn runtime_err(e: impl std::fmt::Display) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

/// atom37 rows → `(L, 37, 3)` float32 array owning the buffer.
fn atoms_to_numpy<'py>(py: Python<'py>, atoms: &[Atom37]) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let flat: Vec<f32> = atoms.iter().flatten().flatten().copied().collect();
    flat.into_pyarray(py)
        .reshape(vec![atoms.len(), ATOM_TYPE_NUM, 3])
}

/// A plan: JSON of each `GenerationConfig`, validated.
fn plan_from_json(configs: &[String]) -> PyResult<Vec<GenerationConfig>> {
    configs.iter().map(|c| config_from_json(c)).collect()
}

fn load_options(device: &str, dtype: &str) -> PyResult<LoadOptions> {
    LoadOptions::from_names(device, dtype).map_err(PyValueError::new_err)
}

enum Engine {
    Esm3(Box<Esm3Pipeline>),
    Esmc(Box<Esmc>),
}

/// A loaded model directory: ESM3 (with its VQ-VAE and function decoder when present) or ESM C.
#[pyclass(frozen, module = "esm3rs._native")]
struct Model {
    engine: Engine,
    #[pyo3(get)]
    path: String,
}

impl Model {
    fn sequence_model(&self) -> &(dyn SequenceModel + Sync) {
        match &self.engine {
            Engine::Esm3(p) => &p.esm3,
            Engine::Esmc(m) => m.as_ref(),
        }
    }

    fn pipeline(&self, what: &str) -> PyResult<&Esm3Pipeline> {
        match &self.engine {
            Engine::Esm3(p) => Ok(p),
            Engine::Esmc(_) => Err(PyValueError::new_err(format!(
                "{}: {what} needs an ESM3 model; this is ESM C (sequence only: embed, logits, score)",
                self.path
            ))),
        }
    }
}

/// `[d0, d1, …]` float tensor → numpy array owning the same buffer (no second copy).
fn tensor_to_numpy<'py>(py: Python<'py>, t: &Tensor) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let dims = t.dims().to_vec();
    let data = t
        .to_device(&Device::Cpu)
        .and_then(|t| t.to_dtype(DType::F32))
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(runtime_err)?;
    data.into_pyarray(py).reshape(dims)
}

fn annotations_from_py(
    value: Option<Vec<(String, usize, usize)>>,
) -> Option<Vec<FunctionAnnotation>> {
    value.map(|v| {
        v.into_iter()
            .map(|(label, start, end)| FunctionAnnotation { label, start, end })
            .collect()
    })
}

fn coordinates_from_py(array: PyReadonlyArray3<'_, f32>) -> PyResult<Vec<Atom37>> {
    let shape = array.shape().to_vec();
    if shape[1] != ATOM_TYPE_NUM || shape[2] != 3 {
        return Err(PyValueError::new_err(format!(
            "coordinates have shape {shape:?}, expected (L, {ATOM_TYPE_NUM}, 3) atom37 in Å"
        )));
    }
    let view = array.as_array();
    let mut out = vec![[[f32::NAN; 3]; ATOM_TYPE_NUM]; shape[0]];
    // Values pass as given: the decoder itself writes non-finite values for atoms it does not
    // place, and the encoder treats every non-finite atom as missing.
    for ((i, a, k), &v) in view.indexed_iter() {
        out[i][a][k] = v;
    }
    Ok(out)
}

/// The fields of `esm3rs.ESMProtein` (as `ESMProtein._native_fields()` passes them).
fn protein_from_py(d: &Bound<'_, PyDict>) -> PyResult<EsmProtein> {
    fn get<'py, T>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<Option<T>>
    where
        T: for<'a> FromPyObject<'a, 'py, Error = PyErr>,
    {
        match d.get_item(key)? {
            Some(v) if !v.is_none() => v
                .extract::<T>()
                .map(Some)
                .map_err(|e| PyValueError::new_err(format!("ESMProtein.{key}: {e}"))),
            _ => Ok(None),
        }
    }
    let coordinates = match d.get_item("coordinates")? {
        Some(v) if !v.is_none() => Some(coordinates_from_py(
            v.extract::<PyReadonlyArray3<f32>>().map_err(|e| {
                PyValueError::new_err(format!(
                    "ESMProtein.coordinates: expected a float32 array (L, 37, 3): {e}"
                ))
            })?,
        )?),
        _ => None,
    };
    let protein = EsmProtein {
        sequence: get(d, "sequence")?,
        secondary_structure: get(d, "secondary_structure")?,
        sasa: get(d, "sasa")?,
        coordinates,
        function_annotations: annotations_from_py(get(d, "function_annotations")?),
        residue_annotations: annotations_from_py(get(d, "residue_annotations")?),
        plddt: get(d, "plddt")?,
        ptm: get(d, "ptm")?,
        predicted_aligned_error: None,
    };
    protein.check().map_err(PyValueError::new_err)?;
    Ok(protein)
}

fn protein_to_py<'py>(py: Python<'py>, p: EsmProtein) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let n = p.len().unwrap_or(0);
    d.set_item("sequence", p.sequence)?;
    d.set_item("secondary_structure", p.secondary_structure)?;
    d.set_item("sasa", p.sasa)?;
    let annotations = |a: Option<Vec<FunctionAnnotation>>| {
        a.map(|v| {
            v.into_iter()
                .map(|a| (a.label, a.start, a.end))
                .collect::<Vec<_>>()
        })
    };
    d.set_item("function_annotations", annotations(p.function_annotations))?;
    d.set_item("residue_annotations", annotations(p.residue_annotations))?;
    match p.coordinates {
        Some(c) => d.set_item("coordinates", atoms_to_numpy(py, &c)?)?,
        None => d.set_item("coordinates", py.None())?,
    }
    d.set_item("plddt", p.plddt.map(|v| v.into_pyarray(py)))?;
    d.set_item("ptm", p.ptm)?;
    match p.predicted_aligned_error {
        Some(pae) => d.set_item(
            "predicted_aligned_error",
            pae.into_pyarray(py).reshape([n, n])?,
        )?,
        None => d.set_item("predicted_aligned_error", py.None())?,
    }
    Ok(d)
}

fn config_from_json(text: &str) -> PyResult<GenerationConfig> {
    let config: GenerationConfig = serde_json::from_str(text)
        .map_err(|e| PyValueError::new_err(format!("GenerationConfig: {e}")))?;
    config
        .validate()
        .map_err(|e| PyValueError::new_err(format!("GenerationConfig: {e}")))?;
    Ok(config)
}

fn tensor_to_py<'py>(py: Python<'py>, t: ProteinTensor) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let ids = |v: Option<Vec<i64>>| v.map(|v| v.into_pyarray(py));
    d.set_item("sequence", ids(t.sequence))?;
    d.set_item("structure", ids(t.structure))?;
    d.set_item("secondary_structure", ids(t.secondary_structure))?;
    d.set_item("sasa", ids(t.sasa))?;
    match t.function {
        Some(f) => {
            let n = f.len();
            let flat: Vec<i64> = f.into_iter().flatten().collect();
            d.set_item("function", flat.into_pyarray(py).reshape([n, 8])?)?
        }
        None => d.set_item("function", py.None())?,
    }
    match t.residue_annotations {
        Some(r) => {
            let n = r.len();
            let flat: Vec<i64> = r.into_iter().flatten().collect();
            d.set_item(
                "residue_annotations",
                flat.into_pyarray(py).reshape([n, 16])?,
            )?
        }
        None => d.set_item("residue_annotations", py.None())?,
    }
    match t.coordinates {
        Some(c) => {
            let n = c.len();
            let flat: Vec<f32> = c.iter().flatten().flatten().copied().collect();
            d.set_item(
                "coordinates",
                flat.into_pyarray(py).reshape(vec![n, ATOM_TYPE_NUM, 3])?,
            )?
        }
        None => d.set_item("coordinates", py.None())?,
    }
    Ok(d)
}

fn tensor_from_py(d: &Bound<'_, PyDict>) -> PyResult<ProteinTensor> {
    fn ids(d: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<Vec<i64>>> {
        match d.get_item(key)? {
            Some(v) if !v.is_none() => v
                .extract::<Vec<i64>>()
                .map(Some)
                .map_err(|e| PyValueError::new_err(format!("ESMProteinTensor.{key}: {e}"))),
            _ => Ok(None),
        }
    }
    fn rows<const W: usize>(d: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<Vec<[i64; W]>>> {
        match d.get_item(key)? {
            Some(v) if !v.is_none() => {
                let rows: Vec<Vec<i64>> = v
                    .extract()
                    .map_err(|e| PyValueError::new_err(format!("ESMProteinTensor.{key}: {e}")))?;
                rows.into_iter()
                    .enumerate()
                    .map(|(i, r)| {
                        <[i64; W]>::try_from(r.as_slice()).map_err(|_| {
                            PyValueError::new_err(format!(
                                "ESMProteinTensor.{key}[{i}] has {} ids, expected {W}",
                                r.len()
                            ))
                        })
                    })
                    .collect::<PyResult<Vec<_>>>()
                    .map(Some)
            }
            _ => Ok(None),
        }
    }
    let coordinates = match d.get_item("coordinates")? {
        Some(v) if !v.is_none() => {
            let a = v
                .extract::<PyReadonlyArray3<f32>>()
                .map_err(|e| PyValueError::new_err(format!("ESMProteinTensor.coordinates: {e}")))?;
            let shape = a.shape().to_vec();
            if shape[1] != ATOM_TYPE_NUM || shape[2] != 3 {
                return Err(PyValueError::new_err(format!(
                    "ESMProteinTensor.coordinates have shape {shape:?}, expected (L + 2, 37, 3)"
                )));
            }
            let mut out = vec![[[f32::NAN; 3]; ATOM_TYPE_NUM]; shape[0]];
            for ((i, k, c), &x) in a.as_array().indexed_iter() {
                out[i][k][c] = x;
            }
            Some(out)
        }
        _ => None,
    };
    let t = ProteinTensor {
        sequence: ids(d, "sequence")?,
        structure: ids(d, "structure")?,
        secondary_structure: ids(d, "secondary_structure")?,
        sasa: ids(d, "sasa")?,
        function: rows::<8>(d, "function")?,
        residue_annotations: rows::<16>(d, "residue_annotations")?,
        coordinates,
    };
    t.check_lengths().map_err(PyValueError::new_err)?;
    Ok(t)
}

#[pymethods]
impl Model {
    #[new]
    #[pyo3(signature = (path, device = "cpu", dtype = "f32"))]
    fn new(py: Python<'_>, path: PathBuf, device: &str, dtype: &str) -> PyResult<Self> {
        let options = load_options(device, dtype)?;
        if !path.join(esm3_models::model_dir::CONFIG_FILE).is_file() {
            return Err(PyFileNotFoundError::new_err(format!(
                "{}: not a model directory (no config.json)",
                path.display()
            )));
        }
        if !path.join(WEIGHTS_FILE).is_file() {
            return Err(PyFileNotFoundError::new_err(format!(
                "{}: no {WEIGHTS_FILE} beside config.json",
                path.display()
            )));
        }
        let shown = path.display().to_string();
        let engine = py.detach(|| -> PyResult<Engine> {
            let dir = ModelDir::open(&path).map_err(model_err)?;
            if dir.config.model_type() == "esm3" {
                Esm3Pipeline::load(&path, &options)
                    .map(|p| Engine::Esm3(Box::new(p)))
                    .map_err(generation_err)
            } else {
                match dir.load(&options).map_err(model_err)? {
                    LoadedModel::Esmc(m) => Ok(Engine::Esmc(Box::new(m))),
                    _ => Err(PyValueError::new_err(format!(
                        "{shown}: holds a {} model; esm3rs.load takes an esm3 or esmc directory",
                        dir.config.model_type()
                    ))),
                }
            }
        })?;
        Ok(Self {
            engine,
            path: shown,
        })
    }

    /// `"esm3"` or `"esmc"`.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.engine {
            Engine::Esm3(_) => "esm3",
            Engine::Esmc(_) => "esmc",
        }
    }

    /// Labels of the residue-annotation vocabulary (`residue_annotations.csv` in the model
    /// directory; empty without one): how SDK annotations are told apart from function ones.
    #[getter]
    fn residue_annotation_labels(&self) -> Vec<String> {
        match &self.engine {
            Engine::Esm3(p) => p.residues.as_ref().map_or_else(Vec::new, |v| {
                (0..v.len() as u32)
                    .filter_map(|i| v.label(LABEL_OFFSET + i).map(str::to_string))
                    .collect()
            }),
            Engine::Esmc(_) => Vec::new(),
        }
    }

    /// Whether the model directory has a structure decoder (needed to fold).
    #[getter]
    fn can_decode_structure(&self) -> bool {
        matches!(&self.engine, Engine::Esm3(p) if p.decoder.is_some())
    }

    /// Per-residue `[L, d]` and mean `[d]` embeddings of each sequence, as `esm3 embed` writes them.
    #[pyo3(signature = (sequences, batch_size = 8))]
    fn embed<'py>(
        &self,
        py: Python<'py>,
        sequences: Vec<String>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        if batch_size == 0 {
            return Err(PyValueError::new_err("batch_size must be at least 1"));
        }
        let refs: Vec<&str> = sequences.iter().map(String::as_str).collect();
        let model = self.sequence_model();
        let out = py
            .detach(|| embed_sequences(model, &refs, batch_size, |_| {}))
            .map_err(|e| match e {
                GenerationError::Prompt { prompt, message } => {
                    PyValueError::new_err(format!("sequence {prompt}: {message}"))
                }
                other => generation_err(other),
            })?;
        let list = PyList::empty(py);
        for e in out {
            list.append((
                tensor_to_numpy(py, &e.per_residue)?,
                tensor_to_numpy(py, &e.mean)?,
            ))?;
        }
        Ok(list)
    }

    /// Pseudo-log-likelihood: `(pll, per_residue_log_probs)`.
    #[pyo3(signature = (sequence, batch_size = 8))]
    fn pseudo_log_likelihood<'py>(
        &self,
        py: Python<'py>,
        sequence: &str,
        batch_size: usize,
    ) -> PyResult<(f64, Bound<'py, PyArray1<f32>>)> {
        let model = self.sequence_model();
        let s = py
            .detach(|| pseudo_log_likelihood(model, sequence, batch_size.max(1)))
            .map_err(generation_err)?;
        Ok((s.pll, s.per_residue.into_pyarray(py)))
    }

    /// Masked-marginal score of each variant (`A23V`, `A23V:G45D`; 1-based positions).
    #[pyo3(signature = (sequence, variants, batch_size = 8))]
    fn masked_marginals(
        &self,
        py: Python<'_>,
        sequence: &str,
        variants: Vec<String>,
        batch_size: usize,
    ) -> PyResult<Vec<f64>> {
        let parsed: Vec<Variant> = variants
            .iter()
            .map(|v| Variant::parse(v).map_err(PyValueError::new_err))
            .collect::<PyResult<_>>()?;
        let model = self.sequence_model();
        py.detach(|| masked_marginals(model, sequence, &parsed, batch_size.max(1)))
            .map_err(generation_err)
    }

    /// One forward pass. ESM3: the protein's tracks in, every head's logits out; ESM C: the
    /// sequence's. Arrays cover BOS and EOS (`L + 2` rows), as the SDK's `logits()` does.
    fn logits<'py>(
        &self,
        py: Python<'py>,
        protein: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let p = protein_from_py(protein)?;
        let d = PyDict::new(py);
        match &self.engine {
            Engine::Esm3(pipeline) => {
                let out = py
                    .detach(|| {
                        let t = pipeline.encode(&p)?;
                        batch_logits(&pipeline.esm3, &[t], PaddingAttention::Masked)
                    })
                    .map_err(generation_err)?;
                for (name, t) in [
                    ("sequence", &out.sequence_logits),
                    ("structure", &out.structure_logits),
                    ("secondary_structure", &out.secondary_structure_logits),
                    ("sasa", &out.sasa_logits),
                    ("function", &out.function_logits),
                    ("residue_annotations", &out.residue_logits),
                    ("embeddings", &out.embeddings),
                ] {
                    d.set_item(
                        name,
                        tensor_to_numpy(py, &t.squeeze(0).map_err(runtime_err)?)?,
                    )?;
                }
            }
            Engine::Esmc(model) => {
                let Some(sequence) = p.sequence.as_deref() else {
                    return Err(PyValueError::new_err("ESM C needs a sequence"));
                };
                let ids: Vec<i64> = esm3_tokens::SequenceTokenizer::strict()
                    .encode(sequence)
                    .map_err(|e| PyValueError::new_err(e.to_string()))?
                    .into_iter()
                    .map(i64::from)
                    .collect();
                let out = py
                    .detach(|| model.sequence_forward(&[ids]))
                    .map_err(generation_err)?;
                d.set_item(
                    "sequence",
                    tensor_to_numpy(py, &out.logits.squeeze(0).map_err(runtime_err)?)?,
                )?;
                d.set_item(
                    "embeddings",
                    tensor_to_numpy(py, &out.embeddings.squeeze(0).map_err(runtime_err)?)?,
                )?;
            }
        }
        Ok(d)
    }

    /// Runs each config (JSON of `GenerationConfig`) in turn on the protein with one seeded
    /// generator (ChaCha20, as the CLI): the same seed gives the CLI's result.
    fn generate<'py>(
        &self,
        py: Python<'py>,
        protein: &Bound<'py, PyDict>,
        configs: Vec<String>,
        seed: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let pipeline = self.pipeline("generate")?;
        let p = protein_from_py(protein)?;
        let plan = plan_from_json(&configs)?;
        let out = py
            .detach(|| pipeline.generate(&p, &plan, &mut design::seeded_rng(seed), |_, _, _| {}))
            .map_err(generation_err)?;
        protein_to_py(py, out)
    }

    /// [`generate`](Self::generate) for many proteins as one batch (one forward per decoding
    /// step), protein `i` with `seeds[i]`; each result equals generating it alone.
    fn generate_batch<'py>(
        &self,
        py: Python<'py>,
        proteins: Vec<Bound<'py, PyDict>>,
        configs: Vec<String>,
        seeds: Vec<u64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let pipeline = self.pipeline("generate")?;
        if proteins.len() != seeds.len() {
            return Err(PyValueError::new_err(format!(
                "{} proteins but {} seeds: one seed per protein",
                proteins.len(),
                seeds.len()
            )));
        }
        let ps: Vec<EsmProtein> = proteins
            .iter()
            .map(protein_from_py)
            .collect::<PyResult<_>>()?;
        let plan = plan_from_json(&configs)?;
        let results = py
            .detach(|| {
                let mut rngs: Vec<rand_chacha::ChaCha20Rng> =
                    seeds.iter().map(|&s| design::seeded_rng(s)).collect();
                let mut refs: Vec<&mut rand_chacha::ChaCha20Rng> = rngs.iter_mut().collect();
                pipeline.generate_batch(&ps, &plan, &mut refs, |_, _, _| {})
            })
            .map_err(generation_err)?;
        let list = PyList::empty(py);
        for (i, r) in results.into_iter().enumerate() {
            let p = r.map_err(|e| match e {
                GenerationError::Prompt { message, .. } | GenerationError::Invalid(message) => {
                    PyValueError::new_err(format!("protein {i}: {message}"))
                }
                other => generation_err(other),
            })?;
            list.append(protein_to_py(py, p)?)?;
        }
        Ok(list)
    }

    /// `esm3 fold` of one sequence (`AAA|BBB` for a complex) with the folding config (JSON):
    /// checked as the CLI checks it, decoded coordinates not yet relaxed.
    fn fold<'py>(
        &self,
        py: Python<'py>,
        sequence: &str,
        config: String,
        seed: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let pipeline = self.pipeline("fold")?;
        if pipeline.decoder.is_none() {
            return Err(PyValueError::new_err(format!(
                "{}: folding needs a structure decoder (structure_decoder/ in the model directory)",
                self.path
            )));
        }
        let config = config_from_json(&config)?;
        let prompt =
            design::fold_prompt("fold", sequence, &config).map_err(PyValueError::new_err)?;
        let (protein, _) = py
            .detach(|| design::run_prompt(pipeline, &prompt, seed, |_, _, _| {}))
            .map_err(generation_err)?;
        protein_to_py(py, protein)
    }

    /// `esm3 generate`: `n` designs of a prompt (a prompt file, a protein with a plan, or a
    /// length with a plan), design `i` attempt `k` with seed `seed + i + k·n`, retried while
    /// the sequence is too repetitive. One dict per design, in order: `protein`, `seed`,
    /// `attempts`, `passed`, `motif_rmsd`, `motif_positions` (0-based; kept when relaxing) and
    /// `summary` (JSON: `complexity`, `rejected_attempts`, `plan`) as the CLI's JSON has them.
    #[pyo3(signature = (*, prompt_file = None, protein = None, length = None, plan = None, n = 1, seed = 0, max_attempts = 4, max_low_complexity = None, max_homopolymer = None, batch_size = 8))]
    #[allow(clippy::too_many_arguments)]
    fn design<'py>(
        &self,
        py: Python<'py>,
        prompt_file: Option<PathBuf>,
        protein: Option<Bound<'py, PyDict>>,
        length: Option<usize>,
        plan: Option<Vec<String>>,
        n: usize,
        seed: u64,
        max_attempts: u64,
        max_low_complexity: Option<f64>,
        max_homopolymer: Option<usize>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let pipeline = self.pipeline("design")?;
        let prompt = design_prompt(prompt_file, protein, length, plan)?;
        let defaults = ComplexityThresholds::default();
        let policy = design::AttemptPolicy {
            max_attempts,
            thresholds: ComplexityThresholds {
                max_low_complexity_fraction: max_low_complexity
                    .unwrap_or(defaults.max_low_complexity_fraction),
                max_homopolymer_run: max_homopolymer.unwrap_or(defaults.max_homopolymer_run),
            },
            batch_size,
        };
        let mut chosen = py
            .detach(|| {
                let mut chosen = Vec::new();
                design::design_with_retries(
                    pipeline,
                    &prompt,
                    n,
                    seed,
                    &policy,
                    |_, _, _| {},
                    |d| {
                        chosen.push(d);
                        Ok::<(), GenerationError>(())
                    },
                )
                .map(|()| chosen)
            })
            .map_err(generation_err)?;
        chosen.sort_by_key(|d| d.index);
        let motif_positions: Vec<usize> = prompt
            .motifs
            .iter()
            .flat_map(|m| m.positions.iter().copied())
            .collect();
        let list = PyList::empty(py);
        for d in chosen {
            list.append(chosen_to_py(
                py,
                d,
                &prompt,
                &motif_positions,
                &policy.thresholds,
            )?)?;
        }
        Ok(list)
    }

    /// Protein → token ids per track (`ESMProteinTensor`), BOS/EOS included.
    fn encode<'py>(
        &self,
        py: Python<'py>,
        protein: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let pipeline = self.pipeline("encode")?;
        let p = protein_from_py(protein)?;
        let t = py.detach(|| pipeline.encode(&p)).map_err(generation_err)?;
        tensor_to_py(py, t)
    }

    /// Token ids per track → protein (structure tokens decoded to coordinates with pLDDT, pTM
    /// and PAE; function tokens to keywords).
    fn decode<'py>(
        &self,
        py: Python<'py>,
        tensor: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let pipeline = self.pipeline("decode")?;
        let t = tensor_from_py(tensor)?;
        let p = py.detach(|| pipeline.decode(&t)).map_err(generation_err)?;
        protein_to_py(py, p)
    }
}

/// The prompt of `Model.design`: a prompt file (its plan replaced by `plan` when given), a
/// protein with a plan, or a length with a plan.
fn design_prompt(
    prompt_file: Option<PathBuf>,
    protein: Option<Bound<'_, PyDict>>,
    length: Option<usize>,
    plan: Option<Vec<String>>,
) -> PyResult<Prompt> {
    let plan = plan.as_deref().map(plan_from_json).transpose()?;
    if plan.as_ref().is_some_and(Vec::is_empty) {
        return Err(PyValueError::new_err(
            "the plan is empty: give at least one GenerationConfig",
        ));
    }
    let needs_plan = |what: &str| PyValueError::new_err(format!("a {what} prompt needs a plan"));
    match (prompt_file, protein, length) {
        (Some(file), None, None) => {
            if !file.exists() {
                return Err(PyFileNotFoundError::new_err(format!(
                    "{}: no such file",
                    file.display()
                )));
            }
            let mut prompt = Prompt::read(&file).map_err(PyValueError::new_err)?;
            if let Some(plan) = plan {
                prompt.plan = plan;
            }
            Ok(prompt)
        }
        (None, Some(p), None) => {
            let plan = plan.ok_or_else(|| needs_plan("protein"))?;
            design::checked_prompt("design", protein_from_py(&p)?, plan)
                .map_err(PyValueError::new_err)
        }
        (None, None, Some(length)) => {
            let plan = plan.ok_or_else(|| needs_plan("length"))?;
            Prompt::unconditional("design", length, plan).map_err(PyValueError::new_err)
        }
        _ => Err(PyValueError::new_err(
            "give exactly one of a prompt file, a protein or a length",
        )),
    }
}

/// One design of `Model.design` as the dict `esm3rs.Design` is made from.
fn chosen_to_py<'py>(
    py: Python<'py>,
    d: design::ChosenDesign,
    prompt: &Prompt,
    motif_positions: &[usize],
    t: &ComplexityThresholds,
) -> PyResult<Bound<'py, PyDict>> {
    let summary = serde_json::json!({
        "plan": prompt.plan,
        "complexity": design::complexity_summary(d.chosen.complexity.as_ref(), t),
        "rejected_attempts": d.rejected_summary(t),
    });
    let item = PyDict::new(py);
    let (protein, motif_rmsd) = d.chosen.design;
    item.set_item("protein", protein_to_py(py, protein)?)?;
    item.set_item("seed", d.chosen.seed)?;
    item.set_item("attempts", d.attempts)?;
    item.set_item("passed", d.passed)?;
    item.set_item("motif_rmsd", motif_rmsd)?;
    item.set_item("motif_positions", motif_positions.to_vec())?;
    item.set_item("summary", summary.to_string())?;
    Ok(item)
}

/// Relaxes a decoded backbone as `esm3 fold` does before writing it: returns the new atom37
/// coordinates and what was done (rmsd, stages, geometry before/after). Residues in `fixed`
/// (0-based) keep their atoms.
#[pyfunction]
#[pyo3(signature = (coordinates, sequence, fixed = Vec::new()))]
fn relax_backbone<'py>(
    py: Python<'py>,
    coordinates: PyReadonlyArray3<'py, f32>,
    sequence: &str,
    fixed: Vec<usize>,
) -> PyResult<(Bound<'py, PyArrayDyn<f32>>, Bound<'py, PyDict>)> {
    let atoms = coordinates_from_py(coordinates)?;
    check_relax_input(&atoms, sequence, &fixed)?;
    let (relaxed, report) =
        py.detach(|| relax_atom37(&atoms, sequence, &fixed, &RelaxOptions::default()));
    let info = PyDict::new(py);
    info.set_item("rmsd", report.rmsd)?;
    info.set_item("max_displacement", report.max_displacement)?;
    info.set_item("stages", report.stages)?;
    info.set_item("iterations", report.iterations)?;
    info.set_item("valid", report.after.valid())?;
    info.set_item("ca_ca_in_range", report.after.ca_ca_in_range)?;
    info.set_item("ca_clashes", report.after.ca_clashes)?;
    Ok((atoms_to_numpy(py, &relaxed)?, info))
}

/// Relaxes each chain of `AAA|BBB` alone (no bonds across a break) as `esm3 generate` does
/// before writing a design; residues in `fixed` (0-based over the whole sequence) keep their
/// atoms. Returns the new atom37 coordinates.
#[pyfunction]
#[pyo3(signature = (coordinates, sequence, fixed = Vec::new()))]
fn relax_chains<'py>(
    py: Python<'py>,
    coordinates: PyReadonlyArray3<'py, f32>,
    sequence: &str,
    fixed: Vec<usize>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let atoms = coordinates_from_py(coordinates)?;
    check_relax_input(&atoms, sequence, &fixed)?;
    let (relaxed, _) = py.detach(|| {
        esm3_protein::relax::relax_chains(&atoms, sequence, &fixed, &RelaxOptions::default())
    });
    atoms_to_numpy(py, &relaxed)
}

/// One sequence letter per residue, every fixed residue inside the chain.
fn check_relax_input<T>(atoms: &[T], sequence: &str, fixed: &[usize]) -> PyResult<()> {
    if atoms.len() != sequence.chars().count() {
        return Err(PyValueError::new_err(format!(
            "coordinates have {} residues, the sequence {}",
            atoms.len(),
            sequence.chars().count()
        )));
    }
    if let Some(&bad) = fixed.iter().find(|&&i| i >= atoms.len()) {
        return Err(PyValueError::new_err(format!(
            "fixed residue {bad} is outside 0..{}",
            atoms.len()
        )));
    }
    Ok(())
}

/// Reads a PDB/mmCIF file (plain or .gz): the chain `chain_id` (author id) or the first
/// protein chain, as `(chain_id, sequence, atom37 coordinates)`.
#[pyfunction]
#[pyo3(signature = (path, chain_id = None))]
fn read_chain<'py>(
    py: Python<'py>,
    path: PathBuf,
    chain_id: Option<&str>,
) -> PyResult<(String, String, Bound<'py, PyArrayDyn<f32>>)> {
    let chain = py
        .detach(|| esm3_protein::read_chain(&path, chain_id))
        .map_err(read_err)?;
    let atoms = atoms_to_numpy(py, &chain.atom37)?;
    Ok((chain.chain_id, chain.sequence, atoms))
}

/// Writes a PDB file as `esm3 fold`/`generate` write a design: a complex (`AAA|BBB`) as chains
/// A, B, … each numbered from 1, pLDDT × 100 in the B-factor column, letters without a residue
/// name as UNK. Returns the UNK positions (1-based over the whole sequence).
#[pyfunction]
#[pyo3(signature = (path, sequence, coordinates, plddt = None))]
fn write_pdb(
    path: PathBuf,
    sequence: String,
    coordinates: PyReadonlyArray3<'_, f32>,
    plddt: Option<Vec<f32>>,
) -> PyResult<Vec<usize>> {
    let protein = EsmProtein {
        sequence: Some(sequence),
        coordinates: Some(coordinates_from_py(coordinates)?),
        plddt,
        ..Default::default()
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let whole = protein.to_chain(&stem).map_err(PyValueError::new_err)?;
    let mut chains = whole.split_at_chain_breaks();
    let mut unknown = Vec::new();
    for (chain, range) in &mut chains {
        let at = chain.unnamed_residues_to_unknown();
        unknown.extend(at.iter().map(|&i| range.start + i + 1));
    }
    let b100: Vec<Option<Vec<f32>>> = chains
        .iter()
        .map(|(_, r)| protein.plddt_percent(r.clone()))
        .collect();
    let parts: Vec<_> = chains
        .iter()
        .zip(&b100)
        .map(|((c, _), b)| (c, b.as_deref()))
        .collect();
    let mut buf = Vec::new();
    esm3_protein::io::write_pdb_chains(&parts, &mut buf).map_err(runtime_err)?;
    std::fs::write(&path, buf)
        .map_err(|e| PyOSError::new_err(format!("writing {}: {e}", path.display())))?;
    Ok(unknown)
}

/// The chains of a structure file to inverse-fold, as `esm3 inverse-fold --chain/--fix` picks
/// them: `(chain ids, native sequence, prompt sequence or None, atom37, designed mask)`, a
/// complex joined with one `|` position (NaN coordinates) between chains.
#[pyfunction]
#[pyo3(signature = (path, chains = Vec::new(), fix = Vec::new()))]
#[allow(clippy::type_complexity)]
fn inverse_folding_input<'py>(
    py: Python<'py>,
    path: PathBuf,
    chains: Vec<String>,
    fix: Vec<String>,
) -> PyResult<(
    Vec<String>,
    String,
    Option<String>,
    Bound<'py, PyArrayDyn<f32>>,
    Vec<bool>,
)> {
    let input = py.detach(|| {
        let structure = esm3_protein::read_structure(&path).map_err(read_err)?;
        design::InverseFoldingInput::new(structure.chains(), &chains, &fix)
            .map_err(|e| PyValueError::new_err(format!("{}: {e}", path.display())))
    })?;
    let atoms = atoms_to_numpy(py, input.prompt.coordinates.as_deref().unwrap_or(&[]))?;
    Ok((
        input.ids,
        input.native,
        input.prompt.sequence,
        atoms,
        input.designed,
    ))
}

/// The plan of a prompt file (TOML/JSON), as JSON of each `GenerationConfig`, so Python can
/// apply sampling overrides to it as the CLI's flags do.
#[pyfunction]
fn prompt_plan(path: PathBuf) -> PyResult<Vec<String>> {
    if !path.exists() {
        return Err(PyFileNotFoundError::new_err(format!(
            "{}: no such file",
            path.display()
        )));
    }
    let prompt = Prompt::read(&path).map_err(PyValueError::new_err)?;
    prompt
        .plan
        .iter()
        .map(|c| serde_json::to_string(c).map_err(runtime_err))
        .collect()
}

/// The configs behind `esm3 fold`, `esm3 inverse-fold` and `esm3 generate --length`, as JSON of
/// `GenerationConfig`, so Python runs exactly the CLI's plans.
#[pyfunction]
#[pyo3(signature = (kind, length = 0, tracks = Vec::new()))]
fn preset_plan(kind: &str, length: usize, tracks: Vec<String>) -> PyResult<Vec<String>> {
    let plan = match kind {
        "folding" => vec![GenerationConfig::folding()],
        "inverse_folding" => vec![GenerationConfig::inverse_folding()],
        "unconditional" => {
            if length == 0 {
                return Err(PyValueError::new_err("length must be at least 1"));
            }
            let tracks: Vec<Track> = tracks
                .iter()
                .map(|t| {
                    Track::from_name(t).ok_or_else(|| {
                        PyValueError::new_err(format!(
                            "unknown track `{t}`: expected sequence, structure, secondary_structure, sasa or function"
                        ))
                    })
                })
                .collect::<PyResult<_>>()?;
            GenerationConfig::unconditional_plan(&tracks, length)
        }
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown plan `{other}`: expected folding, inverse_folding or unconditional"
            )))
        }
    };
    plan.iter()
        .map(|c| serde_json::to_string(c).map_err(runtime_err))
        .collect()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(relax_backbone, m)?)?;
    m.add_function(wrap_pyfunction!(relax_chains, m)?)?;
    m.add_function(wrap_pyfunction!(read_chain, m)?)?;
    m.add_function(wrap_pyfunction!(write_pdb, m)?)?;
    m.add_function(wrap_pyfunction!(preset_plan, m)?)?;
    m.add_function(wrap_pyfunction!(inverse_folding_input, m)?)?;
    m.add_function(wrap_pyfunction!(prompt_plan, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
