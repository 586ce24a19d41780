//! Recurrent Siamese models against Keras 3 golden outputs (tools/make_recurrent_goldens.py):
//! ragged batches (lengths 1, prime, full, mixed), left and right with different numbers
//! of steps, Masking, LSTM, GRU (reset_after True and False, hard_sigmoid), stacked
//! Bidirectional. Tolerance atol 1e-5, rtol 1e-4 (f32 on both sides).

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{assert_close, gpu};
use siamese_wgpu::io::{read_lengths, read_npy};
use siamese_wgpu::{Distance, Gpu, SiameseModel};

const FIXTURES: [&str; 6] = ["lstm_seed", "gru_after", "gru_before", "bilstm_stack", "lstm_hidden1", "torch_lstm"];

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn check(gpu: Arc<Gpu>, name: &str) {
    let d = dir(name);
    let model = SiameseModel::load_on(gpu, &d).unwrap();
    assert!(model.is_sequence(), "{name}: expected a variable time axis");
    common::check_goldens(&model, &d, "keras", true);
    // Without lengths the Masking layer finds the zero padding itself: same numbers.
    let (left, right) = (read_npy(d.join("left.npy")).unwrap(), read_npy(d.join("right.npy")).unwrap());
    let want = read_npy(d.join("keras_euclidean.npy")).unwrap();
    let masked = model.distances(&left, &right, Distance::Euclidean).unwrap();
    assert_close(&format!("{name}: euclidean from the mask alone"), &masked, want.data(), 1e-5, 1e-4);
}

#[test]
fn lstm_seed_matches_keras() {
    let Some(gpu) = gpu() else { return };
    check(gpu, "lstm_seed");
}

#[test]
fn gru_reset_after_matches_keras() {
    let Some(gpu) = gpu() else { return };
    check(gpu, "gru_after");
}

#[test]
fn gru_reset_before_with_hard_sigmoid_matches_keras() {
    let Some(gpu) = gpu() else { return };
    check(gpu, "gru_before");
}

#[test]
fn stacked_bidirectional_matches_keras() {
    let Some(gpu) = gpu() else { return };
    check(gpu, "bilstm_stack");
}

#[test]
fn lstm_with_one_unit_matches_keras() {
    let Some(gpu) = gpu() else { return };
    check(gpu, "lstm_hidden1");
}

#[test]
fn cpu_reference_matches_keras_on_sequences() {
    for name in FIXTURES {
        let d = dir(name);
        let spec = siamese_wgpu::model::load(&d).unwrap();
        let left = read_npy(d.join("left.npy")).unwrap();
        let steps = left.shape()[1];
        let got = spec.reference_forward_masked(left.data(), left.batch(), steps, &[]).unwrap();
        let want = read_npy(d.join("keras_embeddings.npy")).unwrap();
        assert_close(&format!("{name}: reference"), &got, &want.data()[..got.len()], 1e-5, 1e-4);
    }
}

#[test]
fn recurrent_models_use_one_submit_per_call() {
    let Some(_) = gpu() else { return };
    let gpu = Arc::new(Gpu::new().unwrap());
    let d = dir("bilstm_stack");
    let model = SiameseModel::load_on(gpu.clone(), &d).unwrap();
    let left = read_npy(d.join("left.npy")).unwrap();
    let right = read_npy(d.join("right.npy")).unwrap();
    model.distances(&left, &right, Distance::Euclidean).unwrap();
    let (submits, buffers) = (gpu.submit_count(), gpu.buffer_count());
    model.distances(&left, &right, Distance::Euclidean).unwrap();
    assert_eq!(gpu.submit_count() - submits, 1);
    assert_eq!(gpu.buffer_count(), buffers, "steady state creates no buffers");
    // Masking, BiLSTM (projection + recurrence), LSTM (projection + recurrence), Dense, distance.
    assert_eq!(model.graph().dispatches_per_call(1), 6);
}

