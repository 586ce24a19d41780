//! `siamese bench`: the batched Siamese forward pass timed, first call apart from the
//! steady state, against the naive two-pass alternative.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use siamese_wgpu::{reference, Array, Distance, Gpu, LoadOptions, SiameseModel};

use crate::common::{emit, emit_json, loading, median};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The model: a directory (model.json + model.safetensors), a Keras .keras / .h5 file, or an ONNX .onnx file.
    #[arg(long)]
    model: PathBuf,
    /// Batch sizes in pairs, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64,512")]
    batch: Vec<usize>,
    /// Timed steady-state calls per batch size (the median is reported).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Untimed calls for this long after the first call, before timing (per batch size).
    #[arg(long, default_value_t = 500)]
    warmup_ms: u64,
    /// Distance used.
    #[arg(long, default_value = "euclidean")]
    distance: Distance,
    /// Sequence models: time steps of the random inputs.
    #[arg(long, default_value_t = 50)]
    seq_len: usize,
    /// Baseline: run LSTM layers with one dispatch per time step (same results).
    #[arg(long)]
    recurrent_per_step: bool,
    /// Skip the naive alternative (two encoder passes, embeddings read back, CPU distance).
    #[arg(long)]
    no_naive: bool,
    /// Print one JSON object per batch size instead of a table.
    #[arg(long)]
    json: bool,
    /// First measure the adapter's best f32 multiply-add rate and bandwidth with our own
    /// microkernels, and report every figure as a fraction of it.
    #[arg(long)]
    peak: bool,
}

/// `value` rounded to `digits` decimals, for JSON figures that need no more.
fn rounded(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// The most bytes of random inputs `bench` makes for one twin (the run needs about as
/// much again on the GPU and for the padded copy).
const BENCH_INPUT_LIMIT: usize = 256 << 20;

/// Values in a `shape` (batch first) of bench inputs, when within [`BENCH_INPUT_LIMIT`].
fn bench_input_len(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n.checked_mul(4).is_some_and(|bytes| bytes <= BENCH_INPUT_LIMIT))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "inputs of shape {shape:?} (batch first) would take more than {} MiB per twin: \
                 use a smaller --batch or --seq-len",
                BENCH_INPUT_LIMIT >> 20
            )
        })
}

/// Deterministic pseudo-random inputs (a tiny LCG: bench data needs no quality): values in
/// [0, 1), or token ids in 0..vocab for a model that reads them. The size is checked
/// before anything is allocated.
fn bench_input(shape: &[usize], vocab: Option<usize>, seed: u64) -> Result<Array> {
    let len = bench_input_len(shape)?;
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let data = (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let uniform = (state >> 40) as f64 / (1u64 << 24) as f64;
            match vocab {
                Some(vocab) => (uniform * vocab as f64).floor().min(vocab as f64 - 1.0) as f32,
                None => uniform as f32,
            }
        })
        .collect();
    Ok(Array::new(shape.to_vec(), data)?)
}

/// The column heads of the text table.
const HEADER: &str =
    " pairs  first call ms      steady ms      pairs/s    GFLOP/s  submits   buffers    naive pairs/s\n";

/// The adapter's measured peak, as a line of text or a JSON object.
fn print_peak(p: &siamese_wgpu::ops::peak::Peak, info: &wgpu::AdapterInfo, json: bool) -> Result<()> {
    if json {
        emit_json(&serde_json::json!({
            "adapter": info.name,
            "backend": format!("{:?}", info.backend),
            "peak_gflops": rounded(p.gflops, 3),
            "peak_gbps": rounded(p.gbps, 3),
        }))
    } else {
        emit(&format!(
            "peak (our microkernels): {:.2} GFLOP/s f32 multiply-add, {:.2} GB/s streaming copy\n",
            p.gflops, p.gbps
        ))
    }
}

/// The naive alternative: each twin its own pass, embeddings read back, distance on the CPU.
fn naive_pairs_per_s(
    model: &SiameseModel,
    left: &Array,
    right: &Array,
    distance: Distance,
    iters: usize,
) -> Result<f64> {
    model.embed(left)?;
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let a = model.embed(left)?;
        let b = model.embed(right)?;
        let d: Vec<f32> = (0..left.batch()).map(|i| reference::distance(a.row(i), b.row(i), distance)).collect();
        std::hint::black_box(d);
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(left.batch() as f64 / median(&mut times))
}

