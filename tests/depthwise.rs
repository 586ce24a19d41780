//! Depthwise, separable and grouped convolutions: the kernel against the layers' CPU
//! reference on random data (depth multipliers 1-3, strides, dilation, same / valid /
//! explicit padding, 7 and 13 channels, odd sizes, 2 and 3 groups; f32 and f16 weights);
//! Keras files (tests/fixtures/keras_files/dw_*, from tools/make_keras_files.py) give
//! Keras' outputs on the GPU and on the CPU reference; BatchNormalization and activations
//! after them fold into them; bad configs and weights are typed errors.

mod common;

use common::keras::{
    edited, encoder_files_match_keras_on_the_cpu_reference, encoder_files_match_keras_on_the_gpu, fixture,
    functional_layer, load_err, sequential_layer,
};
use common::{assert_close, gpu, random_vec, rng};
use half::f16;
use serde_json::json;
use siamese_wgpu::layers::{ActivationLayer, BatchNorm, Conv2d, DepthwiseConv2d, Inputs, LayerOp, SeparableConv2d};
use siamese_wgpu::model::{Layer, ModelSpec};
use siamese_wgpu::ops::{Activation, Conv2dConfig, DepthwiseConv2dConfig, Padding, Precision};
use siamese_wgpu::{Array, Error, SiameseModel};

/// f32 on both sides; only the summation order differs (at most 9·16 terms per output).
const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

fn conv(
    kernel: (usize, usize),
    strides: usize,
    dilation: usize,
    padding: Padding,
    activation: Activation,
) -> Conv2dConfig {
    Conv2dConfig {
        in_channels: 0,
        filters: 0,
        kernel,
        strides: (strides, strides),
        dilation: (dilation, dilation),
        padding,
        activation,
    }
}

fn rounded(values: &[f32]) -> Vec<f32> {
    values.iter().map(|&v| f16::from_f32(v).to_f32()).collect()
}

/// Runs `op` alone on a random `[batch, ..image]` input on the GPU in `precision` and
/// compares with `reference` (the same layer, f16-rounded weights for f16).
fn check_on_gpu(
    what: &str,
    op: impl LayerOp + Clone,
    reference: &dyn LayerOp,
    image: [usize; 3],
    batch: usize,
    precision: Precision,
) {
    let gpu = gpu().unwrap();
    let spec =
        ModelSpec { name: what.into(), input_shape: image.to_vec(), layers: vec![Layer::new(what, op, vec![0])] };
    let model = SiameseModel::from_spec_with_precision(gpu, spec, precision).unwrap();
    let mut rng = rng(image.iter().product::<usize>() as u64);
    let input = random_vec(&mut rng, batch * image.iter().product::<usize>());
    let got = model.embed(&Array::new([&[batch][..], &image].concat(), input.clone()).unwrap()).unwrap();
    let shape = [&[batch][..], &image].concat();
    let want = reference.reference(&Inputs { values: &[&input], shapes: &[&shape], mask: &[] }).unwrap();
    assert_close(&format!("{what} ({precision:?})"), got.data(), &want, ATOL, RTOL);
}

fn with_rounded_kernel(layer: &DepthwiseConv2d) -> DepthwiseConv2d {
    DepthwiseConv2d { kernel: rounded(&layer.kernel), ..layer.clone() }
}

