//! Whole Keras model files (`.keras` zips and legacy `.h5`) written by Keras itself
//! (tests/fixtures/keras_files, from tools/make_keras_files.py): they load, the shared
//! encoder of a whole Siamese model is found, its head is reported or mapped, the outputs
//! match what Keras computed, and broken files are typed errors.

mod common;

use std::io::{Cursor, Read, Write};
use std::path::Path;

use common::keras::{edited, fixture, functional_layer, golden, load_err, rewrite_zip, sequential_layer};
use common::{assert_close, gpu};
use siamese_wgpu::model::keras_file::{self, inspect, load_keras_file, Runs, TwinHead};
use siamese_wgpu::{model, Array, Distance, Error, SiameseModel};

/// Every model file of the fixtures, with the stem of its `.npy` files.
const FILES: [(&str, &str); 9] = [
    ("cnn_twin.keras", "cnn_twin"),
    ("cnn_twin.h5", "cnn_twin"),
    ("cnn_encoder.keras", "cnn_encoder"),
    ("cnn_encoder.h5", "cnn_encoder"),
    ("cnn_head.keras", "cnn_head"),
    ("lstm_twin.keras", "lstm_twin"),
    ("lstm_twin.h5", "lstm_twin"),
    ("mha_twin.keras", "mha_twin"),
    ("mha_twin.h5", "mha_twin"),
];

/// What Keras computed from our distances: the Lambda heads compute
/// `sqrt(max(Σ(a−b)², 1e-7))` (so identical pairs give 3.2e-4, where we give exactly 0);
/// encoder-only files store the plain euclidean distance; a learned head, the probability.
fn as_keras_computes(file: &str, ours: &[f32]) -> Vec<f32> {
    if file.starts_with("cnn_encoder") || file.starts_with("cnn_head") {
        ours.to_vec()
    } else {
        ours.iter().map(|d| (d * d).max(1e-7).sqrt()).collect()
    }
}

/// Tolerance: Keras (jax, XLA on CPU) and our kernels sum in different orders, through up to
/// three layers of 400-wide dot products and an LSTM; 1e-4 + 1e-3·|ref| covers that and
/// still catches any layout error (those move outputs by O(1)).
const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-3;

#[test]
fn keras_files_match_keras_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    for (file, stem) in FILES {
        let path = fixture(file);
        let model = SiameseModel::load_on(gpu.clone(), &path).unwrap();
        let loaded = load_keras_file(&path).unwrap();
        let metric = match loaded.head {
            TwinHead::Learned(head) => {
                model.set_learned_head(&head).unwrap();
                Distance::Learned
            }
            _ => Distance::Euclidean,
        };
        let (left, right, want) = golden(stem);
        let got = model.distances(&left, &right, metric).unwrap();
        assert_close(&format!("{file} vs Keras"), &as_keras_computes(file, &got), &want, ATOL, RTOL);
        if metric == Distance::Euclidean {
            // Identical inputs give exactly 0 (Keras' epsilon head would give 3.2e-4).
            let same = model.distances(&left, &left, metric).unwrap();
            assert!(same.iter().all(|&d| d == 0.0), "{file}: identical pairs gave {same:?}");
        }
    }
}

#[test]
fn keras_files_match_keras_on_the_cpu_reference() {
    for (file, stem) in FILES {
        let loaded = load_keras_file(fixture(file)).unwrap();
        let (left, right, want) = golden(stem);
        let spec = &loaded.spec;
        let steps = if spec.is_sequence() { left.shape()[1] } else { 1 };
        let embed = |x: &Array| spec.reference_forward_masked(x.data(), x.batch(), steps, &[]).unwrap();
        let (a, b) = (embed(&left), embed(&right));
        let dim = a.len() / left.batch();
        let got: Vec<f32> = (0..left.batch())
            .map(|i| {
                let (a, b) = (&a[i * dim..(i + 1) * dim], &b[i * dim..(i + 1) * dim]);
                match &loaded.head {
                    TwinHead::Learned(head) => head.probability(a, b),
                    _ => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt(),
                }
            })
            .collect();
        assert_close(&format!("{file} (CPU reference) vs Keras"), &as_keras_computes(file, &got), &want, ATOL, RTOL);
    }
}

