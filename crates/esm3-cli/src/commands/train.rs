//! `esm3 train esm3|vqvae CONFIG -o RUN`: training and fine-tuning (spec esm3-training.md).
//!
//! A run directory holds `config.toml` (what was asked), `metrics.jsonl` / `metrics.csv` /
//! `curves.png`, `checkpoints/` (resumable with `--resume`), and `final/`: an inference model
//! directory (the trunk; or `structure_encoder/` + `structure_decoder/`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, Subcommand};
use esm3_train::optim::AdamW;
use esm3_train::runner::train;
use esm3_train::trainable::Trainable;
use esm3_train::trunk::{
    training_device, zero_padding_rows, zero_rows, TrunkObjective, TrunkTrainConfig,
};
use esm3_train::vqvae::objective::{frozen, vqvae_trainable, VqVaeObjective, VqVaeTrainConfig};

#[derive(Subcommand)]
pub enum Command {
    /// Masked multi-track training of an ESM3 trunk (from scratch, or fine-tuning with --init).
    Esm3(RunArgs),
    /// The VQ-VAE structure tokenizer: stage 1 (encoder, codebook, decoder) or stage 2.
    Vqvae(RunArgs),
    /// Held-out numbers of a model directory against no-model baselines (the model card).
    Evaluate(EvaluateArgs),
}

#[derive(ClapArgs)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub model: super::model::ModelArgs,
    /// Dataset directory (built by `esm3 data build`, tokenized by `esm3 data tokenize`).
    #[arg(long)]
    pub dataset: PathBuf,
    /// Splits to evaluate (baselines always come from `train`).
    #[arg(long, value_delimiter = ',', default_value = "test,external")]
    pub splits: Vec<String>,
    /// Longer chains are cut to their first N residues.
    #[arg(long, default_value_t = 256)]
    pub max_len: usize,
    /// Unconditional generations (length 100: sequence at temperature 0.7, then folded as
    /// `--fold-steps` says) whose mean pLDDT / pTM are reported.
    #[arg(long, default_value_t = 8)]
    pub generations: usize,
    /// Steps of the pipeline's iterative unmasking (as `esm3 fold`: entropy order, temperature
    /// 0) when folding from sequence. 1 = argmax at every position in one forward (the default:
    /// 8 steps scored lower fold LDDT-Cα on the bundled model's valid split).
    #[arg(long, default_value_t = 1)]
    pub fold_steps: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(ClapArgs)]
pub struct RunArgs {
    /// Training config (TOML); see configs/ for documented examples.
    pub config: PathBuf,
    /// Run directory (created): logs, checkpoints, final model.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Start from this model directory instead of random weights (fine-tuning). For vqvae: a
    /// directory holding structure_encoder/ and structure_decoder/.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Continue the run in --out from its latest checkpoint, bit-for-bit.
    #[arg(long)]
    pub resume: bool,
    /// Override the config's number of steps.
    #[arg(long)]
    pub steps: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Esm3(a) => run_trunk(a),
        Command::Vqvae(a) => run_vqvae(a),
        Command::Evaluate(a) => run_evaluate(a),
    }
}

fn read_config<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{}: invalid training config", path.display()))
}

/// Relative dataset paths in a config are relative to the config file.
fn resolve(config_path: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() || p.exists() {
        p.to_path_buf()
    } else {
        config_path
            .parent()
            .map(|d| d.join(p))
            .unwrap_or_else(|| p.to_path_buf())
    }
}

fn prepare_out(args: &RunArgs) -> Result<()> {
    if !args.resume && esm3_train::checkpoint::latest(&args.out).is_some() {
        bail!(
            "{} already holds a run with checkpoints; pass --resume to continue it or choose another --out",
            args.out.display()
        );
    }
    std::fs::create_dir_all(&args.out)?;
    std::fs::copy(&args.config, args.out.join("config.toml"))
        .with_context(|| format!("cannot copy {} into the run", args.config.display()))?;
    Ok(())
}

