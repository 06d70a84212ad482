//! Design jobs as `esm3 generate`, `fold` and `inverse-fold` run them, shared by the CLI and
//! the Python package so both give the same design for a seed: a prompt's plan with its motifs
//! kept, many prompts as one batch, attempts retried while a sequence is too repetitive, and
//! the inputs of folding and inverse folding checked and built.

use esm3_protein::complexity::{sequence_complexity, ComplexityReport, ComplexityThresholds};
use esm3_protein::residue_constants::ATOM_TYPE_NUM;
use esm3_protein::ProteinChain;
use rand::SeedableRng;

use crate::prompt::{check_chain_breaks, restore_motifs, Prompt, MAX_LENGTH};
use crate::{Esm3Pipeline, EsmProtein, GenerationConfig, GenerationError, Track};

/// A designed protein and each motif's backbone RMSD before the motif was written back.
pub type Design = (EsmProtein, Vec<Option<f64>>);

/// The generator every design job seeds: ChaCha20, so a seed means the same on every platform.
pub fn seeded_rng(seed: u64) -> rand_chacha::ChaCha20Rng {
    rand_chacha::ChaCha20Rng::seed_from_u64(seed)
}

/// Runs a prompt's plan with a seed; motifs are restored exactly afterwards. `on_step(k, step,
/// total)` reports decoding progress of config `k`.
pub fn run_prompt(
    pipeline: &Esm3Pipeline,
    prompt: &Prompt,
    seed: u64,
    on_step: impl FnMut(usize, usize, usize),
) -> Result<Design, GenerationError> {
    let mut plan = prompt.plan.clone();
    if !prompt.motifs.is_empty() {
        // Keep the motif's structure tokens fixed: they are not masked in the prompt.
        for c in plan.iter_mut().filter(|c| c.track == Track::Structure) {
            c.condition_on_coordinates_only = false;
        }
    }
    let mut protein = pipeline.generate(&prompt.protein, &plan, &mut seeded_rng(seed), on_step)?;
    let rmsd = restore_motifs(&mut protein, &prompt.motifs);
    Ok((protein, rmsd))
}

/// Runs many prompts that share one plan, prompt `i` with `seeds[i]`, as one batch (one
/// forward per decoding step for all of them); each result equals [`run_prompt`] of that prompt
/// alone with its seed. Prompts with motifs run one at a time (motifs change the plan). Prompts
/// should be of similar length: the batch is padded to the longest.
pub fn run_prompts(
    pipeline: &Esm3Pipeline,
    prompts: &[Prompt],
    seeds: &[u64],
) -> Result<Vec<Result<Design, GenerationError>>, GenerationError> {
    if prompts.len() != seeds.len() {
        return Err(GenerationError::Invalid(format!(
            "{} prompts but {} seeds: one seed per prompt",
            prompts.len(),
            seeds.len()
        )));
    }
    let Some(first) = prompts.first() else {
        return Ok(Vec::new());
    };
    if let Some(p) = prompts.iter().find(|p| p.plan != first.plan) {
        return Err(GenerationError::Invalid(format!(
            "{} and {} have different generation plans: they cannot share a batch",
            first.name, p.name
        )));
    }
    if prompts.len() == 1 || prompts.iter().any(|p| !p.motifs.is_empty()) {
        return Ok(prompts
            .iter()
            .zip(seeds)
            .map(|(p, &seed)| run_prompt(pipeline, p, seed, |_, _, _| {}))
            .collect());
    }
    let mut rngs: Vec<rand_chacha::ChaCha20Rng> = seeds.iter().map(|&s| seeded_rng(s)).collect();
    let mut refs: Vec<&mut rand_chacha::ChaCha20Rng> = rngs.iter_mut().collect();
    let proteins: Vec<EsmProtein> = prompts.iter().map(|p| p.protein.clone()).collect();
    let results = pipeline.generate_batch(&proteins, &first.plan, &mut refs, |_, _, _| {})?;
    Ok(results
        .into_iter()
        .map(|r| r.map(|p| (p, Vec::new())))
        .collect())
}

/// How `esm3 generate` retries designs whose sequence is too repetitive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttemptPolicy {
    /// Attempts per design in all (1 = check and report only).
    pub max_attempts: u64,
    pub thresholds: ComplexityThresholds,
    /// Designs generated together.
    pub batch_size: usize,
}

