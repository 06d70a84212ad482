//! `esm3 generate`: design proteins from a prompt file or from nothing but a length.

use std::path::PathBuf;

use anyhow::{bail, Result};
use esm3_generate::prompt::Prompt;
use esm3_generate::{EsmProtein, GenerationConfig, Track};
use esm3_protein::complexity::{sequence_complexity, ComplexityReport, ComplexityThresholds};

use super::design::{write_design, Design, Designer, RelaxArgs, SamplingArgs, StructureFormat};
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
    let designer = Designer::load(&args.model)?;
    let thresholds = ComplexityThresholds {
        max_low_complexity_fraction: args.max_low_complexity,
        max_homopolymer_run: args.max_homopolymer,
    };
    let n = args.num_outputs;
    let mut report = RunReport::new(args.report, &args.output, esm3_report::PAGE)?;
    let batch_bar = bar(n as u64, "designing");
    if n <= 1 {
        // One design: its own progress bar over the decoding steps instead.
        batch_bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    // Failed attempts per design: when none passes, the least repetitive is written.
    let mut failed: Vec<Vec<Attempt>> = (0..n).map(|_| Vec::new()).collect();
    let mut todo: Vec<usize> = (0..n).collect();
    let mut failed_all = Vec::new();
    for attempt in 0..args.max_attempts {
        let last = attempt + 1 == args.max_attempts;
        let mut again = Vec::new();
        for chunk in todo.chunks(args.batch_size as usize) {
            let seeds: Vec<u64> = chunk
                .iter()
                .map(|&i| args.seed + i as u64 + attempt * n as u64)
                .collect();
            let designs = if chunk.len() == 1 {
                vec![designer.run(&prompt, seeds[0], n == 1)]
            } else {
                designer.run_batch(&vec![prompt.clone(); chunk.len()], &seeds)?
            };
            for ((&i, &seed), design) in chunk.iter().zip(&seeds).zip(designs) {
                let name = if n == 1 {
                    prompt.name.clone()
                } else {
                    format!("{}_{i}", prompt.name)
                };
                let design = design?;
                let complexity = design_complexity(&design.0);
                let this = Attempt {
                    seed,
                    design,
                    complexity,
                };
                let chosen = if this.passes(&thresholds) {
                    this
                } else {
                    failed[i].push(this);
                    if !last {
                        again.push(i);
                        continue;
                    }
                    failed_all.push(name.clone());
                    let best = (0..failed[i].len())
                        .min_by(|&a, &b| failed[i][a].badness().total_cmp(&failed[i][b].badness()))
                        .expect("this attempt is there");
                    failed[i].remove(best)
                };
                let rejected: Vec<serde_json::Value> = failed[i]
                    .drain(..)
                    .map(|a| {
                        serde_json::json!({
                            "seed": a.seed,
                            "sequence": a.design.0.sequence,
                            "complexity": complexity_json(a.complexity.as_ref(), &thresholds),
                        })
                    })
                    .collect();
                let check = Check {
                    complexity: complexity_json(chosen.complexity.as_ref(), &thresholds),
                    rejected,
                    attempts: attempt + 1,
                };
                let summary = write_one(
                    &args,
                    &designer,
                    &prompt,
                    &name,
                    chosen.seed,
                    &chosen.design,
                    check,
                )?;
                report.add_design(i, &summary, &chosen.design.0)?;
                batch_bar.inc(1);
            }
        }
        if again.is_empty() {
            break;
        }
        again.sort_unstable();
        todo = again;
    }
    batch_bar.finish_and_clear();
    report.finish(&format!("esm3 generate: {} ({n} designs)", prompt.name))?;
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
    Ok(())
}

/// The complexity of a design's sequence; `None` while positions are still masked (a plan
/// that does not generate the sequence).
fn design_complexity(protein: &EsmProtein) -> Option<ComplexityReport> {
    protein
        .sequence
        .as_deref()
        .filter(|s| !s.is_empty() && !s.contains('_'))
        .map(sequence_complexity)
}

fn complexity_json(c: Option<&ComplexityReport>, t: &ComplexityThresholds) -> serde_json::Value {
    let Some(c) = c else {
        return serde_json::Value::Null;
    };
    serde_json::json!({
        "passes": c.passes(t),
        "entropy_bits": c.entropy_bits,
        "min_window_entropy_bits": c.min_window_entropy_bits,
        "low_complexity_fraction": c.low_complexity_fraction,
        "longest_homopolymer": c.longest_homopolymer,
        // 1-based, inclusive, as residue numbers are written everywhere else.
        "low_complexity_regions": c.low_complexity_regions.iter().map(|&(a, b)| [a + 1, b]).collect::<Vec<_>>(),
        "thresholds": {
            "max_low_complexity_fraction": t.max_low_complexity_fraction,
            "max_homopolymer_run": t.max_homopolymer_run,
        },
    })
}

/// One generated candidate for a design slot.
struct Attempt {
    seed: u64,
    design: Design,
    complexity: Option<ComplexityReport>,
}

impl Attempt {
    fn passes(&self, t: &ComplexityThresholds) -> bool {
        self.complexity.as_ref().is_none_or(|c| c.passes(t))
    }

    /// Ranks failed attempts: repetitive fraction first, a long homopolymer as tie-break.
    fn badness(&self) -> f64 {
        self.complexity.as_ref().map_or(0.0, |c| {
            c.low_complexity_fraction + 1e-3 * c.longest_homopolymer as f64
        })
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