pub fn bench(args: &BenchArgs, options: &LoadOptions) -> Result<()> {
    let (model_dir, batches, distance, seq_len, json) =
        (&args.model, &args.batch, args.distance, args.seq_len, args.json);
    if batches.is_empty() || batches.contains(&0) {
        bail!("--batch needs positive batch sizes, e.g. --batch 1,64,512");
    }
    if seq_len == 0 {
        bail!("--seq-len must be at least 1");
    }
    let iters = args.iters.max(1);
    let gpu = Arc::new(Gpu::new()?);
    let started = Instant::now();
    let mut model =
        SiameseModel::load_with_options(gpu.clone(), model_dir, options).map_err(|e| loading(model_dir, e))?;
    model.set_recurrent_per_step(args.recurrent_per_step)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let info = gpu.adapter_info();
    let vocab = model.spec().token_vocab();
    // Every batch's input shape, checked before the first is timed.
    let sample = model.spec().sample_shape(seq_len);
    let shapes: Vec<Vec<usize>> =
        batches.iter().map(|&pairs| std::iter::once(pairs).chain(sample.clone()).collect()).collect();
    for shape in &shapes {
        bench_input_len(shape)?;
    }
    let flops_per_pair = 2 * model.graph().flops_per_sample(seq_len);
    let peak = if args.peak { Some(siamese_wgpu::ops::peak::measure_peak(&gpu)?) } else { None };
    let backend = format!("{:?}", info.backend);
    if let Some(peak) = peak {
        print_peak(&peak, info, json)?;
    }
    if !json {
        let mut out = String::new();
        writeln!(out, "model {} on {} ({backend})", model_dir.display(), info.name)?;
        writeln!(
            out,
            "load (weights upload + {} pipelines compiled): {load_ms:.1} ms; {:.2} MFLOP per pair; {} dispatches per call",
            gpu.pipeline_count(),
            flops_per_pair as f64 / 1e6,
            model.graph().dispatches_per_call(seq_len)
        )?;
        emit(&(out + HEADER))?;
    }
    for (&pairs, shape) in batches.iter().zip(&shapes) {
        let left = bench_input(shape, vocab, 1)?;
        let right = bench_input(shape, vocab, 2)?;
        let t = Instant::now();
        model.distances(&left, &right, distance)?;
        let first_ms = t.elapsed().as_secs_f64() * 1e3;
        // Untimed warm-up: a software adapter's worker threads and the CPU clock settle
        // over the first few hundred milliseconds (lavapipe: up to 2× slower medians).
        let t = Instant::now();
        while t.elapsed().as_secs_f64() * 1e3 < args.warmup_ms as f64 {
            model.distances(&left, &right, distance)?;
        }
        let (submits, buffers) = (gpu.submit_count(), gpu.buffer_count());
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t = Instant::now();
            model.distances(&left, &right, distance)?;
            times.push(t.elapsed().as_secs_f64());
        }
        let submits_per_call = (gpu.submit_count() - submits) as f64 / iters as f64;
        let buffers_per_call = (gpu.buffer_count() - buffers) as f64 / iters as f64;
        let steady = median(&mut times);
        let pairs_per_s = pairs as f64 / steady;
        let gflops = flops_per_pair as f64 * pairs as f64 / steady / 1e9;
        let naive_pairs_per_s =
            if args.no_naive { None } else { Some(naive_pairs_per_s(&model, &left, &right, distance, iters)?) };
        if json {
            emit_json(&serde_json::json!({
                "model": model_dir.display().to_string(),
                "adapter": info.name,
                "backend": backend,
                "batch_pairs": pairs,
                "load_ms": rounded(load_ms, 3),
                "first_call_ms": rounded(first_ms, 3),
                "steady_ms_median": rounded(steady * 1e3, 3),
                "pairs_per_s": rounded(pairs_per_s, 1),
                "gflops": rounded(gflops, 3),
                "peak_fraction": peak.map(|p| rounded(gflops / p.gflops, 4)),
                "submits_per_call": submits_per_call,
                "dispatches_per_call": model.graph().dispatches_per_call(seq_len),
                "buffers_created_per_call": buffers_per_call,
                "naive_pairs_per_s": naive_pairs_per_s.map(|v| rounded(v, 1)),
            }))?;
        } else {
            emit(&format!(
                "{pairs:>6} {first_ms:>14.2} {:>14.3} {pairs_per_s:>12.1} {gflops:>10.3} {submits_per_call:>8} {buffers_per_call:>9} {:>16}{}\n",
                steady * 1e3,
                naive_pairs_per_s.map_or("-".to_string(), |v| format!("{v:.1}")),
                peak.map_or(String::new(), |p| format!("  ({:.1}% of peak)", 100.0 * gflops / p.gflops)),
            ))?;
        }
    }
    Ok(())
}
