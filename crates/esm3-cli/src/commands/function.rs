//! `esm3 function`: function annotations ↔ the 8-token-per-residue function track.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use esm3_models::function_decoder::{
    decode_function_tokens, random_hyperplanes, DecoderVocabulary,
};
use esm3_models::model_dir::LoadedModel;
use esm3_models::ModelDir;
use esm3_tokens::function::{FunctionAnnotation, FunctionData, FunctionTokenizer, Hyperplanes};
use esm3_tokens::residue::{ResidueMode, ResidueVocabulary};

use super::device::DeviceArgs;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Annotations (TSV: label, start, end; 1-based inclusive) → function tokens JSON.
    Encode(EncodeArgs),
    /// Function tokens JSON → InterPro entries and keywords with residue spans.
    Decode(DecodeArgs),
    /// Seeded LSH hyperplanes for our own models (writes hyperplanes.safetensors).
    Hyperplanes(HyperplanesArgs),
}

#[derive(clap::Args, Debug)]
pub struct DataArgs {
    /// Function data directory (tools/fetch-function-data.sh); default $ESM3_FUNCTION_DATA,
    /// else data/function.
    #[arg(long)]
    data: Option<PathBuf>,
}

impl DataArgs {
    fn load(&self) -> Result<FunctionData> {
        let dir = FunctionData::resolve_dir(self.data.as_deref());
        Ok(FunctionData::load(&dir)?)
    }
}

#[derive(clap::Args, Debug)]
pub struct EncodeArgs {
    /// Protein length L.
    #[arg(long)]
    length: usize,
    /// TSV, one annotation a line: InterPro id (or a label containing one) or keyword, start,
    /// end. Lines starting with `#` and empty lines are skipped.
    #[arg(long)]
    annotations: PathBuf,
    /// LSH hyperplanes: a model directory with hyperplanes.safetensors, such a file, or the
    /// official hyperplanes_8bit_58641.npz.
    #[arg(long)]
    hyperplanes: PathBuf,
    /// Residue-annotation vocabulary CSV (label,label_clean,count); labels found there go to
    /// the residue-annotation track.
    #[arg(long)]
    residue_vocabulary: Option<PathBuf>,
    /// Put residue annotations into the track. Without it the track is all <pad>, as the
    /// reference SDK produces (it drops them, spec §5.8).
    #[arg(long)]
    encode_residue_annotations: bool,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(clap::Args, Debug)]
pub struct DecodeArgs {
    /// JSON with `function_tokens` [L+2, 8] (as `encode` writes; BOS/EOS rows included).
    tokens: PathBuf,
    /// Function-decoder model directory (esm3_function_decoder). Its keywords.txt/entries.tsv
    /// are the vocabulary when present, else the function data's.
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(clap::Args, Debug)]
pub struct HyperplanesArgs {
    #[arg(long)]
    seed: u64,
    /// Keyword-vocabulary size (58641 for the official vocabulary).
    #[arg(long)]
    dim: usize,
    /// Output: a model directory or a .safetensors path.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Encode(a) => encode(a),
        Command::Decode(a) => decode(a),
        Command::Hyperplanes(a) => hyperplanes(a),
    }
}

/// Parses the annotation TSV, naming the file and line of every problem.
fn read_annotations(path: &Path) -> Result<Vec<(usize, FunctionAnnotation)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read annotations {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != 3 {
            bail!(
                "{}:{n}: expected 3 tab-separated fields (label, start, end), found {}",
                path.display(),
                fields.len()
            );
        }
        let number = |s: &str, what: &str| -> Result<usize> {
            s.trim().parse().with_context(|| {
                format!(
                    "{}:{n}: {what} {s:?} is not a positive integer (1-based residue index)",
                    path.display()
                )
            })
        };
        let (start, end) = (number(fields[1], "start")?, number(fields[2], "end")?);
        out.push((n, FunctionAnnotation::new(fields[0].trim(), start, end)));
    }
    Ok(out)
}

