//! Pooling (1-D windows, global max / average with keepdims), Softmax and the softmax
//! activations, UnitNormalization, ReLU with every setting, ELU(alpha), PReLU and ConvNeXt's
//! LayerScale: Keras files (tests/fixtures/keras_files/{seq_pool,misc_cnn,softmax_axes,
//! layer_scale}.*, from tools/make_keras_files.py) give Keras' outputs on the GPU and on the
//! CPU reference; each kernel matches the reference on random data of sizes that are not
//! multiples of the workgroup; bad settings are typed errors.

mod common;

use common::keras::{
    edited, encoder_files_match_keras_on_the_cpu_reference, encoder_files_match_keras_on_the_gpu, fixture,
    functional_layer, load_err, sequential_layer,
};
use common::{assert_close, gpu, random_vec, rng};
use serde_json::{json, Value};
use siamese_wgpu::layers::{Dense, GlobalPool, LayerOp, LayerScale, Pool1d, Prelu, Softmax, ThenSoftmax, UnitNorm};
use siamese_wgpu::model::{Layer, ModelSpec};
use siamese_wgpu::ops::{Activation, Padding, PoolKind};
use siamese_wgpu::{reference, Array, Error, SiameseModel};

/// Encoder files: Keras' golden is the euclidean distance of the encoder outputs.
const FILES: [(&str, &str); 7] = [
    ("seq_pool.keras", "seq_pool"),
    ("seq_pool.h5", "seq_pool"),
    ("misc_cnn.keras", "misc_cnn"),
    ("misc_cnn.h5", "misc_cnn"),
    ("softmax_axes.keras", "softmax_axes"),
    ("layer_scale.keras", "layer_scale"),
    ("layer_scale.h5", "layer_scale"),
];

/// As tests/keras_files.rs: different summation orders through a few layers.
const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-3;

/// Kernel vs reference on random data: f32 against an f64 reference, GPU exp / rsqrt
/// within a few ULP.
const KERNEL_ATOL: f32 = 1e-5;
const KERNEL_RTOL: f32 = 1e-4;

#[test]
fn misc_layer_models_match_keras_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    encoder_files_match_keras_on_the_gpu(&gpu, &FILES, ATOL, RTOL);
}

#[test]
fn misc_layer_models_match_keras_on_the_cpu_reference() {
    encoder_files_match_keras_on_the_cpu_reference(&FILES, ATOL, RTOL);
}

/// The kernels the files load into: the softmax activations follow their Dense, the 1-D
/// pools run the 2-D kernel, LayerScale the channel affine, StochasticDepth nothing.
#[test]
fn misc_layers_load_into_their_kernels() {
    let Some(gpu) = gpu() else { return };
    let kernels =
        |file: &str| -> Vec<String> { SiameseModel::load_on(gpu.clone(), fixture(file)).unwrap().graph().describe() };
    let seq = kernels("seq_pool.keras");
    assert_eq!(seq.iter().filter(|k| k.contains("pool2d (1-D)")).count(), 4, "{seq:#?}");
    assert_eq!(seq.iter().filter(|k| k.contains("global max pool")).count(), 2, "{seq:#?}");
    assert!(seq.iter().any(|k| k.contains("dense") && k.contains("+ softmax over axes 2..3")), "{seq:#?}");
    assert!(seq.iter().any(|k| k.contains("dense") && k.contains("+ logsoftmax over axes 2..3")), "{seq:#?}");
    let cnn = kernels("misc_cnn.keras");
    assert_eq!(cnn.iter().filter(|k| k.contains("prelu")).count(), 2, "{cnn:#?}");
    assert!(cnn.iter().any(|k| k.contains("EluAlpha")), "{cnn:#?}");
    assert!(cnn.iter().any(|k| k.contains("ReluWith")), "{cnn:#?}");
    assert!(cnn.iter().any(|k| k.contains("l2normalize over axes 1..2")), "{cnn:#?}");
    let scale = kernels("layer_scale.keras");
    assert!(scale.iter().any(|k| k.contains("channel affine")), "{scale:#?}");
    assert!(!scale.iter().any(|k| k.contains("stochastic")), "{scale:#?}");
}

