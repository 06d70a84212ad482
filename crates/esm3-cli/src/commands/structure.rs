//! `esm3 structure encode|decode|roundtrip`: structures ↔ VQ-VAE structure tokens.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use esm3_generate::pipeline::{DECODER_DIR, ENCODER_DIR};
use esm3_generate::Track;
use esm3_models::model_dir::LoadedModel;
use esm3_models::structure_decoder::{DecodedStructure, StructureTokenDecoder};
use esm3_models::structure_encoder::StructureTokenEncoder;
use esm3_models::{HostArray, ModelDir};
use esm3_protein::io::{write_mmcif, write_pdb};
use esm3_protein::io::{write_mmcif_chains, write_pdb_chains};
use esm3_protein::metrics::{lddt, superposed_rmsd};
use esm3_protein::residue_constants::{ATOM_TYPE_NUM, CA};
use esm3_protein::{read_chain, ProteinChain};

use super::design::{structure_for_writing, RelaxArgs};
use super::device::DeviceArgs;
use super::report::{ReportArgs, RunReport};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Structure file → structure tokens (JSON on standard output).
    Encode {
        /// PDB/mmCIF file (plain or .gz).
        file: PathBuf,
        #[arg(long)]
        chain: Option<String>,
        #[command(flatten)]
        model: VqvaeArgs,
    },
    /// Structure tokens (JSON from `encode`, or a bare list of ids) → PDB/mmCIF with pLDDT.
    Decode {
        tokens: PathBuf,
        /// Output .pdb or .cif; beside it <stem>.png (pLDDT and PAE) and <stem>_report.html.
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        relax: RelaxArgs,
        #[command(flatten)]
        report: ReportArgs,
        #[command(flatten)]
        model: VqvaeArgs,
    },
    /// Encode then decode a structure; report RMSD and LDDT-CA to the input.
    Roundtrip {
        file: PathBuf,
        /// Chain (default: the first protein chain); several (`A,B`) go through as one complex,
        /// as the reference's `ProteinComplex` does (chain breaks between them).
        #[arg(long, value_delimiter = ',')]
        chain: Vec<String>,
        /// Also write the decoded structure here.
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        relax: RelaxArgs,
        #[command(flatten)]
        model: VqvaeArgs,
    },
}

#[derive(clap::Args, Debug)]
pub struct VqvaeArgs {
    /// A model bundle with structure_encoder/ and structure_decoder/, or one of those
    /// directories itself. Default: $ESM3_MODEL_DIR or the bundled model.
    #[arg(long)]
    model_dir: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

impl VqvaeArgs {
    fn dir(&self, sub: &str) -> Result<PathBuf> {
        let base = super::model::ModelArgs {
            model_dir: self.model_dir.clone(),
            device: self.device.clone(),
        }
        .resolve()?;
        let nested = base.join(sub);
        Ok(if nested.join("config.json").is_file() {
            nested
        } else {
            base
        })
    }

    fn encoder(&self) -> Result<StructureTokenEncoder> {
        let dir = self.dir(ENCODER_DIR)?;
        match ModelDir::open(&dir)?.load(&self.device.load_options()?)? {
            LoadedModel::StructureEncoder(e) => Ok(e),
            _ => bail!(
                "{}: not a structure encoder (and no {ENCODER_DIR}/ inside)",
                dir.display()
            ),
        }
    }

