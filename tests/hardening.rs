//! Issue #17 cases at the library level: recurrent encoders whose time axis is fixed
//! (they panicked in `SiameseModel::prepare`), and distances of embeddings near and past
//! float32's range (NaN / inf / a clamped cosine of 0 were returned as numbers).
//! Tolerance atol 1e-5, rtol 1e-4 as the golden tests (f32 sums in another order); the
//! overflow cases compare relative error only (values ~1e19).

mod common;

use common::{assert_close, gpu, random_vec, rng};
use rand::Rng;
use siamese_wgpu::layers::{Dense, Embedding, Recurrent};
use siamese_wgpu::model::{Layer, ModelSpec};
use siamese_wgpu::ops::{Activation, Cell, DirectionWeights, RecurrentConfig};
use siamese_wgpu::{io, reference, Array, Distance, Error, SiameseModel};

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The GRU golden fixture with its time axis fixed at the inputs' length (Keras
/// `Input((T, F))`) gives Keras's distances, with and without per-row lengths.
#[test]
fn fixed_time_axis_recurrent_model_matches_keras() {
    let Some(gpu) = gpu() else { return };
    let dir = fixture("gru_after");
    let variable = siamese_wgpu::model::load(&dir).unwrap();
    let left = io::read_npy(dir.join("left.npy")).unwrap();
    let right = io::read_npy(dir.join("right.npy")).unwrap();
    // The twins differ in length (11 and 13 steps): pad to the longer; the lengths keep
    // the padding out, as Keras's mask does.
    let steps = left.shape()[1].max(right.shape()[1]);
    let (left, right) = (pad_steps(&left, steps), pad_steps(&right, steps));
    let mut fixed = variable.clone();
    fixed.input_shape[0] = steps;
    let model = SiameseModel::from_spec(gpu, fixed).unwrap();
    assert!(!model.is_sequence());
    let left_lengths = io::read_lengths(dir.join("left_lengths.npy")).unwrap();
    let right_lengths = io::read_lengths(dir.join("right_lengths.npy")).unwrap();
    for metric in Distance::ALL {
        let want = io::read_npy(dir.join(format!("keras_{metric}.npy"))).unwrap();
        let got = model
            .pairs_ragged(&left, Some(&left_lengths), &right, Some(&right_lengths), metric, false)
            .unwrap()
            .distances;
        assert_close(&format!("fixed-T GRU {metric}"), &got, want.data(), 1e-5, 1e-4);
    }
    // A length beyond the fixed axis names the row and the range.
    let mut long = left_lengths.clone();
    long[1] = steps + 1;
    let error = model.pairs_ragged(&left, Some(&long), &right, None, Distance::Euclidean, false).unwrap_err();
    assert!(error.to_string().contains(&format!("is not in 1..={steps}")), "{error}");
    // The wrong number of steps is a shape error, not a panic.
    let features = left.shape()[2];
    let short =
        Array::new(vec![left.batch(), steps - 1, features], vec![0.5; left.batch() * (steps - 1) * features]).unwrap();
    let error = model.embed(&short).unwrap_err();
    assert!(matches!(error, Error::ShapeMismatch { .. }), "{error}");
}

/// `array` `[N, T, F]` padded with zeros to `[N, steps, F]`.
fn pad_steps(array: &Array, steps: usize) -> Array {
    let (rows, own, features) = (array.shape()[0], array.shape()[1], array.shape()[2]);
    let mut values = vec![0.0; rows * steps * features];
    for r in 0..rows {
        values[r * steps * features..(r * steps + own) * features].copy_from_slice(array.row(r));
    }
    Array::new(vec![rows, steps, features], values).unwrap()
}

