//! Token-id encoders from Keras files: `Input((None,), int32) -> Embedding -> LSTM / GRU`
//! (the `siamese pairs` panic of issue #15), and `Embedding(mask_zero=True)`, whose padding
//! mask (id 0) reaches LSTM, Dense -> Bidirectional(GRU) and GlobalAveragePooling1D as Keras
//! 3 propagates it. Each fixture against Keras' output (tools/make_keras_files.py) on the
//! GPU, on the CPU reference, and through the `siamese` binary.
//!
//! Tolerance: atol 1e-5, rtol 1e-4 (f32 on both sides, only summation orders differ).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::keras::{edited, fixture, functional_layer, golden, sequential_layer};
use common::{assert_close, gpu};
use siamese_wgpu::io::write_npy;
use siamese_wgpu::model::keras_file::load_keras_file;
use siamese_wgpu::{reference, Array, Distance, Error, SiameseModel};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

/// `(file, golden stem)` of every token-id fixture.
const FILES: [(&str, &str); 6] = [
    ("emb_lstm.keras", "emb_lstm"),
    ("emb_gru.keras", "emb_gru"),
    ("mask_zero_lstm.keras", "mask_zero_lstm"),
    ("mask_zero_lstm.h5", "mask_zero_lstm"),
    ("mask_zero_bigru.keras", "mask_zero_bigru"),
    ("mask_zero_pool.keras", "mask_zero_pool"),
];

#[test]
fn token_encoders_match_keras_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    common::keras::encoder_files_match_keras_on_the_gpu(&gpu, &FILES, ATOL, RTOL);
}

/// The CPU reference, with the step mask derived from the ids as the runner does.
#[test]
fn token_encoders_match_keras_on_the_cpu_reference() {
    for (file, stem) in FILES {
        let spec = load_keras_file(fixture(file)).unwrap().spec;
        let (left, right, want) = golden(stem);
        let (pairs, steps) = (left.batch(), left.shape()[1]);
        let a = spec.reference_forward_masked(left.data(), pairs, steps, &[]).unwrap();
        let b = spec.reference_forward_masked(right.data(), pairs, steps, &[]).unwrap();
        let dim = a.len() / pairs;
        let got: Vec<f32> = (0..pairs)
            .map(|i| reference::distance(&a[i * dim..(i + 1) * dim], &b[i * dim..(i + 1) * dim], Distance::Euclidean))
            .collect();
        assert_close(&format!("{file} (CPU reference) vs Keras"), &got, &want, ATOL, RTOL);
    }
}

/// What the importer made of the mask: the Embedding masks zeros only with mask_zero, and
/// the pooling averages the real steps (Keras hands it the mask).
#[test]
fn mask_zero_is_read_and_reaches_the_pooling() {
    let plain = load_keras_file(fixture("emb_lstm.keras")).unwrap().spec;
    assert_eq!(plain.mask_value(), None, "without mask_zero, id 0 is an ordinary token");
    for file in ["mask_zero_lstm.keras", "mask_zero_lstm.h5", "mask_zero_bigru.keras", "mask_zero_pool.keras"] {
        let spec = load_keras_file(fixture(file)).unwrap().spec;
        assert_eq!(spec.mask_value(), Some(0.0), "{file}");
    }
    let pool = load_keras_file(fixture("mask_zero_pool.keras")).unwrap().spec;
    let pooled = pool.find::<siamese_wgpu::layers::GlobalAveragePool1d>().unwrap();
    assert!(pooled.masked, "GlobalAveragePooling1D after Embedding(mask_zero) averages the real steps");
}

/// Masked padding changes nothing: more zero ids after every row give the same distances
/// (left and right of different lengths in one call), on the GPU.
#[test]
fn extra_zero_padding_changes_nothing() {
    let Some(gpu) = gpu() else { return };
    for (file, stem) in [
        ("mask_zero_lstm.keras", "mask_zero_lstm"),
        ("mask_zero_bigru.keras", "mask_zero_bigru"),
        ("mask_zero_pool.keras", "mask_zero_pool"),
    ] {
        let model = SiameseModel::load_on(gpu.clone(), fixture(file)).unwrap();
        let (left, right, want) = golden(stem);
        let (rows, steps) = (left.batch(), left.shape()[1]);
        let mut padded = vec![0.0; rows * (steps + 4)];
        for r in 0..rows {
            padded[r * (steps + 4)..r * (steps + 4) + steps].copy_from_slice(left.row(r));
        }
        let longer = Array::new(vec![rows, steps + 4], padded).unwrap();
        let got = model.distances(&longer, &right, Distance::Euclidean).unwrap();
        assert_close(&format!("{file} with 4 more zero ids on the left"), &got, &want, ATOL, RTOL);
    }
}

