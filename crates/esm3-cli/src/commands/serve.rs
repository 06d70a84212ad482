//! `esm3 serve`: the Forge-compatible HTTP server (crate `esm3-serve`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use esm3_generate::Esm3Pipeline;
use esm3_models::model_dir::LoadedModel;
use esm3_models::ModelDir;
use esm3_serve::{read_tokens, BatchPolicy, Model, ServedModel, ServerConfig};
use serde::Deserialize;

use super::device::DeviceArgs;
use super::model::ModelArgs;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// ESM3 model directory (with structure_encoder/ and structure_decoder/ for structures),
    /// served as `esm3-sm-open-v1` and `esm3-open`. Default: $ESM3_MODEL_DIR, else the
    /// bundled model.
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// ESM C model directory, served as `esmc-300m-2024-12`.
    #[arg(long)]
    esmc_model_dir: Option<PathBuf>,
    /// Models by name instead of the two flags above: a TOML file of
    /// `[[model]]` tables with `name` (or `names = [...]`) and `dir` (relative to the file).
    #[arg(long, conflicts_with_all = ["model_dir", "esmc_model_dir"])]
    models: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Bearer tokens, one per line. Else $ESM3_SERVE_TOKENS (comma-separated).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Serve without authentication; only allowed on a loopback address.
    #[arg(long, conflicts_with = "token_file")]
    no_auth: bool,
    /// Jobs each model's queue holds; beyond, requests are answered 429 with Retry-After.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    queue: u64,
    /// Most generation requests batched into one forward per decoding step.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    max_batch: u64,
    /// How long (ms) a generation request waits for others to batch with.
    #[arg(long, default_value_t = 5)]
    batch_window_ms: u64,
    /// Largest request body (MiB).
    #[arg(long, default_value_t = 32)]
    max_body_mib: usize,
    /// Longest protein (residues).
    #[arg(long, default_value_t = esm3_generate::prompt::MAX_LENGTH)]
    max_length: usize,
    /// Log every request's sequence (off by default: sequences are users' data).
    #[arg(long)]
    log_sequences: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelsFile {
    model: Vec<ModelEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    name: Option<String>,
    #[serde(default)]
    names: Vec<String>,
    dir: PathBuf,
}

fn load(dir: &std::path::Path, device: &DeviceArgs) -> Result<Model> {
    let options = device.load_options()?;
    let kind = ModelDir::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    if matches!(kind.config, esm3_models::config::ModelConfig::Esmc(_)) {
        match kind.load(&options)? {
            LoadedModel::Esmc(m) => return Ok(Model::Esmc(Box::new(m))),
            _ => unreachable!("an esmc directory loads an esmc model"),
        }
    }
    let p =
        Esm3Pipeline::load(dir, &options).with_context(|| format!("loading {}", dir.display()))?;
    Ok(Model::Esm3(Box::new(p)))
}

fn tokens(args: &Args) -> Result<Option<Vec<String>>> {
    if args.no_auth {
        return Ok(None);
    }
    if let Some(f) = &args.token_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let t = read_tokens(&text);
        if t.is_empty() {
            bail!("{}: no token in the file (one per line)", f.display());
        }
        return Ok(Some(t));
    }
    if let Ok(v) = std::env::var("ESM3_SERVE_TOKENS") {
        let t: Vec<String> = v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if !t.is_empty() {
            return Ok(Some(t));
        }
    }
    bail!(
        "no tokens: give --token-file FILE or ESM3_SERVE_TOKENS, or --no-auth on a loopback --bind"
    )
}

pub fn run(args: Args) -> Result<()> {
    let tokens = tokens(&args)?;
    let config = ServerConfig {
        bind: args.bind,
        tokens,
        max_body_bytes: args.max_body_mib << 20,
        max_length: args.max_length,
        queue_capacity: args.queue as usize,
        batch: BatchPolicy {
            max_batch: args.max_batch as usize,
            window: Duration::from_millis(args.batch_window_ms),
        },
        log_sequences: args.log_sequences,
    };
    config.check()?;
    let mut served = Vec::new();
    if let Some(file) = &args.models {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let parsed: ModelsFile =
            toml::from_str(&text).with_context(|| format!("{}", file.display()))?;
        let base = file.parent().unwrap_or(std::path::Path::new("."));
        for (i, m) in parsed.model.into_iter().enumerate() {
            let mut names = m.names;
            names.splice(0..0, m.name);
            if names.is_empty() {
                bail!("{}: model {} has no `name`", file.display(), i + 1);
            }
            let dir = base.join(&m.dir);
            served.push(ServedModel {
                names,
                model: load(&dir, &args.device)?,
            });
        }
    } else {
        let esm3 = ModelArgs {
            model_dir: args.model_dir.clone(),
            device: args.device.clone(),
        }
        .resolve()?;
        served.push(ServedModel {
            names: vec!["esm3-sm-open-v1".into(), "esm3-open".into()],
            model: load(&esm3, &args.device)?,
        });
        if let Some(d) = &args.esmc_model_dir {
            served.push(ServedModel {
                names: vec!["esmc-300m-2024-12".into()],
                model: load(d, &args.device)?,
            });
        }
    }
    for s in &served {
        if let Model::Esm3(p) = &s.model {
            if p.decoder.is_none() {
                tracing::warn!(
                    "{}: no structure_decoder/, structure tokens cannot become coordinates",
                    s.names[0]
                );
            }
        }
    }
    let names: Vec<String> = served.iter().map(|s| s.names.join("|")).collect();
    esm3_serve::serve(config, served, |addr| {
        // The one line scripts wait for (the tests read the port from it).
        eprintln!("listening on http://{addr} (models: {})", names.join(", "));
    })?;
    Ok(())
}
