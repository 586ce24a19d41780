//! Keras transformer encoders against Keras 3 goldens (tools/make_transformer_goldens.py):
//! the seed's MultiHeadAttention twin (4 heads, key_dim 64, on (10, 64) inputs, distances
//! over the whole (10, 64) output) and a full block (MHA → Add → LayerNormalization →
//! Dense gelu → Dense → Add → LayerNormalization → GlobalAveragePooling1D → Dense), a
//! Functional graph with residual branches, and a token encoder (Embedding → MHA → Add →
//! LayerNormalization → GlobalAveragePooling1D → Dense) on int32 ids. Tolerance atol 1e-5, rtol 1e-4 (f32 both sides).

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{assert_close, gpu};
use siamese_wgpu::io::read_npy;
use siamese_wgpu::{Distance, Gpu, SiameseModel};

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn check(gpu: Arc<Gpu>, name: &str) {
    let d = dir(name);
    let model = SiameseModel::load_on(gpu, &d).unwrap();
    common::check_goldens(&model, &d, "keras", false);
    // The CPU reference walks the same graph.
    let (left, right) = (read_npy(d.join("left.npy")).unwrap(), read_npy(d.join("right.npy")).unwrap());
    let keras_embeddings = read_npy(d.join("keras_embeddings.npy")).unwrap();
    let spec = siamese_wgpu::model::load(&d).unwrap();
    let reference = spec.reference_forward(&[left.data(), right.data()].concat(), 2 * left.batch()).unwrap();
    assert_close(&format!("{name}: reference vs Keras"), &reference, keras_embeddings.data(), 1e-5, 1e-4);
}

#[test]
fn seed_multi_head_attention_twin_matches_keras() {
    let Some(gpu) = gpu() else { return };
    check(gpu, "mha_seed");
}

#[test]
fn transformer_block_with_residuals_matches_keras() {
    let Some(gpu) = gpu() else { return };
    check(gpu, "transformer_block");
}

#[test]
fn embedding_token_encoder_matches_keras() {
    let Some(gpu) = gpu() else { return };
    check(gpu, "token_encoder");
}

#[test]
fn bad_token_ids_are_typed_errors() {
    let Some(gpu) = gpu() else { return };
    let d = dir("token_encoder");
    let model = SiameseModel::load_on(gpu, &d).unwrap();
    let left = read_npy(d.join("left.npy")).unwrap();
    for (bad, needle) in [(40.0, "token id 40"), (-1.0, "token id -1"), (2.5, "token id 2.5")] {
        let mut data = left.data().to_vec();
        data[13] = bad;
        let right = siamese_wgpu::tensor::Array::new(left.shape().to_vec(), data).unwrap();
        let err = model.distances(&left, &right, Distance::Euclidean).unwrap_err().to_string();
        assert!(err.contains(needle) && err.contains("[1, 1]") && err.contains("0..40"), "{err}");
    }
}

#[test]
fn transformer_twin_is_one_submit() {
    let Some(_) = gpu() else { return };
    let gpu = Arc::new(Gpu::new().unwrap());
    let d = dir("transformer_block");
    let model = SiameseModel::load_on(gpu.clone(), &d).unwrap();
    let left = read_npy(d.join("left.npy")).unwrap();
    let right = read_npy(d.join("right.npy")).unwrap();
    model.distances(&left, &right, Distance::Euclidean).unwrap();
    let (submits, buffers) = (gpu.submit_count(), gpu.buffer_count());
    model.distances(&left, &right, Distance::Euclidean).unwrap();
    assert_eq!(gpu.submit_count() - submits, 1);
    assert_eq!(gpu.buffer_count(), buffers);
    // MHA (3) + Add + LN + Dense + Dense (+ the residual Add fused in) + LN + mean + Dense
    // + distance.
    assert_eq!(model.graph().dispatches_per_call(1), 11);
}
