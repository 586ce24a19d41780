//! `siamese verify`: verification metrics on labelled pairs.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use siamese_wgpu::io::{read_npy, read_samples_for};
use siamese_wgpu::plot::{verification_png, ScorePlot};
use siamese_wgpu::verify::{accuracy_at, contrastive_loss, evaluate, read_pairs_csv, ModelDecision, DECISION_FILE};
use siamese_wgpu::{Distance, LoadOptions};

use crate::common::{default_metric, emit, load};

#[derive(clap::Args)]
pub struct VerifyArgs {
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

pub fn verify(args: &VerifyArgs, options: &LoadOptions) -> Result<()> {
    for (flag, value) in [("--threshold", args.threshold), ("--margin", args.margin)] {
        if let Some(v) = value.filter(|v| !v.is_finite()) {
            bail!("{flag} {v}: expected a finite number");
        }
    }
    if let Some(margin) = args.margin.filter(|&m| m < 0.0) {
        bail!("--margin {margin}: the contrastive-loss margin cannot be negative");
    }
    let model = load(&args.model, options)?;
    if let Some(score) = model.head_score() {
        bail!(
            "this twin's head computes {score}; verify thresholds distances between the two embeddings: add \
             --no-head to verify by --distance"
        );
    }
    if let Some(head) = &args.head {
        model.set_learned_head(&siamese_wgpu::model::learned_head::read_learned_head(head)?)?;
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