#[test]
fn whole_siamese_models_report_encoder_and_head() {
    for file in ["cnn_twin.keras", "cnn_twin.h5", "lstm_twin.keras", "lstm_twin.h5", "mha_twin.keras", "mha_twin.h5"] {
        let loaded = load_keras_file(fixture(file)).unwrap();
        assert_eq!(loaded.encoder.as_deref(), Some("encoder"), "{file}");
        assert_eq!(
            loaded.head,
            TwinHead::Replaced { layer: "distance".into(), class: "Lambda".into() },
            "{file}: a Lambda head is replaced by --distance"
        );
        assert_eq!(loaded.spec.name, "encoder", "{file}");
    }
    for file in ["cnn_encoder.keras", "cnn_encoder.h5"] {
        let loaded = load_keras_file(fixture(file)).unwrap();
        assert_eq!((loaded.encoder, loaded.head), (None, TwinHead::None), "{file}");
    }
    let head = load_keras_file(fixture("cnn_head.keras")).unwrap();
    assert_eq!(head.encoder.as_deref(), Some("encoder"));
    match head.head {
        TwinHead::Learned(learned) => {
            assert!(learned.squared, "Subtract -> Multiply(d, d) squares the difference");
            assert_eq!(learned.weights.len(), 32);
        }
        other => panic!("cnn_head: expected the learned head, got {other:?}"),
    }
    // Layer structure as in tests/fixtures/keras_files/README.md.
    let names = |file: &str| -> Vec<String> {
        load_keras_file(fixture(file)).unwrap().spec.layers.iter().map(|l| l.name.clone()).collect()
    };
    assert_eq!(names("cnn_twin.keras"), ["conv2d", "max_pooling2d", "conv2d_1", "max_pooling2d_1", "flatten", "dense"]);
    assert_eq!(names("lstm_twin.h5"), ["lstm", "dense"]);
    assert_eq!(names("mha_twin.keras"), ["mha", "residual", "layer_norm", "pool", "dense"]);
}

#[test]
fn keras_and_h5_files_of_one_model_load_the_same_weights() {
    for stem in ["cnn_twin", "cnn_encoder", "lstm_twin", "mha_twin"] {
        let a = load_keras_file(fixture(&format!("{stem}.keras"))).unwrap().spec;
        let b = load_keras_file(fixture(&format!("{stem}.h5"))).unwrap().spec;
        assert_eq!(a.input_shape, b.input_shape, "{stem}");
        assert_eq!(a.parameter_count(), b.parameter_count(), "{stem}");
        assert!(a.parameter_count() > 0, "{stem}");
        assert_eq!(format!("{:?}", a.layers), format!("{:?}", b.layers), "{stem}: .keras and .h5 differ");
    }
    // model::load (what SiameseModel::load and --model use) gives the same encoder.
    let spec = model::load(fixture("mha_twin.keras")).unwrap();
    let direct = load_keras_file(fixture("mha_twin.keras")).unwrap().spec;
    assert_eq!(format!("{:?}", spec.layers), format!("{:?}", direct.layers));
    assert_eq!(spec.input_shape, [10, 16]);
    assert_eq!(model::load(fixture("lstm_twin.h5")).unwrap().input_shape, [0, 8], "variable time axis");
}

#[test]
fn deflated_keras_zips_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deflated.keras");
    rewrite_zip(&fixture("cnn_twin.keras"), &path, zip::CompressionMethod::Deflated, |_, _| {});
    let a = load_keras_file(&path).unwrap().spec;
    let b = load_keras_file(fixture("cnn_twin.keras")).unwrap().spec;
    assert_eq!(format!("{:?}", a.layers), format!("{:?}", b.layers));
}

