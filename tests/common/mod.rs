//! Shared test helpers: one GPU per test binary, random data, tolerant comparison.
#![allow(dead_code, reason = "each test binary uses a different subset of the helpers")]

pub mod keras;
pub mod onnx;

use std::sync::{Arc, OnceLock};

use rand::{Rng, SeedableRng};
use siamese_wgpu::Gpu;

/// The test GPU. A missing adapter FAILS the test (CI must not go green without running
/// the kernels) unless SIAMESE_SKIP_GPU_TESTS=1, in which case None is returned.
pub fn gpu() -> Option<Arc<Gpu>> {
    static GPU: OnceLock<Result<Arc<Gpu>, String>> = OnceLock::new();
    let result = GPU.get_or_init(|| Gpu::new().map(Arc::new).map_err(|e| e.to_string()));
    match result {
        Ok(gpu) => Some(gpu.clone()),
        Err(_) if std::env::var("SIAMESE_SKIP_GPU_TESTS").as_deref() == Ok("1") => {
            eprintln!("SIAMESE_SKIP_GPU_TESTS=1: skipping a GPU test");
            None
        }
        Err(e) => panic!("GPU tests need an adapter (set SIAMESE_SKIP_GPU_TESTS=1 to skip knowingly): {e}"),
    }
}

/// Seeded random generator so failures reproduce.
pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// `len` uniform values in [-1, 1).
pub fn random_vec(rng: &mut impl Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Asserts `|got - want| <= atol + rtol·|want|` everywhere; on failure reports the worst
/// index with both values.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length differs");
    let mut worst: Option<(usize, f32)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        // NaN anywhere counts as the worst possible mismatch.
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        let excess = if excess.is_nan() { f32::INFINITY } else { excess };
        if excess > 0.0 && worst.is_none_or(|(_, e)| excess > e) {
            worst = Some((i, excess));
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "{what}: worst mismatch at index {i} of {}: got {}, reference {} (|diff| {:e}, allowed {:e})",
            got.len(),
            got[i],
            want[i],
            (got[i] - want[i]).abs(),
            atol + rtol * want[i].abs()
        );
    }
}

/// Runs a golden fixture through `model` and compares with the framework's outputs:
/// `{prefix}_{metric}.npy` distances and `{prefix}_embeddings.npy` (`[2N, ...]`, left rows
/// then right) for `left.npy` / `right.npy` in `dir`, with `left_lengths.npy` /
/// `right_lengths.npy` when `ragged`. Pair 0 of every fixture is identical: distance 0.
/// Tolerance atol 1e-5, rtol 1e-4 (f32 on both sides, only the summation order differs).
pub fn check_goldens(model: &siamese_wgpu::SiameseModel, dir: &std::path::Path, prefix: &str, ragged: bool) {
    use siamese_wgpu::io::{read_lengths, read_npy};
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let left = read_npy(dir.join("left.npy")).unwrap();
    let right = read_npy(dir.join("right.npy")).unwrap();
    let lengths = |file: &str| ragged.then(|| read_lengths(dir.join(file)).unwrap());
    let (left_lengths, right_lengths) = (lengths("left_lengths.npy"), lengths("right_lengths.npy"));
    let golden_embeddings = read_npy(dir.join(format!("{prefix}_embeddings.npy"))).unwrap();
    for metric in siamese_wgpu::Distance::ALL {
        let want = read_npy(dir.join(format!("{prefix}_{metric}.npy"))).unwrap();
        let out =
            model.pairs_ragged(&left, left_lengths.as_deref(), &right, right_lengths.as_deref(), metric, true).unwrap();
        assert_close(&format!("{name}: {metric} vs {prefix}"), &out.distances, want.data(), 1e-5, 1e-4);
        assert_eq!(out.distances[0], 0.0, "{name}: identical pair gave {metric} {}", out.distances[0]);
        let embeddings = [out.left_embeddings.unwrap().into_data(), out.right_embeddings.unwrap().into_data()].concat();
        assert_close(&format!("{name}: embeddings vs {prefix}"), &embeddings, golden_embeddings.data(), 1e-5, 1e-4);
    }
    // The encoder alone on the left batch (N rows, not 2N): same numbers.
    let embedded = model.embed_ragged(&left, left_lengths.as_deref()).unwrap();
    let n = left.batch() * embedded.row_len();
    assert_close(&format!("{name}: embed()"), embedded.data(), &golden_embeddings.data()[..n], 1e-5, 1e-4);
}
