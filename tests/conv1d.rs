//! Conv1D: the layer's CPU reference against a direct 1-D convolution written from Keras'
//! definition (valid / same / causal, strides, dilation, groups); the kernel against the
//! reference on random data (lengths 1 to 131, odd channel counts, batch 1 to 3, f32 and
//! f16 weights); Keras files (tests/fixtures/keras_files/conv1d*, from
//! tools/make_keras_files.py) give Keras' outputs on the GPU and on the CPU reference, a
//! BatchNormalization and activations after a Conv1D fold into it, token ids of any length
//! run; bad configs and weights are typed errors naming the layer and the key.

mod common;

use common::keras::{
    edited, encoder_files_match_keras_on_the_cpu_reference, encoder_files_match_keras_on_the_gpu, fixture, golden,
    load_err, sequential_layer,
};
use common::{assert_close, gpu, random_vec, rng};
use half::f16;
use serde_json::json;
use siamese_wgpu::layers::{Conv1d, Conv1dConfig, Conv1dPadding, Inputs, LayerOp};
use siamese_wgpu::model::keras_file::load_keras_file;
use siamese_wgpu::model::{Layer, ModelSpec};
use siamese_wgpu::ops::{Activation, Precision};
use siamese_wgpu::{Array, Distance, Error, SiameseModel};

/// f32 on both sides; only the summation order differs (at most 5·13 terms per output).
const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

fn config(
    (in_channels, filters, kernel): (usize, usize, usize),
    stride: usize,
    dilation: usize,
    padding: Conv1dPadding,
    groups: usize,
    activation: Activation,
) -> Conv1dConfig {
    Conv1dConfig { in_channels, filters, kernel, stride, dilation, padding, groups, activation }
}

fn random_layer(config: Conv1dConfig, bias: bool, seed: u64) -> Conv1d {
    let mut rng = rng(seed);
    let kernel = random_vec(&mut rng, config.kernel_len());
    let bias = bias.then(|| random_vec(&mut rng, config.filters));
    Conv1d::new(config, kernel, bias).unwrap()
}

/// Keras' Conv1D written out for `[batch, steps, c]`, linear activation: output `t`, filter
/// `f` sums `x[t·stride + j·dilation − pad_before, group(f)·c/g + i] · kernel[j, i, f]`
/// with zeros outside; causal pads `dilation·(k − 1)` before, same pads
/// `max((out − 1)·stride + dilation·(k − 1) + 1 − steps, 0)` split with the smaller half
/// before (TensorFlow / JAX).
fn keras_conv1d(
    x: &[f32],
    [batch, steps, c]: [usize; 3],
    cfg: &Conv1dConfig,
    kernel: &[f32],
    bias: &[f32],
) -> Vec<f32> {
    let span = cfg.dilation * (cfg.kernel - 1) + 1;
    let (out_steps, before) = match cfg.padding {
        Conv1dPadding::Valid => ((steps - span) / cfg.stride + 1, 0),
        Conv1dPadding::Causal => ((steps - 1) / cfg.stride + 1, cfg.dilation * (cfg.kernel - 1)),
        Conv1dPadding::Same => {
            let out = steps.div_ceil(cfg.stride);
            (out, ((out - 1) * cfg.stride + span).saturating_sub(steps) / 2)
        }
    };
    let (group_in, group_out, f) = (c / cfg.groups, cfg.filters / cfg.groups, cfg.filters);
    let mut out = vec![0.0f32; batch * out_steps * f];
    for b in 0..batch {
        for t in 0..out_steps {
            for o in 0..f {
                let first = (o / group_out) * group_in;
                let mut sum = bias[o] as f64;
                for j in 0..cfg.kernel {
                    let at = (t * cfg.stride + j * cfg.dilation) as isize - before as isize;
                    if at < 0 || at >= steps as isize {
                        continue;
                    }
                    for i in 0..group_in {
                        let value = x[(b * steps + at as usize) * c + first + i] as f64;
                        sum += value * kernel[(j * group_in + i) * f + o] as f64;
                    }
                }
                out[(b * out_steps + t) * f + o] = sum as f32;
            }
        }
    }
    out
}

