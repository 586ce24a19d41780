//! Whole models against golden outputs made by Keras 3 (tools/make_goldens.py; the
//! fixtures are committed so no Python is needed). Tolerances: embeddings and distances
//! within atol 1e-5 + rtol 1e-4 of Keras (float32 on both sides, only the summation order
//! differs), tighter than the 1e-4 + 1e-3·|ref|.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{assert_close, gpu};
use siamese_wgpu::io::read_npy;
use siamese_wgpu::{Distance, Gpu, SiameseModel};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (model directory, directory of left/right/keras_*.npy)
fn fixtures() -> Vec<(PathBuf, PathBuf)> {
    vec![
        (root().join("models/cnn"), root().join("models/cnn/pairs")),
        (root().join("tests/fixtures/chain_a"), root().join("tests/fixtures/chain_a")),
        (root().join("tests/fixtures/chain_b"), root().join("tests/fixtures/chain_b")),
    ]
}

fn check_against_keras(gpu: Arc<Gpu>, model_dir: &Path, pairs_dir: &Path) {
    let model = SiameseModel::load_on(gpu, model_dir).unwrap();
    common::check_goldens(&model, pairs_dir, "keras", false);
}

#[test]
fn seed_cnn_matches_keras() {
    let Some(gpu) = gpu() else { return };
    let (model, pairs) = &fixtures()[0];
    check_against_keras(gpu, model, pairs);
}

#[test]
fn functional_chain_with_every_layer_kind_matches_keras() {
    let Some(gpu) = gpu() else { return };
    let (model, pairs) = &fixtures()[1];
    check_against_keras(gpu, model, pairs);
}

#[test]
fn sequential_with_standalone_activations_matches_keras() {
    let Some(gpu) = gpu() else { return };
    let (model, pairs) = &fixtures()[2];
    check_against_keras(gpu, model, pairs);
}

#[test]
fn cpu_reference_forward_matches_keras() {
    // The reference the kernels are tested against is itself checked against Keras.
    for (model_dir, pairs_dir) in fixtures() {
        let spec = siamese_wgpu::model::load(&model_dir).unwrap();
        let left = read_npy(pairs_dir.join("left.npy")).unwrap();
        let right = read_npy(pairs_dir.join("right.npy")).unwrap();
        let input = [left.data(), right.data()].concat();
        let got = spec.reference_forward(&input, 2 * left.batch()).unwrap();
        let want = read_npy(pairs_dir.join("keras_embeddings.npy")).unwrap();
        assert_close(&format!("{}: reference forward", model_dir.display()), &got, want.data(), ATOL, RTOL);
    }
}

#[test]
fn one_submit_per_call_and_no_allocation_in_steady_state() {
    let Some(_) = gpu() else { return };
    // A private context so other tests running in parallel don't move its counters.
    let gpu = Arc::new(Gpu::new().unwrap());
    let (model_dir, pairs_dir) = &fixtures()[0];
    let model = SiameseModel::load_on(gpu.clone(), model_dir).unwrap();
    let left = read_npy(pairs_dir.join("left.npy")).unwrap();
    let right = read_npy(pairs_dir.join("right.npy")).unwrap();
    let pipelines_after_load = gpu.pipeline_count();

    let submits = gpu.submit_count();
    model.distances(&left, &right, Distance::Euclidean).unwrap();
    assert_eq!(gpu.submit_count() - submits, 1, "first call: one submit for the whole batch");

    let (submits, buffers) = (gpu.submit_count(), gpu.buffer_count());
    for metric in Distance::ALL {
        model.distances(&left, &right, metric).unwrap();
    }
    model.distances(&left, &right, Distance::Euclidean).unwrap();
    assert_eq!(gpu.submit_count() - submits, 5, "one submit per call");
    // Other metrics need their own plan once; the repeated Euclidean call creates nothing.
    let buffers_after_warmup = gpu.buffer_count();
    assert!(buffers_after_warmup > buffers, "a new metric builds its plan");
    model.distances(&left, &right, Distance::Cosine).unwrap();
    model.pairs(&left, &right, Distance::Euclidean, true).unwrap();
    assert_eq!(gpu.buffer_count(), buffers_after_warmup, "steady state creates no buffers");
    assert_eq!(gpu.pipeline_count(), pipelines_after_load, "every pipeline is compiled at load");
}

#[test]
fn batch_of_one_and_larger_batches_agree() {
    let Some(gpu) = gpu() else { return };
    let (model_dir, pairs_dir) = &fixtures()[0];
    let model = SiameseModel::load_on(gpu, model_dir).unwrap();
    let left = read_npy(pairs_dir.join("left.npy")).unwrap();
    let right = read_npy(pairs_dir.join("right.npy")).unwrap();
    let all = model.distances(&left, &right, Distance::Euclidean).unwrap();
    for i in [0, 3, 7] {
        let one = |a: &siamese_wgpu::Array| siamese_wgpu::Array::new(vec![1, 28, 28, 1], a.row(i).to_vec()).unwrap();
        let d = model.distances(&one(&left), &one(&right), Distance::Euclidean).unwrap();
        assert_close(&format!("pair {i} alone vs in a batch"), &d, &all[i..=i], 1e-6, 1e-5);
    }
}

