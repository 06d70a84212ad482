//! `esm3 import`: a PyTorch checkpoint → a model directory.

use std::path::PathBuf;

use anyhow::Result;
use esm3_models::import::import_pth;
use esm3_models::ModelConfig;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The checkpoint: esm3_sm_open_v1.pth, esmc_300m_2024_12_v0.pth, esmc_600m_2024_12_v0.pth,
    /// or any state dict of those architectures with --config; or the LSH hyperplanes
    /// hyperplanes_8bit_58641.npz (into a function-decoder directory).
    file: PathBuf,
    /// Output model directory.
    #[arg(long)]
    out: PathBuf,
    /// config.json with model_type and hyper-parameters (needed unless the file name is official).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    // The official LSH hyperplanes (hyperplanes_8bit_58641.npz) go into a function-decoder
    // model directory as hyperplanes.safetensors.
    if args.file.extension().is_some_and(|e| e == "npz") {
        let h = esm3_models::import::import_hyperplanes(&args.file, &args.out)?;
        println!(
            "imported {} (8 tables x 8 hyperplanes x {} keywords) -> {}",
            args.file.display(),
            h.dim(),
            args.out.display()
        );
        return Ok(());
    }
    let config = args.config.as_deref().map(ModelConfig::load).transpose()?;
    let report = import_pth(&args.file, &args.out, config)?;
    println!(
        "imported {} ({}): {} tensors, {} parameters, dtypes {:?} -> {}",
        args.file.display(),
        report.config.describe(),
        report.tensors,
        report.parameters,
        report.dtypes,
        report.out_dir.display()
    );
    Ok(())
}