impl Default for AttemptPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            thresholds: ComplexityThresholds::default(),
            batch_size: 8,
        }
    }
}

/// One generated candidate for a design slot.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub seed: u64,
    pub design: Design,
    /// `None` while positions are still masked (a plan that does not generate the sequence).
    pub complexity: Option<ComplexityReport>,
}

impl Attempt {
    fn new(seed: u64, design: Design) -> Self {
        let complexity = design
            .0
            .sequence
            .as_deref()
            .filter(|s| !s.is_empty() && !s.contains('_'))
            .map(sequence_complexity);
        Self {
            seed,
            design,
            complexity,
        }
    }

    pub fn passes(&self, t: &ComplexityThresholds) -> bool {
        self.complexity.as_ref().is_none_or(|c| c.passes(t))
    }

    /// Ranks failed attempts: repetitive fraction first, a long homopolymer as tie-break.
    fn badness(&self) -> f64 {
        self.complexity.as_ref().map_or(0.0, |c| {
            c.low_complexity_fraction + 1e-3 * c.longest_homopolymer as f64
        })
    }
}

/// The design written for slot `index`: the first attempt that passed, or the least repetitive
/// when none did; the attempts it beat, in order.
#[derive(Clone, Debug)]
pub struct ChosenDesign {
    pub index: usize,
    pub chosen: Attempt,
    pub rejected: Vec<Attempt>,
    pub attempts: u64,
    pub passed: bool,
}

impl ChosenDesign {
    /// The rejected attempts as design summaries list them: seed, sequence, complexity.
    pub fn rejected_summary(&self, t: &ComplexityThresholds) -> Vec<serde_json::Value> {
        self.rejected
            .iter()
            .map(|a| {
                serde_json::json!({
                    "seed": a.seed,
                    "sequence": a.design.0.sequence,
                    "complexity": complexity_summary(a.complexity.as_ref(), t),
                })
            })
            .collect()
    }
}

/// `n` designs of one prompt, design `i` attempt `k` with seed `seed + i + k·n`, as `esm3
/// generate` makes them. `on_design` gets each design as soon as it is chosen (slots in
/// ascending order within an attempt round); a single design reports its decoding steps
/// through `on_step`.
pub fn design_with_retries<E: From<GenerationError>>(
    pipeline: &Esm3Pipeline,
    prompt: &Prompt,
    n: usize,
    seed: u64,
    policy: &AttemptPolicy,
    mut on_step: impl FnMut(usize, usize, usize),
    mut on_design: impl FnMut(ChosenDesign) -> Result<(), E>,
) -> Result<(), E> {
    if policy.max_attempts == 0 || policy.batch_size == 0 {
        return Err(GenerationError::Invalid(
            "max_attempts and batch_size must be at least 1".into(),
        )
        .into());
    }
    let mut failed: Vec<Vec<Attempt>> = (0..n).map(|_| Vec::new()).collect();
    let mut todo: Vec<usize> = (0..n).collect();
    for attempt in 0..policy.max_attempts {
        let last = attempt + 1 == policy.max_attempts;
        let mut again = Vec::new();
        for chunk in todo.chunks(policy.batch_size) {
            let seeds: Vec<u64> = chunk
                .iter()
                .map(|&i| {
                    (attempt.checked_mul(n as u64))
                        .and_then(|k| k.checked_add(i as u64))
                        .and_then(|k| k.checked_add(seed))
                        .ok_or_else(|| {
                            GenerationError::Invalid(format!(
                                "seed {seed} is too large for {n} designs of {} attempts (seed + i + k·n must fit in 64 bits)",
                                policy.max_attempts
                            ))
                        })
                })
                .collect::<Result<_, _>>()?;
            let designs = if chunk.len() == 1 {
                vec![run_prompt(pipeline, prompt, seeds[0], &mut on_step)]
            } else {
                run_prompts(pipeline, &vec![prompt.clone(); chunk.len()], &seeds)?
            };
            for ((&i, &seed), design) in chunk.iter().zip(&seeds).zip(designs) {
                let this = Attempt::new(seed, design?);
                let passed = this.passes(&policy.thresholds);
                let chosen = if passed {
                    this
                } else {
                    failed[i].push(this);
                    if !last {
                        again.push(i);
                        continue;
                    }
                    let best = (0..failed[i].len())
                        .min_by(|&a, &b| failed[i][a].badness().total_cmp(&failed[i][b].badness()))
                        .expect("this attempt is there");
                    failed[i].remove(best)
                };
                on_design(ChosenDesign {
                    index: i,
                    chosen,
                    rejected: std::mem::take(&mut failed[i]),
                    attempts: attempt + 1,
                    passed,
                })?;
            }
        }
        if again.is_empty() {
            break;
        }
        again.sort_unstable();
        todo = again;
    }
    Ok(())
}