/// `Input((7,), dtype="int32")` -> Embedding -> LSTM (the panic), against the CPU
/// reference.
#[test]
fn embedding_then_lstm_with_a_fixed_length() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(17);
    let (vocab, dim, units, steps, pairs) = (11, 6, 5, 7, 5);
    let config = RecurrentConfig {
        cell: Cell::Lstm,
        input_size: dim,
        units,
        directions: 1,
        activation: Activation::Tanh,
        recurrent_activation: Activation::Sigmoid,
        return_sequences: false,
    };
    let gates = config.gate_width();
    let weights = vec![DirectionWeights {
        kernel: random_vec(&mut rng, dim * gates),
        recurrent_kernel: random_vec(&mut rng, units * gates),
        input_bias: random_vec(&mut rng, gates),
        recurrent_bias: vec![0.0; gates],
    }];
    let spec = ModelSpec {
        name: "tokens_lstm".into(),
        input_shape: vec![steps],
        layers: vec![
            Layer::new(
                "embedding",
                Embedding { vocab, dim, table: random_vec(&mut rng, vocab * dim), mask_zero: false },
                vec![0],
            ),
            Layer::new("lstm", Recurrent { config, weights }, vec![1]),
        ],
    };
    let ids = |rng: &mut rand::rngs::StdRng| -> Vec<f32> {
        (0..pairs * steps).map(|_| rng.random_range(0..vocab) as f32).collect()
    };
    let (mut a, b) = (ids(&mut rng), ids(&mut rng));
    a[..steps].copy_from_slice(&b[..steps]); // pair 0 identical
    let left = Array::new(vec![pairs, steps], a.clone()).unwrap();
    let right = Array::new(vec![pairs, steps], b.clone()).unwrap();
    let model = SiameseModel::from_spec(gpu, spec.clone()).unwrap();
    let mask = vec![true; pairs * steps];
    let ea = spec.reference_forward_masked(&a, pairs, steps, &mask).unwrap();
    let eb = spec.reference_forward_masked(&b, pairs, steps, &mask).unwrap();
    for metric in [Distance::Euclidean, Distance::Cosine] {
        let want: Vec<f32> = (0..pairs)
            .map(|i| reference::distance(&ea[i * units..(i + 1) * units], &eb[i * units..(i + 1) * units], metric))
            .collect();
        let got = model.distances(&left, &right, metric).unwrap();
        assert_close(&format!("Embedding -> LSTM {metric}"), &got, &want, 1e-5, 1e-4);
        assert_eq!(got[0], 0.0);
    }
    let embedded = model.embed(&left).unwrap();
    assert_close("Embedding -> LSTM embed()", embedded.data(), &ea, 1e-5, 1e-4);
    // Lengths now apply to the fixed axis (they were refused as "no time axis").
    let lengths = vec![steps, 3, 1, steps, 2];
    let ragged = model.embed_ragged(&left, Some(&lengths)).unwrap();
    let mask: Vec<bool> = (0..pairs * steps).map(|i| i % steps < lengths[i / steps]).collect();
    let want = spec.reference_forward_masked(&a, pairs, steps, &mask).unwrap();
    assert_close("Embedding -> LSTM with lengths", ragged.data(), &want, 1e-5, 1e-4);
}

/// A Dense encoder `[4] -> [3]` whose kernel is `scale` times a fixed pattern.
fn scaled_dense(scale: f32) -> ModelSpec {
    let kernel: Vec<f32> = (0..12).map(|i| scale * (((i * 7) % 5) as f32 - 2.0) / 2.0).collect();
    ModelSpec {
        name: "scaled".into(),
        input_shape: vec![4],
        layers: vec![Layer::new(
            "dense",
            Dense {
                in_features: 4,
                out_features: 3,
                kernel,
                bias: None,
                activation: Activation::Linear,
                residual: false,
            },
            vec![0],
        )],
    }
}

fn overflow_inputs() -> (Array, Array) {
    let left = Array::new(vec![3, 4], vec![0.5, -0.25, 1.0, 0.75, 1.0, 2.0, -1.0, 0.5, -0.5, 0.5, 0.25, 1.0]).unwrap();
    let right =
        Array::new(vec![3, 4], vec![0.5, -0.25, 1.0, 0.75, -1.0, 0.5, 1.0, 2.0, 1.0, -0.5, 0.75, 0.25]).unwrap();
    (left, right)
}