/// (steps, (in, filters, k), stride, dilation, padding, groups, activation, batch): steps
/// from 1 to 131 (more than one 128-item workgroup), odd channel counts.
#[allow(clippy::type_complexity, reason = "a table of test cases")]
fn cases() -> Vec<(usize, (usize, usize, usize), usize, usize, Conv1dPadding, usize, Activation, usize)> {
    use Conv1dPadding::{Causal, Same, Valid};
    vec![
        (23, (5, 7, 3), 2, 1, Valid, 1, Activation::Linear, 3),
        (11, (7, 9, 3), 1, 2, Same, 1, Activation::Relu, 2),
        (11, (9, 6, 4), 1, 3, Causal, 1, Activation::Linear, 1),
        (13, (6, 6, 2), 3, 1, Causal, 3, Activation::Tanh, 3),
        (4, (6, 8, 3), 2, 1, Same, 2, Activation::Linear, 2),
        (1, (3, 5, 3), 1, 1, Causal, 1, Activation::Silu, 2),
        (1, (3, 5, 4), 2, 1, Same, 1, Activation::Linear, 1),
        (131, (13, 11, 5), 1, 1, Same, 1, Activation::Gelu, 2),
        (131, (13, 17, 5), 3, 1, Valid, 1, Activation::Linear, 1),
        (97, (1, 3, 7), 1, 4, Causal, 1, Activation::Relu6, 3),
        (37, (12, 12, 3), 1, 1, Same, 12, Activation::Linear, 2),
        (29, (15, 10, 2), 2, 2, Valid, 5, Activation::Sigmoid, 3),
        (8, (4, 4, 8), 1, 1, Same, 1, Activation::Linear, 1),
    ]
}

#[test]
fn reference_is_keras_conv1d() {
    for (i, (steps, sizes, stride, dilation, padding, groups, _, batch)) in cases().into_iter().enumerate() {
        let cfg = config(sizes, stride, dilation, padding, groups, Activation::Linear);
        let layer = random_layer(cfg.clone(), true, 10 + i as u64);
        let weights = layer.weights();
        let shape = [batch, steps, sizes.0];
        let input = random_vec(&mut rng(100 + i as u64), shape.iter().product());
        let got = layer.reference(&Inputs { values: &[&input], shapes: &[&shape], mask: &[] }).unwrap();
        let want = keras_conv1d(&input, shape, &cfg, weights[0], weights[1]);
        assert_close(&format!("reference {cfg:?} on {shape:?}"), &got, &want, ATOL, RTOL);
        let out = layer.output_shape(&[&shape]).unwrap();
        assert_eq!(out.iter().product::<usize>(), want.len(), "{cfg:?}");
    }
}

/// A case worked by hand: one channel, kernel [1, 2], causal with dilation 2 over steps
/// (1, 2, 3, 4): output t reads x[t − 2] and x[t] (zero before the start).
#[test]
fn causal_reference_by_hand() {
    let cfg = config((1, 1, 2), 1, 2, Conv1dPadding::Causal, 1, Activation::Linear);
    let layer = Conv1d::new(cfg, vec![1.0, 10.0], Some(vec![0.5])).unwrap();
    let (input, shape) = ([1.0, 2.0, 3.0, 4.0], [1, 4, 1]);
    let got = layer.reference(&Inputs { values: &[&input], shapes: &[&shape], mask: &[] }).unwrap();
    assert_eq!(got, [10.5, 20.5, 31.5, 42.5]);
    assert_eq!(layer.output_shape(&[&shape]).unwrap(), [1, 4, 1]);
    assert_eq!(layer.flops(&[&shape]), 2 * 4 * 2);
    assert_eq!(layer.parameter_count(), 3);
}

fn rounded(values: &[f32]) -> Vec<f32> {
    values.iter().map(|&v| f16::from_f32(v).to_f32()).collect()
}