fn run_trunk(args: RunArgs) -> Result<()> {
    let mut config: TrunkTrainConfig = read_config(&args.config)?;
    if let Some(s) = args.steps {
        config.run.steps = s;
    }
    if config.schedule.total_steps == 0 {
        config.schedule.total_steps = config.run.steps;
    }
    prepare_out(&args)?;
    let device = training_device();
    let model = match &args.init {
        Some(dir) => Trainable::from_model_dir(dir, &device)?.with_init_seed(config.run.seed),
        None => {
            let Some(m) = &config.model else {
                bail!("{}: a [model] section is needed to train from scratch (or pass --init MODEL_DIR)", args.config.display())
            };
            let t = Trainable::random(
                esm3_models::config::ModelConfig::Esm3(m.clone()),
                config.run.seed,
                &device,
            )?;
            zero_padding_rows(&t)?;
            t
        }
    };
    let dataset_dir = resolve(&args.config, &config.data.dataset);
    let dataset = esm3_train::data::open(&dataset_dir)?;
    let train_records = esm3_train::data::load_split(&dataset, "train")?;
    let mut valid_records = esm3_train::data::load_split(&dataset, "valid")?;
    let untokenized = train_records
        .iter()
        .filter(|r| r.has_coords() && r.structure_tokens.is_none())
        .count();
    if untokenized > 0 {
        eprintln!(
            "warning: {untokenized} training chains have coordinates but no structure tokens; run `esm3 data tokenize {} --structure-encoder DIR` first",
            dataset_dir.display()
        );
    }
    // Validate on chains with structure first, so every task is scored.
    valid_records.sort_by_key(|r| std::cmp::Reverse(r.structure_tokens.is_some()));
    let train_set: Vec<_> = train_records
        .iter()
        .map(esm3_train::data::training_protein)
        .collect();
    let valid_set: Vec<_> = valid_records
        .iter()
        .map(esm3_train::data::training_protein)
        .collect();
    eprintln!(
        "training on {} chains ({} with structure), validating on {} of {}",
        train_set.len(),
        train_set
            .iter()
            .filter(|p| p.structure_tokens.is_some())
            .count(),
        config.valid_proteins.min(valid_set.len()),
        valid_set.len()
    );
    let mut optimizer = AdamW::new(model.params(|_| false, zero_rows), config.optimizer.clone())?;
    let mut objective = TrunkObjective::new(config.clone(), train_set, valid_set);
    let summary = train(
        &mut objective,
        &model,
        &mut optimizer,
        &config.schedule,
        &config.run,
        &args.out,
        args.resume,
        !args.quiet,
    )?;
    let final_dir = args.out.join("final");
    model.save_model_dir(&final_dir)?;
    report(&summary, &final_dir);
    Ok(())
}

fn run_vqvae(args: RunArgs) -> Result<()> {
    let mut config: VqVaeTrainConfig = read_config(&args.config)?;
    if let Some(s) = args.steps {
        config.run.steps = s;
    }
    if config.schedule.total_steps == 0 {
        config.schedule.total_steps = config.run.steps;
    }
    if config.stage == 2 && args.init.is_none() && !args.resume {
        bail!("stage 2 refines a trained VQ-VAE: pass --init DIR (with structure_encoder/ and structure_decoder/)");
    }
    prepare_out(&args)?;
    let device = training_device();
    let model = vqvae_trainable(&config, args.init.as_deref(), &device)?;
    let dataset_dir = resolve(&args.config, &config.data.dataset);
    let dataset = esm3_train::data::open(&dataset_dir)?;
    let examples = |split: &str| -> Result<Vec<_>> {
        Ok(esm3_train::data::load_split(&dataset, split)?
            .iter()
            .filter_map(esm3_train::data::structure_example)
            .collect())
    };
    let train_set = examples("train")?;
    let valid_set = examples("valid")?;
    if train_set.is_empty() {
        bail!(
            "{}: the train split has no chain with coordinates",
            dataset_dir.display()
        );
    }
    eprintln!(
        "training on {} structures, validating on {}",
        train_set.len(),
        config.valid_proteins.min(valid_set.len())
    );
    let mut optimizer = AdamW::new(
        model.params(frozen(config.stage), |_| Vec::new()),
        config.optimizer.clone(),
    )?;
    let initialised = args.init.is_some();
    let mut objective =
        VqVaeObjective::new(config.clone(), &model, train_set, valid_set, initialised)?;
    let summary = train(
        &mut objective,
        &model,
        &mut optimizer,
        &config.schedule,
        &config.run,
        &args.out,
        args.resume,
        !args.quiet,
    )?;
    let final_dir = args.out.join("final");
    objective.export(&model, &final_dir)?;
    report(&summary, &final_dir);
    Ok(())
}