#[test]
fn depthwise_and_grouped_kernels_match_the_reference() {
    if gpu().is_none() {
        return;
    }
    let mut rng = rng(61);
    let explicit = Padding::Explicit { top: 1, bottom: 2, left: 0, right: 1 };
    // (image [h, w, c], groups (0: depthwise), filters or depth multiplier, conv, batch)
    let cases = [
        ([13, 11, 7], 0, 1, conv((3, 3), 1, 1, Padding::Same, Activation::Relu6), 3),
        ([9, 7, 13], 0, 2, conv((3, 3), 2, 1, Padding::Valid, Activation::Linear), 2),
        ([11, 9, 13], 0, 1, conv((3, 3), 1, 2, Padding::Same, Activation::Silu), 3),
        ([12, 10, 7], 0, 3, conv((5, 5), 2, 1, Padding::Same, Activation::Linear), 1),
        ([7, 9, 7], 0, 1, conv((2, 3), 1, 1, explicit, Activation::Relu), 2),
        ([5, 6, 1], 0, 2, conv((3, 3), 2, 2, Padding::Same, Activation::Tanh), 3),
        ([9, 7, 6], 2, 10, conv((3, 3), 1, 1, Padding::Same, Activation::Relu), 3),
        ([10, 9, 9], 3, 12, conv((2, 3), 2, 1, Padding::Valid, Activation::Linear), 2),
        ([7, 5, 9], 3, 9, conv((3, 3), 1, 2, Padding::Same, Activation::Gelu), 2),
        // 8 output channels per group: the shader loads each input once for all 8.
        ([6, 7, 4], 2, 16, conv((1, 1), 1, 1, Padding::Valid, Activation::Linear), 3),
        ([7, 6, 12], 3, 48, conv((3, 3), 2, 1, Padding::Same, Activation::Silu), 2),
    ];
    for (image, groups, n, conv, batch) in cases {
        let channels = image[2];
        let layer = if groups == 0 {
            let config = DepthwiseConv2dConfig {
                conv: Conv2dConfig { in_channels: channels, filters: channels * n, ..conv.clone() },
                groups: channels,
            };
            let kernel = random_vec(&mut rng, config.kernel_len());
            DepthwiseConv2d::depthwise(channels, n, conv, kernel, Some(random_vec(&mut rng, channels * n))).unwrap()
        } else {
            let config =
                DepthwiseConv2dConfig { conv: Conv2dConfig { in_channels: channels, filters: n, ..conv }, groups };
            let kernel = random_vec(&mut rng, config.kernel_len());
            DepthwiseConv2d::grouped(config, kernel, Some(random_vec(&mut rng, n))).unwrap()
        };
        let what = format!("{} {image:?} {:?}", layer.name(), layer.config);
        check_on_gpu(&what, layer.clone(), &layer, image, batch, Precision::F32);
        check_on_gpu(&what, layer.clone(), &with_rounded_kernel(&layer), image, batch, Precision::F16);
        // A bias-free layer (Keras use_bias=False) too.
        let unbiased = DepthwiseConv2d { bias: None, ..layer };
        check_on_gpu(&what, unbiased.clone(), &unbiased, image, batch, Precision::F32);
    }
}

/// The reference itself, on a case worked by hand: a 2-channel depthwise 2×1 kernel with
/// depth multiplier 2 (output channel c·2 + j reads channel c only).
/// A 1×1 stride-1 Conv2D runs the Dense GEMM over its pixels: same numbers as the
/// convolution's reference (same / valid padding, activations, with and without bias).
#[test]
fn pointwise_convolutions_run_as_gemm_and_match_the_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(62);
    for (image, filters, padding, activation, batch) in [
        ([13, 11, 7], 9, Padding::Valid, Activation::Relu6, 3),
        ([5, 3, 33], 17, Padding::Same, Activation::Linear, 2),
        ([1, 1, 129], 65, Padding::Valid, Activation::Silu, 5),
    ] {
        let config = Conv2dConfig { in_channels: image[2], filters, ..conv((1, 1), 1, 1, padding, activation) };
        let kernel = random_vec(&mut rng, image[2] * filters);
        for bias in [Some(random_vec(&mut rng, filters)), None] {
            let layer = Conv2d::new(config.clone(), kernel.clone(), bias);
            assert!(layer.is_pointwise());
            let what = format!("1x1 conv2d {image:?} -> {filters}");
            check_on_gpu(&what, layer.clone(), &layer, image, batch, Precision::F32);
            let spec = ModelSpec {
                name: what.clone(),
                input_shape: image.to_vec(),
                layers: vec![Layer::new("c", layer, vec![0])],
            };
            let described = SiameseModel::from_spec(gpu.clone(), spec).unwrap().graph().describe();
            assert!(described[0].contains("conv2d 1×1 as GEMM"), "{described:?}");
        }
    }
    // Strided or pooled 1×1 convolutions keep the convolution kernel.
    let strided = Conv2d::new(
        Conv2dConfig { in_channels: 4, filters: 3, ..conv((1, 1), 2, 1, Padding::Valid, Activation::Linear) },
        vec![0.5; 12],
        None,
    );
    assert!(!strided.is_pointwise());
    check_on_gpu("strided 1x1 conv2d", strided.clone(), &strided, [7, 7, 4], 2, Precision::F32);
}

