//! `esm3 tokenize`: sequence → ids, for checking inputs by hand.

use anyhow::{Context, Result};
use esm3_tokens::SequenceTokenizer;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Protein sequences (`_` = mask, `|` = chain break).
    #[arg(required = true)]
    sequences: Vec<String>,
    /// Map characters outside the vocabulary to <unk> instead of failing (as the reference does).
    #[arg(long)]
    lenient: bool,
}

pub fn run(args: Args) -> Result<()> {
    let tok = if args.lenient {
        SequenceTokenizer::lenient()
    } else {
        SequenceTokenizer::strict()
    };
    for (i, s) in args.sequences.iter().enumerate() {
        let ids = tok
            .encode(s)
            .with_context(|| format!("sequence {} of {}", i + 1, args.sequences.len()))?;
        println!("{}", serde_json::to_string(&ids)?);
    }
    Ok(())
}
