//! `siamese pairs` and `siamese embed`: distances of pairs, embeddings of a batch.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use siamese_wgpu::io::{read_batch_for, read_lengths, write_npy};
use siamese_wgpu::{Array, Distance, LoadOptions, Score};

use crate::common::{default_metric, emit, load};

#[derive(clap::Args)]
pub struct PairsArgs {
    /// The model: a directory (model.json + model.safetensors), a Keras .keras / .h5 file, or an ONNX .onnx file.
    #[arg(long)]
    model: PathBuf,
    /// Left inputs: one .npy of shape [N, ...input shape] (float32; float64 is cast), or PNG files.
    #[arg(long, num_args = 1.., required = true)]
    left: Vec<PathBuf>,
    /// Right inputs, same form and N as --left.
    #[arg(long, num_args = 1.., required = true)]
    right: Vec<PathBuf>,
    /// Sequence models: int32/int64 .npy [N] of left lengths (default: full length).
    #[arg(long)]
    left_lengths: Option<PathBuf>,
    /// Sequence models: int32/int64 .npy [N] of right lengths (default: full length).
    #[arg(long)]
    right_lengths: Option<PathBuf>,
    /// euclidean, sqeuclidean, cosine, manhattan, or learned (the match probability of
    /// the model's learned head: head.safetensors, a Keras twin's Dense head, or --head).
    /// Default: learned for a Keras twin whose head maps to it, else euclidean. For a Keras
    /// twin whose head runs (see --lambda, --no-head), the metric its distance Lambda
    /// stands for.
    #[arg(long)]
    distance: Option<Distance>,
    /// A learned metric head (safetensors: NAME/kernel [dim, 1], NAME/bias [1]).
    #[arg(long)]
    head: Option<PathBuf>,
    /// Also write the distances (or the head's values) as a float32 .npy of shape [N].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Pass NaN/Inf input values through to the GPU instead of refusing them (only their own
    /// pair is affected).
    #[arg(long)]
    allow_nonfinite: bool,
    /// Also write both twins' embeddings to PREFIX_left.npy and PREFIX_right.npy.
    #[arg(long, value_name = "PREFIX")]
    embeddings_out: Option<String>,
}

#[derive(clap::Args)]
pub struct EmbedArgs {
    /// The model: a directory (model.json + model.safetensors), a Keras .keras / .h5 file, or an ONNX .onnx file.
    #[arg(long)]
    model: PathBuf,
    /// Inputs: one .npy of shape [N, ...input shape], or PNG files.
    #[arg(long, num_args = 1.., required = true)]
    input: Vec<PathBuf>,
    /// Sequence models: int32/int64 .npy [N] of lengths (default: full length).
    #[arg(long)]
    lengths: Option<PathBuf>,
    /// Output .npy of shape [N, ...embedding shape].
    #[arg(long)]
    out: PathBuf,
    /// Pass NaN/Inf input values through instead of refusing them.
    #[arg(long)]
    allow_nonfinite: bool,
}

/// `siamese pairs`.
pub fn pairs(args: PairsArgs, options: &LoadOptions) -> Result<()> {
    let PairsArgs {
        model,
        left,
        right,
        left_lengths,
        right_lengths,
        distance,
        head,
        out,
        allow_nonfinite,
        embeddings_out,
    } = args;
    // A distance Lambda inside a twin head stands for --distance.
    let options = LoadOptions {
        lambda_distance: distance.filter(|d| *d != Distance::Learned).unwrap_or_default(),
        ..options.clone()
    };
    let mut model = load(&model, &options)?;
    model.set_allow_nonfinite(allow_nonfinite);
    if let Some(head) = &head {
        model.set_learned_head(&siamese_wgpu::model::learned_head::read_learned_head(head)?)?;
    }
    let score = model.head_score();
    if let (Some(score), Some(asked)) = (score, distance) {
        if !matches!(score, Score::Distance(_)) {
            bail!(
                "--distance {asked}: this twin's head computes {score} itself, with no distance Lambda for \
                 --distance to stand for; add --no-head to compare the embeddings by --distance instead"
            );
        }
    }
    let distance = default_metric(&model, distance, head.is_some());
    let left = read_batch_for(&left, model.input_shape()).context("reading --left")?;
    let right = read_batch_for(&right, model.input_shape()).context("reading --right")?;
    let left_lengths = left_lengths.map(read_lengths).transpose().context("reading --left-lengths")?;
    let right_lengths = right_lengths.map(read_lengths).transpose().context("reading --right-lengths")?;
    let (left_lengths, right_lengths) = (left_lengths.as_deref(), right_lengths.as_deref());
    let wants_embeddings = embeddings_out.is_some();
    let (values, output) = if score.is_some() {
        let predicted = model.predict_ragged(&left, left_lengths, &right, right_lengths)?;
        // The head reads the embeddings on the GPU; to write them, the encoder runs again.
        let output = wants_embeddings
            .then(|| model.pairs_ragged(&left, left_lengths, &right, right_lengths, Distance::Euclidean, true))
            .transpose()?;
        (predicted.scores, output)
    } else {
        let output = model.pairs_ragged(&left, left_lengths, &right, right_lengths, distance, wants_embeddings)?;
        (output.distances.clone(), Some(output))
    };
    let mut text = String::new();
    for d in &values {
        text.push_str(&format!("{d}\n"));
    }
    emit(&text)?;
    if let Some(path) = out {
        write_npy(&path, &Array::new(vec![values.len()], values.clone())?)?;
    }
    let embeddings = output.and_then(|o| o.left_embeddings.zip(o.right_embeddings));
    if let (Some(prefix), Some((l, r))) = (embeddings_out, &embeddings) {
        write_npy(format!("{prefix}_left.npy"), l)?;
        write_npy(format!("{prefix}_right.npy"), r)?;
    }
    Ok(())
}

/// `siamese embed`.
pub fn embed(args: EmbedArgs, options: &LoadOptions) -> Result<()> {
    let EmbedArgs { model, input, lengths, out, allow_nonfinite } = args;
    let mut model = load(&model, options)?;
    model.set_allow_nonfinite(allow_nonfinite);
    let input = read_batch_for(&input, model.input_shape()).context("reading --input")?;
    let lengths = lengths.map(read_lengths).transpose().context("reading --lengths")?;
    write_npy(&out, &model.embed_ragged(&input, lengths.as_deref())?)?;
    Ok(())
}