/// A complexity report as design summaries write it (regions 1-based, inclusive).
pub fn complexity_summary(
    c: Option<&ComplexityReport>,
    t: &ComplexityThresholds,
) -> serde_json::Value {
    let Some(c) = c else {
        return serde_json::Value::Null;
    };
    serde_json::json!({
        "passes": c.passes(t),
        "entropy_bits": c.entropy_bits,
        "min_window_entropy_bits": c.min_window_entropy_bits,
        "low_complexity_fraction": c.low_complexity_fraction,
        "longest_homopolymer": c.longest_homopolymer,
        "low_complexity_regions": c.low_complexity_regions.iter().map(|&(a, b)| [a + 1, b]).collect::<Vec<_>>(),
        "thresholds": {
            "max_low_complexity_fraction": t.max_low_complexity_fraction,
            "max_homopolymer_run": t.max_homopolymer_run,
        },
    })
}

/// A prompt of a protein and a plan, checked as prompt files are: chain breaks only between
/// chains, at most [`MAX_LENGTH`] positions, tracks of one length, a plan to run.
pub fn checked_prompt(
    name: &str,
    protein: EsmProtein,
    plan: Vec<GenerationConfig>,
) -> Result<Prompt, String> {
    protein.check()?;
    if let Some(sequence) = &protein.sequence {
        check_chain_breaks(sequence)?;
    }
    match protein.len() {
        None | Some(0) => return Err("the protein is empty".into()),
        Some(n) if n > MAX_LENGTH => {
            return Err(format!(
                "{n} residues, beyond the model's limit of {MAX_LENGTH}"
            ))
        }
        Some(_) => {}
    }
    if plan.is_empty() {
        return Err("the plan is empty: give at least one GenerationConfig".into());
    }
    Ok(Prompt {
        name: name.to_string(),
        protein,
        motifs: Vec::new(),
        plan,
    })
}

/// The folding prompt of one sequence (`AAA|BBB` for a complex), checked as `esm3 fold` checks
/// it.
pub fn fold_prompt(
    name: &str,
    sequence: &str,
    config: &GenerationConfig,
) -> Result<Prompt, String> {
    let protein = EsmProtein {
        sequence: Some(sequence.to_string()),
        ..Default::default()
    };
    checked_prompt(name, protein, vec![config.clone()])
}

/// The chains to inverse-fold, joined as the reference's `ProteinComplex` joins them for the
/// model: one chain-break position (`|`, no coordinates) between chains.
#[derive(Clone, Debug)]
pub struct InverseFoldingInput {
    /// Author chain ids, in order.
    pub ids: Vec<String>,
    /// Native sequence with `|` between chains.
    pub native: String,
    /// What the model is shown: the coordinates, and for a complex `_` where designed, the
    /// native letters of fixed chains and `|` between chains (a single chain: coordinates only).
    pub prompt: EsmProtein,
    /// Per position: designed (not fixed, not a break).
    pub designed: Vec<bool>,
}