/// Runs `op` alone on `batch` random samples of `sample` shape on the GPU and compares
/// with its reference.
fn kernel_matches_reference(what: &str, op: impl LayerOp + 'static, sample: &[usize], batch: usize, seed: u64) {
    let Some(gpu) = gpu() else { return };
    let spec =
        ModelSpec { name: what.into(), input_shape: sample.to_vec(), layers: vec![Layer::new(what, op, vec![0])] };
    let model = SiameseModel::from_spec(gpu, spec.clone()).unwrap();
    let mut rng = rng(seed);
    let len = batch * sample.iter().product::<usize>();
    let input: Vec<f32> = random_vec(&mut rng, len).iter().map(|v| 4.0 * v).collect();
    let shape: Vec<usize> = std::iter::once(batch).chain(sample.iter().copied()).collect();
    let got = model.embed(&Array::new(shape, input.clone()).unwrap()).unwrap();
    let want = spec.reference_forward(&input, batch).unwrap();
    assert_close(what, got.data(), &want, KERNEL_ATOL, KERNEL_RTOL);
}

#[test]
fn softmax_and_unit_norm_kernels_match_the_reference() {
    // Rows shorter and longer than the 64-invocation workgroup, one axis and several,
    // the last one and inner ones; batch 1 and primes.
    let cases: [(&[usize], std::ops::Range<usize>, usize); 6] = [
        (&[37], 1..2, 3),
        (&[131], 1..2, 1),
        (&[5, 7, 13], 3..4, 2),
        (&[5, 7, 13], 1..3, 3),
        (&[6, 11, 3], 2..3, 2),
        (&[70, 3], 1..2, 5),
    ];
    for (i, (sample, axes, batch)) in cases.iter().enumerate() {
        for log in [false, true] {
            let op = Softmax { axes: axes.clone(), log };
            kernel_matches_reference(&format!("softmax {sample:?} {axes:?} log {log}"), op, sample, *batch, i as u64);
        }
        let op = UnitNorm { axes: axes.clone() };
        kernel_matches_reference(&format!("unit norm {sample:?} {axes:?}"), op, sample, *batch, 10 + i as u64);
    }
}

/// The reference itself: softmax rows sum to 1 and log-softmax is its log; unit norms have
/// norm 1; a zero row stays zero (Keras: x · min(rsqrt(0), 1e12) = 0).
#[test]
fn softmax_and_unit_norm_references_are_what_keras_computes() {
    let x = [1.0f32, 2.0, 3.0, 0.0, 0.0, 0.0];
    let inputs = |shape: &'static [usize]| (shape, x);
    let run = |op: &dyn LayerOp| {
        let (shape, x) = inputs(&[2, 3]);
        op.reference(&siamese_wgpu::layers::Inputs { values: &[&x], shapes: &[shape], mask: &[] }).unwrap()
    };
    let soft = run(&Softmax { axes: 1..2, log: false });
    let e: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|v| v.exp()).collect();
    let sum: f64 = e.iter().sum();
    let want: Vec<f32> = e.iter().map(|v| (v / sum) as f32).chain([1.0 / 3.0; 3]).collect();
    assert_close("softmax", &soft, &want, 1e-7, 1e-6);
    let log = run(&Softmax { axes: 1..2, log: true });
    assert_close("log softmax", &log, &want.iter().map(|v| v.ln()).collect::<Vec<_>>(), 1e-6, 1e-6);
    let norm = run(&UnitNorm { axes: 1..2 });
    let n = 14f32.sqrt();
    assert_close("unit norm", &norm, &[1.0 / n, 2.0 / n, 3.0 / n, 0.0, 0.0, 0.0], 1e-7, 1e-6);
    // Softmax over the batch axis, or past the last axis, is a shape error.
    for axes in [0..1, 2..3, 1..1] {
        assert!(Softmax { axes: axes.clone(), log: false }.output_shape(&[&[2, 3]]).is_err(), "{axes:?}");
    }
}

#[test]
fn dense_then_softmax_matches_the_reference() {
    let mut rng = rng(7);
    let (inf, outf) = (13, 37);
    let dense = Dense {
        in_features: inf,
        out_features: outf,
        kernel: random_vec(&mut rng, inf * outf),
        bias: Some(random_vec(&mut rng, outf)),
        activation: Activation::Linear,
        residual: false,
    };
    for log in [false, true] {
        let op = ThenSoftmax { op: std::sync::Arc::new(dense.clone()), softmax: Softmax::last_axis(3, log) };
        kernel_matches_reference(&format!("dense then softmax log {log}"), op, &[5, inf], 3, 70);
    }
}

