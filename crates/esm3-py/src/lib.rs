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
use pyo3::exceptions::{PyFileNotFoundError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rand::SeedableRng;

use esm3_generate::embed::embed_sequences;
use esm3_generate::score::{masked_marginals, pseudo_log_likelihood, Variant};
use esm3_generate::sequence_model::SequenceModel;
use esm3_generate::{
    batch_logits, Esm3Pipeline, EsmProtein, GenerationConfig, GenerationError, PaddingAttention,
    ProteinTensor, Track,
};
use esm3_models::model_dir::LoadedModel;
use esm3_models::{Esmc, LoadOptions, ModelDir};
use esm3_protein::relax::{relax_atom37, RelaxOptions};
use esm3_protein::residue_constants::ATOM_TYPE_NUM;
use esm3_tokens::function::FunctionAnnotation;

type Atom37 = [[f32; 3]; ATOM_TYPE_NUM];

/// User input that is wrong becomes `ValueError` with our message; a model failure is a
/// `RuntimeError`.
fn generation_err(e: GenerationError) -> PyErr {
    match e {
        GenerationError::Prompt { message, .. } | GenerationError::Invalid(message) => {
            PyValueError::new_err(message)
        }
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

fn runtime_err(e: impl std::fmt::Display) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
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
        Some(c) => {
            let flat: Vec<f32> = c.iter().flatten().flatten().copied().collect();
            d.set_item(
                "coordinates",
                flat.into_pyarray(py)
                    .reshape(vec![c.len(), ATOM_TYPE_NUM, 3])?,
            )?;
        }
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
        let shown = path.display().to_string();
        let engine = py.detach(|| -> Result<Engine, String> {
            let dir = ModelDir::open(&path).map_err(|e| e.to_string())?;
            if dir.config.model_type() == "esm3" {
                Esm3Pipeline::load(&path, &options)
                    .map(|p| Engine::Esm3(Box::new(p)))
                    .map_err(|e| e.to_string())
            } else {
                match dir.load(&options).map_err(|e| e.to_string())? {
                    LoadedModel::Esmc(m) => Ok(Engine::Esmc(Box::new(m))),
                    _ => Err(format!(
                        "holds a {} model; esm3rs.load takes an esm3 or esmc directory",
                        dir.config.model_type()
                    )),
                }
            }
        });
        let engine = engine.map_err(|e| PyValueError::new_err(format!("{shown}: {e}")))?;
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
        let plan: Vec<GenerationConfig> = configs
            .iter()
            .map(|c| config_from_json(c))
            .collect::<PyResult<_>>()?;
        let out = py
            .detach(|| {
                let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
                pipeline.generate(&p, &plan, &mut rng, |_, _, _| {})
            })
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
        let plan: Vec<GenerationConfig> = configs
            .iter()
            .map(|c| config_from_json(c))
            .collect::<PyResult<_>>()?;
        let results = py
            .detach(|| {
                let mut rngs: Vec<rand_chacha::ChaCha20Rng> = seeds
                    .iter()
                    .map(|&s| rand_chacha::ChaCha20Rng::seed_from_u64(s))
                    .collect();
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
    let n = relaxed.len();
    let flat: Vec<f32> = relaxed.iter().flatten().flatten().copied().collect();
    Ok((
        flat.into_pyarray(py).reshape(vec![n, ATOM_TYPE_NUM, 3])?,
        info,
    ))
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
    if !path.exists() {
        return Err(PyFileNotFoundError::new_err(format!(
            "{}: no such file",
            path.display()
        )));
    }
    let chain = py
        .detach(|| esm3_protein::read_chain(&path, chain_id))
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let n = chain.atom37.len();
    let flat: Vec<f32> = chain.atom37.iter().flatten().flatten().copied().collect();
    Ok((
        chain.chain_id,
        chain.sequence,
        flat.into_pyarray(py).reshape(vec![n, ATOM_TYPE_NUM, 3])?,
    ))
}

/// Writes a PDB file: chain A, residues 1..L, pLDDT × 100 in the B-factor column (as the CLI).
#[pyfunction]
#[pyo3(signature = (path, sequence, coordinates, plddt = None))]
fn write_pdb(
    path: PathBuf,
    sequence: String,
    coordinates: PyReadonlyArray3<'_, f32>,
    plddt: Option<Vec<f32>>,
) -> PyResult<()> {
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
    let chain = protein.to_chain(&stem).map_err(PyValueError::new_err)?;
    let b = protein
        .plddt
        .as_ref()
        .map(|p| p.iter().map(|v| v * 100.0).collect::<Vec<f32>>());
    let mut buf = Vec::new();
    esm3_protein::io::write_pdb_chains(&[(&chain, b.as_deref())], &mut buf).map_err(runtime_err)?;
    std::fs::write(&path, buf)
        .map_err(|e| PyValueError::new_err(format!("writing {}: {e}", path.display())))
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
    m.add_function(wrap_pyfunction!(read_chain, m)?)?;
    m.add_function(wrap_pyfunction!(write_pdb, m)?)?;
    m.add_function(wrap_pyfunction!(preset_plan, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
