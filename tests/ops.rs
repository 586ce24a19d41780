//! Every kernel against its CPU reference (`siamese_wgpu::reference`) on random data,
//! including sizes that are not multiples of the workgroup/block sizes, batch 1 and primes.
//! Tolerance: f32 atol 1e-5, rtol 1e-4 (DESIGN.md) unless a test says why it needs more.

mod common;

use common::{assert_close, gpu, random_vec, rng};
use rand::Rng;
use siamese_wgpu::ops::{
    Activation, ActivationOp, Conv2d, Conv2dConfig, Dense, Distance, GlobalAveragePool2d, Padding, PairDistance,
    Pool2d, Pool2dConfig, PoolKind, Precision,
};
use siamese_wgpu::tensor::{run_dispatches, Array, Tensor};
use siamese_wgpu::{reference, Gpu};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

fn upload(gpu: &Gpu, shape: &[usize], data: Vec<f32>) -> Tensor {
    Tensor::upload(gpu, &Array::new(shape.to_vec(), data).unwrap()).unwrap()
}

#[test]
fn dense_matches_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(1);
    // (rows, in, out): batch 1, primes, non-multiples of the 32×32 block, the CNN's 1600→128.
    let shapes =
        [(1, 1, 1), (1, 7, 3), (7, 13, 5), (33, 65, 31), (2, 100, 1), (64, 128, 64), (3, 1600, 128), (97, 31, 67)];
    for (case, &(rows, inf, outf)) in shapes.iter().enumerate() {
        let activation = Activation::ALL[case % Activation::ALL.len()];
        let input = random_vec(&mut rng, rows * inf);
        // Kernel scaled by 1/sqrt(in) keeps outputs O(1), as trained layers are.
        let scale = 1.0 / (inf as f32).sqrt();
        let kernel: Vec<f32> = random_vec(&mut rng, inf * outf).iter().map(|v| v * scale).collect();
        let bias = random_vec(&mut rng, outf);
        let op = Dense::new(&gpu, inf, outf, &kernel, Some(&bias), activation).unwrap();
        let x = upload(&gpu, &[rows, inf], input.clone());
        let y = Tensor::zeros(&gpu, &[rows, outf]).unwrap();
        let dispatch = op.prepare(&gpu, x.shape(), x.buffer(), y.buffer()).unwrap();
        run_dispatches(&gpu, &[&dispatch]).unwrap();
        let got = y.download(&gpu).unwrap();
        let want = reference::dense(&input, rows, &kernel, &bias, inf, activation);
        assert_close(&format!("dense {rows}x{inf}->{outf} {activation:?}"), got.data(), &want, ATOL, RTOL);
    }
}

#[test]
fn every_activation_matches_reference_in_place() {
    let Some(gpu) = gpu() else { return };
    // Wide range, including values where naive sigmoid/tanh/softplus overflow.
    let mut values: Vec<f32> = (-400..=400).map(|i| i as f32 * 0.05).collect();
    values.extend([-100.0, -89.0, 88.0, 100.0, 0.0, -0.0, 1e-7, -1e-7]);
    for activation in Activation::ALL {
        let op = ActivationOp::new(&gpu, activation).unwrap();
        let data = upload(&gpu, &[values.len()], values.clone());
        let dispatch = op.prepare(&gpu, values.len(), data.buffer()).unwrap();
        run_dispatches(&gpu, &[&dispatch]).unwrap();
        let got = data.download(&gpu).unwrap();
        let want: Vec<f32> = values.iter().map(|&v| reference::activation(v, activation)).collect();
        assert!(got.data().iter().all(|v| v.is_finite()), "{activation:?} produced a non-finite value");
        // Transcendentals on GPUs are allowed a few ULP; gelu's erf approximation adds 1.5e-7·|x|.
        assert_close(&format!("activation {activation:?}"), got.data(), &want, 2e-6, 2e-5);
    }
}

fn conv_case(gpu: &Gpu, rng: &mut impl Rng, shape: [usize; 4], config: Conv2dConfig) {
    let [batch, h, w, c] = shape;
    let input = random_vec(rng, batch * h * w * c);
    let fan_in = (config.kernel.0 * config.kernel.1 * c) as f32;
    let kernel: Vec<f32> = random_vec(rng, config.kernel_len()).iter().map(|v| v / fan_in.sqrt()).collect();
    let bias = random_vec(rng, config.filters);
    let op = Conv2d::new(gpu, config.clone(), &kernel, Some(&bias)).unwrap();
    let out_shape = op.output_shape(&shape).unwrap();
    let x = upload(gpu, &shape, input.clone());
    let y = Tensor::zeros(gpu, &out_shape).unwrap();
    let dispatch = op.prepare(gpu, &shape, x.buffer(), y.buffer()).unwrap();
    run_dispatches(gpu, &[&dispatch]).unwrap();
    let (want, want_shape) = reference::conv2d(&input, shape, &config, &kernel, &bias);
    assert_eq!(out_shape, want_shape.to_vec());
    assert_close(&format!("conv2d {shape:?} {config:?}"), y.download(gpu).unwrap().data(), &want, ATOL, RTOL);
}

