//! `esm3 generate`: design proteins from a prompt file or from nothing but a length.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use esm3_generate::design::{complexity_summary, design_with_retries, AttemptPolicy, ChosenDesign};
use esm3_generate::prompt::Prompt;
use esm3_generate::{GenerationConfig, Track};
use esm3_protein::complexity::ComplexityThresholds;

use super::design::{
    step_bar, write_design, Design, Designer, RelaxArgs, SamplingArgs, StructureFormat,
};
use super::model::ModelArgs;
use super::progress::bar;
use super::report::{ReportArgs, RunReport};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Prompt file (TOML or JSON; see the README for the format).
    #[arg(long, conflicts_with = "length")]
    prompt: Option<PathBuf>,
    /// Unconditional design of this many residues.
    #[arg(long)]
    length: Option<usize>,
    /// Tracks to generate, in order (without a prompt file). Default: sequence then structure.
    #[arg(long, value_delimiter = ',', value_parser = ["sequence", "structure", "secondary_structure", "sasa", "function"])]
    track: Vec<String>,
    /// How many designs.
    #[arg(short = 'n', long, default_value_t = 1)]
    num_outputs: usize,
    /// Output folder: <name>.fasta, <name>.pdb, <name>.json and <name>.png (pLDDT and PAE) per
    /// design, and report.html listing them all.
    #[arg(short, long, default_value = "designs")]
    output: PathBuf,
    #[arg(long, value_enum, default_value = "pdb")]
    format: StructureFormat,
    /// Seed of the first design; design i uses seed + i (attempt k of it, seed + i + k·n).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Attempts per design: a design whose sequence fails the complexity check (repeats such
    /// as EEEEEEE or ALALAL) is generated again with another seed, up to this many times in
    /// all; when none passes, the least repetitive is written. Every attempt is in the JSON
    /// summary. 1 = check and report only.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    max_attempts: u64,
    /// Complexity check: largest fraction of residues in low-complexity windows (SEG's 12
    /// residues under 2.2 bits).
    #[arg(long, default_value_t = ComplexityThresholds::default().max_low_complexity_fraction)]
    max_low_complexity: f64,
    /// Complexity check: longest allowed run of one residue.
    #[arg(long, default_value_t = ComplexityThresholds::default().max_homopolymer_run)]
    max_homopolymer: usize,
    /// Designs generated together (one forward per decoding step for the batch); each design
    /// equals generating it alone with its seed. Prompts with motifs run one at a time.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    #[command(flatten)]
    relax: RelaxArgs,
    #[command(flatten)]
    report: ReportArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: Args) -> Result<()> {
    let prompt = read_prompt(&args)?;
    let designer = Designer::load(&args.model)?;
    let policy = AttemptPolicy {
        max_attempts: args.max_attempts,
        thresholds: ComplexityThresholds {
            max_low_complexity_fraction: args.max_low_complexity,
            max_homopolymer_run: args.max_homopolymer,
        },
        batch_size: args.batch_size as usize,
    };
    let thresholds = policy.thresholds;
    let n = args.num_outputs;
    let mut report = RunReport::new(args.report, &args.output, esm3_report::PAGE)?;
    let batch_bar = bar(n as u64, "designing");
    // One design: its own progress bar over the decoding steps instead.
    let step_pb = bar(0, &prompt.name);
    if n <= 1 {
        batch_bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    } else {
        step_pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut failed_all = Vec::new();
    design_with_retries(
        &designer.pipeline,
        &prompt,
        n,
        args.seed,
        &policy,
        step_bar(&step_pb, &prompt),
        |d: ChosenDesign| -> Result<()> {
            // The decoding steps' bar goes before the design's lines are printed.
            step_pb.finish_and_clear();
            let name = if n == 1 {
                prompt.name.clone()
            } else {
                format!("{}_{}", prompt.name, d.index)
            };
            if !d.passed {
                failed_all.push(name.clone());
            }
            let check = Check {
                complexity: complexity_summary(d.chosen.complexity.as_ref(), &thresholds),
                rejected: d.rejected_summary(&thresholds),
                attempts: d.attempts,
            };
            let summary = write_one(
                &args,
                &designer,
                &prompt,
                &name,
                d.chosen.seed,
                &d.chosen.design,
                check,
            )?;
            report.add_design(d.index, &summary, &d.chosen.design.0)?;
            batch_bar.inc(1);
            Ok(())
        },
    )
    .with_context(|| format!("designing {}", prompt.name))?;
    step_pb.finish_and_clear();
    batch_bar.finish_and_clear();
    report.finish(&format!("esm3 generate: {} ({n} designs)", prompt.name))?;
    warn_failed(&args, &failed_all);
    Ok(())
}

/// The prompt file, or the unconditional plan of `--length` and `--track`, with the sampling
/// flags applied to each step.
fn read_prompt(args: &Args) -> Result<Prompt> {
    let mut prompt = match (&args.prompt, args.length) {
        (Some(p), _) => Prompt::read(p).map_err(anyhow::Error::msg)?,
        (None, Some(n)) => {
            let tracks: Vec<Track> = if args.track.is_empty() {
                vec![Track::Sequence, Track::Structure]
            } else {
                args.track
                    .iter()
                    .map(|t| Track::from_name(t).expect("validated by clap"))
                    .collect()
            };
            let plan = GenerationConfig::unconditional_plan(&tracks, n);
            Prompt::unconditional("design", n, plan).map_err(anyhow::Error::msg)?
        }
        (None, None) => bail!("give --length N or --prompt FILE"),
    };
    if args.prompt.is_some() && !args.track.is_empty() {
        bail!(
            "--track applies without a prompt file; a prompt file says its tracks in [[generate]]"
        );
    }
    for c in prompt.plan.iter_mut() {
        *c = args.sampling.apply(c.clone());
        c.validate().map_err(anyhow::Error::msg)?;
    }
    Ok(prompt)
}

/// Names the designs whose every attempt failed the complexity check.
fn warn_failed(args: &Args, failed_all: &[String]) {
    if !failed_all.is_empty() {
        let what = if args.max_attempts == 1 {
            "(--max-attempts 1: reported, not retried)".to_string()
        } else {
            format!(
                "after {} attempts (the least repetitive attempt is written; see `complexity` and `rejected_attempts` in their JSON)",
                args.max_attempts
            )
        };
        eprintln!(
            "warning: complexity check failed for {} {what}",
            failed_all.join(", ")
        );
    }
}

/// What the complexity filter found for one written design.
struct Check {
    complexity: serde_json::Value,
    rejected: Vec<serde_json::Value>,
    attempts: u64,
}

/// Writes one design's files and prints its summary line; returns its JSON summary.
fn write_one(
    args: &Args,
    designer: &Designer,
    prompt: &Prompt,
    name: &str,
    seed: u64,
    (protein, motif_rmsd): &Design,
    check: Check,
) -> Result<serde_json::Value> {
    let summary = write_design(
        &args.output,
        name,
        protein,
        args.format,
        args.relax,
        &prompt
            .motifs
            .iter()
            .flat_map(|m| m.positions.iter().copied())
            .collect::<Vec<_>>(),
        serde_json::json!({
            "seed": seed,
            "model": designer.model_path.display().to_string(),
            "plan": prompt.plan,
            "motif_backbone_rmsd": motif_rmsd,
            "complexity": check.complexity,
            "attempts": check.attempts,
            "rejected_attempts": check.rejected,
        }),
    )?;
    let complexity = match summary["complexity"]["passes"].as_bool() {
        Some(true) => "ok",
        Some(false) => "LOW",
        None => "-",
    };
    println!(
        "{name}\tlength {}\tmean pLDDT {}\tpTM {}\tcomplexity {complexity}\tattempts {}",
        summary["length"],
        summary["mean_plddt"]
            .as_f64()
            .map_or("-".into(), |v| format!("{v:.3}")),
        summary["ptm"]
            .as_f64()
            .map_or("-".into(), |v| format!("{v:.3}")),
        check.attempts,
    );
    Ok(summary)
}
