//! The demo (`make demo`): runs the CNN Siamese network the repo ships (models/cnn) on its
//! eight committed pairs and prints each distance next to the one Keras computed.
//!
//! cargo run --example demo [-- MODEL_DIR]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use siamese_wgpu::io::read_npy;
use siamese_wgpu::{Distance, SiameseModel};

fn main() -> Result<()> {
    let dir = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("models/cnn"));
    let pairs = dir.join("pairs");
    let started = Instant::now();
    let model = SiameseModel::load(&dir).with_context(|| format!("loading {}", dir.display()))?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let info = model.gpu().adapter_info();
    println!("siamese-wgpu demo: {} on {} ({:?})", dir.display(), info.name, info.backend);
    println!(
        "encoder: {} layers, {} parameters, input {:?} -> embedding {:?}; loaded in {load_ms:.0} ms",
        model.spec().layers.len(),
        model.spec().parameter_count(),
        model.input_shape(),
        model.embedding_shape()
    );

    let left = read_npy(pairs.join("left.npy"))?;
    let right = read_npy(pairs.join("right.npy"))?;
    let keras = read_npy(pairs.join("keras_euclidean.npy"))?;
    let submits = model.gpu().submit_count();
    let started = Instant::now();
    let distances = model.distances(&left, &right, Distance::Euclidean)?;
    let run_ms = started.elapsed().as_secs_f64() * 1e3;

    println!();
    println!("{:>4}  {:>12}  {:>12}  {:>10}", "pair", "distance", "Keras", "|error|");
    let mut worst: f32 = 0.0;
    for (i, (d, k)) in distances.iter().zip(keras.data()).enumerate() {
        let error = (d - k).abs();
        worst = worst.max(error);
        println!("{i:>4}  {d:>12.7}  {k:>12.7}  {error:>10.2e}");
    }
    println!();
    println!(
        "{} pairs (both twins as one batch of {}) in {run_ms:.1} ms with {} GPU submit; worst |error| vs Keras {worst:.2e}",
        distances.len(),
        2 * distances.len(),
        model.gpu().submit_count() - submits
    );
    let tolerance = keras.data().iter().map(|k| 1e-4 + 1e-3 * k.abs()).fold(f32::INFINITY, f32::min);
    anyhow::ensure!(worst <= tolerance, "distances differ from Keras by more than {tolerance:e}");
    println!(
        "same numbers from the CLI: siamese pairs --model {0} --left {1}/left.npy --right {1}/right.npy",
        dir.display(),
        pairs.display()
    );
    Ok(())
}
