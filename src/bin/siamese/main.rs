//! `siamese`: the command-line front end. Thin: every command calls the library, one
//! module per command; `common` holds what they share (model loading, stdout).

mod bench;
mod common;
mod info;
mod inspect;
mod pairs;
mod pairs_from;
mod search;
mod similarity;
mod verify;

use anyhow::Result;
use clap::{Parser, Subcommand};
use siamese_wgpu::{LambdaKind, LoadOptions, Precision};

#[derive(Parser)]
#[command(name = "siamese", version, about = "Run Siamese networks on any GPU wgpu reaches (Vulkan, Metal, DX12, GL)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Weight storage: f32 (default, exact), or f16 (weights rounded to half precision on
    /// upload: half the GPU memory; arithmetic stays f32). See BENCHMARKS.md for accuracy.
    #[arg(long, global = true, default_value = "f32", value_parser = parse_precision)]
    precision: Precision,
    /// Load the Keras custom class NAME (a class registered with
    /// @keras.saving.register_keras_serializable) as the built-in class BUILTIN, with the
    /// built-in's config keys and weight names, e.g. `--custom-layer MyDense=Dense`.
    /// Repeatable.
    #[arg(long = "custom-layer", global = true, value_name = "NAME=BUILTIN", value_parser = parse_custom_layer)]
    custom_layers: Vec<(String, String)>,
    /// What a Keras twin head's Lambda layer (Python code) computes from the two
    /// embeddings: distance (one per pair, by --distance), abs-diff |a-b|, squared-diff
    /// (a-b)^2, product a*b, or concat [a, b]. Default: a distance when the layers after it
    /// read one value per pair; otherwise loading asks for it.
    #[arg(long, global = true, value_name = "KIND")]
    lambda: Option<LambdaKind>,
    /// Set a Keras twin's head aside: compare the two embeddings by --distance instead.
    #[arg(long, global = true)]
    no_head: bool,
}

fn parse_custom_layer(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, builtin)) if !name.trim().is_empty() && !builtin.trim().is_empty() => {
            Ok((name.trim().to_string(), builtin.trim().to_string()))
        }
        _ => Err(format!("expected NAME=BUILTIN (e.g. MyDense=Dense), got {text:?}")),
    }
}

fn parse_precision(text: &str) -> std::result::Result<Precision, String> {
    Precision::parse(text).map_err(|e| e.to_string())
}

#[derive(Subcommand)]
enum Command {
    /// List GPU adapters, the one chosen (SIAMESE_BACKEND / SIAMESE_ADAPTER), f16 support and key limits.
    Info,
    /// Distances between pairs: row i of --left against row i of --right, one per line; for
    /// a Keras twin with a head of layers, what model.predict([left, right]) gives.
    Pairs(pairs::PairsArgs),
    /// Embeddings of a batch: f(x) for every row of --input.
    Embed(pairs::EmbedArgs),
    /// Time the batched Siamese forward pass: load and first call apart from the steady state.
    Bench(bench::BenchArgs),
    /// What a model file holds: its layers, shapes and parameters, what runs on the GPU,
    /// the shared encoder and head of a whole Siamese model, and anything unsupported.
    Inspect(inspect::InspectArgs),
    /// Verification on labelled pairs: distances on the GPU, then the best-accuracy and
    /// equal-error-rate thresholds, accuracy, ROC AUC and contrastive loss.
    Verify(verify::VerifyArgs),
    /// Nearest matches in a gallery: embed it once (a folder of PNGs, an .npy, or a saved
    /// gallery .safetensors), then the top-k nearest for each query, on the GPU.
    Search(search::SearchArgs),
    /// Build labelled pairs from a labelled set (CSV `path,label`): every same pair (at
    /// most --max-pairs, drawn at random beyond) plus as many random different pairs;
    /// prints (or writes) CSV `left,right,label`.
    PairsFrom(pairs_from::PairsFromArgs),
    /// Cosine similarity of sentence pairs with a Sentence-BERT model (all-MiniLM-L6-v2):
    /// `siamese similarity "a" "b"` or `siamese similarity --pairs pairs.tsv`.
    Similarity(similarity::SimilarityArgs),
}

fn main() {
    if let Err(error) = run(Cli::parse()) {
        eprintln!("error: {}", common::in_cli_words(&format!("{error:#}")));
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let precision = cli.precision;
    let options = LoadOptions {
        precision,
        custom_layers: cli.custom_layers,
        lambda: cli.lambda,
        no_head: cli.no_head,
        ..LoadOptions::default()
    };
    match cli.command {
        Command::Info => info::info(),
        Command::Pairs(args) => pairs::pairs(args, &options),
        Command::Embed(args) => pairs::embed(args, &options),
        Command::Bench(args) => bench::bench(&args, &options),
        Command::Verify(args) => verify::verify(&args, &options),
        Command::Search(args) => search::search(&args, &options),
        Command::Inspect(args) => inspect::run(args, &options),
        Command::PairsFrom(args) => pairs_from::pairs_from(args),
        Command::Similarity(args) => similarity::run(args, precision),
    }
}
