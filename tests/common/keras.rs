//! Keras fixture helpers shared by tests/keras_files*.rs: the files of
//! tests/fixtures/keras_files, their goldens, and edited copies of them.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;
use siamese_wgpu::io::read_npy;
use siamese_wgpu::model::keras_file::load_keras_file;
use siamese_wgpu::{model, Array, Error};

/// A file of tests/fixtures/keras_files.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras_files").join(name)
}

/// The inputs and Keras' output for fixture `stem` (`NAME.left.npy`, ...).
pub fn golden(stem: &str) -> (Array, Array, Vec<f32>) {
    let read = |suffix: &str| read_npy(fixture(&format!("{stem}.{suffix}.npy"))).unwrap();
    (read("left"), read("right"), read("keras_out").into_data())
}

/// Copies a `.keras` zip, letting `edit` change each JSON member (`config.json`,
/// `metadata.json`) before it is written back with `method`.
pub fn rewrite_zip(from: &Path, to: &Path, method: zip::CompressionMethod, mut edit: impl FnMut(&str, &mut Value)) {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(from).unwrap()).unwrap();
    let mut writer = zip::ZipWriter::new(std::fs::File::create(to).unwrap());
    let options = zip::write::SimpleFileOptions::default().compression_method(method);
    for i in 0..archive.len() {
        let mut member = archive.by_index(i).unwrap();
        let name = member.name().to_string();
        let mut data = Vec::new();
        member.read_to_end(&mut data).unwrap();
        if name.ends_with(".json") {
            let mut json: Value = serde_json::from_slice(&data).unwrap();
            edit(&name, &mut json);
            data = json.to_string().into_bytes();
        }
        writer.start_file(name, options).unwrap();
        writer.write_all(&data).unwrap();
    }
    writer.finish().unwrap();
}

/// An edited copy of fixture `from` (config.json changed by `edit`) in `dir`.
pub fn edited(dir: &Path, from: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let path = dir.join(from);
    let mut edit = Some(edit);
    rewrite_zip(&fixture(from), &path, zip::CompressionMethod::Stored, |name, json| {
        if name == "config.json" {
            if let Some(edit) = edit.take() {
                edit(json);
            }
        }
    });
    path
}

/// A layer's entry in a Sequential config (the top level, or the nested `encoder`).
pub fn sequential_layer<'a>(json: &'a mut Value, name: &str) -> &'a mut Value {
    let config = if json["class_name"] == "Sequential" {
        &mut json["config"]
    } else {
        let layers = json["config"]["layers"].as_array_mut().unwrap();
        &mut layers.iter_mut().find(|l| l["name"] == "encoder").unwrap()["config"]
    };
    let layers = config["layers"].as_array_mut().unwrap();
    layers.iter_mut().find(|l| l["config"]["name"] == name).unwrap()
}

/// A top-level layer of a Functional config.
pub fn functional_layer<'a>(json: &'a mut Value, name: &str) -> &'a mut Value {
    json["config"]["layers"].as_array_mut().unwrap().iter_mut().find(|l| l["name"] == name).unwrap()
}

pub fn load_err(path: &Path) -> Error {
    let err = model::load(path).expect_err("loading should fail");
    // The same error through the full loader.
    let again = load_keras_file(path).expect_err("loading should fail");
    assert_eq!(err.to_string(), again.to_string());
    err
}
