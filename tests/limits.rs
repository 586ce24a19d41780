//! Forced small device limits: a batch whose activations exceed one storage binding is
//! split into chunks, and workgroup counts beyond `max_compute_workgroups_per_dimension`
//! are folded into 2-D dispatches; results equal the unconstrained device's.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{assert_close, gpu};
use siamese_wgpu::{Array, Distance, Gpu, GpuOptions, SiameseModel};

fn device(binding: u64, groups: u32) -> Arc<Gpu> {
    let mut options = GpuOptions::from_env().unwrap();
    let mut limits = wgpu::Limits::downlevel_defaults();
    limits.max_storage_buffer_binding_size = binding;
    limits.max_compute_workgroups_per_dimension = groups;
    options.limits = Some(limits);
    Arc::new(Gpu::with_options(&options).unwrap())
}

fn batch(pairs: usize, shape: &[usize], seed: usize) -> Array {
    let sample: usize = shape.iter().product();
    let data = (0..pairs * sample).map(|i| ((i * 37 + seed * 11) % 113) as f32 / 113.0).collect();
    Array::new(std::iter::once(pairs).chain(shape.iter().copied()).collect(), data).unwrap()
}

#[test]
fn weights_beyond_one_binding_are_a_typed_error() {
    let Some(_) = gpu() else { return };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let err = SiameseModel::load_on(device(256 << 10, 65535), root.join("models/cnn")).unwrap_err().to_string();
    assert!(err.contains("dense kernel") && err.contains("262144"), "{err}");
}

#[test]
fn small_bindings_and_few_workgroups_give_the_same_distances() {
    let Some(reference_gpu) = gpu() else { return };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // 1 MiB bindings (the CNN's 800 KiB dense kernel still fits): its first conv output
    // (26·26·32 floats, 86 KiB a sample) fits 12 samples, so 40 pairs need 7 submits; 64
    // workgroups per dimension force 2-D dispatches.
    let small = device(1 << 20, 64);
    for (dir, shape) in [("models/cnn", vec![28, 28, 1]), ("tests/fixtures/transformer_block", vec![12, 32])] {
        let want_model = SiameseModel::load_on(reference_gpu.clone(), root.join(dir)).unwrap();
        let model = SiameseModel::load_on(small.clone(), root.join(dir)).unwrap();
        let per_submit = model.max_pairs_per_submit(1);
        let pairs = 40;
        let (left, right) = (batch(pairs, &shape, 1), batch(pairs, &shape, 2));
        let submits = small.submit_count();
        let got = model.distances(&left, &right, Distance::Euclidean).unwrap();
        let want = want_model.distances(&left, &right, Distance::Euclidean).unwrap();
        assert_close(&format!("{dir} under small limits"), &got, &want, 1e-6, 1e-5);
        let used = (small.submit_count() - submits) as usize;
        assert_eq!(used, pairs.div_ceil(per_submit), "{dir}: {per_submit} pairs per submit");
        if dir == "models/cnn" {
            assert!(used > 1, "the CNN batch must be split under 1 MiB bindings");
        }
    }
}