#[test]
fn pooling_kernels_match_the_reference() {
    for (i, (kind, pool, stride, padding)) in [
        (PoolKind::Max, 2, 2, Padding::Valid),
        (PoolKind::Average, 3, 2, Padding::Same),
        (PoolKind::Max, 5, 1, Padding::Same),
        (PoolKind::Average, 4, 3, Padding::Valid),
    ]
    .into_iter()
    .enumerate()
    {
        let op = Pool1d::new(kind, pool, stride, padding);
        kernel_matches_reference(
            &format!("pool1d {kind:?} {pool}/{stride} {padding:?}"),
            op,
            &[37, 7],
            3,
            20 + i as u64,
        );
    }
    for kind in [PoolKind::Max, PoolKind::Average] {
        for keepdims in [false, true] {
            let op = GlobalPool { kind, spatial: 1, keepdims };
            kernel_matches_reference(&format!("global {kind:?} 1d {keepdims}"), op, &[37, 13], 3, 30);
        }
        let op = GlobalPool { kind, spatial: 2, keepdims: true };
        kernel_matches_reference(&format!("global {kind:?} 2d"), op, &[7, 11, 13], 2, 31);
    }
    // 300 channels: more outputs than one 256-invocation workgroup.
    kernel_matches_reference(
        "global max 2d wide",
        GlobalPool { kind: PoolKind::Max, spatial: 2, keepdims: false },
        &[3, 5, 300],
        2,
        32,
    );
}

