//! Trainable weights: named candle `Var`s in a `VarMap`. Models are built from it with
//! `VarBuilder::from_varmap`, so every weight the inference code fetches is a variable and
//! gradients reach it; saving writes the same names and shapes as an inference model directory.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use esm3_models::config::ModelConfig;
use esm3_models::model_dir::write_model_dir;
use esm3_models::schema::schema;

use crate::optim::{decays, Param};

/// Prefix of tensors that exist only for training (e.g. auxiliary heads); never saved into an
/// inference model directory.
pub const TRAINING_ONLY_PREFIX: &str = "training.";

/// A `VarMap` whose missing variables are drawn from a seeded generator. candle draws them
/// from the thread's unseeded generator on the CPU (`Device::set_seed` is refused there), so two
/// runs of one config would start their training-only heads differently. Each variable's draws
/// depend only on the seed and its name, not on the order the model asks for them.
struct SeededVarMap {
    varmap: VarMap,
    seed: u64,
}

impl SeededVarMap {
    fn initial_value(&self, shape: &candle_core::Shape, name: &str, init: Init) -> Result<Tensor> {
        // FNV-1a of the name: stable across runs and platforms, unlike std's hasher.
        let name_hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let mut rng = esm3_models::init::Normal::new(self.seed ^ name_hash);
        let n = shape.elem_count();
        let uniform = |rng: &mut esm3_models::init::Normal, lo: f64, up: f64| -> Vec<f32> {
            (0..n)
                .map(|_| (lo + (up - lo) * rng.uniform()) as f32)
                .collect()
        };
        let values: Vec<f32> = match init {
            Init::Const(v) => vec![v as f32; n],
            Init::Randn { mean, stdev } => (0..n)
                .map(|_| (mean + stdev * f64::from(rng.sample())) as f32)
                .collect(),
            Init::Uniform { lo, up } => uniform(&mut rng, lo, up),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    candle_nn::init::NormalOrUniform::Normal => (0..n)
                        .map(|_| (std * f64::from(rng.sample())) as f32)
                        .collect(),
                    candle_nn::init::NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        uniform(&mut rng, -bound, bound)
                    }
                }
            }
        };
        Tensor::from_vec(values, shape.clone(), &Device::Cpu)
    }
}

impl SimpleBackend for SeededVarMap {
    fn get(
        &self,
        shape: candle_core::Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        if !self
            .varmap
            .data()
            .lock()
            .expect("VarMap lock")
            .contains_key(name)
        {
            let value = self.initial_value(&shape, name, init)?;
            let var = Var::from_tensor(&value.to_dtype(dtype)?.to_device(dev)?)?;
            self.varmap
                .data()
                .lock()
                .expect("VarMap lock")
                .insert(name.to_string(), var);
        }
        // The map's own lookup: the shape check and the error it gives.
        self.varmap.get(shape, name, init, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!("{name}: a variable map needs the shape to create a variable")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .expect("VarMap lock")
            .contains_key(name)
    }
}

/// One model of a trainable set (the trunk alone; or the VQ-VAE's encoder and decoder), stored
/// under `prefix` in the shared `VarMap`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Part {
    /// `""` for a single model, else e.g. `"encoder."`.
    pub prefix: String,
    pub config: ModelConfig,
}

pub struct Trainable {
    pub parts: Vec<Part>,
    pub varmap: VarMap,
    pub device: Device,
    /// Seeds the variables created on first use (training-only heads): see [`SeededVarMap`].
    pub init_seed: u64,
}

impl Trainable {
    /// Variables holding copies of `tensors` (f32), on `device`.
    pub fn from_tensors(
        config: ModelConfig,
        tensors: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let varmap = VarMap::new();
        {
            let mut data = varmap.data().lock().expect("fresh VarMap");
            for (name, t) in tensors {
                let t = t.to_dtype(DType::F32)?.to_device(device)?;
                data.insert(name, Var::from_tensor(&t)?);
            }
        }
        Ok(Self {
            parts: vec![Part {
                prefix: String::new(),
                config,
            }],
            varmap,
            device: device.clone(),
            init_seed: 0,
        })
    }