/// Embeddings up to ~1e19 are finite; their Euclidean distance (~1e19) and cosine are
/// finite too, and equal the f64 reference (the sums of squares, ~1e38 and more, are taken
/// over values scaled by a power of two on the GPU).
#[test]
fn large_finite_embeddings_give_finite_distances() {
    let Some(gpu) = gpu() else { return };
    let spec = scaled_dense(1e19);
    let model = SiameseModel::from_spec(gpu.clone(), spec.clone()).unwrap();
    let (left, right) = overflow_inputs();
    let ea = spec.reference_forward(left.data(), 3).unwrap();
    let eb = spec.reference_forward(right.data(), 3).unwrap();
    assert!(ea.iter().chain(&eb).all(|v| v.is_finite()) && ea.iter().any(|v| v.abs() > 1e18));
    for metric in [Distance::Euclidean, Distance::Cosine, Distance::Manhattan] {
        let want: Vec<f32> =
            (0..3).map(|i| reference::distance(&ea[i * 3..i * 3 + 3], &eb[i * 3..i * 3 + 3], metric)).collect();
        let got = model.distances(&left, &right, metric).unwrap();
        assert!(got.iter().all(|d| d.is_finite()), "{metric}: {got:?}");
        assert_close(&format!("{metric} of ~1e19 embeddings"), &got, &want, 0.0, 1e-4);
        assert_eq!(got[0], 0.0, "{metric}: identical pair");
    }
    // Small embeddings (~1e-25, whose squares underflow f32) are no longer rounded to 0.
    let spec = scaled_dense(1e-25);
    let model = SiameseModel::from_spec(gpu, spec.clone()).unwrap();
    let ea = spec.reference_forward(left.data(), 3).unwrap();
    let eb = spec.reference_forward(right.data(), 3).unwrap();
    let want: Vec<f32> = (0..3)
        .map(|i| reference::distance(&ea[i * 3..i * 3 + 3], &eb[i * 3..i * 3 + 3], Distance::Euclidean))
        .collect();
    let got = model.distances(&left, &right, Distance::Euclidean).unwrap();
    assert_close("euclidean of ~1e-25 embeddings", &got, &want, 0.0, 1e-4);
}

/// Weights of 3e38 overflow the encoder: an error naming the twin and the pair, never NaN
/// or a cosine of 0 ("identical"); allowed, the non-finite values come through.
#[test]
fn overflowing_encoders_and_distances_are_errors() {
    let Some(gpu) = gpu() else { return };
    let (left, right) = overflow_inputs();
    let mut model = SiameseModel::from_spec(gpu.clone(), scaled_dense(3e38)).unwrap();
    for metric in Distance::ALL.into_iter().filter(|&m| m != Distance::Learned) {
        let error = model.distances(&left, &right, metric).unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, Error::NonFinite { .. }), "{metric}: {text}");
        assert!(text.contains("left embedding of pair 0") && text.contains("overflowed"), "{metric}: {text}");
    }
    let error = model.embed(&right).unwrap_err();
    assert!(error.to_string().contains("embedding of input row 0"), "{error}");
    model.set_allow_nonfinite(true);
    let distances = model.distances(&left, &right, Distance::Cosine).unwrap();
    assert!(distances.iter().all(|d| !d.is_finite()), "allowed: {distances:?}");

    // Finite embeddings (~1e19 · 4) whose squared distance is beyond f32.
    let model = SiameseModel::from_spec(gpu, scaled_dense(1e19)).unwrap();
    let error = model.distances(&left, &right, Distance::SqEuclidean).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("sqeuclidean distance of pair 1") && text.contains("beyond float32"), "{text}");
}

/// Search over a gallery of ~1e19 embeddings, whose f32 sums of squares could overflow
/// (a cosine of inf norms would read as 1, a wrong ranking with no sign of it): refused,
/// naming the gallery; queries likewise.
#[test]
fn search_refuses_embeddings_beyond_its_sums_range() {
    let Some(gpu) = gpu() else { return };
    let (left, right) = overflow_inputs();
    let ids: Vec<String> = (0..3).map(|i| i.to_string()).collect();
    let large = SiameseModel::from_spec(gpu.clone(), scaled_dense(1e19)).unwrap();
    let gallery = siamese_wgpu::Gallery::embed(&large, ids.clone(), &left, false).unwrap();
    let error = siamese_wgpu::GpuSearch::new(gpu.clone(), &gallery).unwrap_err();
    assert!(error.to_string().contains("gallery") && error.to_string().contains("too large"), "{error}");
    let small = SiameseModel::from_spec(gpu.clone(), scaled_dense(1.0)).unwrap();
    let gallery = siamese_wgpu::Gallery::embed(&small, ids, &left, false).unwrap();
    let index = siamese_wgpu::GpuSearch::new(gpu, &gallery).unwrap();
    let error = index.search(&large.embed(&right).unwrap(), 2, Distance::Cosine).unwrap_err();
    assert!(error.to_string().contains("queries") && error.to_string().contains("too large"), "{error}");
    let nearest = index.search(&small.embed(&left).unwrap(), 1, Distance::Euclidean).unwrap();
    assert_eq!(nearest[0][0], (0, 0.0));
}
