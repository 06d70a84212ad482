//! What `generate`, `fold` and `inverse-fold` share: loading the pipeline, generation flags,
//! and writing designs (FASTA, PDB/mmCIF with pLDDT as B-factor, JSON summary).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use esm3_generate::design;
use esm3_generate::prompt::Prompt;
use esm3_generate::{Esm3Pipeline, EsmProtein, GenerationConfig, Schedule, Strategy};
use esm3_protein::chain::atom37_backbone;
use esm3_protein::fasta::{write_fasta, FastaRecord};
use esm3_protein::io::{write_mmcif_chains, write_pdb_chains};
use esm3_protein::relax::{backbone_geometry, relax_atom37, GeometryReport, RelaxOptions};
use esm3_protein::residue_constants::ATOM_TYPE_NUM;
use esm3_protein::ProteinChain;

use super::model::ModelArgs;
use super::progress::bar;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StructureFormat {
    Pdb,
    Cif,
}

/// `--no-relax`, for the commands that write decoded structures.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct RelaxArgs {
    /// Write the structure decoder's raw coordinates. By default the backbone is relaxed
    /// first (bond lengths, angles, trans peptides, no clashes; atoms moved as little as
    /// possible, the RMSD recorded in the JSON). pLDDT and pTM are the model's either way.
    #[arg(long)]
    pub no_relax: bool,
}

/// Backbone checks as the JSON summary reports them.
pub fn geometry_json(g: &GeometryReport) -> serde_json::Value {
    serde_json::json!({
        "valid": g.valid(),
        "residues": g.residues,
        "peptide_bonds": g.peptide_bonds,
        "mean_ca_ca": g.mean_ca_ca,
        "ca_ca_in_range": g.ca_ca_in_range,
        "n_ca_in_range": g.n_ca_in_range,
        "ca_c_in_range": g.ca_c_in_range,
        "c_n_in_range": g.c_n_in_range,
        "ca_clashes": g.ca_clashes,
        "min_nonadjacent_ca_ca": g.min_nonadjacent_ca_ca.is_finite().then_some(g.min_nonadjacent_ca_ca),
    })
}

/// Decoded coordinates as they are written: relaxed unless `no_relax`, with the JSON that
/// says what was done and the geometry before and after. A warning names a structure that is
/// still not physical.
pub fn structure_for_writing(
    name: &str,
    atom37: &[[[f32; 3]; ATOM_TYPE_NUM]],
    sequence: &str,
    fixed: &[usize],
    relax: RelaxArgs,
) -> (Vec<[[f32; 3]; ATOM_TYPE_NUM]>, serde_json::Value) {
    let (atoms, json, written) = if relax.no_relax {
        let g = backbone_geometry(&atom37_backbone(atom37));
        let json = serde_json::json!({ "applied": false, "written_geometry": geometry_json(&g) });
        (atom37.to_vec(), json, g)
    } else {
        let (atoms, r) = relax_atom37(atom37, sequence, fixed, &RelaxOptions::default());
        let json = serde_json::json!({
            "applied": true,
            "rmsd": r.rmsd,
            "max_displacement": r.max_displacement,
            "stages": r.stages,
            "final_restraint": r.final_restraint,
            "iterations": r.iterations,
            "decoder_geometry": geometry_json(&r.before),
            "written_geometry": geometry_json(&r.after),
        });
        (atoms, json, r.after)
    };
    if !written.valid() {
        eprintln!(
            "warning: {name}: the written backbone fails the geometry checks (Cα–Cα in range {:.1}%, {} Cα clashes){}",
            100.0 * written.ca_ca_in_range,
            written.ca_clashes,
            if relax.no_relax { "; drop --no-relax to relax it" } else { "" }
        );
    }
    (atoms, json)
}

/// Sampling flags shared by the generation commands (the SDK's `GenerationConfig`).
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Decoding steps (lowered to the number of masked positions when larger).
    #[arg(long)]
    pub num_steps: Option<usize>,
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Which masked positions to commit each step.
    #[arg(long, value_parser = ["random", "entropy"])]
    pub strategy: Option<String>,
    #[arg(long, value_parser = ["cosine", "linear"])]
    pub schedule: Option<String>,
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Turn temperature annealing off.
    #[arg(long)]
    pub no_annealing: bool,
}

impl SamplingArgs {
    /// `base` with every flag the user gave applied.
    pub fn apply(&self, mut base: GenerationConfig) -> GenerationConfig {
        if let Some(n) = self.num_steps {
            base.num_steps = n;
        }
        if let Some(t) = self.temperature {
            base.temperature = t;
        }
        if let Some(s) = &self.strategy {
            base.strategy = if s == "entropy" {
                Strategy::Entropy
            } else {
                Strategy::Random
            };
        }
        if let Some(s) = &self.schedule {
            base.schedule = if s == "linear" {
                Schedule::Linear
            } else {
                Schedule::Cosine
            };
        }
        if let Some(p) = self.top_p {
            base.top_p = p;
        }
        if self.no_annealing {
            base.temperature_annealing = false;
        }
        base
    }
}