#[test]
fn bad_lengths_are_typed_errors() {
    let Some(gpu) = gpu() else { return };
    let d = dir("lstm_hidden1");
    let model = SiameseModel::load_on(gpu, &d).unwrap();
    let left = read_npy(d.join("left.npy")).unwrap();
    let right = read_npy(d.join("right.npy")).unwrap();
    let n = left.batch();
    let steps = left.shape()[1];
    let euclid = Distance::Euclidean;
    for bad in [vec![0; n], vec![steps + 1; n], vec![1; n + 1]] {
        let err = model.pairs_ragged(&left, Some(&bad), &right, None, euclid, false).unwrap_err();
        assert!(
            matches!(err, siamese_wgpu::Error::InvalidInput { .. } | siamese_wgpu::Error::ShapeMismatch { .. }),
            "{err}"
        );
    }
    // Lengths on a model without a time axis.
    let cnn = SiameseModel::load_on(model.gpu().clone(), PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/cnn"))
        .unwrap();
    let image = siamese_wgpu::Array::new(vec![1, 28, 28, 1], vec![0.5; 784]).unwrap();
    assert!(cnn.pairs_ragged(&image, Some(&[1]), &image, None, euclid, false).is_err());
}

#[test]
fn per_step_baseline_gives_the_same_numbers() {
    let Some(gpu) = gpu() else { return };
    let d = dir("lstm_seed");
    let mut model = SiameseModel::load_on(gpu, &d).unwrap();
    let left = read_npy(d.join("left.npy")).unwrap();
    let right = read_npy(d.join("right.npy")).unwrap();
    let left_lengths = read_lengths(d.join("left_lengths.npy")).unwrap();
    let fused = model.pairs_ragged(&left, Some(&left_lengths), &right, None, Distance::Cosine, false).unwrap();
    let steps = left.shape()[1].max(right.shape()[1]);
    assert_eq!(model.graph().dispatches_per_call(steps), 3);
    model.set_recurrent_per_step(true).unwrap();
    assert_eq!(model.graph().dispatches_per_call(steps), 2 + steps);
    let per_step = model.pairs_ragged(&left, Some(&left_lengths), &right, None, Distance::Cosine, false).unwrap();
    assert_close("per-step vs fused", &per_step.distances, &fused.distances, 1e-6, 1e-5);
    // Sequence-returning layers have no per-step variant: a typed error, not a wrong number.
    let mut stacked = SiameseModel::load_on(model.gpu().clone(), dir("bilstm_stack")).unwrap();
    assert!(stacked.set_recurrent_per_step(true).is_err());
}

#[test]
fn pytorch_lstm_twin_matches_pytorch() {
    // nn.LSTM(6, 9, batch_first=True) + nn.Linear(9, 4), exported by tools/export_torch.py
    // (gates i,f,g,o → i,f,c,o, weight_ih.T, bias_ih + bias_hh); goldens from PyTorch with
    // pack_padded_sequence (the state at each sequence's own last step).
    let Some(gpu) = gpu() else { return };
    let d = dir("torch_lstm");
    let model = SiameseModel::load_on(gpu, &d).unwrap();
    common::check_goldens(&model, &d, "torch", true);
}

#[test]
fn keras2_json_means_keras2_hard_sigmoid() {
    // tf.keras 2 defines hard_sigmoid as clip(0.2x + 0.5, 0, 1), Keras 3 as relu6(x + 3) / 6.
    // The same GRU written by "Keras 2" must use the former: it then matches the CPU
    // reference built from that JSON and no longer the Keras 3 golden.
    let Some(gpu) = gpu() else { return };
    let d = dir("gru_before");
    let tmp = tempfile::tempdir().unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("model.json")).unwrap()).unwrap();
    json["keras_version"] = "2.15.0".into();
    std::fs::write(tmp.path().join("model.json"), json.to_string()).unwrap();
    std::fs::copy(d.join("model.safetensors"), tmp.path().join("model.safetensors")).unwrap();
    let model = SiameseModel::load_on(gpu, tmp.path()).unwrap();
    let left = read_npy(d.join("left.npy")).unwrap();
    let steps = left.shape()[1];
    let got = model.embed(&left).unwrap();
    let spec = siamese_wgpu::model::load(tmp.path()).unwrap();
    let want = spec.reference_forward_masked(left.data(), left.batch(), steps, &[]).unwrap();
    assert_close("Keras 2 GRU vs reference", got.data(), &want, 1e-5, 1e-4);
    let keras3 = read_npy(d.join("keras_embeddings.npy")).unwrap();
    let differs = got.data().iter().zip(keras3.data()).any(|(a, b)| (a - b).abs() > 1e-3);
    assert!(differs, "the Keras 2 hard_sigmoid should change the embeddings");
}
