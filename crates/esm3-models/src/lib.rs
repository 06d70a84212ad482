//! ESM3 and ESM C models: model directories, checkpoint import and forward passes.
//!
//! A model directory holds `config.json` (with `model_type`) and `model.safetensors` whose tensor
//! names are the reference state-dict names. Every load checks the file against the schema of
//! its config, so a wrong checkpoint fails with a message naming the tensor, not deep in a matmul.

pub mod array;
pub mod config;
pub mod error;
pub mod esm3;
pub mod esmc;
pub mod forward;
pub mod function_decoder;
pub mod import;
pub mod init;
pub mod model_dir;
pub mod schema;
pub mod structure_decoder;
pub mod structure_encoder;
pub mod weights;

pub use array::HostArray;
pub use config::{
    Esm3Config, EsmcConfig, FunctionDecoderConfig, ModelConfig, StructureDecoderConfig,
    StructureEncoderConfig,
};
pub use error::ModelError;
pub use esm3::{Esm3, Esm3Head, Esm3Hidden, Esm3Input, Esm3Output};
pub use esm3_nn::{linear::bf16_available, MatmulPrecision};
pub use esmc::{Esmc, EsmcInput, EsmcOutput};
pub use model_dir::{LoadOptions, ModelDir};