pub use esm3_generate::design::Design;

pub struct Designer {
    pub pipeline: Esm3Pipeline,
    pub model_path: PathBuf,
}

impl Designer {
    pub fn load(model: &ModelArgs) -> Result<Self> {
        let path = model.resolve()?;
        let pipeline = Esm3Pipeline::load(&path, &model.device.load_options()?)
            .with_context(|| format!("loading {}", path.display()))?;
        if pipeline.decoder.is_none() {
            tracing::warn!(
                "{} has no structure_decoder/: outputs will have no generated coordinates",
                path.display()
            );
        }
        Ok(Self {
            pipeline,
            model_path: path,
        })
    }

    /// [`design::run_prompts`]: prompts sharing one plan as one batch, errors naming the prompt.
    pub fn run_batch(&self, prompts: &[Prompt], seeds: &[u64]) -> Result<Vec<Result<Design>>> {
        Ok(design::run_prompts(&self.pipeline, prompts, seeds)?
            .into_iter()
            .zip(prompts)
            .map(|(r, prompt)| r.map_err(|e| anyhow::anyhow!("{}: {e}", prompt.name)))
            .collect())
    }

    /// [`design::run_prompt`] with a progress bar over the decoding steps when `show_progress`.
    pub fn run(&self, prompt: &Prompt, seed: u64, show_progress: bool) -> Result<Design> {
        let pb = bar(0, &prompt.name);
        if !show_progress {
            pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let design = design::run_prompt(&self.pipeline, prompt, seed, step_bar(&pb, prompt))
            .map_err(|e| anyhow::anyhow!("{}: {e}", prompt.name))?;
        pb.finish_and_clear();
        Ok(design)
    }
}

/// Shows `on_step(k, step, total)` of a prompt's plan on a progress bar.
pub fn step_bar<'a>(
    pb: &'a indicatif::ProgressBar,
    prompt: &'a Prompt,
) -> impl FnMut(usize, usize, usize) + 'a {
    move |k, step, total| {
        pb.set_length(total as u64);
        pb.set_position(step as u64);
        pb.set_message(format!("{} {}", prompt.name, prompt.plan[k].track.name()));
    }
}