/// Token ids that are not integers in 0..input_dim are typed errors naming the id.
#[test]
fn bad_token_ids_are_typed_errors() {
    let Some(gpu) = gpu() else { return };
    for file in ["emb_lstm.keras", "mask_zero_bigru.keras"] {
        let model = SiameseModel::load_on(gpu.clone(), fixture(file)).unwrap();
        let vocab = model.spec().token_vocab().unwrap();
        let good = Array::new(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        for (bad, needle) in
            [(vocab as f32, format!("token id {vocab} ")), (-1.0, "token id -1".into()), (2.5, "token id 2.5".into())]
        {
            let ids = Array::new(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, bad, 6.0]).unwrap();
            let err = model.distances(&good, &ids, Distance::Euclidean).unwrap_err();
            assert!(matches!(err, Error::InvalidInput { .. }), "{file}: {err}");
            let text = err.to_string();
            assert!(text.contains(&needle) && text.contains("[1, 1]") && text.contains("right"), "{file}: {text}");
        }
    }
}

/// Where Keras would hand the mask to a layer the engine cannot mask, or read values the
/// engine computes differently at masked steps, loading is an error naming the layer.
#[test]
fn masks_the_engine_cannot_follow_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Bidirectional returning sequences as the output: Keras zeroes its masked steps.
    let path = edited(dir.path(), "mask_zero_bigru.keras", |json| {
        functional_layer(json, "bigru")["config"]["layer"]["config"]["return_sequences"] = true.into();
        functional_layer(json, "bigru")["config"]["backward_layer"]["config"]["return_sequences"] = true.into();
        functional_layer(json, "bigru")["config"]["return_sequences"] = true.into();
    });
    let err = load_keras_file(&path).unwrap_err();
    let text = err.to_string();
    assert!(matches!(&err, Error::UnsupportedConfig { layer, key, .. } if layer == "bigru" && key == "mask"), "{text}");
    assert!(text.contains("zeroes"), "{text}");
    // A NotEqual over the ids whose value is not 0 is not the Embedding's mask.
    let path = edited(dir.path(), "mask_zero_pool.keras", |json| {
        not_equal(json)["inbound_nodes"][0]["args"][1] = 3.into();
    });
    let err = load_keras_file(&path).unwrap_err();
    assert!(matches!(&err, Error::UnsupportedLayer { class, .. } if class == "NotEqual"), "{err}");
    // Without mask_zero the recorded NotEqual is no mask the engine computes.
    let path = edited(dir.path(), "mask_zero_pool.keras", |json| {
        functional_layer(json, "embedding")["config"]["mask_zero"] = false.into();
    });
    let err = load_keras_file(&path).unwrap_err();
    assert!(matches!(&err, Error::UnsupportedLayer { class, .. } if class == "NotEqual"), "{err}");
    // mask_zero must be a boolean (a Sequential: no mask nodes to check first).
    let path = edited(dir.path(), "mask_zero_lstm.keras", |json| {
        sequential_layer(json, "embedding")["config"]["mask_zero"] = "yes".into();
    });
    let err = load_keras_file(&path).unwrap_err();
    assert!(matches!(&err, Error::UnsupportedConfig { key, .. } if key == "mask_zero"), "{err}");
}

/// The NotEqual operation node of a Functional config (Keras numbers its name).
fn not_equal(json: &mut serde_json::Value) -> &mut serde_json::Value {
    json["config"]["layers"].as_array_mut().unwrap().iter_mut().find(|l| l["class_name"] == "NotEqual").unwrap()
}

fn siamese(args: &[&str]) -> std::process::Output {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Command::new(env!("CARGO_BIN_EXE_siamese")).args(args).current_dir(root).output().unwrap()
}

/// `siamese pairs --model FILE.keras` on `.npy` token ids (int32 from Keras) prints Keras'
/// distances: `Input((None,)) -> Embedding -> LSTM / GRU` (the panic) and the
/// masked encoders; ids beyond the vocabulary are an error, not a panic.
#[test]
fn cli_pairs_on_token_ids_matches_keras() {
    let Some(_) = gpu() else { return };
    for (file, stem) in FILES {
        let (model, left, right) =
            (fixture(file), fixture(&format!("{stem}.left.npy")), fixture(&format!("{stem}.right.npy")));
        let args = ["pairs", "--model", model.to_str().unwrap(), "--left", left.to_str().unwrap()];
        let output = siamese(&[&args[..], &["--right", right.to_str().unwrap()]].concat());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{file}: {stderr}");
        let got: Vec<f32> = String::from_utf8(output.stdout).unwrap().lines().map(|l| l.parse().unwrap()).collect();
        assert_close(&format!("siamese pairs {file}"), &got, &golden(stem).2, ATOL, RTOL);
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.npy");
    write_npy(&bad, &Array::new(vec![4, 5], (0..20).map(|i| (i * 3) as f32).collect()).unwrap()).unwrap();
    let (model, right) = (fixture("emb_lstm.keras"), fixture("emb_lstm.right.npy"));
    let output = siamese(&[
        "pairs",
        "--model",
        model.to_str().unwrap(),
        "--left",
        bad.to_str().unwrap(),
        "--right",
        right.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("token id 51") && !stderr.contains("panicked"), "{stderr}");
}