#[test]
fn inspect_lists_layers_shapes_parameters_and_how_each_runs() {
    let twin = inspect(fixture("cnn_twin.keras")).unwrap();
    let text = twin.to_string();
    println!("{text}");
    assert_eq!(twin.encoder.as_deref(), Some("encoder"));
    assert!(twin.error.is_none(), "{text}");
    let row = |name: &str| twin.layers.iter().find(|l| l.name == name).unwrap_or_else(|| panic!("{name}: {text}"));
    assert_eq!(row("input_a").runs, Runs::Input);
    assert_eq!(row("encoder").runs, Runs::SharedEncoder);
    assert_eq!(row("distance").runs, Runs::Replaced);
    let conv = row("conv2d");
    assert_eq!((conv.runs.clone(), conv.depth, conv.parameters), (Runs::Gpu, 1, 3 * 3 * 8 + 8));
    assert_eq!(conv.output_shape, Some(vec![None, Some(26), Some(26), Some(8)]));
    assert_eq!(row("dense").output_shape, Some(vec![None, Some(32)]));
    assert_eq!(row("encoder").parameters, 80 + (9 * 8 * 16 + 16) + (400 * 32 + 32));
    for needle in ["conv2d", "(None, 26, 26, 8)", "replaced by --distance", "loads: yes", "Lambda"] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }

    // The LSTM's time axis is variable: None in its input's shape, gone after the LSTM.
    let lstm = inspect(fixture("lstm_twin.h5")).unwrap();
    let text = lstm.to_string();
    println!("{text}");
    let input = lstm.layers.iter().find(|l| l.name == "input_a").unwrap();
    assert_eq!(input.output_shape, Some(vec![None, None, Some(8)]), "{text}");
    let cell = lstm.layers.iter().find(|l| l.name == "lstm").unwrap();
    assert_eq!((cell.output_shape.clone(), cell.parameters), (Some(vec![None, Some(16)]), 8 * 64 + 16 * 64 + 64));

    let head = inspect(fixture("cnn_head.keras")).unwrap();
    println!("{head}");
    let score = head.layers.iter().find(|l| l.name == "score").unwrap();
    assert_eq!((score.runs.clone(), score.parameters), (Runs::LearnedHead, 33));
    assert!(matches!(head.head, Some(TwinHead::Learned(_))));

    let encoder = inspect(fixture("cnn_encoder.h5")).unwrap();
    println!("{encoder}");
    assert_eq!(encoder.encoder, None);
    assert!(encoder.layers.iter().filter(|l| l.class != "InputLayer").all(|l| l.runs == Runs::Gpu));
}

#[test]
fn inspect_lists_unsupported_layers_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("convlstm.keras");
    rewrite_zip(&fixture("cnn_encoder.keras"), &path, zip::CompressionMethod::Stored, |name, json| {
        if name == "config.json" {
            sequential_layer(json, "conv2d_1")["class_name"] = "ConvLSTM2D".into();
        }
    });
    let inspection = inspect(&path).unwrap();
    let text = inspection.to_string();
    println!("{text}");
    let layer = inspection.layers.iter().find(|l| l.name == "conv2d_1").unwrap();
    assert!(matches!(layer.runs, Runs::Unsupported(_)), "{text}");
    assert_eq!(layer.parameters, 3 * 3 * 8 * 16 + 16, "its weights are still counted");
    assert_eq!(inspection.layers.iter().find(|l| l.name == "dense").unwrap().runs, Runs::Gpu);
    assert!(inspection.error.as_deref().is_some_and(|e| e.contains("ConvLSTM2D")), "{text}");
    assert!(text.contains("UNSUPPORTED") && text.contains("loads: no"), "{text}");
}

// ---------------------------------------------------------------------------------------
// Broken files: typed errors, no panic.