impl InverseFoldingInput {
    /// `ids` (empty: the first protein chain) from `chains`, keeping the native sequence of the
    /// chains in `fix`. Errors name the chains there are.
    pub fn new(chains: &[ProteinChain], ids: &[String], fix: &[String]) -> Result<Self, String> {
        let known = || {
            chains
                .iter()
                .map(|c| format!("'{}'", c.chain_id))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let picked: Vec<&ProteinChain> = if ids.is_empty() {
            vec![chains.first().ok_or("no protein chain")?]
        } else {
            ids.iter()
                .map(|id| {
                    chains
                        .iter()
                        .find(|c| &c.chain_id == id)
                        .ok_or_else(|| format!("no protein chain '{id}' (chains: {})", known()))
                })
                .collect::<Result<_, _>>()?
        };
        for f in fix {
            if !picked.iter().any(|c| &c.chain_id == f) {
                return Err(format!(
                    "fixed chain {f} is not among the chains to design ({})",
                    picked
                        .iter()
                        .map(|c| c.chain_id.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ));
            }
        }
        if picked.iter().all(|c| fix.contains(&c.chain_id)) {
            return Err("every chain is fixed; nothing to design".into());
        }
        let mut native = String::new();
        let mut shown = String::new();
        let mut atom37: Vec<[[f32; 3]; ATOM_TYPE_NUM]> = Vec::new();
        let mut designed = Vec::new();
        for (k, c) in picked.iter().enumerate() {
            if k > 0 {
                native.push('|');
                shown.push('|');
                atom37.push([[f32::NAN; 3]; ATOM_TYPE_NUM]);
                designed.push(false);
            }
            let fixed = fix.contains(&c.chain_id);
            native.push_str(&c.sequence);
            shown.extend(c.sequence.chars().map(|l| if fixed { l } else { '_' }));
            atom37.extend_from_slice(&c.atom37);
            designed.extend(std::iter::repeat_n(!fixed, c.len()));
        }
        Ok(Self {
            ids: picked.iter().map(|c| c.chain_id.clone()).collect(),
            native,
            prompt: EsmProtein {
                sequence: (picked.len() > 1).then_some(shown),
                coordinates: Some(atom37),
                ..Default::default()
            },
            designed,
        })
    }

    /// Fraction of designed positions where `sequence` has the native residue.
    pub fn recovery(&self, sequence: &str) -> f64 {
        let pairs: Vec<(char, char)> = sequence
            .chars()
            .zip(self.native.chars())
            .zip(&self.designed)
            .filter(|(_, &d)| d)
            .map(|(pair, _)| pair)
            .collect();
        pairs.iter().filter(|(a, b)| a == b).count() as f64 / pairs.len().max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(id: &str, sequence: &str) -> ProteinChain {
        let n = sequence.len();
        ProteinChain::new(
            "t",
            id,
            sequence,
            vec![[[1.0; 3]; ATOM_TYPE_NUM]; n],
            (1..=n as i32).collect(),
            vec![' '; n],
            vec![0.0; n],
        )
        .unwrap()
    }

    #[test]
    fn a_complex_shows_fixed_chains_and_breaks_only() {
        let chains = [chain("A", "MKV"), chain("B", "GS")];
        let input =
            InverseFoldingInput::new(&chains, &["A".into(), "B".into()], &["B".into()]).unwrap();
        assert_eq!(input.native, "MKV|GS");
        assert_eq!(input.prompt.sequence.as_deref(), Some("___|GS"));
        let coords = input.prompt.coordinates.as_ref().unwrap();
        assert_eq!(coords.len(), 6);
        assert!(coords[3][1][0].is_nan(), "no coordinates at the break");
        assert_eq!(input.designed, vec![true, true, true, false, false, false]);
        assert_eq!(input.recovery("MAV|GS"), 2.0 / 3.0);
        // One chain: coordinates only.
        let single = InverseFoldingInput::new(&chains, &[], &[]).unwrap();
        assert_eq!(single.ids, vec!["A"]);
        assert!(single.prompt.sequence.is_none());
    }

    #[test]
    fn bad_chain_choices_say_what_there_is() {
        let chains = [chain("A", "MKV"), chain("B", "GS")];
        let e = InverseFoldingInput::new(&chains, &["C".into()], &[]).unwrap_err();
        assert!(
            e.contains("no protein chain 'C'") && e.contains("'A', 'B'"),
            "{e}"
        );
        let e = InverseFoldingInput::new(&chains, &["A".into()], &["A".into()]).unwrap_err();
        assert!(e.contains("nothing to design"), "{e}");
        let e = InverseFoldingInput::new(&chains, &["A".into()], &["B".into()]).unwrap_err();
        assert!(e.contains("not among"), "{e}");
    }

    #[test]
    fn fold_prompts_are_checked() {
        let c = GenerationConfig::folding();
        assert!(fold_prompt("x", "MKV|GS", &c).is_ok());
        assert!(fold_prompt("x", "|MKV", &c)
            .unwrap_err()
            .contains("position 1"));
        assert!(fold_prompt("x", "", &c).is_err());
        let empty_plan = checked_prompt("x", fold_prompt("x", "MKV", &c).unwrap().protein, vec![]);
        assert!(empty_plan.unwrap_err().contains("plan is empty"));
        let long = "A".repeat(MAX_LENGTH + 1);
        assert!(fold_prompt("x", &long, &c)
            .unwrap_err()
            .contains("limit of 2048"));
    }
}