#[test]
fn kernel_matches_the_reference() {
    let Some(gpu) = gpu() else { return };
    for (i, (steps, sizes, stride, dilation, padding, groups, activation, batch)) in cases().into_iter().enumerate() {
        let cfg = config(sizes, stride, dilation, padding, groups, activation);
        for bias in [true, false] {
            let layer = random_layer(cfg.clone(), bias, 200 + i as u64);
            let sample = vec![steps, sizes.0];
            let spec = ModelSpec {
                name: "conv1d".into(),
                input_shape: sample.clone(),
                layers: vec![Layer::new("conv1d", layer.clone(), vec![0])],
            };
            let input = random_vec(&mut rng(300 + i as u64), batch * steps * sizes.0);
            let shape = [batch, steps, sizes.0];
            let want = layer.reference(&Inputs { values: &[&input], shapes: &[&shape], mask: &[] }).unwrap();
            let array = Array::new(shape.to_vec(), input.clone()).unwrap();
            let model = SiameseModel::from_spec_with_precision(gpu.clone(), spec.clone(), Precision::F32).unwrap();
            assert!(model.graph().describe()[0].contains("(1-D)"), "{:?}", model.graph().describe());
            let what = format!("conv1d {cfg:?} bias {bias} on {shape:?}");
            assert_close(&format!("{what} (F32)"), model.embed(&array).unwrap().data(), &want, ATOL, RTOL);
            // f16 weights: against the reference with the same rounded weights.
            let weights = layer.weights();
            let bias_values = bias.then(|| weights[1].to_vec());
            let rounded_layer = Conv1d::new(cfg.clone(), rounded(weights[0]), bias_values).unwrap();
            let want = rounded_layer.reference(&Inputs { values: &[&input], shapes: &[&shape], mask: &[] }).unwrap();
            let model = SiameseModel::from_spec_with_precision(gpu.clone(), spec, Precision::F16).unwrap();
            assert_close(&format!("{what} (F16)"), model.embed(&array).unwrap().data(), &want, ATOL, RTOL);
        }
    }
}

/// The same layer over a variable time axis (input shape `[0, c]`): one model runs
/// batches of any length, each as the fixed-length reference.
#[test]
fn kernel_runs_sequences_of_any_length() {
    let Some(gpu) = gpu() else { return };
    let cfg = config((5, 7, 3), 2, 1, Conv1dPadding::Causal, 1, Activation::Relu);
    let layer = random_layer(cfg, true, 400);
    let spec = ModelSpec {
        name: "conv1d".into(),
        input_shape: vec![0, 5],
        layers: vec![Layer::new("c", layer.clone(), vec![0])],
    };
    let model = SiameseModel::from_spec(gpu, spec).unwrap();
    for steps in [1, 2, 7, 130] {
        let shape = [2, steps, 5];
        let input = random_vec(&mut rng(steps as u64), shape.iter().product());
        let want = layer.reference(&Inputs { values: &[&input], shapes: &[&shape], mask: &[] }).unwrap();
        let got = model.embed(&Array::new(shape.to_vec(), input).unwrap()).unwrap();
        assert_eq!(got.shape(), [2, steps.div_ceil(2), 7]);
        assert_close(&format!("{steps} steps"), got.data(), &want, ATOL, RTOL);
    }
}

/// Encoder files: Keras' golden is the euclidean distance of the encoder outputs.
const FILES: [(&str, &str); 4] = [
    ("conv1d.keras", "conv1d"),
    ("conv1d.h5", "conv1d"),
    ("conv1d_ids.keras", "conv1d_ids"),
    ("conv1d_ids.h5", "conv1d_ids"),
];

/// As tests/depthwise.rs: different summation orders through a few layers.
const KERAS_ATOL: f32 = 1e-4;
const KERAS_RTOL: f32 = 1e-3;

#[test]
fn conv1d_models_match_keras_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    encoder_files_match_keras_on_the_gpu(&gpu, &FILES, KERAS_ATOL, KERAS_RTOL);
}

#[test]
fn conv1d_models_match_keras_on_the_cpu_reference() {
    encoder_files_match_keras_on_the_cpu_reference(&FILES[..2], KERAS_ATOL, KERAS_RTOL);
    // Token ids of any length: the reference runs the batch's own steps.
    for (file, stem) in &FILES[2..] {
        let spec = load_keras_file(fixture(file)).unwrap().spec;
        let (left, right, want) = golden(stem);
        let (pairs, steps) = (left.batch(), left.shape()[1]);
        let a = spec.reference_forward_masked(left.data(), pairs, steps, &[]).unwrap();
        let b = spec.reference_forward_masked(right.data(), pairs, steps, &[]).unwrap();
        let dim = a.len() / pairs;
        let got: Vec<f32> = (0..pairs)
            .map(|i| {
                let (a, b) = (&a[i * dim..(i + 1) * dim], &b[i * dim..(i + 1) * dim]);
                a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt()
            })
            .collect();
        assert_close(&format!("{file} (CPU reference) vs Keras"), &got, &want, KERAS_ATOL, KERAS_RTOL);
    }
}

