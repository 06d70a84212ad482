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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default = match cli.verbose {
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
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
