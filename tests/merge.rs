//! Merges with broadcasting, Concatenate, Reshape / Permute / RepeatVector and Keras 3's
//! operation nodes (`x + 3.0`, `x / y`, `2.0 - x`, ...): Keras files
//! (tests/fixtures/keras_files/{merge_ops,rearrange}, from tools/make_keras_files.py) give
//! Keras' outputs on the GPU and on the CPU reference, and the kernels match the layers'
//! references on random data with broadcasting shapes.

mod common;

use common::keras::{encoder_files_match_keras_on_the_cpu_reference, encoder_files_match_keras_on_the_gpu};
use common::{assert_close, gpu, random_vec, rng};
use siamese_wgpu::layers::{Concatenate, LayerOp, Merge, MergeKind, Permute, RepeatVector, Scalar};
use siamese_wgpu::model::{Layer, ModelSpec};
use siamese_wgpu::ops::Combine;
use siamese_wgpu::{Array, SiameseModel};

const FILES: [(&str, &str); 3] =
    [("merge_ops.keras", "merge_ops"), ("rearrange.keras", "rearrange"), ("rearrange.h5", "rearrange")];

const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-3;

#[test]
fn merge_models_match_keras_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    encoder_files_match_keras_on_the_gpu(&gpu, &FILES, ATOL, RTOL);
}

#[test]
fn merge_models_match_keras_on_the_cpu_reference() {
    encoder_files_match_keras_on_the_cpu_reference(&FILES, ATOL, RTOL);
}

/// Runs a graph on the GPU and on its CPU reference: the strided kernel moves values
/// without arithmetic of its own, so the two agree to rounding.
fn run_graph(layers: Vec<Layer>, input_shape: Vec<usize>, batch: usize, seed: u64) {
    let Some(gpu) = gpu() else { return };
    let spec = ModelSpec { name: "merge".into(), input_shape: input_shape.clone(), layers };
    let mut rng = rng(seed);
    let sample: usize = input_shape.iter().product();
    let data = random_vec(&mut rng, batch * sample);
    let want = spec.reference_forward(&data, batch).unwrap();
    let model = SiameseModel::from_spec(gpu, spec).unwrap();
    let input = Array::new(std::iter::once(batch).chain(input_shape).collect(), data).unwrap();
    let got = model.embed(&input).unwrap();
    assert_close("strided kernels vs reference", got.data(), &want, 1e-6, 1e-6);
}

/// Every merge kind over broadcasting inputs (`[N,1,1,C]` with `[N,H,W,C]`, a row with a
/// column), three inputs (the scratch buffer), constants on either side, Concatenate on
/// each axis, Permute and RepeatVector; sizes not multiples of the workgroup.
#[test]
fn strided_kernels_match_the_reference() {
    use siamese_wgpu::layers::{GlobalAveragePool2d, Reshape};
    let input = vec![5, 7, 3];
    let mut layers = vec![
        // 1: [N,1,1,3] by a global pool with keepdims.
        Layer::new("pool", GlobalAveragePool2d { keepdims: true }, vec![0]),
        // 2: a second full-size tensor, 0.25 - x.
        Layer::new("scaled", Scalar { combine: Combine::Subtract, value: 0.25, constant_first: true }, vec![0]),
    ];
    for kind in [
        MergeKind::Add,
        MergeKind::Subtract,
        MergeKind::Multiply,
        MergeKind::Maximum,
        MergeKind::Minimum,
        MergeKind::Average,
    ] {
        let last = layers.len();
        layers.push(Layer::new("broadcast", Merge::new(kind, 2).unwrap(), vec![last, 1]));
        let (arity, inputs) = if kind.is_binary() { (2, vec![last + 1, 2]) } else { (3, vec![last + 1, 2, 0]) };
        layers.push(Layer::new("more", Merge::new(kind, arity).unwrap(), inputs));
    }
    let last = layers.len();
    layers.push(Layer::new("divide", Merge::new(MergeKind::Divide, 2).unwrap(), vec![last, 1]));
    for (combine, first) in [(Combine::Divide, true), (Combine::Maximum, false), (Combine::Add, false)] {
        let last = layers.len();
        layers.push(Layer::new("scalar", Scalar { combine, value: 1.5, constant_first: first }, vec![last]));
    }
    let full = layers.len();
    let mut flats = Vec::new();
    for axis in 1..=3 {
        let cat = layers.len() + 1;
        layers.push(Layer::new("cat", Concatenate { axis, arity: 3 }, vec![full, 2, full]));
        layers.push(Layer::new("half", Permute { order: vec![2, 0, 1] }, vec![cat]));
        layers.push(Layer::new("undo", Permute { order: vec![1, 2, 0] }, vec![cat + 1]));
        layers.push(Layer::new("back", Reshape { target: vec![None, Some(7), Some(3)] }, vec![cat + 2]));
        layers.push(Layer::new("flat", siamese_wgpu::layers::Flatten, vec![cat + 3]));
        flats.push(cat + 4);
    }
    let last = layers.len() + 1;
    layers.push(Layer::new("all", Concatenate { axis: 1, arity: 3 }, flats));
    layers.push(Layer::new("repeat", RepeatVector { times: 3 }, vec![last]));
    run_graph(layers, input, 3, 41);
}

#[test]
fn merge_shape_errors_are_typed() {
    let add = Merge::new(MergeKind::Add, 2).unwrap();
    assert!(add.output_shape(&[&[2, 4, 4, 3], &[2, 4, 4, 2]]).is_err(), "3 and 2 channels do not broadcast");
    assert!(add.output_shape(&[&[2, 4, 4, 3], &[2, 1, 1, 3]]).is_ok());
    assert!(Merge::new(MergeKind::Subtract, 3).is_err(), "Subtract takes two");
    assert!(Merge::new(MergeKind::Add, 1).is_err());
    let cat = Concatenate { axis: 2, arity: 2 };
    assert_eq!(cat.output_shape(&[&[2, 4, 5, 3], &[2, 4, 1, 3]]).unwrap(), vec![2, 4, 6, 3]);
    assert!(cat.output_shape(&[&[2, 4, 5, 3], &[2, 3, 1, 3]]).is_err());
    assert!(Permute { order: vec![0, 0] }.output_shape(&[&[2, 3, 4]]).is_err());
    let reshape = siamese_wgpu::layers::Reshape { target: vec![Some(5), None] };
    assert!(reshape.output_shape(&[&[2, 12]]).is_err(), "12 values are not 5 x n");
}
