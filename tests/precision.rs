//! `Precision::F16`: Dense and Conv2D kernels stored as packed f16 (shaders/weights.wgsl).
//! The kernels must give exactly what f32 arithmetic on the f16-rounded weights gives (the
//! CPU reference fed the rounded weights), and whole models must stay within the accuracy
//! BENCHMARKS.md reports of the Keras goldens.

mod common;

use common::{assert_close, gpu, random_vec, rng};
use half::f16;
use siamese_wgpu::io::{read_lengths, read_npy};
use siamese_wgpu::ops::{Activation, Conv2d, Conv2dConfig, Dense, Padding, Precision};
use siamese_wgpu::reference;
use siamese_wgpu::tensor::{run_dispatches, Array, Tensor};
use siamese_wgpu::{Distance, Error, SiameseModel};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

fn rounded(values: &[f32]) -> Vec<f32> {
    values.iter().map(|&v| f16::from_f32(v).to_f32()).collect()
}

#[test]
fn f16_dense_equals_f32_math_on_rounded_weights() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(41);
    // Column counts that are not multiples of the 8-column packing, and one of exactly 8.
    for (rows, inf, outf) in [(1, 1, 1), (7, 13, 5), (130, 33, 67), (3, 1600, 128), (17, 9, 8)] {
        let input = random_vec(&mut rng, rows * inf);
        let kernel: Vec<f32> = random_vec(&mut rng, inf * outf).iter().map(|v| v / (inf as f32).sqrt()).collect();
        let bias = random_vec(&mut rng, outf);
        let op =
            Dense::with_precision(&gpu, inf, outf, &kernel, Some(&bias), Activation::Tanh, Precision::F16).unwrap();
        let x = Tensor::upload(&gpu, &Array::new(vec![rows, inf], input.clone()).unwrap()).unwrap();
        let y = Tensor::zeros(&gpu, &[rows, outf]).unwrap();
        run_dispatches(&gpu, &[&op.prepare(&gpu, x.shape(), x.buffer(), y.buffer()).unwrap()]).unwrap();
        let got = y.download(&gpu).unwrap();
        let want = reference::dense(&input, rows, &rounded(&kernel), &bias, inf, Activation::Tanh);
        assert_close(&format!("f16 dense {rows}x{inf}->{outf}"), got.data(), &want, ATOL, RTOL);
        // And the rounding is really there: f32 weights give a measurably different answer.
        let exact = reference::dense(&input, rows, &kernel, &bias, inf, Activation::Tanh);
        if inf * outf > 100 {
            let differs = got.data().iter().zip(&exact).any(|(a, b)| (a - b).abs() > 1e-6);
            assert!(differs, "f16 dense {rows}x{inf}->{outf} is identical to f32: the f16 path did not run");
        }
    }
}

#[test]
fn f16_conv2d_equals_f32_math_on_rounded_weights() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(42);
    let cases = [
        ([2, 13, 13, 32], 64, (3, 3), Padding::Valid),
        ([3, 9, 8, 3], 13, (2, 3), Padding::Same),
        ([2, 28, 28, 1], 32, (3, 3), Padding::Valid),
    ];
    for (shape, filters, kernel_size, padding) in cases {
        let config = Conv2dConfig {
            in_channels: shape[3],
            filters,
            kernel: kernel_size,
            strides: (1, 1),
            dilation: (1, 1),
            padding,
            activation: Activation::Relu,
        };
        let input = random_vec(&mut rng, shape.iter().product());
        let kernel: Vec<f32> = random_vec(&mut rng, config.kernel_len()).iter().map(|v| v * 0.2).collect();
        let bias = random_vec(&mut rng, filters);
        let op = Conv2d::with_precision(&gpu, config.clone(), &kernel, Some(&bias), Precision::F16).unwrap();
        let out_shape = op.output_shape(&shape).unwrap();
        let x = Tensor::upload(&gpu, &Array::new(shape.to_vec(), input.clone()).unwrap()).unwrap();
        let y = Tensor::zeros(&gpu, &out_shape).unwrap();
        run_dispatches(&gpu, &[&op.prepare(&gpu, &shape, x.buffer(), y.buffer()).unwrap()]).unwrap();
        let (want, _) = reference::conv2d(&input, shape, &config, &rounded(&kernel), &bias);
        assert_close(
            &format!("f16 conv2d {shape:?} -> {filters}"),
            y.download(&gpu).unwrap().data(),
            &want,
            ATOL,
            RTOL,
        );
    }
}

#[test]
fn weights_beyond_f16_range_are_a_typed_error() {
    let Some(gpu) = gpu() else { return };
    let mut kernel = vec![0.5; 6];
    kernel[4] = 1e5;
    let err = Dense::with_precision(&gpu, 2, 3, &kernel, None, Activation::Linear, Precision::F16).unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("100000") && text.contains("[1, 1]") && text.contains("f16"), "{text}");
    // The same weights are fine in f32.
    Dense::with_precision(&gpu, 2, 3, &kernel, None, Activation::Linear, Precision::F32).unwrap();
}

/// Largest |f16 − golden| / (1e-3 + |golden|) over every metric, and whether any value
/// differs from the f32 model's at all.
fn f16_error(dir: &str, ragged: bool) -> (f32, bool) {
    let gpu = gpu().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let pairs = if root.join("pairs").is_dir() { root.join("pairs") } else { root.clone() };
    let half = SiameseModel::load_with_precision(gpu.clone(), &root, Precision::F16).unwrap();
    let full = SiameseModel::load_on(gpu, &root).unwrap();
    let left = read_npy(pairs.join("left.npy")).unwrap();
    let right = read_npy(pairs.join("right.npy")).unwrap();
    let lengths = |f: &str| ragged.then(|| read_lengths(pairs.join(f)).unwrap());
    let (ll, rl) = (lengths("left_lengths.npy"), lengths("right_lengths.npy"));
    let (mut worst, mut differs) = (0f32, false);
    for metric in Distance::ALL {
        let want = read_npy(pairs.join(format!("keras_{metric}.npy"))).unwrap();
        let got = half.pairs_ragged(&left, ll.as_deref(), &right, rl.as_deref(), metric, false).unwrap().distances;
        let exact = full.pairs_ragged(&left, ll.as_deref(), &right, rl.as_deref(), metric, false).unwrap().distances;
        differs |= got != exact;
        for (g, w) in got.iter().zip(want.data()) {
            worst = worst.max((g - w).abs() / (1e-3 + w.abs()));
        }
    }
    (worst, differs)
}

#[test]
fn f16_models_stay_within_two_per_mille_of_keras() {
    if gpu().is_none() {
        return;
    }
    for (dir, ragged) in [("models/cnn", false), ("tests/fixtures/lstm_seed", true), ("tests/fixtures/mha_seed", false)]
    {
        let (worst, differs) = f16_error(dir, ragged);
        eprintln!("{dir}: f16 weights, max relative distance error vs Keras {worst:.2e}");
        assert!(differs, "{dir}: f16 model gave exactly the f32 distances: the f16 path did not run");
        assert!(worst < 2e-3, "{dir}: f16 weights moved a distance by {worst:.2e} (relative) from Keras");
    }
}
