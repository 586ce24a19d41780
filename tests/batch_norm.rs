//! BatchNormalization (inference): Keras files with non-trivial moving statistics
//! (tests/fixtures/keras_files/bn_*, from tools/make_keras_files.py) give Keras' outputs on
//! the GPU and on the CPU reference; the folding pass puts a normalisation into the
//! Conv2D / Dense before it when nothing else reads that op's output, and the per-channel
//! kernel runs the others; the kernel matches the reference on random data.

mod common;

use common::keras::{encoder_files_match_keras_on_the_cpu_reference, encoder_files_match_keras_on_the_gpu, fixture};
use common::{assert_close, gpu, random_vec, rng};
use siamese_wgpu::layers::{ActivationLayer, BatchNorm};
use siamese_wgpu::model::{Layer, ModelSpec};
use siamese_wgpu::ops::Activation;
use siamese_wgpu::{Array, SiameseModel};

/// Encoder files: Keras' golden is the euclidean distance of the encoder outputs.
const FILES: [(&str, &str); 4] = [
    ("bn_cnn.keras", "bn_cnn"),
    ("bn_cnn.h5", "bn_cnn"),
    ("bn_dense.keras", "bn_dense"),
    ("bn_functional.keras", "bn_functional"),
];

/// As tests/keras_files.rs: different summation orders through a few layers.
const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-3;

#[test]
fn batch_norm_models_match_keras_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    encoder_files_match_keras_on_the_gpu(&gpu, &FILES, ATOL, RTOL);
}

#[test]
fn batch_norm_models_match_keras_on_the_cpu_reference() {
    encoder_files_match_keras_on_the_cpu_reference(&FILES, ATOL, RTOL);
}

/// Which normalisations fold: into a convolution or dense layer read by nothing else (the
/// activation after it fuses too), not into a pooled convolution, a dense layer with its own
/// activation, the input, or a value with a second reader.
#[test]
fn batch_norm_folds_where_nothing_else_reads_the_op_before_it() {
    let Some(gpu) = gpu() else { return };
    let kernels = |file: &str| common::keras::kernels(&SiameseModel::load_on(gpu.clone(), fixture(file)).unwrap());
    let cnn = kernels("bn_cnn.keras");
    assert_eq!(cnn.len(), 4, "{cnn:#?}");
    assert!(cnn[0].starts_with("conv2d (activation Relu)"), "{cnn:#?}");
    assert!(cnn[1].starts_with("conv2d (activation Linear) + max_pool"), "{cnn:#?}");
    assert!(cnn[2].starts_with("channel affine"), "after Flatten of a pooled conv: {cnn:#?}");
    assert!(cnn[3].starts_with("dense (activation Linear)"), "{cnn:#?}");
    let dense = kernels("bn_dense.keras");
    assert_eq!(dense.iter().filter(|k| k.starts_with("channel affine")).count(), 2, "{dense:#?}");
    let functional = kernels("bn_functional.keras");
    assert!(functional.iter().any(|k| k.starts_with("channel affine")), "{functional:#?}");
    assert!(functional.iter().any(|k| k.starts_with("add")), "{functional:#?}");
}

/// The per-channel kernel with an activation fused, on sizes that are not multiples of the
/// workgroup, against the CPU reference; `scale=False` / `center=False` included.
#[test]
fn batch_norm_kernel_matches_the_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(31);
    for (channels, rows, scale, center) in [(7, 37, true, true), (1, 3, false, true), (13, 20, true, false)] {
        let norm = BatchNorm {
            gamma: scale.then(|| random_vec(&mut rng, channels)),
            beta: center.then(|| random_vec(&mut rng, channels)),
            mean: random_vec(&mut rng, channels),
            variance: random_vec(&mut rng, channels).iter().map(|v| v.abs() + 0.1).collect(),
            eps: 1e-3,
            activation: Activation::Linear,
        };
        let spec = ModelSpec {
            name: "bn".into(),
            input_shape: vec![rows, channels],
            layers: vec![
                Layer::new("bn", norm, vec![0]),
                Layer::new("gelu", ActivationLayer(Activation::Gelu), vec![1]),
            ],
        };
        let model = SiameseModel::from_spec(gpu.clone(), spec.clone()).unwrap();
        assert_eq!(model.graph().dispatches_per_call(1), 2, "the activation fuses into the kernel");
        let input: Vec<f32> = random_vec(&mut rng, 3 * rows * channels).iter().map(|v| 3.0 * v).collect();
        let got = model.embed(&Array::new(vec![3, rows, channels], input.clone()).unwrap()).unwrap();
        let want = spec.reference_forward(&input, 3).unwrap();
        assert_close(&format!("batch norm {channels} channels"), got.data(), &want, 1e-5, 1e-4);
    }
}