/// A record id as a file name: characters other than letters, digits, `.`, `_` and `-`
/// (slashes, pipes, spaces) become `_`.
pub fn file_stem(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes `<dir>/<name>.fasta`, `<name>.pdb|cif` (when coordinates exist) and `<name>.json`.
/// Decoded coordinates are relaxed unless `relax.no_relax`; residues in `fixed` (0-based,
/// placed motifs) keep their atoms exactly.
pub fn write_design(
    dir: &Path,
    name: &str,
    protein: &EsmProtein,
    format: StructureFormat,
    relax: RelaxArgs,
    fixed: &[usize],
    summary_extra: serde_json::Value,
) -> Result<serde_json::Value> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let sequence = protein.sequence.clone().unwrap_or_default();
    let fasta = dir.join(format!("{name}.fasta"));
    let mut buf = Vec::new();
    write_fasta(
        &mut buf,
        &[FastaRecord {
            id: name.to_string(),
            description: String::new(),
            sequence: sequence.clone(),
        }],
    )?;
    std::fs::write(&fasta, buf).with_context(|| format!("writing {}", fasta.display()))?;
    let written = if protein.coordinates.is_some() && !sequence.contains('_') {
        write_design_structure(dir, name, protein, format, relax, fixed)?
    } else {
        WrittenStructure::default()
    };
    let mean_plddt = protein
        .plddt
        .as_ref()
        .map(|p| p.iter().sum::<f32>() / p.len().max(1) as f32);
    let mut summary = serde_json::json!({
        "name": name,
        "length": sequence.chars().count(),
        "sequence": sequence,
        "secondary_structure": protein.secondary_structure,
        "sasa": protein.sasa,
        "function_annotations": protein.function_annotations,
        "residue_annotations": protein.residue_annotations,
        "mean_plddt": mean_plddt,
        "ptm": protein.ptm,
        "structure_file": written.file,
        "relax": written.relax,
    });
    if !written.chains.is_null() {
        summary["chains"] = written.chains;
    }
    if !written.unknown.is_empty() {
        summary["unk_in_structure_file"] = serde_json::json!(written.unknown);
    }
    if let (Some(obj), serde_json::Value::Object(extra)) = (summary.as_object_mut(), summary_extra)
    {
        obj.extend(extra);
    }
    let json = dir.join(format!("{name}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    Ok(summary)
}

/// What [`write_design_structure`] wrote, for the design's JSON summary.
#[derive(Default)]
struct WrittenStructure {
    /// The file name (in the design's folder).
    file: Option<String>,
    /// Positions (1-based over the whole sequence) written as UNK.
    unknown: Vec<usize>,
    /// The relax summary: one chain's, one per chain id, or null when nothing was relaxed.
    relax: serde_json::Value,
    /// Per chain of a complex: its span and mean pLDDT (null for one chain).
    chains: serde_json::Value,
}

/// Per chain of a complex: its span (1-based over the whole sequence), length and mean pLDDT
/// (0–1); null for a single chain.
fn chains_summary(
    chains: &[(ProteinChain, std::ops::Range<usize>)],
    plddt100: &[Option<Vec<f32>>],
) -> serde_json::Value {
    if chains.len() <= 1 {
        return serde_json::Value::Null;
    }
    serde_json::Value::Array(
        chains
            .iter()
            .zip(plddt100)
            .map(|((c, r), p)| {
                serde_json::json!({
                    "chain": c.chain_id,
                    "start": r.start + 1,
                    "end": r.end,
                    "length": c.len(),
                    "mean_plddt": p.as_ref().map(|p| p.iter().sum::<f32>() / 100.0 / p.len().max(1) as f32),
                })
            })
            .collect(),
    )
}

/// Writes `<dir>/<name>.pdb|cif`, one model chain per chain of `AAA|BBB`, pLDDT (×100) in the
/// B-factor.
fn write_design_structure(
    dir: &Path,
    name: &str,
    protein: &EsmProtein,
    format: StructureFormat,
    relax: RelaxArgs,
    fixed: &[usize],
) -> Result<WrittenStructure> {
    let whole = protein.to_chain(name).map_err(anyhow::Error::msg)?;
    let mut chains = whole.split_at_chain_breaks();
    let mut relax_per_chain = Vec::new();
    let mut unknown = Vec::new();
    for (chain, range) in &mut chains {
        // Only the decoder's coordinates are relaxed (they come with pLDDT); coordinates a
        // user gave are written as given. Each chain alone: no bonds across a break.
        if protein.plddt.is_some() {
            let local = esm3_protein::relax::fixed_within(fixed, range);
            let label = if whole.sequence.contains('|') {
                format!("{name} chain {}", chain.chain_id)
            } else {
                name.to_string()
            };
            let (atoms, json) =
                structure_for_writing(&label, &chain.atom37, &chain.sequence, &local, relax);
            chain.atom37 = atoms;
            relax_per_chain.push((chain.chain_id.clone(), json));
        }
        // The sequence vocabulary has letters no residue is named for (the gap `-`, `.`):
        // the model may sample them. The structure file writes them as UNK, as the
        // reference does; the FASTA and JSON keep the sampled letters and the JSON lists
        // the positions (1-based over the whole sequence).
        let unnamed = chain.unnamed_residues_to_unknown();
        unknown.extend(unnamed.iter().map(|&i| range.start + i + 1));
    }
    if !unknown.is_empty() {
        eprintln!(
            "warning: {name}: sequence letters without a residue name at positions {unknown:?} (1-based) are UNK in the structure file"
        );
    }
    let relax = match relax_per_chain.len() {
        0 => serde_json::Value::Null,
        1 if chains.len() == 1 => relax_per_chain.pop().expect("one").1,
        _ => serde_json::Value::Object(relax_per_chain.into_iter().collect()),
    };
    let plddt100: Vec<Option<Vec<f32>>> = chains
        .iter()
        .map(|(_, r)| protein.plddt_percent(r.clone()))
        .collect();
    let chains_summary = chains_summary(&chains, &plddt100);
    let parts: Vec<(&ProteinChain, Option<&[f32]>)> = chains
        .iter()
        .zip(&plddt100)
        .map(|((c, _), p)| (c, p.as_deref()))
        .collect();
    let mut buf = Vec::new();
    let path = match format {
        StructureFormat::Pdb => {
            write_pdb_chains(&parts, &mut buf)?;
            dir.join(format!("{name}.pdb"))
        }
        StructureFormat::Cif => {
            write_mmcif_chains(&parts, &mut buf)?;
            dir.join(format!("{name}.cif"))
        }
    };
    std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
    Ok(WrittenStructure {
        file: Some(path.file_name().unwrap().to_string_lossy().to_string()),
        unknown,
        relax,
        chains: chains_summary,
    })
}