    fn decoder(&self) -> Result<StructureTokenDecoder> {
        let dir = self.dir(DECODER_DIR)?;
        match ModelDir::open(&dir)?.load(&self.device.load_options()?)? {
            LoadedModel::StructureDecoder(d) => Ok(d),
            _ => bail!(
                "{}: not a structure decoder (and no {DECODER_DIR}/ inside)",
                dir.display()
            ),
        }
    }
}

/// The L structure codes of a chain, as the SDK's `encode` computes them (normalised atom37,
/// residue numbers 1..L).
fn encode_chain(encoder: &StructureTokenEncoder, chain: &ProteinChain) -> Result<Vec<i64>> {
    let n = chain.len();
    let normalized = chain.normalize_coordinates();
    let flat: Vec<f32> = normalized
        .atom37
        .iter()
        .flatten()
        .flatten()
        .copied()
        .collect();
    Ok(encoder.encode(
        &HostArray::new(vec![n, ATOM_TYPE_NUM, 3], flat),
        Some(&(1..=n as i64).collect::<Vec<_>>()),
    )?)
}

fn with_ends(codes: &[i64]) -> Vec<i64> {
    let mut t = vec![Track::Structure.bos_id()];
    t.extend_from_slice(codes);
    t.push(Track::Structure.eos_id());
    t
}

fn write_structure(path: &Path, chain: &ProteinChain, plddt: &[f32]) -> Result<()> {
    let plddt100: Vec<f32> = plddt.iter().map(|v| v * 100.0).collect();
    let mut buf = Vec::new();
    if path.extension().is_some_and(|e| e == "cif") {
        write_mmcif(chain, Some(&plddt100), &mut buf)?;
    } else {
        write_pdb(chain, Some(&plddt100), &mut buf)?;
    }
    std::fs::write(path, buf).with_context(|| format!("writing {}", path.display()))
}

/// Chains joined as the reference's `ProteinComplex` joins them for the model: a chain-break
/// residue `|` without coordinates between chains; with each chain's rows in the joined chain.
fn join_chains(parts: &[ProteinChain]) -> Result<(ProteinChain, Vec<std::ops::Range<usize>>)> {
    if parts.len() == 1 {
        let whole = 0..parts[0].len();
        return Ok((parts[0].clone(), std::iter::once(whole).collect()));
    }
    let (mut sequence, mut atom37, mut ranges) = (String::new(), Vec::new(), Vec::new());
    for (k, p) in parts.iter().enumerate() {
        if k > 0 {
            sequence.push('|');
            atom37.push([[f32::NAN; 3]; ATOM_TYPE_NUM]);
        }
        ranges.push(atom37.len()..atom37.len() + p.len());
        sequence.push_str(&p.sequence);
        atom37.extend_from_slice(&p.atom37);
    }
    let n = atom37.len();
    let joined = ProteinChain::new(
        &parts[0].id,
        parts
            .iter()
            .map(|p| p.chain_id.as_str())
            .collect::<Vec<_>>()
            .join(","),
        sequence,
        atom37,
        (1..=n as i32).collect(),
        vec![' '; n],
        vec![0.0; n],
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((joined, ranges))
}

fn decoded_chain(
    id: &str,
    sequence: &str,
    atom37: Vec<[[f32; 3]; ATOM_TYPE_NUM]>,
) -> Result<ProteinChain> {
    let n = atom37.len();
    ProteinChain::new(
        id,
        "A",
        sequence,
        atom37,
        (1..=n as i32).collect(),
        vec![' '; n],
        vec![0.0; n],
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// `<stem>.png` and `<stem>_report.html` beside a decoded structure file: a page of its own, so
/// decoding into a folder of designs does not replace that folder's `report.html`.
fn write_decode_report(
    args: ReportArgs,
    output: &Path,
    sequence: &str,
    d: &esm3_models::structure_decoder::DecodedStructure,
    mean_plddt: f32,
) -> Result<()> {
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file = output
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    let stem = output
        .file_stem()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut report = RunReport::new(args, &dir, &format!("{stem}_report.html"))?;
    let record = esm3_report::ReportRecord {
        name: stem.clone(),
        sequence: sequence.to_string(),
        mean_plddt: Some(mean_plddt * 100.0),
        ptm: Some(d.ptm),
        structure_file: Some(file),
        chains: 1,
        ..Default::default()
    };
    report.add(
        record,
        Some(&d.plddt),
        Some(d.predicted_aligned_error.clone()),
        Vec::new(),
    )?;
    report.finish(&format!("esm3 structure decode: {stem}"))
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Encode { file, chain, model } => encode(&file, chain.as_deref(), &model),
        Command::Decode {
            tokens,
            output,
            relax,
            report,
            model,
        } => decode(&tokens, &output, relax, report, &model),
        Command::Roundtrip {
            file,
            chain,
            output,
            relax,
            model,
        } => roundtrip(&file, &chain, output.as_deref(), relax, &model),
    }
}

/// `esm3 structure encode`: prints the chain's tokens as JSON.
fn encode(file: &Path, chain: Option<&str>, model: &VqvaeArgs) -> Result<()> {
    let c = read_chain(file, chain)?;
    let codes = encode_chain(&model.encoder()?, &c)?;
    let json = serde_json::json!({
        "file": file.display().to_string(),
        "chain": c.chain_id,
        "sequence": c.sequence,
        "structure_tokens": codes,
    });
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

/// `esm3 structure decode`: tokens (and optional sequence) from a JSON file → a structure file.
fn decode(
    tokens: &Path,
    output: &Path,
    relax: RelaxArgs,
    report: ReportArgs,
    model: &VqvaeArgs,
) -> Result<()> {
    let (codes, sequence) = read_token_file(tokens)?;
    let d = model.decoder()?.decode_structure(&with_ends(&codes))?;
    let (atoms, relaxed) = structure_for_writing("decoded", &d.atom37, &sequence, &[], relax);
    let chain = decoded_chain("decoded", &sequence, atoms)?;
    write_structure(output, &chain, &d.plddt)?;
    let mean = d.plddt.iter().sum::<f32>() / d.plddt.len() as f32;
    write_decode_report(report, output, &sequence, &d, mean)?;
    println!(
        "wrote {} ({} residues): mean pLDDT {mean:.3}, pTM {:.3}, {}",
        output.display(),
        codes.len(),
        d.ptm,
        match relaxed["rmsd"].as_f64() {
            Some(r) => format!("backbone relaxed (moved {r:.2} Å RMSD)"),
            None => "raw decoder backbone (--no-relax)".to_string(),
        }
    );
    Ok(())
}

/// The structure codes of a token file (the JSON of `esm3 structure encode`, or a bare list of
/// ids) and its sequence (poly-G when it has none), each checked.
fn read_token_file(tokens: &Path) -> Result<(Vec<i64>, String)> {
    let text =
        std::fs::read_to_string(tokens).with_context(|| format!("reading {}", tokens.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected JSON from `esm3 structure encode` or a list of ids",
            tokens.display()
        )
    })?;
    let list = value.get("structure_tokens").unwrap_or(&value);
    let codes: Vec<i64> = serde_json::from_value(list.clone()).with_context(|| {
        format!(
            "{}: `structure_tokens` must be a list of integers",
            tokens.display()
        )
    })?;
    if let Some((i, c)) = codes
        .iter()
        .enumerate()
        .find(|(_, c)| !(0..4096).contains(*c))
    {
        bail!(
            "{}: token {c} at position {} is not a structure code (0..4096)",
            tokens.display(),
            i + 1
        );
    }
    if codes.is_empty() {
        bail!("{}: no structure tokens", tokens.display());
    }
    let sequence = value
        .get("sequence")
        .and_then(|s| s.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| "G".repeat(codes.len()));
    if sequence.chars().count() != codes.len() {
        bail!(
            "{}: sequence has {} residues but there are {} tokens",
            tokens.display(),
            sequence.chars().count(),
            codes.len()
        );
    }
    Ok((codes, sequence))
}

/// `esm3 structure roundtrip`: encode, decode, and print how close the decoder came (CA RMSD,
/// LDDT-Cα, pTM); with `-o`, writes the decoded chains too.
fn roundtrip(
    file: &Path,
    chain: &[String],
    output: Option<&Path>,
    relax: RelaxArgs,
    model: &VqvaeArgs,
) -> Result<()> {
    let parts = read_chains(file, chain)?;
    let (c, ranges) = join_chains(&parts)?;
    let codes = encode_chain(&model.encoder()?, &c)?;
    let d = model.decoder()?.decode_structure(&with_ends(&codes))?;
    let truth: Vec<[f32; 3]> = c.atom37.iter().map(|r| r[CA]).collect();
    let pred: Vec<[f32; 3]> = d.atom37.iter().map(|r| r[CA]).collect();
    let mask: Vec<bool> = truth
        .iter()
        .zip(&pred)
        .map(|(a, b)| a.iter().chain(b).all(|v| v.is_finite()))
        .collect();
    let rmsd = superposed_rmsd(&pred, &truth, Some(&mask)).map(|(r, _)| r);
    let l = lddt(&pred, &truth, &mask, 15.0);
    // The metrics are the decoder's (raw output); the file written is relaxed unless
    // --no-relax, and the JSON says how far that moved it.
    let relax_summary = match output {
        Some(out) => write_roundtrip(out, &parts, &ranges, &d, relax)?,
        None => serde_json::Value::Null,
    };
    let json = serde_json::json!({
        "relax": relax_summary,
        "file": file.display().to_string(),
        "chain": parts.iter().map(|p| p.chain_id.clone()).collect::<Vec<_>>().join(","),
        "length": parts.iter().map(ProteinChain::len).sum::<usize>(),
        "ca_rmsd": rmsd,
        "lddt_ca": l.global,
        "ptm": d.ptm,
        "mean_plddt": d.plddt.iter().sum::<f32>() / d.plddt.len().max(1) as f32,
    });
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

/// The chains `ids` of `file` in the order given (none or one: [`read_chain`]'s choice); an
/// unknown id is an error naming the chains there are.
fn read_chains(file: &Path, ids: &[String]) -> Result<Vec<ProteinChain>> {
    if ids.len() <= 1 {
        return Ok(vec![read_chain(file, ids.first().map(String::as_str))?]);
    }
    let all = esm3_protein::read_structure(file)?.into_chains();
    ids.iter()
        .map(|id| {
            all.iter()
                .find(|c| &c.chain_id == id)
                .cloned()
                .with_context(|| {
                    let known: Vec<String> =
                        all.iter().map(|c| format!("'{}'", c.chain_id)).collect();
                    format!(
                        "{}: no protein chain '{id}' (chains: {})",
                        file.display(),
                        known.join(", ")
                    )
                })
        })
        .collect()
}

/// Writes the decoded `parts` (each `ranges[i]` of the decoder's output) to `out` with the
/// input's chain ids and residue numbers, each chain relaxed alone. Returns the relax summary:
/// one chain's, or one per chain id.
fn write_roundtrip(
    out: &Path,
    parts: &[ProteinChain],
    ranges: &[std::ops::Range<usize>],
    d: &DecodedStructure,
    relax: RelaxArgs,
) -> Result<serde_json::Value> {
    let mut written = Vec::new();
    let mut summaries = serde_json::Map::new();
    for (part, range) in parts.iter().zip(ranges) {
        let (atoms, json) = structure_for_writing(
            &format!("{} chain {}", part.id, part.chain_id),
            &d.atom37[range.clone()],
            &part.sequence,
            &[],
            relax,
        );
        summaries.insert(part.chain_id.clone(), json);
        let mut chain = part.clone();
        chain.atom37 = atoms;
        let plddt: Vec<f32> = d.plddt[range.clone()].iter().map(|v| v * 100.0).collect();
        written.push((chain, plddt));
    }
    let refs: Vec<(&ProteinChain, Option<&[f32]>)> = written
        .iter()
        .map(|(c, p)| (c, Some(p.as_slice())))
        .collect();
    let mut buf = Vec::new();
    if out.extension().is_some_and(|e| e == "cif") {
        write_mmcif_chains(&refs, &mut buf)?;
    } else {
        write_pdb_chains(&refs, &mut buf)?;
    }
    std::fs::write(out, buf).with_context(|| format!("writing {}", out.display()))?;
    Ok(if parts.len() == 1 {
        summaries.into_iter().next().expect("one").1
    } else {
        serde_json::Value::Object(summaries)
    })
}
