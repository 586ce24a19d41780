//! Preprocessing and border layers inside a model (issue #15): Rescaling and
//! Normalization (statistics from the config, or adapted: weights), ZeroPadding2D (folded
//! into a valid conv, and before a max-pool), Cropping2D and the activations with settings
//! (ReLU6, LeakyReLU, hard_silu, mish: act_mix) give Keras' outputs on the GPU
//! and on the CPU reference (tests/fixtures/keras_files/prep_*, pad_stem.*, act_mix.*, from
//! tools/make_keras_files.py).

mod common;

use std::path::PathBuf;

use common::{assert_close, gpu};
use siamese_wgpu::io::read_npy;
use siamese_wgpu::model::keras_file::load_keras_file;
use siamese_wgpu::{Array, Distance, SiameseModel};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras_files").join(name)
}

fn golden(stem: &str) -> (Array, Array, Vec<f32>) {
    let read = |suffix: &str| read_npy(fixture(&format!("{stem}.{suffix}.npy"))).unwrap();
    (read("left"), read("right"), read("keras_out").into_data())
}

const FILES: [(&str, &str); 6] = [
    ("act_mix.keras", "act_mix"),
    ("act_mix.h5", "act_mix"),
    ("prep_config.keras", "prep_config"),
    ("prep_adapted.keras", "prep_adapted"),
    ("pad_stem.keras", "pad_stem"),
    ("pad_stem.h5", "pad_stem"),
];

/// As tests/keras_files.rs (inputs up to ~200 through a conv and a dense layer).
const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-3;

#[test]
fn preprocessing_layers_match_keras_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    for (file, stem) in FILES {
        let model = SiameseModel::load_on(gpu.clone(), fixture(file)).unwrap();
        let (left, right, want) = golden(stem);
        let got = model.distances(&left, &right, Distance::Euclidean).unwrap();
        assert_close(&format!("{file} vs Keras"), &got, &want, ATOL, RTOL);
    }
}

#[test]
fn preprocessing_layers_match_keras_on_the_cpu_reference() {
    for (file, stem) in FILES {
        let spec = load_keras_file(fixture(file)).unwrap().spec;
        let (left, right, want) = golden(stem);
        let (a, b) =
            (spec.reference_forward(left.data(), 4).unwrap(), spec.reference_forward(right.data(), 4).unwrap());
        let dim = a.len() / 4;
        let distance = |i: usize| {
            let (a, b) = (&a[i * dim..(i + 1) * dim], &b[i * dim..(i + 1) * dim]);
            a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt()
        };
        let got: Vec<f32> = (0..4).map(distance).collect();
        assert_close(&format!("{file} (CPU reference) vs Keras"), &got, &want, ATOL, RTOL);
    }
}

/// The stem's first ZeroPadding2D becomes the conv's padding; the one before the max-pool
/// (which must see its zeros) and the crop run the shift kernel; the asymmetric one folds.
#[test]
fn zero_padding_folds_into_the_valid_conv_after_it() {
    let Some(gpu) = gpu() else { return };
    let model = SiameseModel::load_on(gpu, fixture("pad_stem.keras")).unwrap();
    let kernels: Vec<String> = model.graph().describe();
    let shifts = kernels.iter().filter(|k| k.contains("shift2d")).count();
    assert_eq!(shifts, 2, "pool1_pad and crop: {kernels:#?}");
    assert!(kernels[0].starts_with("conv1_conv") && kernels[0].contains("Relu"), "{kernels:#?}");
}