#[test]
fn unreadable_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    assert!(matches!(load_err(&dir.path().join("missing.keras")), Error::Io { .. }));

    let keras = std::fs::read(fixture("cnn_twin.keras")).unwrap();
    let h5 = std::fs::read(fixture("cnn_twin.h5")).unwrap();
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    for (name, bytes) in [
        ("truncated.keras", &keras[..keras.len() / 2]),
        ("truncated_end.keras", &keras[..keras.len() - 10]),
        ("empty.keras", &keras[..0]),
        ("garbage.h5", &garbage[..]),
        ("garbage.keras", &garbage[..]),
        ("truncated.h5", &h5[..h5.len() / 2]),
        ("header_only.h5", &h5[..600]),
        ("text.hdf5", b"model_config = {}"),
    ] {
        let err = load_err(&write(name, bytes));
        assert!(matches!(err, Error::ModelFormat { .. }), "{name}: {err}");
        assert!(err.to_string().contains(name), "{name}: the error names the file: {err}");
        assert!(inspect(dir.path().join(name)).is_err(), "{name}");
    }

    // Zips that are not Keras models.
    let zip_of = |name: &str, members: &[(&str, &[u8])]| {
        let path = dir.path().join(name);
        let mut writer = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        for (member, data) in members {
            writer.start_file(*member, zip::write::SimpleFileOptions::default()).unwrap();
            writer.write_all(data).unwrap();
        }
        writer.finish().unwrap();
        path
    };
    let err = load_err(&zip_of("photos.keras", &[("cat.txt", b"meow")]));
    assert!(matches!(&err, Error::ModelFormat { reason, .. } if reason.contains("config.json")), "{err}");
    let err = load_err(&zip_of("no_weights.keras", &[("config.json", br#"{"class_name": "Sequential"}"#)]));
    assert!(matches!(&err, Error::ModelFormat { reason, .. } if reason.contains("model.weights.h5")), "{err}");
    let err = load_err(&zip_of("bad_json.keras", &[("config.json", b"{ nope"), ("model.weights.h5", &h5)]));
    assert!(matches!(&err, Error::ModelFormat { reason, .. } if reason.contains("JSON")), "{err}");
    let err = load_err(&zip_of("bad_h5.keras", &[("config.json", b"{}"), ("model.weights.h5", &garbage)]));
    assert!(matches!(&err, Error::ModelFormat { reason, .. } if reason.contains("HDF5")), "{err}");
    // A model.weights.h5 cut short inside an otherwise valid zip.
    let mut archive = zip::ZipArchive::new(Cursor::new(&keras)).unwrap();
    let (mut config, mut weights) = (Vec::new(), Vec::new());
    archive.by_name("config.json").unwrap().read_to_end(&mut config).unwrap();
    archive.by_name("model.weights.h5").unwrap().read_to_end(&mut weights).unwrap();
    for cut in [weights.len() / 3, weights.len() / 2, weights.len() - 64] {
        let path = zip_of("cut.keras", &[("config.json", &config), ("model.weights.h5", &weights[..cut])]);
        let result = load_keras_file(&path);
        assert!(result.is_err(), "model.weights.h5 cut at {cut} of {} loaded", weights.len());
    }
    // Every cut of a legacy file: an error, never a panic.
    for cut in (0..h5.len()).step_by(h5.len() / 37) {
        let path = write("cut.h5", &h5[..cut]);
        assert!(load_keras_file(&path).is_err(), "cnn_twin.h5 cut at {cut} loaded");
    }
    // A valid HDF5 file that is not a whole model (no model_config): the .keras weights.
    let err = load_err(&write("weights_only.h5", &weights));
    assert!(matches!(&err, Error::ModelFormat { reason, .. } if reason.contains("model_config")), "{err}");
}

#[test]
fn unsupported_layers_name_the_class_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for from in ["cnn_encoder.keras", "cnn_twin.keras"] {
        let path = edited(dir.path(), from, |json| {
            sequential_layer(json, "conv2d_1")["class_name"] = "ConvLSTM2D".into();
        });
        let err = load_err(&path);
        match &err {
            Error::UnsupportedLayer { file, layer, class, .. } => {
                assert_eq!((layer.as_str(), class.as_str()), ("conv2d_1", "ConvLSTM2D"));
                assert!(file.contains(from), "{err}");
            }
            other => panic!("{from}: expected UnsupportedLayer, got {other}"),
        }
    }
}

#[test]
fn missing_extra_and_misshapen_weights_are_named() {
    let dir = tempfile::tempdir().unwrap();
    // The config asks for 9 filters; the file has 8.
    let path = edited(dir.path(), "cnn_twin.keras", |json| {
        sequential_layer(json, "conv2d")["config"]["filters"] = 9.into();
    });
    let err = load_err(&path);
    assert!(matches!(&err, Error::BadWeight { name, .. } if name == "conv2d/kernel"), "{err}");

    // A Dense where the file has a (weightless) Flatten: its kernel is missing.
    let path = edited(dir.path(), "cnn_encoder.keras", |json| {
        let layer = sequential_layer(json, "flatten");
        layer["class_name"] = "Dense".into();
        layer["config"]["units"] = 7.into();
    });
    let err = load_err(&path);
    assert!(matches!(&err, Error::MissingWeight { name, .. } if name == "flatten/kernel"), "{err}");

    // use_bias=False, but the file has a bias: a weight no layer uses.
    let path = edited(dir.path(), "cnn_encoder.keras", |json| {
        sequential_layer(json, "dense")["config"]["use_bias"] = false.into();
    });
    let err = load_err(&path);
    assert!(matches!(&err, Error::UnexpectedWeights { names, .. } if names.contains("dense/")), "{err}");

    // LayerNormalization without center: beta becomes unexpected (gamma still found).
    let path = edited(dir.path(), "mha_twin.keras", |json| {
        let encoder = functional_layer(json, "encoder");
        let layers = encoder["config"]["layers"].as_array_mut().unwrap();
        let norm = layers.iter_mut().find(|l| l["name"] == "layer_norm").unwrap();
        norm["config"]["center"] = false.into();
    });
    let err = load_err(&path);
    assert!(matches!(&err, Error::UnexpectedWeights { names, .. } if names.contains("layer_norm/")), "{err}");
}

#[test]
fn heads_that_are_not_distances_run_as_layers() {
    let dir = tempfile::tempdir().unwrap();
    // Subtract -> Dense(1, sigmoid): no abs or square, not a distance: it runs as it is.
    let path = edited(dir.path(), "cnn_head.keras", |json| {
        let layers = json["config"]["layers"].as_array_mut().unwrap();
        layers.retain(|l| l["name"] != "sq_diff");
        let score = layers.iter_mut().find(|l| l["name"] == "score").unwrap();
        score["inbound_nodes"][0]["args"][0]["config"]["keras_history"][0] = "diff".into();
    });
    let (left, right, _) = golden("cnn_head");
    let check = |path: &Path, summary: &str, score: siamese_wgpu::Score| {
        let loaded = load_keras_file(path).unwrap();
        let TwinHead::Layers(head) = &loaded.head else { panic!("{summary}: {:?}", loaded.head) };
        assert_eq!((head.summary.as_str(), head.score), (summary, score));
        let n = left.batch();
        let embeddings = loaded.spec.reference_forward(&[left.data(), right.data()].concat(), 2 * n).unwrap();
        let want = head.spec.reference_forward(&embeddings, n).unwrap();
        if let Some(gpu) = gpu() {
            let got = SiameseModel::load_on(gpu, path).unwrap().predict(&left, &right).unwrap();
            assert_close(&format!("{summary} (GPU) vs CPU reference"), &got.scores, &want, 1e-5, 1e-4);
        }
    };
    check(&path, "Subtract -> Dense", siamese_wgpu::Score::Probability);
    // inspect lists it: the encoder and the head run on the GPU.
    let inspection = inspect(&path).unwrap();
    let text = inspection.to_string();
    let row = |name: &str| inspection.layers.iter().find(|l| l.name == name).unwrap();
    assert_eq!(row("dense").runs, Runs::Gpu, "{text}");
    assert_eq!(row("dense").output_shape, Some(vec![None, Some(32)]), "{text}");
    assert_eq!(row("score").runs, Runs::Head, "{text}");
    assert!(inspection.error.is_none(), "{text}");

    // Add instead of Multiply, a relu instead of the sigmoid: heads of layers too.
    let path = edited(dir.path(), "cnn_head.keras", |json| {
        functional_layer(json, "sq_diff")["class_name"] = "Add".into();
    });
    check(&path, "Subtract -> Add -> Dense", siamese_wgpu::Score::Probability);
    let path = edited(dir.path(), "cnn_head.keras", |json| {
        functional_layer(json, "score")["config"]["activation"] = "relu".into();
    });
    check(&path, "Subtract -> Multiply -> Dense", siamese_wgpu::Score::Score);

    // Two inputs but no layer shared by both.
    let path = edited(dir.path(), "cnn_twin.keras", |json| {
        let encoder = functional_layer(json, "encoder");
        encoder["inbound_nodes"][1]["args"][0]["config"]["keras_history"][0] = "input_a".into();
    });
    let err = load_err(&path);
    assert!(matches!(&err, Error::ModelFormat { reason, .. } if reason.contains("shared encoder")), "{err}");
}

#[test]
fn keras_file_extensions() {
    for (name, yes) in [("a.keras", true), ("b.h5", true), ("c.HDF5", true), ("d.json", false), ("model", false)] {
        assert_eq!(keras_file::is_keras_file(Path::new(name)), yes, "{name}");
    }
}
