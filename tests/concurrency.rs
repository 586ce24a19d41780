//! Long runs stay flat and shared models stay correct: one loaded model called from four
//! threads at once gives bit-for-bit the single-threaded results; repeated calls give the
//! same bits; many calls create no GPU buffers and do not grow the process's memory.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::gpu;
use siamese_wgpu::{Array, Distance, SiameseModel};

fn digits() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/digits")
}

/// A deterministic batch of `pairs` 28×28 images.
fn batch(pairs: usize, seed: usize) -> (Array, Array) {
    let len = pairs * 28 * 28;
    let left = (0..len).map(|i| ((i * 31 + seed * 7) % 101) as f32 / 101.0).collect();
    let right = (0..len).map(|i| ((i * 17 + seed * 13) % 89) as f32 / 89.0).collect();
    (Array::new(vec![pairs, 28, 28, 1], left).unwrap(), Array::new(vec![pairs, 28, 28, 1], right).unwrap())
}

#[test]
fn four_threads_sharing_a_model_match_single_threaded_bits() {
    let Some(gpu) = gpu() else { return };
    let model = Arc::new(SiameseModel::load_on(gpu, digits()).unwrap());
    // Sizes repeat, so threads contend for the same cached plan as well as use their own.
    let jobs: Vec<(usize, usize, Distance)> = (0..24)
        .map(|i| ([1, 3, 8, 3][i % 4], i, [Distance::Euclidean, Distance::Cosine, Distance::Learned][i % 3]))
        .collect();
    let single: Vec<Vec<f32>> = jobs
        .iter()
        .map(|&(pairs, seed, metric)| {
            let (l, r) = batch(pairs, seed);
            model.distances(&l, &r, metric).unwrap()
        })
        .collect();
    let results: Vec<Vec<(usize, Vec<f32>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let (model, jobs) = (&model, &jobs);
                scope.spawn(move || {
                    (0..3)
                        .flat_map(|_| (t..jobs.len()).step_by(4))
                        .map(|j| {
                            let (pairs, seed, metric) = jobs[j];
                            let (l, r) = batch(pairs, seed);
                            (j, model.distances(&l, &r, metric).unwrap())
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut checked = 0;
    for (j, got) in results.into_iter().flatten() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&single[j]), "job {j} from a thread differs from the single-threaded run");
        checked += 1;
    }
    assert_eq!(checked, 3 * jobs.len());
}

#[test]
fn many_calls_create_nothing_and_keep_their_bits() {
    let Some(_) = gpu() else { return };
    // A device of its own: other tests share the common one and create buffers on it.
    let gpu = Arc::new(siamese_wgpu::Gpu::with_options(&siamese_wgpu::GpuOptions::from_env().unwrap()).unwrap());
    let model = SiameseModel::load_on(gpu.clone(), digits()).unwrap();
    let (left, right) = batch(4, 1);
    let first = model.distances(&left, &right, Distance::Euclidean).unwrap();
    let (buffers, submits) = (gpu.buffer_count(), gpu.submit_count());
    for _ in 0..300 {
        let d = model.distances(&left, &right, Distance::Euclidean).unwrap();
        assert_eq!(
            d.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            first.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
    }
    assert_eq!(gpu.buffer_count(), buffers, "the steady state creates no GPU buffers");
    assert_eq!(gpu.submit_count() - submits, 300, "one submit per call");
}