/// In conv1d.keras the BatchNormalization folds into the causal Conv1D before it and every
/// activation is in a convolution's epilogue; the grouped layers run the grouped kernel.
/// conv1d_ids.keras has a variable time axis: it runs token ids of other lengths too, and
/// Keras' mask stops at the first Conv1D (Keras 3 drops it there), so nothing is masked.
#[test]
fn keras_files_fold_and_run_any_length() {
    let Some(gpu) = gpu() else { return };
    let model = SiameseModel::load_on(gpu.clone(), fixture("conv1d.keras")).unwrap();
    let kernels = common::keras::kernels(&model);
    let expected = [
        "conv2d (activation Linear) (1-D)",
        "conv2d (activation Relu) (1-D)",
        "conv2d (activation Linear) (1-D)",
        "grouped_conv2d 3 groups (activation Tanh) (1-D)",
        "grouped_conv2d 2 groups (activation Linear) (1-D)",
    ];
    assert!(kernels.len() >= expected.len(), "{kernels:#?}");
    for (kernel, want) in kernels.iter().zip(expected) {
        assert!(kernel.starts_with(want), "{kernel:?} is not {want:?}: {kernels:#?}");
    }
    assert!(!kernels.iter().any(|k| k.starts_with("channel affine")), "{kernels:#?}");

    let model = SiameseModel::load_on(gpu, fixture("conv1d_ids.keras")).unwrap();
    assert_eq!(model.input_shape(), [0]);
    let spec = model.spec();
    for steps in [1, 4, 17] {
        let ids: Vec<f32> = (0..2 * steps).map(|i| ((i * 7 + steps) % 31) as f32).collect();
        let (left, right) = (ids[..steps].to_vec(), ids[steps..].to_vec());
        let got = model
            .distances(
                &Array::new(vec![1, steps], left.clone()).unwrap(),
                &Array::new(vec![1, steps], right.clone()).unwrap(),
                Distance::Euclidean,
            )
            .unwrap();
        let a = spec.reference_forward_masked(&left, 1, steps, &[]).unwrap();
        let b = spec.reference_forward_masked(&right, 1, steps, &[]).unwrap();
        let want = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt();
        assert_close(&format!("conv1d_ids, {steps} steps"), &got, &[want], KERAS_ATOL, KERAS_RTOL);
    }
}

fn unsupported(err: &Error) -> (&str, &str) {
    match err {
        Error::UnsupportedConfig { layer, key, .. } => (layer, key),
        other => panic!("expected an unsupported config, got {other:?}"),
    }
}

#[test]
fn bad_configs_and_weights_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let edit = |layer: &str, key: &str, value: serde_json::Value| {
        edited(dir.path(), "conv1d.keras", |json| sequential_layer(json, layer)["config"][key] = value)
    };
    for (layer, key, value) in [
        ("valid_s2", "data_format", json!("channels_first")),
        // 5 input channels and 7 filters: 5 groups divide the channels, not the filters.
        ("valid_s2", "groups", json!(5)),
        ("same_g2_s2", "groups", json!(4)),
        ("same_g2_s2", "groups", json!(0)),
        ("same_d2", "padding", json!("full")),
        ("same_d2", "kernel_size", json!([0])),
        ("same_d2", "kernel_size", json!([3, 3])),
        ("valid_s2", "strides", json!(0)),
        ("causal_d3", "dilation_rate", json!(-1)),
        ("same_d2", "activation", json!("crelu")),
    ] {
        let err = load_err(&edit(layer, key, value.clone()));
        assert_eq!(unsupported(&err), (layer, key), "{key} = {value}: {err}");
        assert!(err.to_string().contains(layer), "{err}");
    }
    // The stored kernels no longer fit the config.
    for (layer, key, value) in [
        ("same_d2", "kernel_size", json!([5])),
        ("valid_s2", "filters", json!(8)),
        ("causal_g3_s3", "groups", json!(2)),
    ] {
        let err = load_err(&edit(layer, key, value));
        assert!(matches!(err, Error::BadWeight { .. }), "{layer} {key}: {err:?}");
    }
    // use_bias=False with a bias in the file: a weight no layer uses.
    let err = load_err(&edit("valid_s2", "use_bias", json!(false)));
    assert!(err.to_string().contains("no layer uses: valid_s2/vars/1"), "{err}");
    // Valid padding over a variable time axis: not every length fits (the model is checked
    // at 1 step); the error says why.
    let path = edited(dir.path(), "conv1d_ids.keras", |json| {
        sequential_layer(json, "same_s2")["config"]["padding"] = json!("valid")
    });
    let err = load_err(&path);
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("same_s2") && err.to_string().contains("time axis is variable"), "{err}");

    // The constructor checks too.
    let base = config((6, 4, 3), 1, 1, Conv1dPadding::Same, 1, Activation::Linear);
    assert!(Conv1d::new(base.clone(), vec![0.0; 72], None).is_ok());
    assert!(Conv1d::new(base.clone(), vec![0.0; 71], None).is_err());
    assert!(Conv1d::new(base.clone(), vec![0.0; 72], Some(vec![0.0; 3])).is_err());
    assert!(Conv1d::new(Conv1dConfig { groups: 4, ..base.clone() }, vec![0.0; 18], None).is_err());
    assert!(Conv1d::new(Conv1dConfig { groups: 2, ..base.clone() }, vec![0.0; 36], None).is_ok());
    assert!(Conv1d::new(Conv1dConfig { stride: 0, ..base.clone() }, vec![0.0; 72], None).is_err());
    assert!(Conv1d::new(Conv1dConfig { kernel: 0, ..base.clone() }, Vec::new(), None).is_err());
    // Shape rule: a sequence of the layer's channels, long enough for valid padding.
    let layer = Conv1d::new(Conv1dConfig { padding: Conv1dPadding::Valid, ..base }, vec![0.0; 72], None).unwrap();
    assert!(layer.output_shape(&[&[2, 3, 6]]).is_ok());
    assert!(matches!(layer.output_shape(&[&[2, 2, 6]]), Err(Error::ShapeMismatch { .. })));
    assert!(matches!(layer.output_shape(&[&[2, 3, 5]]), Err(Error::ShapeMismatch { .. })));
    assert!(matches!(layer.output_shape(&[&[2, 1, 3, 6]]), Err(Error::ShapeMismatch { .. })));
}