#[test]
fn conv2d_matches_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(2);
    let config = |in_channels, filters, kernel, strides, dilation, padding, activation| Conv2dConfig {
        in_channels,
        filters,
        kernel,
        strides,
        dilation,
        padding,
        activation,
    };
    use Activation::*;
    use Padding::*;
    // The seed CNN's layers, then odd shapes: batch 1, primes, strides, dilation, same padding.
    conv_case(&gpu, &mut rng, [2, 28, 28, 1], config(1, 32, (3, 3), (1, 1), (1, 1), Valid, Relu));
    conv_case(&gpu, &mut rng, [2, 13, 13, 32], config(32, 64, (3, 3), (1, 1), (1, 1), Valid, Relu));
    conv_case(&gpu, &mut rng, [1, 1, 1, 1], config(1, 1, (1, 1), (1, 1), (1, 1), Valid, Linear));
    conv_case(&gpu, &mut rng, [3, 17, 15, 3], config(3, 8, (3, 2), (2, 1), (1, 1), Same, Tanh));
    conv_case(&gpu, &mut rng, [1, 11, 13, 5], config(5, 7, (3, 3), (1, 1), (2, 2), Valid, Gelu));
    conv_case(&gpu, &mut rng, [2, 7, 9, 2], config(2, 5, (4, 4), (3, 2), (1, 1), Same, Sigmoid));
    conv_case(&gpu, &mut rng, [1, 10, 10, 4], config(4, 3, (5, 5), (1, 1), (1, 1), Same, Linear));
    conv_case(&gpu, &mut rng, [2, 9, 8, 3], config(3, 33, (2, 3), (2, 3), (2, 1), Same, Elu));
    conv_case(&gpu, &mut rng, [5, 6, 6, 1], config(1, 2, (6, 6), (1, 1), (1, 1), Valid, Relu));
}

#[test]
fn conv2d_with_fused_max_pool_matches_conv_then_pool() {
    // Conv2D + MaxPooling2D(2×2, stride 2, valid) in one dispatch against the reference conv
    // followed by the reference pool: odd conv outputs (the last row/column is dropped, as
    // Keras floors), batch > 1, channels past one block of 8, and GELU, which is not
    // monotonic (activation, then max: Keras order).
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(5);
    let pool = Pool2dConfig { kind: PoolKind::Max, pool: (2, 2), strides: (2, 2), padding: Padding::Valid };
    assert!(Conv2d::fuses_max_pool(&pool));
    let cases = [
        ([3, 13, 13, 32], 64, (3, 3), Padding::Valid, Activation::Relu),
        ([2, 9, 12, 3], 13, (2, 2), Padding::Same, Activation::Gelu),
        ([5, 8, 7, 1], 9, (3, 3), Padding::Valid, Activation::Linear),
        ([1, 28, 28, 1], 32, (3, 3), Padding::Valid, Activation::Tanh),
    ];
    for (shape, filters, kernel, padding, activation) in cases {
        let config = Conv2dConfig {
            in_channels: shape[3],
            filters,
            kernel,
            strides: (1, 1),
            dilation: (1, 1),
            padding,
            activation,
        };
        let input = random_vec(&mut rng, shape.iter().product());
        let weights: Vec<f32> = random_vec(&mut rng, config.kernel_len()).iter().map(|v| v * 0.3).collect();
        let bias = random_vec(&mut rng, filters);
        let op = Conv2d::with_max_pool(&gpu, config.clone(), &weights, Some(&bias), Precision::F32).unwrap();
        let out_shape = op.output_shape(&shape).unwrap();
        let x = upload(&gpu, &shape, input.clone());
        let y = Tensor::zeros(&gpu, &out_shape).unwrap();
        run_dispatches(&gpu, &[&op.prepare(&gpu, &shape, x.buffer(), y.buffer()).unwrap()]).unwrap();
        let (conv, conv_shape) = reference::conv2d(&input, shape, &config, &weights, &bias);
        let (want, want_shape) = reference::pool2d(&conv, conv_shape, &pool);
        assert_eq!(out_shape, want_shape.to_vec());
        assert_close(
            &format!("conv2d+max_pool {shape:?} -> {filters}"),
            y.download(&gpu).unwrap().data(),
            &want,
            ATOL,
            RTOL,
        );
    }
    // Overlapping or padded pools are not fused.
    for other in [
        Pool2dConfig { strides: (1, 1), ..pool.clone() },
        Pool2dConfig { padding: Padding::Same, ..pool.clone() },
        Pool2dConfig { kind: PoolKind::Average, ..pool.clone() },
        Pool2dConfig { pool: (3, 3), strides: (3, 3), ..pool.clone() },
    ] {
        assert!(!Conv2d::fuses_max_pool(&other), "{other:?}");
    }
}