#[test]
fn depthwise_reference_by_hand() {
    let conv = conv((2, 1), 1, 1, Padding::Valid, Activation::Linear);
    // kernel (kh=2, kw=1, C=2, m=2): [ky][c][j]
    let kernel = vec![1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0];
    let layer = DepthwiseConv2d::depthwise(2, 2, conv, kernel, Some(vec![0.5, 0.0, 0.0, -1.0])).unwrap();
    // input [1, 2, 1, 2]: pixel 0 = (1, 2), pixel 1 = (3, 4)
    let input = [1.0, 2.0, 3.0, 4.0];
    let shape = [1, 2, 1, 2];
    let inputs = Inputs { values: &[&input], shapes: &[&shape], mask: &[] };
    let got = layer.reference(&inputs).unwrap();
    // c0: j0 1·1 + 10·3 + 0.5, j1 2·1 + 20·3; c1: j0 3·2 + 30·4, j1 4·2 + 40·4 − 1
    assert_eq!(got, [31.5, 62.0, 126.0, 167.0]);
    assert_eq!(layer.output_shape(&[&shape]).unwrap(), [1, 1, 1, 4]);
    assert_eq!(layer.flops(&[&shape]), 2 * 4 * 2);
}

fn separable(channels: usize, m: usize, filters: usize, conv: Conv2dConfig, seed: u64) -> SeparableConv2d {
    let mut rng = rng(seed);
    let activation = conv.activation;
    let depthwise_conv = Conv2dConfig { activation: Activation::Linear, ..conv.clone() };
    let kernel = random_vec(&mut rng, conv.kernel.0 * conv.kernel.1 * channels * m);
    let depthwise = DepthwiseConv2d::depthwise(channels, m, depthwise_conv, kernel, None).unwrap();
    let pointwise = Conv2dConfig {
        in_channels: channels * m,
        filters,
        kernel: (1, 1),
        strides: (1, 1),
        dilation: (1, 1),
        padding: Padding::Valid,
        activation,
    };
    let kernel = random_vec(&mut rng, channels * m * filters);
    SeparableConv2d::new(depthwise, Conv2d::new(pointwise, kernel, Some(random_vec(&mut rng, filters)))).unwrap()
}

#[test]
fn separable_kernel_matches_the_reference() {
    if gpu().is_none() {
        return;
    }
    let cases = [
        ([13, 11, 7], 2, 5, conv((3, 3), 1, 1, Padding::Same, Activation::Relu)),
        ([9, 12, 13], 1, 9, conv((3, 2), 2, 1, Padding::Valid, Activation::Linear)),
        ([11, 7, 5], 3, 17, conv((3, 3), 1, 2, Padding::Same, Activation::Selu)),
    ];
    for (i, (image, m, filters, conv)) in cases.into_iter().enumerate() {
        let layer = separable(image[2], m, filters, conv, 70 + i as u64);
        let what = format!("separable {image:?} m {m} -> {filters}");
        check_on_gpu(&what, layer.clone(), &layer, image, 3, Precision::F32);
        let rounded_layer = SeparableConv2d {
            depthwise: with_rounded_kernel(&layer.depthwise),
            pointwise: Conv2d { kernel: rounded(&layer.pointwise.kernel), ..layer.pointwise.clone() },
        };
        check_on_gpu(&what, layer.clone(), &rounded_layer, image, 3, Precision::F16);
    }
}