fn report(summary: &esm3_train::runner::RunSummary, final_dir: &Path) {
    let values: Vec<String> = summary
        .last_validation
        .iter()
        .map(|(k, v)| format!("{k}={v:.4}"))
        .collect();
    println!(
        "trained {} steps in {:.0} s; validation: {}; model: {}",
        summary.steps,
        summary.seconds,
        values.join(" "),
        final_dir.display()
    );
}

/// Residues of each unconditional generation `train evaluate` scores.
const GENERATION_LENGTH: usize = 100;

fn run_evaluate(args: EvaluateArgs) -> Result<()> {
    use esm3_train::card::{evaluate_split, Baselines, CardModels};

    let designer = super::design::Designer::load(&args.model)?;
    let p = &designer.pipeline;
    let (Some(encoder), Some(decoder)) = (&p.encoder, &p.decoder) else {
        bail!(
            "{}: evaluation needs structure_encoder/ and structure_decoder/ beside the trunk",
            designer.model_path.display()
        );
    };
    let n_codes = encoder.config().n_codes;
    let dataset = esm3_train::data::open(&args.dataset)?;
    let train_records = esm3_train::data::load_split(&dataset, "train")?;
    let baselines = Baselines::from_train(&train_records);
    let models = CardModels {
        esm3: &p.esm3,
        encoder,
        decoder,
        n_codes,
    };
    let mut reports = Vec::new();
    for split in &args.splits {
        let records = esm3_train::data::load_split(&dataset, split)?;
        let bar = super::progress::bar(records.len() as u64, split);
        let report = evaluate_split(
            &models,
            &baselines,
            split,
            &records,
            esm3_train::card::EvalOptions {
                max_len: args.max_len,
                seed: args.seed,
                fold_steps: args.fold_steps,
            },
            &|| bar.inc(1),
        )?;
        bar.finish_and_clear();
        print_split_report(&report);
        reports.push(report);
    }
    let generation = GenerationScores::measure(&designer, decoder, n_codes, &args)?;
    generation.print();
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "model": designer.model_path,
            "dataset": args.dataset,
            "max_len": args.max_len,
            "fold_steps": args.fold_steps,
            "seed": args.seed,
            "splits": reports,
            "generation": generation.json(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    }
    Ok(())
}

fn print_split_report(report: &esm3_train::card::SplitReport) {
    println!(
        "\n## split `{}`: {} chains, {} with structure\n",
        report.split, report.chains, report.chains_with_structure
    );
    println!("| metric | model | baseline | n | beats baseline |\n|---|---|---|---|---|");
    for (name, m) in &report.metrics {
        println!(
            "| {name} | {:.4} | {:.4} | {} | {} |",
            m.model,
            m.baseline,
            m.count,
            if m.beats_baseline() { "yes" } else { "no" }
        );
    }
}

