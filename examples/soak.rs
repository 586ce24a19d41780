//! Soak run: many consecutive batched calls on one loaded model, with the process's
//! resident memory (VmRSS, Linux) at the start, after warm-up and at the end, and the
//! GPU buffers created per call. Flat memory means no per-call allocation growth.
//!
//! cargo run --release --example soak [-- CALLS [MODEL_DIR [PAIRS]]]
//! (defaults: 10000 calls, models/digits, 4 pairs per call)

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use siamese_wgpu::{Array, Distance, SiameseModel};

/// Resident set size in KiB from /proc/self/status (None off Linux).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn show(what: &str, rss: Option<u64>) {
    match rss {
        Some(kib) => println!("{what:<28} VmRSS {:>8.1} MiB", kib as f64 / 1024.0),
        None => println!("{what:<28} VmRSS unavailable on this OS"),
    }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().map(|a| a.parse()).transpose().context("CALLS must be a number")?.unwrap_or(10_000);
    let dir = args.next().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("models/digits"));
    let pairs: usize = args.next().map(|a| a.parse()).transpose().context("PAIRS must be a number")?.unwrap_or(4);
    show("start", rss_kib());
    let model = SiameseModel::load(&dir).with_context(|| format!("loading {}", dir.display()))?;
    let shape: Vec<usize> = std::iter::once(pairs).chain(model.spec().sample_shape(10)).collect();
    let len: usize = shape.iter().product();
    let left = Array::new(shape.clone(), (0..len).map(|i| (i % 97) as f32 / 97.0).collect())?;
    let right = Array::new(shape, (0..len).map(|i| (i % 89) as f32 / 89.0).collect())?;
    let first = model.distances(&left, &right, Distance::Euclidean)?;
    for _ in 0..100 {
        model.distances(&left, &right, Distance::Euclidean)?;
    }
    let warm = rss_kib();
    show("after load + 101 calls", warm);
    let (buffers, submits) = (model.gpu().buffer_count(), model.gpu().submit_count());
    let started = Instant::now();
    let mut differing = 0usize;
    for i in 0..calls {
        let d = model.distances(&left, &right, Distance::Euclidean)?;
        differing += usize::from(d != first);
        if (i + 1) % (calls / 4).max(1) == 0 {
            show(&format!("after {} more calls", i + 1), rss_kib());
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let end = rss_kib();
    println!(
        "{calls} calls of {pairs} pairs on {} in {seconds:.1} s ({:.0} calls/s): {} submits, {} buffers created, \
         {differing} results differing from the first call's bits",
        model.gpu().adapter_info().name,
        calls as f64 / seconds,
        model.gpu().submit_count() - submits,
        model.gpu().buffer_count() - buffers,
    );
    if let (Some(a), Some(b)) = (warm, end) {
        println!("VmRSS change over the timed calls: {:+.1} MiB", (b as f64 - a as f64) / 1024.0);
    }
    anyhow::ensure!(differing == 0, "results changed between calls");
    Ok(())
}