/// The global max reference is the maximum over every cell, per channel.
#[test]
fn global_max_pool_reference_is_the_maximum() {
    let x: Vec<f32> = (0..2 * 3 * 4 * 5).map(|i| ((i * 37) % 23) as f32 - 11.0).collect();
    let shape: &[usize] = &[2, 3, 4, 5];
    let op = GlobalPool { kind: PoolKind::Max, spatial: 2, keepdims: false };
    let got = op.reference(&siamese_wgpu::layers::Inputs { values: &[&x], shapes: &[shape], mask: &[] }).unwrap();
    let want: Vec<f32> = (0..10)
        .map(|bc| {
            let (b, c) = (bc / 5, bc % 5);
            (0..12).map(|cell| x[(b * 12 + cell) * 5 + c]).fold(f32::NEG_INFINITY, f32::max)
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(op.output_shape(&[shape]).unwrap(), vec![2, 5]);
    assert_eq!(GlobalPool { keepdims: true, ..op.clone() }.output_shape(&[shape]).unwrap(), vec![2, 1, 1, 5]);
    assert!(op.output_shape(&[&[2, 3, 5]]).is_err(), "a sequence is not an image");
}

#[test]
fn prelu_kernel_matches_the_reference() {
    let mut rng = rng(40);
    let sample = [7, 9, 5];
    // Per channel, per value, shared over the middle axis only, shared over all.
    for param in [[1, 1, 5], [7, 9, 5], [7, 1, 5], [1, 1, 1]] {
        let alpha = random_vec(&mut rng, param.iter().product());
        let op = Prelu::from_keras(&param, &alpha, &sample).unwrap();
        kernel_matches_reference(&format!("prelu {param:?}"), op, &sample, 3, 41);
    }
}

/// PReLU's expansion of alpha against a plain broadcast of Keras' alpha.
#[test]
fn prelu_expands_alpha_as_keras_broadcasts_it() {
    let sample = [3, 4, 2];
    let param = [3, 1, 2];
    let alpha: Vec<f32> = (0..6).map(|i| i as f32 / 10.0).collect();
    let op = Prelu::from_keras(&param, &alpha, &sample).unwrap();
    assert_eq!(op.shape, vec![3, 4, 2]);
    for y in 0..3 {
        for x in 0..4 {
            for c in 0..2 {
                assert_eq!(op.alpha[(y * 4 + x) * 2 + c], alpha[y * 2 + c], "at {y} {x} {c}");
            }
        }
    }
    let per_channel = Prelu::from_keras(&[1, 1, 2], &[0.5, 0.25], &sample).unwrap();
    assert_eq!((per_channel.shape.as_slice(), per_channel.alpha.as_slice()), (&[2][..], &[0.5, 0.25][..]));
    assert!(Prelu::from_keras(&[3, 2, 2], &[0.0; 12], &sample).is_none(), "alpha does not broadcast");
    assert!(Prelu::from_keras(&[3, 4, 2], &[0.0; 5], &sample).is_none(), "wrong value count");
}

#[test]
fn layer_scale_kernel_matches_the_reference() {
    let mut rng = rng(50);
    let op = LayerScale { gamma: random_vec(&mut rng, 13), activation: Activation::Linear };
    kernel_matches_reference("layer scale", op, &[7, 3, 13], 3, 51);
}

/// Keras 3 `relu` with its settings, as its docstring examples and static_call give them.
#[test]
fn relu_settings_compute_what_keras_computes() {
    let x = [-10.0f32, -5.0, 0.0, 0.3, 5.0, 10.0];
    let apply = |a: Activation| x.iter().map(|&v| reference::activation(v, a)).collect::<Vec<_>>();
    assert_eq!(apply(Activation::relu_with(0.0, None, 5.0)), [0.0, 0.0, 0.0, 0.0, 0.0, 10.0]);
    assert_eq!(apply(Activation::relu_with(0.0, Some(5.0), 0.0)), [0.0, 0.0, 0.0, 0.3, 5.0, 5.0]);
    assert_eq!(apply(Activation::relu_with(0.5, None, 0.0)), [-5.0, -2.5, 0.0, 0.3, 5.0, 10.0]);
    // max 4, threshold 0.5, slope 0.1: min(x > 0.5 ? x : 0, 4) − 0.1 · max(0.5 − x, 0).
    let mixed = apply(Activation::relu_with(0.1, Some(4.0), 0.5));
    assert_close("relu mixed", &mixed, &[-1.05, -0.55, -0.05, -0.02, 4.0, 4.0], 1e-6, 1e-6);
    // The plain cases keep their own variants (and fingerprints).
    assert_eq!(Activation::relu_with(0.0, None, 0.0), Activation::Relu);
    assert_eq!(Activation::relu_with(0.0, Some(6.0), 0.0), Activation::Relu6);
    assert_eq!(Activation::relu_with(0.2, None, 0.0), Activation::leaky_relu(0.2));
    assert_eq!(Activation::elu(1.0), Activation::Elu);
    let elu = reference::activation(-1.0, Activation::elu(0.7));
    assert!((elu - 0.7 * ((-1.0f32).exp() - 1.0)).abs() < 1e-7, "{elu}");
}

fn unsupported_key(err: &Error) -> &str {
    match err {
        Error::UnsupportedConfig { key, .. } => key,
        other => panic!("expected UnsupportedConfig, got {other}"),
    }
}

/// Bad settings are typed errors naming the key, never panics.
#[test]
fn bad_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, &str, Value); 11] = [
        ("misc_cnn.keras", "softmax", "axis", json!(0)),
        ("misc_cnn.keras", "softmax", "axis", json!(7)),
        ("misc_cnn.keras", "softmax", "axis", json!("last")),
        ("misc_cnn.keras", "unit_norm", "axis", json!([])),
        ("softmax_axes.keras", "softmax_hw", "axis", json!([1, 3])),
        ("seq_pool.keras", "max_pool", "pool_size", json!([-2])),
        ("seq_pool.keras", "avg_pool", "strides", json!(0)),
        ("seq_pool.keras", "max_pool", "padding", json!("causal")),
        ("misc_cnn.keras", "relu_mixed", "max_value", json!(-1.0)),
        ("misc_cnn.keras", "prelu_channels", "shared_axes", json!([4])),
        ("misc_cnn.keras", "elu", "alpha", json!("big")),
    ];
    for (file, layer, key, value) in cases {
        let path = edited(dir.path(), file, |json| sequential_layer(json, layer)["config"][key] = value.clone());
        let err = load_err(&path);
        assert_eq!(unsupported_key(&err), key, "{file} {layer} {key}={value}: {err}");
    }
    let path = edited(dir.path(), "layer_scale.keras", |json| {
        functional_layer(json, "layer_scale")["config"]["projection_dim"] = json!(6)
    });
    assert_eq!(unsupported_key(&load_err(&path)), "projection_dim");
    // A softmax activation where it is not the output's (an LSTM's cell) stays unsupported;
    // on a pool that has no activation it is a layer like any other.
    let path = edited(dir.path(), "seq_pool.keras", |json| {
        sequential_layer(json, "dense")["config"]["activation"] = json!("sparsemax")
    });
    assert_eq!(unsupported_key(&load_err(&path)), "activation");
}

/// A Keras alias and a softmax Activation layer load (the latter as the softmax alone).
#[test]
fn softmax_activation_layer_is_a_softmax() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited(dir.path(), "misc_cnn.keras", |json| {
        let layer = sequential_layer(json, "softmax");
        layer["class_name"] = json!("Activation");
        layer["config"] = json!({"name": "softmax", "activation": "softmax", "trainable": true, "dtype": "float32"});
    });
    let spec = siamese_wgpu::model::keras_file::load_keras_file(&path).unwrap().spec;
    let layer = spec.layers.iter().find(|l| l.name == "softmax").unwrap();
    assert_eq!(layer.op.name(), "softmax");
    assert_eq!(layer.op.settings(), "axes 3..4 log false");
}