fn norm(channels: usize, seed: u64) -> BatchNorm {
    let mut rng = rng(seed);
    BatchNorm {
        gamma: Some(random_vec(&mut rng, channels).iter().map(|g| 1.0 + g / 2.0).collect()),
        beta: Some(random_vec(&mut rng, channels)),
        mean: random_vec(&mut rng, channels),
        variance: random_vec(&mut rng, channels).iter().map(|v| 1.2 + v).collect(),
        eps: 1e-3,
        activation: Activation::Linear,
    }
}

/// BatchNormalization then an activation after a depthwise and a separable convolution fold
/// into them: one dispatch each (two for the separable one) plus the distance, the same
/// numbers as the unfolded reference.
#[test]
fn batch_norm_and_activation_fold_into_depthwise_and_separable() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(81);
    let depthwise_conv = conv((3, 3), 2, 1, Padding::Same, Activation::Linear);
    let kernel = random_vec(&mut rng, 9 * 7 * 2);
    let depthwise = DepthwiseConv2d::depthwise(7, 2, depthwise_conv, kernel, None).unwrap();
    let layers = vec![
        Layer::new("dw", depthwise, vec![0]),
        Layer::new("dw_bn", norm(14, 82), vec![1]),
        Layer::new("dw_relu", ActivationLayer(Activation::Relu6), vec![2]),
        Layer::new("sep", separable(14, 2, 9, conv((3, 3), 1, 1, Padding::Same, Activation::Linear), 83), vec![3]),
        Layer::new("sep_bn", norm(9, 84), vec![4]),
        Layer::new("sep_act", ActivationLayer(Activation::HardSilu), vec![5]),
    ];
    let spec = ModelSpec { name: "fold".into(), input_shape: vec![11, 9, 7], layers };
    let model = SiameseModel::from_spec(gpu, spec.clone()).unwrap();
    let kernels = model.graph().describe();
    assert_eq!(kernels.len(), 2, "{kernels:#?}");
    assert!(kernels[0].contains("depthwise_conv2d ×2 (activation Relu6)"), "{kernels:#?}");
    assert!(
        kernels[1].contains("depthwise_conv2d ×2 (activation Linear) + conv2d 1×1 (activation HardSilu)"),
        "{kernels:#?}"
    );
    assert_eq!(model.graph().dispatches_per_call(1), 1 + 2 + 1);
    let input: Vec<f32> = random_vec(&mut rng, 3 * 11 * 9 * 7);
    let got = model.embed(&Array::new(vec![3, 11, 9, 7], input.clone()).unwrap()).unwrap();
    let want = spec.reference_forward(&input, 3).unwrap();
    assert_close("folded depthwise + separable", got.data(), &want, ATOL, RTOL);
}

/// Encoder files: Keras' golden is the euclidean distance of the encoder outputs.
const FILES: [(&str, &str); 6] = [
    ("dw_mbv2.keras", "dw_mbv2"),
    ("dw_mbv2.h5", "dw_mbv2"),
    ("dw_separable.keras", "dw_separable"),
    ("dw_separable.h5", "dw_separable"),
    ("dw_grouped.keras", "dw_grouped"),
    ("dw_grouped.h5", "dw_grouped"),
];

/// As tests/batch_norm.rs: different summation orders through a dozen layers.
const KERAS_ATOL: f32 = 1e-4;
const KERAS_RTOL: f32 = 1e-3;

#[test]
fn depthwise_models_match_keras_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    encoder_files_match_keras_on_the_gpu(&gpu, &FILES, KERAS_ATOL, KERAS_RTOL);
}

#[test]
fn depthwise_models_match_keras_on_the_cpu_reference() {
    encoder_files_match_keras_on_the_cpu_reference(&FILES, KERAS_ATOL, KERAS_RTOL);
}

