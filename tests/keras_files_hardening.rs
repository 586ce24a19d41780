//! Keras model files, issue #17: nothing silently wrong, nothing unbounded (zip members
//! that inflate beyond their limits, input shapes and layers read as written, the mask
//! nodes of Functional models, trained layers after a Lambda head). The rest of the Keras
//! file tests: tests/keras_files.rs.

mod common;

use std::io::{Cursor, Read, Write};

use common::keras::{edited, fixture, functional_layer, golden, load_err};
use common::{assert_close, gpu};
use serde_json::Value;
use siamese_wgpu::model::keras_file::{inspect, load_keras_file, Runs, TwinHead};
use siamese_wgpu::{Array, Distance, Error, SiameseModel};

// ---------------------------------------------------------------------------------------
// Issue #17: nothing silently wrong, nothing unbounded.

/// Rewrites the uncompressed size that the local header and the central directory record
/// for zip member `name` (zip32 fields), to make a lying header.
fn patch_declared_size(zip: &mut [u8], name: &str, size: u32) {
    let mut patched = 0;
    // (signature, offset of the name length, of the name, of the uncompressed size)
    for (signature, name_len_at, name_at, size_at) in [(0x0403_4b50u32, 26, 30, 22), (0x0201_4b50, 28, 46, 24)] {
        let signature = signature.to_le_bytes();
        let mut at = 0;
        while let Some(found) = zip[at..].windows(4).position(|w| w == signature) {
            let start = at + found;
            at = start + 4;
            let name_len = u16::from_le_bytes([zip[start + name_len_at], zip[start + name_len_at + 1]]) as usize;
            if zip.get(start + name_at..start + name_at + name_len) == Some(name.as_bytes()) {
                zip[start + size_at..start + size_at + 4].copy_from_slice(&size.to_le_bytes());
                patched += 1;
            }
        }
    }
    assert_eq!(patched, 2, "{name}: its local header and central directory entry");
}

