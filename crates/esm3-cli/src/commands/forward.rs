//! `esm3 forward`: the debugging and integration door into every model.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use esm3_models::forward::{forward_named, read_inputs, write_outputs};
use esm3_models::ModelDir;

use super::device::DeviceArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model directory (config.json + model.safetensors).
    #[arg(long)]
    model_dir: PathBuf,
    /// Input tensors, named like the reference forward arguments (safetensors).
    #[arg(long)]
    input: PathBuf,
    /// Where to write the named outputs (safetensors, f32).
    #[arg(long)]
    output: PathBuf,
    /// Run the forward pass this many times and report the time of each (for benchmarks).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Write load and forward timings as JSON to this file.
    #[arg(long)]
    timings: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(args: Args) -> Result<()> {
    let options = args.device.load_options()?;
    let dir = ModelDir::open(&args.model_dir)?;
    tracing::info!(model_type = dir.config.model_type(), config = %dir.config.describe(), "loading");
    let started = Instant::now();
    let model = dir.load(&options)?;
    let load_s = started.elapsed().as_secs_f64();
    let inputs = read_inputs(&args.input)?;
    let mut forward_s = Vec::with_capacity(args.repeat as usize);
    let mut outputs = Vec::new();
    for _ in 0..args.repeat {
        let t = Instant::now();
        outputs = forward_named(&model, &inputs)
            .with_context(|| format!("forward pass on {}", args.input.display()))?;
        // Bring results to the host inside the timed region so device work is not left pending.
        for (_, o) in &outputs {
            o.to_device(&candle_core::Device::Cpu)?;
        }
        forward_s.push(t.elapsed().as_secs_f64());
    }
    write_outputs(&args.output, &outputs)?;
    if let Some(path) = &args.timings {
        let json = serde_json::json!({ "load_s": load_s, "forward_s": forward_s });
        std::fs::write(path, json.to_string())
            .with_context(|| format!("writing timings to {}", path.display()))?;
    }
    for (name, t) in &outputs {
        tracing::info!(name, shape = ?t.dims(), "output");
    }
    Ok(())
}