/// In the Keras files every BatchNormalization folds into the (depthwise, separable,
/// grouped or 1×1) convolution before it and every ReLU6 / activation fuses: no
/// standalone normalisation or activation kernel is left.
#[test]
fn keras_batch_norms_fold_into_the_depthwise_convolutions() {
    let Some(gpu) = gpu() else { return };
    let kernels = |file: &str| common::keras::kernels(&SiameseModel::load_on(gpu.clone(), fixture(file)).unwrap());
    for file in ["dw_mbv2.keras", "dw_mbv2.h5", "dw_separable.keras", "dw_grouped.keras"] {
        let kernels = kernels(file);
        let standalone = kernels.iter().filter(|k| k.starts_with("channel affine") || k.starts_with("activation"));
        assert_eq!(standalone.count(), 0, "{file}: {kernels:#?}");
    }
    let mbv2 = kernels("dw_mbv2.keras");
    let expected = [
        "conv2d 1×1 as GEMM (activation Relu6)",
        "depthwise_conv2d ×1 (activation Relu6)",
        // The residual Add fuses into the projection's epilogue.
        "conv2d 1×1 as GEMM (activation Linear) + residual",
        "conv2d 1×1 as GEMM (activation Relu6)",
        // The ZeroPadding2D before the strided depthwise conv is its explicit padding.
        "depthwise_conv2d ×1 (activation Relu6)",
        "conv2d 1×1 as GEMM (activation Linear)",
        "depthwise_conv2d ×2 (activation Relu)",
        "depthwise_conv2d ×1 (activation Linear)",
    ];
    assert_eq!(mbv2.len(), expected.len() + 2, "{mbv2:#?}");
    for (kernel, want) in mbv2.iter().zip(expected) {
        assert!(kernel.starts_with(want), "{kernel:?} is not {want:?}: {mbv2:#?}");
    }
    let separable = kernels("dw_separable.keras");
    assert!(
        separable
            .iter()
            .any(|k| k.starts_with("depthwise_conv2d ×2 (activation Linear) + conv2d 1×1 (activation Relu)")),
        "{separable:#?}"
    );
    assert!(
        separable
            .iter()
            .any(|k| k.starts_with("depthwise_conv2d ×3 (activation Linear) + conv2d 1×1 (activation Relu)")),
        "{separable:#?}"
    );
    let grouped = kernels("dw_grouped.keras");
    assert!(grouped[0].starts_with("grouped_conv2d 3 groups (activation Relu)"), "{grouped:#?}");
    assert!(grouped[1].starts_with("grouped_conv2d 2 groups (activation Linear)"), "{grouped:#?}");
    assert!(grouped[2].starts_with("grouped_conv2d 2 groups (activation Tanh)"), "{grouped:#?}");
}

fn unsupported_key(err: &Error) -> &str {
    match err {
        Error::UnsupportedConfig { key, .. } => key,
        other => panic!("expected an unsupported config, got {other:?}"),
    }
}

