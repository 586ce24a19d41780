//! Keras custom classes loaded as built-ins: `LoadOptions::custom_layer` in the library,
//! `--custom-layer NAME=BUILTIN` on the command line. The fixture custom_layer.keras holds
//! `MyDense` (a registered subclass of Dense: its config and weights) and `MyRelu` (a
//! registered keras.layers.Layer computing ReLU); without the option loading names the
//! class, the layer, the file and the way out.
//!
//! Tolerance: atol 1e-5, rtol 1e-4 (f32 on both sides, only summation orders differ).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::keras::{fixture, golden};
use common::{assert_close, gpu};
use siamese_wgpu::model::keras_file::{load_keras_file, load_keras_file_with};
use siamese_wgpu::model::{self, LoadOptions};
use siamese_wgpu::{reference, Distance, Error, SiameseModel};

const FILE: &str = "custom_layer.keras";

fn mapped() -> LoadOptions {
    LoadOptions::default().custom_layer("MyDense", "Dense").custom_layer("MyRelu", "ReLU")
}

#[test]
fn without_the_option_the_error_names_the_class_layer_file_and_way_out() {
    let err = load_keras_file(fixture(FILE)).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, Error::CustomLayer { class, layer, .. } if class == "MyDense" && layer == "my_dense"),
        "{text}"
    );
    assert!(text.contains(FILE) && text.contains("the load option `custom_layer` MyDense=BUILTIN"), "{text}");
    assert!(text.contains("Dense, Activation, ReLU"), "the built-ins are listed: {text}");
    // Mapping one class only: the other is named next.
    let one = LoadOptions::default().custom_layer("MyDense", "Dense");
    let err = load_keras_file_with(fixture(FILE), &one).unwrap_err();
    assert!(matches!(&err, Error::CustomLayer { class, .. } if class == "MyRelu"), "{err}");
}

#[test]
fn an_unknown_builtin_lists_the_supported_classes() {
    let options = LoadOptions::default().custom_layer("MyDense", "Densest");
    let err = model::load_with(fixture(FILE), &options).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::InvalidInput { .. }), "{text}");
    assert!(text.contains("\"Densest\"") && text.contains("supported: InputLayer, Conv2D"), "{text}");
}

#[test]
fn mapped_classes_load_as_builtins_and_match_keras_on_the_cpu_reference() {
    let spec = load_keras_file_with(fixture(FILE), &mapped()).unwrap().spec;
    let names: Vec<&str> = spec.layers.iter().map(|l| l.op.name()).collect();
    assert_eq!(names, ["dense", "activation", "dense"]);
    assert_eq!(spec.parameter_count(), 6 * 7 + 7 + 7 * 4 + 4, "MyDense's kernel and bias are Dense's");
    let (left, right, want) = golden("custom_layer");
    let pairs = left.batch();
    let (a, b) =
        (spec.reference_forward(left.data(), pairs).unwrap(), spec.reference_forward(right.data(), pairs).unwrap());
    let got: Vec<f32> = (0..pairs)
        .map(|i| reference::distance(&a[i * 4..(i + 1) * 4], &b[i * 4..(i + 1) * 4], Distance::Euclidean))
        .collect();
    assert_close("custom_layer.keras (CPU reference) vs Keras", &got, &want, 1e-5, 1e-4);
}

#[test]
fn mapped_classes_match_keras_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    let model = SiameseModel::load_with_options(gpu, fixture(FILE), &mapped()).unwrap();
    let (left, right, want) = golden("custom_layer");
    let got = model.distances(&left, &right, Distance::Euclidean).unwrap();
    assert_close("custom_layer.keras vs Keras", &got, &want, 1e-5, 1e-4);
}

fn siamese(args: &[&str]) -> std::process::Output {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Command::new(env!("CARGO_BIN_EXE_siamese")).args(args).current_dir(root).output().unwrap()
}

#[test]
fn cli_custom_layer_flag() {
    let Some(_) = gpu() else { return };
    let (model, left, right) = (fixture(FILE), fixture("custom_layer.left.npy"), fixture("custom_layer.right.npy"));
    let base = ["pairs", "--model", model.to_str().unwrap(), "--left", left.to_str().unwrap(), "--right"];
    let base = [&base[..], &[right.to_str().unwrap()]].concat();
    // Without the flag: the error in CLI words.
    let output = siamese(&base);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("layer \"my_dense\" has the custom class MyDense"), "{stderr}");
    assert!(stderr.contains("--custom-layer MyDense=BUILTIN") && stderr.contains(FILE), "{stderr}");
    // With it: Keras' distances.
    let output = siamese(&[&base[..], &["--custom-layer", "MyDense=Dense", "--custom-layer", "MyRelu=ReLU"]].concat());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let got: Vec<f32> = String::from_utf8(output.stdout).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    assert_close("siamese pairs --custom-layer", &got, &golden("custom_layer").2, 1e-5, 1e-4);
    // A malformed or unknown mapping is an error, not a panic.
    for (flag, needle) in [("MyDense", "expected NAME=BUILTIN"), ("MyDense=Densest", "not a built-in class")] {
        let output = siamese(&[&base[..], &["--custom-layer", flag]].concat());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(needle) && !stderr.contains("panicked"),
            "{flag}: {stderr}"
        );
    }
    // inspect takes it too.
    let output = siamese(&[
        "inspect",
        "--model",
        model.to_str().unwrap(),
        "--custom-layer",
        "MyDense=Dense",
        "--custom-layer",
        "MyRelu=ReLU",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && stdout.contains("the encoder loads (3 layers, 81 parameters)"), "{stdout}");
}
