//! The demo (`make demo`): the trained digit twin the repo ships (models/digits, a CNN
//! trained with contrastive loss on scikit-learn's handwritten digits by
//! tools/train_digits.py) judges 200 held-out pairs it never saw: a table of pairs with
//! distance, verdict and truth, the accuracy at the model's own threshold, ROC AUC and
//! EER, the learned metric head's verdicts, a check against Keras's own numbers, and two
//! pictures (target/demo/pairs.png, target/demo/roc.png).
//!
//! cargo run --example demo [-- MODEL_DIR [OUT_DIR]]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use siamese_wgpu::io::{read_npy, read_samples};
use siamese_wgpu::plot::{pair_sheet_png, verification_png, PairTile, ScorePlot};
use siamese_wgpu::verify::{accuracy_at, evaluate, read_pairs_csv, ModelDecision};
use siamese_wgpu::{Distance, SiameseModel};

/// Rows of the table printed (mistakes are always printed).
const SHOWN: usize = 16;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("models/digits"));
    let out_dir = args.next().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target/demo"));
    let heldout = dir.join("heldout");

    let started = Instant::now();
    let model = SiameseModel::load(&dir).with_context(|| format!("loading {}", dir.display()))?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let decision = ModelDecision::load(&dir)?.context("the demo model needs its siamese.json (threshold)")?;
    let threshold = decision.threshold.context("siamese.json has no threshold")?;
    let metric = decision.metric()?.unwrap_or(Distance::Euclidean);
    let info = model.gpu().adapter_info();
    println!("siamese-wgpu demo: {} on {} ({:?})", dir.display(), info.name, info.backend);
    println!(
        "encoder: {} layers, {} parameters, input {:?} -> embedding {:?}; loaded in {load_ms:.0} ms",
        model.spec().layers.len(),
        model.spec().parameter_count(),
        model.input_shape(),
        model.embedding_shape()
    );

    let pairs = read_pairs_csv(heldout.join("pairs.csv"))?;
    let channels = model.input_shape().last().copied();
    let left = read_samples(&pairs.left, channels)?;
    let right = read_samples(&pairs.right, channels)?;
    let submits = model.gpu().submit_count();
    let started = Instant::now();
    let distances = model.distances(&left, &right, metric)?;
    let run_ms = started.elapsed().as_secs_f64() * 1e3;
    let submitted = model.gpu().submit_count() - submits;
    let probabilities = model.distances(&left, &right, Distance::Learned)?;

    let name = |p: &PathBuf| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let verdict = |same: bool| if same { "same" } else { "different" };
    println!();
    println!(
        "{:>4}  {:<14} {:<14} {:>9}  {:<9}  {:<9}  {:>6}",
        "pair",
        "left",
        "right",
        metric.name(),
        "verdict",
        "truth",
        "head p"
    );
    let mut mistakes = 0;
    for i in 0..distances.len() {
        let predicted = f64::from(distances[i]) <= threshold;
        let wrong = predicted != pairs.labels[i];
        mistakes += usize::from(wrong);
        if i < SHOWN || wrong {
            println!(
                "{i:>4}  {:<14} {:<14} {:>9.4}  {:<9}  {:<9}  {:>6.3}{}",
                name(&pairs.left[i]),
                name(&pairs.right[i]),
                distances[i],
                verdict(predicted),
                verdict(pairs.labels[i]),
                probabilities[i],
                if wrong { "  <- wrong" } else { "" }
            );
        }
    }
    println!("  ... ({} more pairs; all of them: siamese verify --each)", distances.len().saturating_sub(SHOWN));

    let accuracy = accuracy_at(&distances, &pairs.labels, threshold, false)?;
    let v = evaluate(&distances, &pairs.labels, false)?;
    let head_accuracy = accuracy_at(&probabilities, &pairs.labels, 0.5, true)?;
    println!();
    println!(
        "{} held-out pairs ({} same), both twins as one batch of {}: {submitted} GPU submit, {run_ms:.1} ms \
         (first call: buffers planned, shaders compiled by the driver)",
        v.pairs,
        v.positives,
        2 * v.pairs,
    );
    println!(
        "accuracy {:.1}% at the model's threshold {threshold:.4} ({mistakes} wrong); ROC AUC {:.4}; EER {:.1}%",
        100.0 * accuracy,
        v.auc,
        100.0 * v.eer
    );
    println!("learned metric head (p >= 0.5 means same): accuracy {:.1}%", 100.0 * head_accuracy);

    // Keras's own numbers for the same PNGs (tools/train_digits.py).
    let keras = read_npy(heldout.join("keras_euclidean.npy"))?;
    let keras_head = read_npy(heldout.join("keras_head_prob.npy"))?;
    let worst = |ours: &[f32], theirs: &[f32]| ours.iter().zip(theirs).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    let (worst_d, worst_p) = (worst(&distances, keras.data()), worst(&probabilities, keras_head.data()));
    println!("vs Keras: worst |distance error| {worst_d:.2e}, worst |head probability error| {worst_p:.2e}");
    ensure!(worst_d <= 1e-4 && worst_p <= 1e-4, "results differ from Keras by more than 1e-4");

    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let roc = out_dir.join("roc.png");
    let plot = ScorePlot { scores: &distances, labels: &pairs.labels, threshold, score_name: "euclidean distance" };
    verification_png(&roc, &v, &plot)?;
    let (h, w) = (model.input_shape()[0], model.input_shape()[1]);
    let shown: Vec<usize> = (0..distances.len())
        .filter(|&i| i < 20 || (f64::from(distances[i]) <= threshold) != pairs.labels[i])
        .take(24)
        .collect();
    let tiles: Vec<PairTile> = shown
        .iter()
        .map(|&i| PairTile {
            left: left.row(i),
            right: right.row(i),
            score: distances[i],
            predicted_same: f64::from(distances[i]) <= threshold,
            truth: Some(pairs.labels[i]),
        })
        .collect();
    let sheet = out_dir.join("pairs.png");
    pair_sheet_png(&sheet, &tiles, h, w, 6)?;
    println!("wrote {} and {}", sheet.display(), roc.display());
    println!(
        "same from the CLI: siamese verify --model {} --pairs {} --plot roc.png",
        dir.display(),
        heldout.join("pairs.csv").display()
    );
    Ok(())
}