#[test]
fn bad_configs_and_weights_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let edit = |from: &str, layer: &str, key: &str, value: serde_json::Value| {
        let functional = from != "dw_grouped.keras";
        edited(dir.path(), from, |json| {
            let entry = if functional { functional_layer(json, layer) } else { sequential_layer(json, layer) };
            entry["config"][key] = value;
        })
    };
    let err = load_err(&edit("dw_mbv2.keras", "dw_dilated", "depth_multiplier", json!(0)));
    assert_eq!(unsupported_key(&err), "depth_multiplier", "{err}");
    let err = load_err(&edit("dw_separable.keras", "sep1", "depth_multiplier", json!(-2)));
    assert_eq!(unsupported_key(&err), "depth_multiplier", "{err}");
    let err = load_err(&edit("dw_mbv2.keras", "dw_dilated", "depth_multiplier", json!(1u64 << 40)));
    assert_eq!(unsupported_key(&err), "depth_multiplier", "{err}");
    // 6 input channels do not split into 4 groups; 12 filters do not split into 5.
    let err = load_err(&edit("dw_grouped.keras", "g3", "groups", json!(4)));
    assert_eq!(unsupported_key(&err), "groups", "{err}");
    let err = load_err(&edit("dw_grouped.keras", "g3", "groups", json!(0)));
    assert_eq!(unsupported_key(&err), "groups", "{err}");
    let err = load_err(&edit("dw_mbv2.keras", "b1_dw", "data_format", json!("channels_first")));
    assert_eq!(unsupported_key(&err), "data_format", "{err}");
    let err = load_err(&edit("dw_mbv2.keras", "b1_dw", "kernel_size", json!([0, 3])));
    assert_eq!(unsupported_key(&err), "kernel_size", "{err}");
    // The stored kernels no longer fit the config.
    for (file, layer, key, value) in [
        ("dw_mbv2.keras", "b1_dw", "kernel_size", json!([5, 5])),
        ("dw_mbv2.keras", "dw_dilated", "depth_multiplier", json!(3)),
        ("dw_separable.keras", "sep3", "filters", json!(7)),
        ("dw_grouped.keras", "g2", "groups", json!(4)),
    ] {
        let err = load_err(&edit(file, layer, key, value));
        assert!(matches!(err, Error::BadWeight { .. }), "{file} {layer} {key}: {err:?}");
    }
    // use_bias=False with a bias in the file: a weight no layer uses.
    let err = load_err(&edit("dw_mbv2.keras", "dw_dilated", "use_bias", json!(false)));
    assert!(err.to_string().contains("no layer uses: dw_dilated/vars/1"), "{err}");
    // The layer constructors check too.
    let config = DepthwiseConv2dConfig {
        conv: Conv2dConfig { in_channels: 6, filters: 9, ..conv((3, 3), 1, 1, Padding::Same, Activation::Linear) },
        groups: 2,
    };
    assert!(DepthwiseConv2d::grouped(config.clone(), vec![0.0; 81], None).is_err());
    let config = DepthwiseConv2dConfig { groups: 3, ..config };
    assert!(DepthwiseConv2d::grouped(config.clone(), vec![0.0; 80], None).is_err());
    assert!(DepthwiseConv2d::grouped(config.clone(), vec![0.0; 162], Some(vec![0.0; 8])).is_err());
    assert!(DepthwiseConv2d::grouped(config, vec![0.0; 162], None).is_ok());
    let base = conv((3, 3), 1, 1, Padding::Same, Activation::Linear);
    assert!(DepthwiseConv2d::depthwise(4, 0, base.clone(), Vec::new(), None).is_err());
    let stride0 = Conv2dConfig { strides: (0, 1), ..base };
    assert!(DepthwiseConv2d::depthwise(4, 1, stride0, vec![0.0; 36], None).is_err());
}

/// tf.keras 2 names DepthwiseConv2D's kernel `depthwise_kernel` (Keras 3: `kernel`): both
/// load, to the same numbers; with neither, the error names Keras 3's.
#[test]
fn keras2_depthwise_kernel_name_loads() {
    use siamese_wgpu::model::keras::from_json;
    use siamese_wgpu::model::weights::{Weight, Weights};
    let json = json!({
        "class_name": "Sequential",
        "config": {"name": "enc", "layers": [
            {"class_name": "InputLayer", "config": {"batch_input_shape": [null, 5, 4, 3], "name": "in"}},
            {"class_name": "DepthwiseConv2D", "config": {"name": "dw", "kernel_size": [3, 3], "depth_multiplier": 2,
                "padding": "same", "strides": [1, 1], "activation": "relu", "use_bias": true}}
        ]}
    })
    .to_string();
    let mut rng = rng(91);
    let (kernel, bias) = (random_vec(&mut rng, 3 * 3 * 3 * 2), random_vec(&mut rng, 6));
    let load = |kernel_name: &str| {
        let tensors = [
            (format!("dw/{kernel_name}"), Weight { shape: vec![3, 3, 3, 2], data: kernel.clone() }),
            ("dw/bias".to_string(), Weight { shape: vec![6], data: bias.clone() }),
        ];
        from_json(&json, "test.json", Weights::from_map("test", tensors.into_iter().collect()))
    };
    let input = random_vec(&mut rng, 2 * 5 * 4 * 3);
    let keras3 = load("kernel").unwrap().reference_forward(&input, 2).unwrap();
    let keras2 = load("depthwise_kernel").unwrap().reference_forward(&input, 2).unwrap();
    assert_eq!(keras3, keras2);
    assert!(keras3.iter().any(|&v| v > 0.0));
    let err = load("pointwise_kernel").unwrap_err();
    assert!(matches!(&err, Error::MissingWeight { name, .. } if name == "dw/kernel"), "{err:?}");
}