fn encode(args: EncodeArgs) -> Result<()> {
    let data = args.data.load()?;
    let hyperplanes = Hyperplanes::read(&args.hyperplanes)?;
    let tokenizer = FunctionTokenizer::new(data, hyperplanes)?;
    let residue_vocab = args
        .residue_vocabulary
        .as_deref()
        .map(ResidueVocabulary::from_csv)
        .transpose()?;
    let annotations = read_annotations(&args.annotations)?;
    let file = args.annotations.display();
    let (mut function, mut residue) = (Vec::new(), Vec::new());
    for (line, a) in annotations {
        let in_residue = residue_vocab
            .as_ref()
            .is_some_and(|v| v.id(&a.label).is_some());
        match tokenizer.resolve(&a.label) {
            Ok(_) => function.push(a.clone()),
            Err(e) if !in_residue => return Err(e).with_context(|| format!("{file}:{line}")),
            Err(_) => {}
        }
        if a.start < 1 || a.start > a.end || a.end > args.length {
            bail!(
                "{file}:{line}: annotation {:?} has range {}..{}, outside the protein of length {} \
                 (expected 1 <= start <= end <= {}, 1-based inclusive)",
                a.label,
                a.start,
                a.end,
                args.length,
                args.length
            );
        }
        if in_residue {
            residue.push(a);
        }
    }
    let rows = tokenizer.encode(&function, args.length)?;
    let mut json = serde_json::json!({ "length": args.length, "function_tokens": rows });
    if let Some(vocab) = &residue_vocab {
        let mode = if args.encode_residue_annotations {
            ResidueMode::Encode
        } else {
            ResidueMode::Reference
        };
        let mut r = vec![[0u32; esm3_tokens::residue::SLOTS]];
        r.extend(vocab.tokenize(&residue, args.length, mode)?);
        r.push([0; esm3_tokens::residue::SLOTS]);
        json["residue_annotation_tokens"] = serde_json::json!(r);
    }
    println!("{json}");
    Ok(())
}

fn read_tokens(path: &Path) -> Result<Vec<[i64; 8]>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read tokens {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let rows = value.get("function_tokens").unwrap_or(&value);
    serde_json::from_value::<Vec<[i64; 8]>>(rows.clone()).with_context(|| {
        format!(
            "{}: expected `function_tokens`: an array of rows of 8 integer ids (L+2 rows, BOS/EOS included)",
            path.display()
        )
    })
}

fn decode(args: DecodeArgs) -> Result<()> {
    let rows = read_tokens(&args.tokens)?;
    if rows.len() < 3 {
        bail!(
            "{}: {} rows; expected L+2 >= 3 (a <pad> BOS row, the residues, a <pad> EOS row)",
            args.tokens.display(),
            rows.len()
        );
    }
    let dir = ModelDir::open(&args.model)?;
    let LoadedModel::FunctionDecoder(model) = dir.load(&args.device.load_options()?)? else {
        bail!(
            "{}: a {} model, expected esm3_function_decoder",
            args.model.display(),
            dir.config.model_type()
        );
    };
    let vocab = match DecoderVocabulary::from_model_dir(&args.model)? {
        Some(v) => v,
        None => DecoderVocabulary::from_data(&args.data.load()?),
    };
    let annotations = decode_function_tokens(&model, &vocab, &rows)
        .with_context(|| format!("decoding {}", args.tokens.display()))?;
    let mut json = HashMap::new();
    json.insert("annotations", annotations);
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

fn hyperplanes(args: HyperplanesArgs) -> Result<()> {
    let h = random_hyperplanes(args.seed, args.dim)?;
    let path = if args.out.is_dir() {
        args.out.join(esm3_tokens::function::lsh::HYPERPLANES_FILE)
    } else {
        args.out.clone()
    };
    h.write_safetensors(&path)?;
    println!("wrote {}", path.display());
    Ok(())
}
