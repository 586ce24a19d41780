//! Shared test helpers: one GPU per test binary, random data, tolerant comparison.
#![allow(dead_code, reason = "each test binary uses a different subset of the helpers")]

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