    /// Several models in one variable map, each under its prefix (e.g. `encoder.`), from
    /// their tensors.
    pub fn from_parts(
        parts: Vec<(Part, HashMap<String, Tensor>)>,
        device: &Device,
    ) -> Result<Self> {
        let varmap = VarMap::new();
        let mut kept = Vec::new();
        {
            let mut data = varmap.data().lock().expect("fresh VarMap");
            for (part, tensors) in parts {
                for (name, t) in tensors {
                    let t = t.to_dtype(DType::F32)?.to_device(device)?;
                    data.insert(format!("{}{name}", part.prefix), Var::from_tensor(&t)?);
                }
                kept.push(part);
            }
        }
        Ok(Self {
            parts: kept,
            varmap,
            device: device.clone(),
            init_seed: 0,
        })
    }

    /// The first (for single models: the only) model's config.
    pub fn config(&self) -> &ModelConfig {
        &self.parts[0].config
    }

    /// Seeded random initialisation from the config's schema.
    pub fn random(config: ModelConfig, seed: u64, device: &Device) -> Result<Self> {
        let tensors = esm3_models::init::random_weights(&config, seed)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok(Self::from_tensors(config, tensors, device)?.with_init_seed(seed))
    }

    /// Loads a model directory (config.json + model.safetensors) as the starting point.
    pub fn from_model_dir(dir: &Path, device: &Device) -> Result<Self> {
        let err = |e: esm3_models::ModelError| candle_core::Error::Msg(e.to_string());
        let model = esm3_models::ModelDir::open(dir).map_err(err)?;
        model.check().map_err(err)?;
        let tensors = candle_core::safetensors::load(model.weights_path(), &Device::Cpu)?;
        Self::from_tensors(model.config.clone(), tensors, device)
    }

    /// Tensors of a model directory (checked against its config), for [`Trainable::from_parts`].
    pub fn load_model_dir(dir: &Path) -> Result<(ModelConfig, HashMap<String, Tensor>)> {
        let err = |e: esm3_models::ModelError| candle_core::Error::Msg(e.to_string());
        let model = esm3_models::ModelDir::open(dir).map_err(err)?;
        model.check().map_err(err)?;
        let tensors = candle_core::safetensors::load(model.weights_path(), &Device::Cpu)?;
        Ok((model.config.clone(), tensors))
    }

    /// Sets the seed of the variables created on first use; returns `self`.
    pub fn with_init_seed(mut self, seed: u64) -> Self {
        self.init_seed = seed;
        self
    }