/// Keras 3 drops a mask at a Conv1D (it warns that the layer does not support masking) and
/// runs it over every step: the pooling after it averages every step. Keras' Masking zeroes
/// the steps it masks and the engine's keeps them, so with a mask_value other than 0 a
/// Conv1D reading them is refused, naming the layer.
#[test]
fn a_mask_stops_at_conv1d() {
    use siamese_wgpu::layers::{GlobalAveragePool1d, Masking};
    use siamese_wgpu::passes::apply_masks;
    let spec = load_keras_file(fixture("conv1d_ids.keras")).unwrap().spec;
    assert!(spec.find::<GlobalAveragePool1d>().is_some_and(|p| !p.masked), "{spec:#?}");

    let cfg = config((3, 4, 3), 1, 1, Conv1dPadding::Same, 1, Activation::Linear);
    let masked = |mask_value: f32| ModelSpec {
        name: "masked".into(),
        input_shape: vec![0, 3],
        layers: vec![
            Layer::new("mask", Masking { mask_value }, vec![0]),
            Layer::new("conv", random_layer(cfg.clone(), true, 600), vec![1]),
            Layer::new("pool", GlobalAveragePool1d::default(), vec![2]),
        ],
    };
    let applied = apply_masks(&masked(0.0)).unwrap();
    assert!(applied.find::<GlobalAveragePool1d>().is_some_and(|p| !p.masked));
    let err = apply_masks(&masked(-1.0)).unwrap_err();
    assert_eq!(unsupported(&err), ("conv", "mask"), "{err}");
    assert!(err.to_string().contains("mask_value -1"), "{err}");
}

/// `activation="softmax"` on a Conv1D runs as the convolution, then a softmax over the
/// channels: the GPU gives the CPU reference's distances.
#[test]
fn softmax_activation_runs_after_the_convolution() {
    let Some(gpu) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = edited(dir.path(), "conv1d.keras", |json| {
        sequential_layer(json, "same_d2")["config"]["activation"] = json!("softmax")
    });
    let model = SiameseModel::load_on(gpu, &path).unwrap();
    let (left, right, _) = golden("conv1d");
    let got = model.distances(&left, &right, Distance::Euclidean).unwrap();
    let spec = model.spec();
    let pairs = left.batch();
    let (a, b) =
        (spec.reference_forward(left.data(), pairs).unwrap(), spec.reference_forward(right.data(), pairs).unwrap());
    let dim = a.len() / pairs;
    let want: Vec<f32> =
        (0..pairs).map(|i| (0..dim).map(|j| (a[i * dim + j] - b[i * dim + j]).powi(2)).sum::<f32>().sqrt()).collect();
    assert_close("conv1d with a softmax activation", &got, &want, ATOL, RTOL);
    assert!(model.graph().describe().iter().any(|k| k.contains("softmax")), "{:#?}", model.graph().describe());
}
