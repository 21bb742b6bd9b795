//! `suanli`: run, chat with, serve, inspect and tokenize open-weight LLMs.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "suanli",
    version,
    about = "Run open-weight LLMs fast on the machine you have"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a completion for one prompt.
    Run(cmd::run::Args),
    /// Interactive multi-turn chat.
    Chat(cmd::chat::Args),
    /// Architecture, metadata and tensors of a model.
    Inspect(cmd::inspect::Args),
    /// What running a model takes (memory, decode speed), from its
    /// hyper-parameters alone.
    Plan(cmd::plan::Args),
    /// Token ids of a text.
    Tokenize(cmd::tokenize::Args),
    /// Fetch a named model into the local cache.
    Pull(cmd::pull::Args),
    /// Prompt-processing and generation speed (llama-bench's definitions).
    Bench(cmd::bench::Args),
    /// OpenAI-compatible HTTP server with continuous batching.
    Serve(cmd::serve::Args),
    /// Perplexity on a text, and KL divergence from a base model
    /// (llama-perplexity's definitions).
    Perplexity(cmd::perplexity::Args),
    /// A benchmark (gsm8k, gpqa-diamond, aime2025): every question at once
    /// through the batching engine, scored, with a confidence interval.
    Eval(cmd::eval::Args),
    /// Whether one model's weights were derived from another's (套壳
    /// detection): aligned weights compared layer by layer, a p-value and
    /// a verdict.
    Lineage(cmd::lineage::Args),
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Run(a) => cmd::run::main(a),
        Command::Chat(a) => cmd::chat::main(a),
        Command::Inspect(a) => cmd::inspect::main(a),
        Command::Plan(a) => cmd::plan::main(a),
        Command::Tokenize(a) => cmd::tokenize::main(a),
        Command::Pull(a) => cmd::pull::main(a),
        Command::Bench(a) => cmd::bench::main(a),
        Command::Serve(a) => cmd::serve::main(a),
        Command::Perplexity(a) => cmd::perplexity::main(a),
        Command::Eval(a) => cmd::eval::main(a),
        Command::Lineage(a) => cmd::lineage::main(a),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