#[test]
fn batches_beyond_the_per_submit_limit_are_chunked() {
    let Some(_) = gpu() else { return };
    let gpu = Arc::new(Gpu::new().unwrap());
    let (model_dir, pairs_dir) = &fixtures()[0];
    let mut model = SiameseModel::load_on(gpu.clone(), model_dir).unwrap();
    // The device limits allow thousands of pairs per submit for this model.
    assert!(model.max_pairs_per_submit(1) >= 512, "{}", model.max_pairs_per_submit(1));
    let left = read_npy(pairs_dir.join("left.npy")).unwrap();
    let right = read_npy(pairs_dir.join("right.npy")).unwrap();
    let whole = model.pairs(&left, &right, Distance::Manhattan, true).unwrap();

    model.set_max_pairs_per_submit(Some(3));
    let submits = gpu.submit_count();
    let chunked = model.pairs(&left, &right, Distance::Manhattan, true).unwrap();
    assert_eq!(gpu.submit_count() - submits, 3, "8 pairs in chunks of 3");
    assert_close("chunked distances", &chunked.distances, &whole.distances, 1e-6, 1e-5);
    let (a, b) = (chunked.right_embeddings.unwrap(), whole.right_embeddings.unwrap());
    assert_eq!(a.shape(), b.shape());
    assert_close("chunked embeddings", a.data(), b.data(), 1e-6, 1e-5);
    let embedded = model.embed(&left).unwrap();
    assert_close("chunked embed", embedded.data(), whole.left_embeddings.unwrap().data(), 1e-6, 1e-5);
}

#[test]
fn the_backend_asked_for_is_the_one_used() {
    let Some(gpu) = gpu() else { return };
    let backend = gpu.adapter_info().backend;
    match std::env::var("SIAMESE_BACKEND").as_deref() {
        Ok("gl") => assert_eq!(backend, wgpu::Backend::Gl),
        Ok("vulkan") => assert_eq!(backend, wgpu::Backend::Vulkan),
        _ => {}
    }
}

#[test]
fn activation_after_a_fused_max_pool_stays_after_it() {
    // Conv2D (linear) → MaxPooling2D 2×2 → GELU: the pool is fused into the conv, and GELU,
    // not monotonic, must still run after the max, not inside the conv's epilogue.
    use siamese_wgpu::layers::{ActivationLayer, Conv2d, Pool2d};
    use siamese_wgpu::model::Layer;
    use siamese_wgpu::ops::{Activation, Conv2dConfig, Padding, Pool2dConfig, PoolKind};
    let Some(gpu) = gpu() else { return };
    let mut rng = common::rng(21);
    let config = Conv2dConfig {
        in_channels: 2,
        filters: 5,
        kernel: (3, 3),
        strides: (1, 1),
        dilation: (1, 1),
        padding: Padding::Valid,
        activation: Activation::Linear,
    };
    let kernel = common::random_vec(&mut rng, config.kernel_len());
    let layer = |i: usize, name: &str, op: std::sync::Arc<dyn siamese_wgpu::layers::LayerOp>| Layer {
        name: name.into(),
        op,
        inputs: vec![i],
    };
    let spec = siamese_wgpu::ModelSpec {
        name: "conv_pool_gelu".into(),
        input_shape: vec![8, 9, 2],
        layers: vec![
            layer(0, "conv", std::sync::Arc::new(Conv2d::new(config, kernel, Some(common::random_vec(&mut rng, 5))))),
            layer(
                1,
                "pool",
                std::sync::Arc::new(Pool2d(Pool2dConfig {
                    kind: PoolKind::Max,
                    pool: (2, 2),
                    strides: (2, 2),
                    padding: Padding::Valid,
                })),
            ),
            layer(2, "gelu", std::sync::Arc::new(ActivationLayer(Activation::Gelu))),
        ],
    };
    let model = SiameseModel::from_spec(gpu, spec.clone()).unwrap();
    assert!(model.graph().describe()[0].contains("max_pool"), "{:?}", model.graph().describe());
    let input = common::random_vec(&mut rng, 3 * 8 * 9 * 2).iter().map(|v| v * 3.0).collect::<Vec<f32>>();
    let x = siamese_wgpu::Array::new(vec![3, 8, 9, 2], input.clone()).unwrap();
    let got = model.embed(&x).unwrap();
    let want = spec.reference_forward(&input, 3).unwrap();
    assert_close("conv → fused pool → gelu", got.data(), &want, ATOL, RTOL);
}