fn pool_case(gpu: &Gpu, rng: &mut impl Rng, shape: [usize; 4], config: Pool2dConfig) {
    let input = random_vec(rng, shape.iter().product());
    let op = Pool2d::new(gpu, config.clone()).unwrap();
    let out_shape = op.output_shape(&shape).unwrap();
    let x = upload(gpu, &shape, input.clone());
    let y = Tensor::zeros(gpu, &out_shape).unwrap();
    let dispatch = op.prepare(gpu, &shape, x.buffer(), y.buffer()).unwrap();
    run_dispatches(gpu, &[&dispatch]).unwrap();
    let (want, want_shape) = reference::pool2d(&input, shape, &config);
    assert_eq!(out_shape, want_shape.to_vec());
    assert_close(&format!("pool2d {shape:?} {config:?}"), y.download(gpu).unwrap().data(), &want, ATOL, RTOL);
}

#[test]
fn pooling_matches_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(3);
    for kind in [PoolKind::Max, PoolKind::Average] {
        let config = |pool, strides, padding| Pool2dConfig { kind, pool, strides, padding };
        pool_case(&gpu, &mut rng, [2, 26, 26, 32], config((2, 2), (2, 2), Padding::Valid));
        pool_case(&gpu, &mut rng, [1, 11, 11, 64], config((2, 2), (2, 2), Padding::Valid));
        pool_case(&gpu, &mut rng, [3, 9, 15, 8], config((2, 2), (1, 2), Padding::Same));
        pool_case(&gpu, &mut rng, [1, 5, 4, 5], config((3, 3), (2, 2), Padding::Same));
        pool_case(&gpu, &mut rng, [2, 7, 5, 3], config((3, 2), (1, 1), Padding::Valid));
        pool_case(&gpu, &mut rng, [1, 1, 1, 1], config((1, 1), (1, 1), Padding::Same));
    }
    for shape in [[1, 1, 1, 1], [2, 3, 2, 6], [3, 13, 11, 7]] {
        let input = random_vec(&mut rng, shape.iter().product());
        let op = GlobalAveragePool2d::new(&gpu).unwrap();
        let x = upload(&gpu, &shape, input.clone());
        let y = Tensor::zeros(&gpu, &[shape[0], shape[3]]).unwrap();
        let dispatch = op.prepare(&gpu, &shape, x.buffer(), y.buffer()).unwrap();
        run_dispatches(&gpu, &[&dispatch]).unwrap();
        let want = reference::global_average_pool2d(&input, shape);
        assert_close(&format!("global average pool {shape:?}"), y.download(&gpu).unwrap().data(), &want, ATOL, RTOL);
    }
}

fn distances_on_gpu(gpu: &Gpu, embedding: &[f32], pairs: usize, dim: usize, metric: Distance) -> Vec<f32> {
    let op = PairDistance::new(gpu, metric).unwrap();
    let x = upload(gpu, &[2 * pairs, dim], embedding.to_vec());
    let y = Tensor::zeros(gpu, &[pairs]).unwrap();
    let dispatch = op.prepare(gpu, pairs, dim, x.buffer(), y.buffer()).unwrap();
    run_dispatches(gpu, &[&dispatch]).unwrap();
    y.download(gpu).unwrap().into_data()
}

#[test]
fn distances_match_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(4);
    for (pairs, dim) in [(1, 1), (1, 128), (5, 7), (3, 257), (17, 1000), (2, 6400)] {
        let embedding = random_vec(&mut rng, 2 * pairs * dim);
        for metric in Distance::ALL {
            let got = distances_on_gpu(&gpu, &embedding, pairs, dim, metric);
            let want = reference::pair_distances(&embedding, pairs, dim, metric);
            assert_close(&format!("{metric} over {pairs} pairs × {dim}"), &got, &want, ATOL, RTOL);
        }
    }
}

#[test]
fn identical_pairs_give_exactly_zero_and_zero_vectors_no_nan() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(5);
    for dim in [1, 3, 128, 1001] {
        let row = random_vec(&mut rng, dim);
        let zeros = vec![0.0; dim];
        // Pairs: (row,row), (zeros,zeros), (row,zeros).
        let embedding: Vec<f32> = [&row[..], &zeros, &row, &row, &zeros, &zeros].concat();
        for metric in Distance::ALL {
            let got = distances_on_gpu(&gpu, &embedding, 3, dim, metric);
            assert_eq!(got[0], 0.0, "{metric}: identical rows of dim {dim} gave {}", got[0]);
            assert_eq!(got[1], 0.0, "{metric}: identical zero rows of dim {dim} gave {}", got[1]);
            assert!(got[2].is_finite() && got[2] > 0.0, "{metric}: row vs zeros gave {}", got[2]);
        }
    }
}

