//! `esm3`: the command-line program of esm3-rs. One module per command.

mod commands;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "esm3",
    version,
    about = "ESM3 and ESM C protein language models in Rust"
)]
struct Cli {
    /// More log output (-v info, -vv debug); also RUST_LOG.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one forward pass of a model on named input tensors (safetensors in, safetensors out).
    Forward(commands::forward::Args),
    /// Convert a PyTorch checkpoint (.pth) into a model directory (config.json + model.safetensors).
    Import(commands::import::Args),
    /// Tokenize protein sequences with the ESM vocabulary and print the ids as JSON.
    Tokenize(commands::tokenize::Args),
    /// Structure files <-> VQ-VAE structure tokens (encode, decode, roundtrip).
    #[command(subcommand)]
    Structure(commands::structure::Command),
    /// Design proteins: from a prompt file (motifs, SS8, SASA, partial sequence) or a length.
    Generate(commands::generate::Args),
    /// Predict structures of FASTA sequences (PDB/mmCIF with pLDDT as B-factor).
    Fold(commands::fold::Args),
    /// Design sequences for PDB/mmCIF backbones.
    InverseFold(commands::inverse_fold::Args),
    /// Per-residue and mean embeddings of FASTA sequences (safetensors or .npy).
    Embed(commands::embed::Args),
    /// Pseudo-log-likelihood of sequences, or masked-marginal scores of mutations.
    Score(commands::score::Args),
    /// Per-residue secondary structure (DSSP, 8 states) and SASA of a structure file.
    Annotate(commands::annotate::Args),
    /// Compare two structures: TM-score (TM-align search), RMSD, LDDT, GDT-TS.
    Compare(commands::compare::Args),
    /// Function annotations (InterPro ids, keywords) <-> function tokens.
    #[command(subcommand)]
    Function(commands::function::Command),
    /// Training data: build a clustered, split dataset from structure sources; print its counts.
    #[command(subcommand)]
    Data(commands::data::Command),
    /// Train or fine-tune: the ESM3 trunk (masked multi-track objective) or the VQ-VAE.
    #[command(subcommand)]
    Train(commands::train::Command),
    /// Serve models over HTTP with the Forge protocol, for the official `esm` client.
    Serve(commands::serve::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default = match cli.verbose {
        // A server's request log is its output.
        0 if matches!(cli.command, Command::Serve(_)) => "info",
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Forward(a) => commands::forward::run(a),
        Command::Import(a) => commands::import::run(a),
        Command::Tokenize(a) => commands::tokenize::run(a),
        Command::Embed(a) => commands::embed::run(a),
        Command::Generate(a) => commands::generate::run(a),
        Command::Structure(c) => commands::structure::run(c),
        Command::Fold(a) => commands::fold::run(a),
        Command::InverseFold(a) => commands::inverse_fold::run(a),
        Command::Score(a) => commands::score::run(a),
        Command::Function(c) => commands::function::run(c),
        Command::Annotate(a) => commands::annotate::run(a),
        Command::Compare(a) => commands::compare::run(a),
        Command::Data(c) => commands::data::run(c),
        Command::Train(c) => commands::train::run(c),
        Command::Serve(a) => commands::serve::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