/// A small `.keras` whose config.json inflates far beyond any real config (a zip bomb) is
/// refused by its declared size before inflating, and a header that understates the size
/// cannot get past the cap either: reading stops at the declared size.
#[test]
fn zip_members_that_inflate_beyond_their_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let weights = {
        let mut archive = zip::ZipArchive::new(std::fs::File::open(fixture("cnn_encoder.keras")).unwrap()).unwrap();
        let mut data = Vec::new();
        archive.by_name("model.weights.h5").unwrap().read_to_end(&mut data).unwrap();
        data
    };
    // 80 MiB of spaces inside a JSON string: valid JSON, over the 64 MiB config limit.
    let mut config = Vec::with_capacity(80 << 20);
    config.extend_from_slice(br#"{"class_name": "Sequential", "pad": ""#);
    config.resize(80 << 20, b' ');
    config.extend_from_slice(br#""}"#);
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    writer.start_file("config.json", deflated).unwrap();
    writer.write_all(&config).unwrap();
    writer.start_file("model.weights.h5", deflated).unwrap();
    writer.write_all(&weights).unwrap();
    let bomb = writer.finish().unwrap().into_inner();
    assert!(bomb.len() < 1 << 20, "the test zip is small: {} bytes", bomb.len());

    let path = dir.path().join("bomb.keras");
    std::fs::write(&path, &bomb).unwrap();
    let err = load_err(&path);
    let text = err.to_string();
    println!("{text}");
    assert!(matches!(err, Error::ModelFormat { .. }), "{text}");
    for needle in ["bomb.keras", "config.json", &config.len().to_string(), "64 MiB"] {
        assert!(text.contains(needle), "{needle:?} not in: {text}");
    }
    assert!(inspect(&path).is_err());

    // The header says 1000 bytes; the data inflates to 80 MiB.
    let mut lying = bomb.clone();
    patch_declared_size(&mut lying, "config.json", 1000);
    let path = dir.path().join("lying.keras");
    std::fs::write(&path, &lying).unwrap();
    let text = load_err(&path).to_string();
    println!("{text}");
    for needle in ["lying.keras", "config.json", "1000"] {
        assert!(text.contains(needle), "{needle:?} not in: {text}");
    }
}
/// Shapes in errors read as Keras writes them (`[None, -28, 28, 1]`), and a misplaced
/// InputLayer says where InputLayer may go.
#[test]
fn input_shape_and_input_layer_errors_read_as_written() {
    let dir = tempfile::tempdir().unwrap();
    for (dims, bad) in [(serde_json::json!([null, -28, 28, 1]), "-28"), (serde_json::json!([null, 28, 0, 1]), "0")] {
        let path = edited(dir.path(), "cnn_encoder.keras", |json| {
            json["config"]["layers"][0]["config"]["batch_shape"] = dims.clone();
        });
        let text = load_err(&path).to_string();
        let written = dims.to_string().replace("null", "None").replace(',', ", ");
        assert!(text.contains(&written), "{written} not in: {text}");
        assert!(text.contains(&format!("dimension {bad} is not a positive size")), "{text}");
        assert!(!text.contains("Some("), "{text}");
    }

    let path = edited(dir.path(), "cnn_encoder.keras", |json| {
        let layers = json["config"]["layers"].as_array_mut().unwrap();
        let mut input = layers[0].clone();
        input["config"]["name"] = "x".into();
        layers.insert(2, input);
    });
    let err = load_err(&path);
    let text = err.to_string();
    assert!(!matches!(err, Error::UnsupportedLayer { .. }), "{text}");
    assert!(text.contains("InputLayer \"x\" may only be the first layer of a Sequential model"), "{text}");
}
/// Keras 3 writes the ops computing Masking's mask (NotEqual, Any) into a Functional
/// config as nodes of their own, feeding the LSTM's `mask` argument: they are recognised,
/// the mask is still applied (by the engine's Masking), and the numbers are Keras'.
#[test]
fn masking_op_nodes_of_functional_models_load_and_match_keras() {
    // Tolerance: the crate's usual f32 one; a 4-unit LSTM over at most 6 steps sums few terms.
    const ATOL: f32 = 1e-5;
    const RTOL: f32 = 1e-4;
    for (file, twin) in [("masked_lstm.keras", false), ("masked_lstm_twin.keras", true)] {
        let loaded = load_keras_file(fixture(file)).unwrap();
        let stem = file.trim_end_matches(".keras");
        let (left, right, want) = golden(stem);
        // Keras' twin head is sqrt(max(d^2, 1e-7)); the encoder file's golden is plain euclidean.
        let keras_head = |d: &[f32]| -> Vec<f32> {
            if twin {
                d.iter().map(|d| (d * d).max(1e-7).sqrt()).collect()
            } else {
                d.to_vec()
            }
        };
        let names: Vec<&str> = loaded.spec.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["masking", "lstm"], "{file}: the mask's op nodes are absorbed");
        assert_eq!(loaded.spec.mask_value(), Some(0.0), "{file}");

        let spec = &loaded.spec;
        let embed = |x: &Array| spec.reference_forward_masked(x.data(), x.batch(), x.shape()[1], &[]).unwrap();
        let (a, b) = (embed(&left), embed(&right));
        let dim = a.len() / left.batch();
        let cpu: Vec<f32> = (0..left.batch())
            .map(|i| {
                let (a, b) = (&a[i * dim..(i + 1) * dim], &b[i * dim..(i + 1) * dim]);
                a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt()
            })
            .collect();
        assert_close(&format!("{file} (CPU reference) vs Keras"), &keras_head(&cpu), &want, ATOL, RTOL);

        if let Some(gpu) = gpu() {
            let model = SiameseModel::load_on(gpu, fixture(file)).unwrap();
            let got = model.distances(&left, &right, Distance::Euclidean).unwrap();
            assert_close(&format!("{file} (GPU) vs Keras"), &keras_head(&got), &want, ATOL, RTOL);
        }

        let inspection = inspect(fixture(file)).unwrap();
        let text = inspection.to_string();
        println!("{text}");
        assert!(inspection.error.is_none(), "{text}");
        for op in ["not_equal", "any"] {
            let row = inspection.layers.iter().find(|l| l.name == op).unwrap();
            assert!(!matches!(row.runs, Runs::Unsupported(_)), "{file}: {op}: {text}");
        }
    }

    // An Any over another axis is not Masking's mask: an error naming the node.
    let dir = tempfile::tempdir().unwrap();
    let path = edited(dir.path(), "masked_lstm.keras", |json| {
        functional_layer(json, "any")["config"]["axis"] = 1.into();
    });
    let text = load_err(&path).to_string();
    assert!(text.contains("\"any\"") && text.contains("Any"), "{text}");
}
/// A Lambda head followed by a trained layer (Koch et al.: Lambda |a - b| -> Dense(1,
/// sigmoid)) is an error asking for --lambda (tests/twin_heads.rs runs it with one):
/// replacing the head by --distance would drop the trained Dense and print distances where
/// Keras gives probabilities.
#[test]
fn trained_layers_after_a_lambda_head_are_errors_not_dropped() {
    for file in ["koch_twin.keras", "koch_twin.h5"] {
        let path = fixture(file);
        let err = load_err(&path);
        let text = err.to_string();
        assert!(matches!(err, Error::UnsupportedLayer { .. } | Error::ModelFormat { .. }), "{file}: {text}");
        for needle in [file, "Lambda", "\"l1_distance\"", "--lambda", "returns 4 values per pair"] {
            assert!(text.contains(needle), "{file}: {needle:?} not in: {text}");
        }
        // SiameseModel (what `siamese pairs` runs) refuses it the same way.
        assert!(SiameseModel::load(&path).is_err(), "{file}");
        // inspect still lists the file, with the head as unsupported.
        let inspection = inspect(&path).unwrap();
        let listing = inspection.to_string();
        println!("{listing}");
        let row = |name: &str| inspection.layers.iter().find(|l| l.name == name).unwrap();
        assert_eq!(row("encoder").runs, Runs::SharedEncoder, "{listing}");
        assert!(matches!(row("l1_distance").runs, Runs::Unsupported(_)), "{listing}");
        assert!(matches!(row("score").runs, Runs::Unsupported(_)), "{listing}");
        assert_eq!(row("score").parameters, 5, "{listing}");
        assert!(listing.contains("loads: no") && listing.contains("--lambda"), "{listing}");
    }

    // A Lambda followed only by layers that pass its one value per pair through unchanged
    // (Dropout, Flatten) is still replaced by --distance.
    let dir = tempfile::tempdir().unwrap();
    let after_distance = |json: &mut Value, class: &str, config: Value| {
        let layers = json["config"]["layers"].as_array_mut().unwrap();
        let distance = layers.iter().find(|l| l["name"] == "distance").unwrap().clone();
        let mut tensor = distance["inbound_nodes"][0]["args"][0][0].clone();
        tensor["config"]["keras_history"] = serde_json::json!(["distance", 0, 0]);
        tensor["config"]["shape"] = serde_json::json!([null, 1]);
        let mut config = config;
        config["name"] = "after".into();
        layers.push(serde_json::json!({
            "module": "keras.layers", "class_name": class, "config": config, "registered_name": null,
            "name": "after", "inbound_nodes": [{"args": [tensor], "kwargs": {}}],
        }));
        json["config"]["output_layers"] = serde_json::json!([["after", 0, 0]]);
    };
    let path = edited(dir.path(), "cnn_twin.keras", |json| {
        after_distance(json, "Dropout", serde_json::json!({"rate": 0.5}));
    });
    let loaded = load_keras_file(&path).unwrap();
    assert_eq!(loaded.head, TwinHead::Replaced { layer: "distance".into(), class: "Lambda".into() });
    // A parameter-free layer that changes the value (a sigmoid) runs after the distance.
    let path = edited(dir.path(), "cnn_twin.keras", |json| {
        after_distance(json, "Activation", serde_json::json!({"activation": "sigmoid"}));
    });
    let loaded = load_keras_file(&path).unwrap();
    let TwinHead::Layers(head) = &loaded.head else { panic!("{:?}", loaded.head) };
    assert_eq!(head.score, siamese_wgpu::Score::Probability);
    assert!(head.summary.contains("\"distance\" as the euclidean distance -> Activation"), "{}", head.summary);
}