    /// Models built from this fetch every weight as a variable; one not yet in the map (a
    /// training-only head) is created from its initialisation hint, seeded.
    pub fn var_builder(&self) -> VarBuilder<'static> {
        let backend: Box<dyn SimpleBackend> = Box::new(SeededVarMap {
            varmap: self.varmap.clone(),
            seed: self.init_seed,
        });
        VarBuilder::from_backend(backend, DType::F32, self.device.clone())
    }

    /// The variables under `prefix` (e.g. `"encoder"`) as constants: detached tensors sharing
    /// the variables' storage, names relative to the prefix. A module built from it runs the
    /// inference kernels and records no graph — what a frozen part of the model needs (the
    /// VQ-VAE's encoder in stage 2 ran its forward through the training ops for nothing).
    pub fn frozen_var_builder(&self, prefix: &str) -> VarBuilder<'static> {
        let dotted = format!("{prefix}.");
        let tensors: HashMap<String, Tensor> = self
            .named_vars()
            .into_iter()
            .filter_map(|(name, var)| {
                let rest = name.strip_prefix(&dotted)?.to_string();
                Some((rest, var.as_tensor().detach()))
            })
            .collect();
        VarBuilder::from_tensors(tensors, DType::F32, &self.device)
    }

    /// Adds (or replaces) a training-only tensor.
    pub fn insert(&self, name: &str, t: &Tensor) -> Result<Var> {
        let var = Var::from_tensor(&t.to_dtype(DType::F32)?.to_device(&self.device)?)?;
        self.varmap
            .data()
            .lock()
            .expect("VarMap lock")
            .insert(name.to_string(), var.clone());
        Ok(var)
    }

    /// All variables, sorted by name (a stable order for the optimizer state).
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let data = self.varmap.data().lock().expect("VarMap lock");
        let mut out: Vec<(String, Var)> =
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Optimizer parameters (all variables but those `frozen` names), with weight decay on
    /// matrices and the padding rows of the given embeddings held at zero.
    pub fn params(
        &self,
        frozen: impl Fn(&str) -> bool,
        zero_rows: impl Fn(&str) -> Vec<usize>,
    ) -> Vec<Param> {
        self.named_vars()
            .into_iter()
            .filter(|(n, _)| !frozen(n))
            .map(|(name, var)| Param {
                decay: decays(&name, var.dims()),
                frozen_rows: zero_rows(&name),
                name,
                var,
            })
            .collect()
    }

    /// Every tensor by name (training-only ones included), detached copies.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.named_vars()
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().detach()))
            .collect()
    }

    /// Replaces the values of existing variables (checkpoint restore); names must match.
    pub fn load_values(&self, tensors: &HashMap<String, Tensor>, origin: &Path) -> Result<()> {
        for (name, var) in self.named_vars() {
            let t = tensors.get(&name).ok_or_else(|| {
                candle_core::Error::Msg(format!("{}: no tensor {name}", origin.display()))
            })?;
            if t.shape() != var.shape() {
                candle_core::bail!(
                    "{}: {name} has shape {:?}, expected {:?}",
                    origin.display(),
                    t.dims(),
                    var.dims()
                );
            }
            var.set(&t.to_dtype(DType::F32)?.to_device(&self.device)?)?;
        }
        Ok(())
    }

    /// Writes an inference model directory of the first part: only the schema's tensors, in
    /// the release layout.
    pub fn save_model_dir(&self, dir: &Path) -> Result<()> {
        self.save_part(0, dir, &HashMap::new())
    }

    /// Writes part `index` as an inference model directory; `replace` overrides tensors by
    /// their (unprefixed) schema name, e.g. a stage-1 decoder's fused token embedding.
    pub fn save_part(
        &self,
        index: usize,
        dir: &Path,
        replace: &HashMap<String, Tensor>,
    ) -> Result<()> {
        let part = &self.parts[index];
        let all = self.tensors();
        let mut out = HashMap::new();
        for (name, _shape) in schema(&part.config) {
            let t = match replace.get(&name) {
                Some(t) => t.clone(),
                None => all
                    .get(&format!("{}{name}", part.prefix))
                    .cloned()
                    .ok_or_else(|| {
                        candle_core::Error::Msg(format!(
                            "trainable model lacks tensor {}{name}",
                            part.prefix
                        ))
                    })?,
            };
            out.insert(name, t.to_device(&Device::Cpu)?);
        }
        write_model_dir(dir, &part.config, &out).map_err(|e| candle_core::Error::Msg(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(seed: u64) -> Trainable {
        // The config plays no part in creating variables.
        let config = ModelConfig::StructureDecoder(esm3_models::config::StructureDecoderConfig {
            d_model: 16,
            n_heads: 2,
            n_layers: 1,
        });
        Trainable::from_tensors(config, HashMap::new(), &Device::Cpu)
            .unwrap()
            .with_init_seed(seed)
    }

    fn draw(t: &Trainable, names: &[&str]) -> Vec<Vec<f32>> {
        let vb = t.var_builder();
        names
            .iter()
            .map(|n| {
                vb.get_with_hints((4, 8), n, candle_nn::init::DEFAULT_KAIMING_NORMAL)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn new_variables_are_seeded_by_name_not_by_order() {
        let a = draw(&fresh(5), &["training.head.weight", "training.proj.weight"]);
        let b = draw(&fresh(5), &["training.proj.weight", "training.head.weight"]);
        assert_eq!(a[0], b[1]);
        assert_eq!(a[1], b[0]);
        assert_ne!(a[0], a[1], "two names, two draws");
        let other_seed = draw(&fresh(6), &["training.head.weight"]);
        assert_ne!(a[0], other_seed[0]);
        // Kaiming normal (fan in 8, gain √2): standard deviation 0.5.
        let n = a[0].len() as f32;
        let var = a[0].iter().map(|v| v * v).sum::<f32>() / n;
        assert!(var > 0.05 && var < 1.0, "variance {var}");
    }

    #[test]
    fn an_existing_variable_is_returned_and_a_wrong_shape_refused() {
        let t = fresh(1);
        let first = draw(&t, &["training.head.weight"]);
        assert_eq!(draw(&t, &["training.head.weight"]), first);
        let vb = t.var_builder();
        assert!(vb
            .get_with_hints((3, 8), "training.head.weight", Init::Const(0.0))
            .is_err());
    }
}