/// `activate(linear + residual)`: the reference of an op with a residual fused in.
fn add_then_activate(linear: &[f32], residual: &[f32], activation: Activation) -> Vec<f32> {
    linear.iter().zip(residual).map(|(&y, &r)| reference::activation(y + r, activation)).collect()
}

#[test]
fn dense_with_residual_matches_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(21);
    for (rows, inf, outf, activation) in [(37, 13, 19, Activation::Relu), (1, 5, 3, Activation::Linear)] {
        let input = random_vec(&mut rng, rows * inf);
        let kernel: Vec<f32> = random_vec(&mut rng, inf * outf).iter().map(|v| v / (inf as f32).sqrt()).collect();
        let bias = random_vec(&mut rng, outf);
        let shortcut = random_vec(&mut rng, rows * outf);
        let op = Dense::with_residual(&gpu, inf, outf, &kernel, Some(&bias), activation, Precision::F32).unwrap();
        let x = upload(&gpu, &[rows, inf], input.clone());
        let r = upload(&gpu, &[rows, outf], shortcut.clone());
        let y = Tensor::zeros(&gpu, &[rows, outf]).unwrap();
        let dispatch =
            op.prepare_with_residual(&gpu, x.shape(), x.buffer(), Some((r.shape(), r.buffer())), y.buffer()).unwrap();
        run_dispatches(&gpu, &[&dispatch]).unwrap();
        let linear = reference::dense(&input, rows, &kernel, &bias, inf, Activation::Linear);
        let want = add_then_activate(&linear, &shortcut, activation);
        assert_close(
            &format!("dense {rows}x{inf}->{outf} + residual"),
            y.download(&gpu).unwrap().data(),
            &want,
            ATOL,
            RTOL,
        );
        // A residual of another shape, or none, is an error.
        let wrong = upload(&gpu, &[rows, outf + 1], vec![0.0; rows * (outf + 1)]);
        let err =
            op.prepare_with_residual(&gpu, x.shape(), x.buffer(), Some((wrong.shape(), wrong.buffer())), y.buffer());
        assert!(matches!(err, Err(siamese_wgpu::Error::ShapeMismatch { .. })), "{err:?}");
        assert!(op.prepare(&gpu, x.shape(), x.buffer(), y.buffer()).is_err());
    }
}

#[test]
fn conv2d_with_residual_matches_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(22);
    for stride in [1, 2] {
        let config = Conv2dConfig {
            in_channels: 3,
            filters: 19,
            kernel: (3, 3),
            strides: (stride, stride),
            dilation: (1, 1),
            padding: Padding::Same,
            activation: Activation::Relu,
        };
        let shape = [2, 7, 9, 3];
        let input = random_vec(&mut rng, shape.iter().product());
        let kernel: Vec<f32> = random_vec(&mut rng, config.kernel_len()).iter().map(|v| v / 27f32.sqrt()).collect();
        let bias = random_vec(&mut rng, 19);
        let op = Conv2d::with_residual(&gpu, config.clone(), &kernel, Some(&bias), Precision::F32).unwrap();
        let out_shape = op.output_shape(&shape).unwrap();
        let shortcut = random_vec(&mut rng, out_shape.iter().product());
        let x = upload(&gpu, &shape, input.clone());
        let r = upload(&gpu, &out_shape, shortcut.clone());
        let y = Tensor::zeros(&gpu, &out_shape).unwrap();
        let dispatch =
            op.prepare_with_residual(&gpu, &shape, x.buffer(), Some((r.shape(), r.buffer())), y.buffer()).unwrap();
        run_dispatches(&gpu, &[&dispatch]).unwrap();
        let linear = Conv2dConfig { activation: Activation::Linear, ..config.clone() };
        let (out, _) = reference::conv2d(&input, shape, &linear, &kernel, &bias);
        let want = add_then_activate(&out, &shortcut, Activation::Relu);
        assert_close(
            &format!("conv2d stride {stride} + residual"),
            y.download(&gpu).unwrap().data(),
            &want,
            ATOL,
            RTOL,
        );
        let err = op.prepare_with_residual(&gpu, &shape, x.buffer(), Some((x.shape(), x.buffer())), y.buffer());
        assert!(matches!(err, Err(siamese_wgpu::Error::ShapeMismatch { .. })), "{err:?}");
    }
}
