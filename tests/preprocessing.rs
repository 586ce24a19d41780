//! Preprocessing and border layers inside a model (issue #15): Rescaling and
//! Normalization (statistics from the config, or adapted: weights), ZeroPadding2D (folded
//! into a valid conv, and before a max-pool), Cropping2D and the activations with settings
//! (ReLU6, LeakyReLU, hard_silu, mish: act_mix) give Keras' outputs on the GPU
//! and on the CPU reference (tests/fixtures/keras_files/prep_*, pad_stem.*, act_mix.*, from
//! tools/make_keras_files.py).

mod common;

use common::gpu;
use common::keras::{encoder_files_match_keras_on_the_cpu_reference, encoder_files_match_keras_on_the_gpu, fixture};
use siamese_wgpu::SiameseModel;

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
    encoder_files_match_keras_on_the_gpu(&gpu, &FILES, ATOL, RTOL);
}

#[test]
fn preprocessing_layers_match_keras_on_the_cpu_reference() {
    encoder_files_match_keras_on_the_cpu_reference(&FILES, ATOL, RTOL);
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