/// Unconditional generations scored by the decoder's own confidence; the baseline is the same
/// decoder on uniformly random structure tokens (what a trunk that learned nothing would hand it).
struct GenerationScores {
    plddt: Vec<f64>,
    ptm: Vec<f64>,
    random_plddt: Vec<f64>,
    random_ptm: Vec<f64>,
}

impl GenerationScores {
    fn measure(
        designer: &super::design::Designer,
        decoder: &esm3_models::structure_decoder::StructureTokenDecoder,
        n_codes: usize,
        args: &EvaluateArgs,
    ) -> Result<Self> {
        use esm3_generate::prompt::Prompt;
        use esm3_generate::{GenerationConfig, Track};
        use esm3_models::esm3::structure_ids;
        use rand::{Rng, SeedableRng};
        use rand_chacha::ChaCha8Rng;

        let mut s = Self {
            plddt: Vec::new(),
            ptm: Vec::new(),
            random_plddt: Vec::new(),
            random_ptm: Vec::new(),
        };
        let mean_f32 = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64;
        let bar = super::progress::bar(args.generations as u64, "generations");
        for i in 0..args.generations {
            // The paper's protocol (spec esm3-training.md §6.4): sequences sampled at a constant
            // temperature of 0.7 (L decoding steps, as in its prompt-following protocol), then
            // folded the way the fold metric folds (entropy order, temperature 0, `fold_steps`).
            let sequence = GenerationConfig::paper_sampling(Track::Sequence, GENERATION_LENGTH);
            let fold = GenerationConfig {
                num_steps: args.fold_steps,
                ..GenerationConfig::folding()
            };
            let prompt = Prompt::unconditional("eval", GENERATION_LENGTH, vec![sequence, fold])
                .map_err(anyhow::Error::msg)?;
            let (protein, _) = designer.run(&prompt, args.seed + i as u64, false)?;
            if let (Some(pl), Some(t)) = (&protein.plddt, protein.ptm) {
                s.plddt.push(mean_f32(pl));
                s.ptm.push(t as f64);
            }
            let mut rng = ChaCha8Rng::seed_from_u64(args.seed + i as u64);
            let mut tokens = vec![structure_ids::BOS];
            tokens.extend((0..GENERATION_LENGTH).map(|_| rng.random_range(0..n_codes as i64)));
            tokens.push(structure_ids::EOS);
            let d = decoder.decode_structure(&tokens)?;
            s.random_plddt.push(mean_f32(&d.plddt));
            s.random_ptm.push(d.ptm as f64);
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(s)
    }

    fn mean(v: &[f64]) -> f64 {
        v.iter().sum::<f64>() / v.len().max(1) as f64
    }

    fn print(&self) {
        if self.plddt.is_empty() {
            return;
        }
        let mean = Self::mean;
        let yes = |model: f64, random: f64| if model > random { "yes" } else { "no" };
        println!(
            "\nunconditional generations (length {GENERATION_LENGTH}, n = {}; sequence at temperature 0.7, then folded), vs the decoder on uniformly random tokens:\n\n\
             | metric | model | random tokens | beats baseline |\n|---|---|---|---|\n\
             | mean pLDDT | {:.4} | {:.4} | {} |\n| mean pTM | {:.4} | {:.4} | {} |",
            self.plddt.len(),
            mean(&self.plddt),
            mean(&self.random_plddt),
            yes(mean(&self.plddt), mean(&self.random_plddt)),
            mean(&self.ptm),
            mean(&self.random_ptm),
            yes(mean(&self.ptm), mean(&self.random_ptm)),
        );
    }

    fn json(&self) -> serde_json::Value {
        let mean = Self::mean;
        serde_json::json!({
            "n": self.plddt.len(), "length": GENERATION_LENGTH, "sequence_temperature": 0.7,
            "mean_plddt": mean(&self.plddt), "mean_ptm": mean(&self.ptm),
            "random_tokens_mean_plddt": mean(&self.random_plddt),
            "random_tokens_mean_ptm": mean(&self.random_ptm),
        })
    }
}
