//! keras.applications backbones, each family's real model cut to its first block at a
//! 32×32×3 input (InceptionResNetV2: its CustomScaleLayer in a small block) (tests/fixtures/keras_files/apps_*, from tools/make_family_blocks.py;
//! the whole models are checked by tools/check_applications.py), give Keras' outputs from
//! the .keras and the legacy .h5 file, on the GPU and on the CPU reference; so do
//! Sequential blocks nested in a Functional encoder (ConvNeXt's), inlined at load.

mod common;

use common::gpu;
use common::keras::{encoder_files_match_keras_on_the_cpu_reference, encoder_files_match_keras_on_the_gpu, fixture};
use siamese_wgpu::layers::{CopyingActivation, LayerOp, ScaledAdd};
use siamese_wgpu::model::keras_file::load_keras_file;
use siamese_wgpu::{passes, Error};

/// Encoder files: Keras' golden is the euclidean distance of the encoder outputs. The
/// .h5 files share the .npy files of the .keras file of the same stem.
const FILES: [(&str, &str); 24] = [
    ("apps_mobilenet_v3_small.keras", "apps_mobilenet_v3_small"),
    // Keras writes the hard_sigmoid's `x + 3.0` without its module: an operation node that
    // reads like an Add layer (Keras 3.15 cannot load this file back itself).
    ("apps_mobilenet_v3_small.h5", "apps_mobilenet_v3_small"),
    ("apps_mobilenet_v2.keras", "apps_mobilenet_v2"),
    ("apps_mobilenet_v2.h5", "apps_mobilenet_v2"),
    ("apps_mobilenet.keras", "apps_mobilenet"),
    ("apps_mobilenet.h5", "apps_mobilenet"),
    ("apps_efficientnet_b0.keras", "apps_efficientnet_b0"),
    ("apps_efficientnet_b0.h5", "apps_efficientnet_b0"),
    ("apps_resnet50.keras", "apps_resnet50"),
    ("apps_densenet121.keras", "apps_densenet121"),
    ("apps_efficientnet_v2_b0.keras", "apps_efficientnet_v2_b0"),
    ("apps_efficientnet_v2_b0.h5", "apps_efficientnet_v2_b0"),
    ("apps_mobilenet_v3_large.keras", "apps_mobilenet_v3_large"),
    ("apps_mobilenet_v3_large.h5", "apps_mobilenet_v3_large"),
    ("apps_vgg16.keras", "apps_vgg16"),
    ("apps_vgg16.h5", "apps_vgg16"),
    // A relu on a tensor that other layers read too: see `passes::copy_shared_activations`.
    ("apps_nasnet_mobile.keras", "apps_nasnet_mobile"),
    ("apps_nasnet_mobile.h5", "apps_nasnet_mobile"),
    // InceptionResNetV2's CustomScaleLayer, `x + 0.17 · branch`, in a block of its own (the
    // real model needs a 75×75 input).
    ("apps_custom_scale.keras", "apps_custom_scale"),
    ("apps_custom_scale.h5", "apps_custom_scale"),
    // Two of ConvNeXt's LayerScale: the legacy .h5 numbers the second's variable `variable_1`.
    ("apps_layer_scales.keras", "apps_layer_scales"),
    ("apps_layer_scales.h5", "apps_layer_scales"),
    // ConvNeXt's stem and downsampling blocks: Sequential models nested in the Functional
    // encoder, inlined at load.
    ("nested_blocks.keras", "nested_blocks"),
    ("nested_blocks.h5", "nested_blocks"),
];

/// As tests/keras_files.rs: different summation orders through a dozen layers, outputs of
/// order 1 summed into distances of order 10.
const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-3;

#[test]
fn first_blocks_match_keras_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    encoder_files_match_keras_on_the_gpu(&gpu, &FILES, ATOL, RTOL);
}

#[test]
fn first_blocks_match_keras_on_the_cpu_reference() {
    encoder_files_match_keras_on_the_cpu_reference(&FILES, ATOL, RTOL);
}

/// NASNet's stem cell applies a relu to a tensor that a 1×1 convolution reads too: that
/// activation writes its own buffer instead of working in place; the others stay in place.
#[test]
fn a_shared_activation_is_copied_not_in_place() {
    let spec = load_keras_file(fixture("apps_nasnet_mobile.keras")).unwrap().spec;
    let gpu_spec = passes::for_gpu(&spec).unwrap();
    let copying = gpu_spec.layers.iter().filter(|l| l.downcast::<CopyingActivation>().is_some()).count();
    assert!(copying >= 1, "{:#?}", gpu_spec.layers.iter().map(|l| l.op.settings()).collect::<Vec<_>>());
    let vgg = passes::for_gpu(&load_keras_file(fixture("apps_vgg16.keras")).unwrap().spec).unwrap();
    assert!(vgg.layers.iter().all(|l| l.downcast::<CopyingActivation>().is_none()));
}

/// CustomScaleLayer adds two tensors of one shape: others are a typed error.
#[test]
fn scaled_add_refuses_inputs_of_two_shapes() {
    let op = ScaledAdd { scale: 0.17 };
    assert_eq!(op.output_shape(&[&[2, 3, 3, 6], &[2, 3, 3, 6]]).unwrap(), vec![2, 3, 3, 6]);
    assert!(matches!(op.output_shape(&[&[2, 3, 3, 6], &[2, 3, 3, 5]]), Err(Error::ShapeMismatch { .. })));
}

/// ResNet50's first block: conv 1×1 -> BN -> Add([shortcut, x]) -> relu runs as one
/// GEMM with the residual and the relu in its epilogue; no standalone add is left.
#[test]
fn residual_adds_fuse_into_the_conv_before_them() {
    let Some(gpu) = gpu() else { return };
    let model = siamese_wgpu::SiameseModel::load_on(gpu.clone(), fixture("apps_resnet50.keras")).unwrap();
    let kernels = common::keras::kernels(&model);
    assert!(kernels.iter().any(|k| k.contains("(activation Relu) + residual")), "{kernels:#?}");
    assert!(!kernels.iter().any(|k| k.starts_with("add")), "{kernels:#?}");
}
