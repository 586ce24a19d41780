//! Keras fixture helpers shared by the Keras test files: the files of
//! tests/fixtures/keras_files, their goldens, edited copies of them, and the check of an
//! encoder-only file against its golden.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;
use siamese_wgpu::io::read_npy;
use siamese_wgpu::model::keras_file::load_keras_file;
use siamese_wgpu::{model, Array, Distance, Error, Gpu, SiameseModel};

/// A file of tests/fixtures/keras_files.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras_files").join(name)
}

/// The inputs and Keras' output for fixture `stem` (`NAME.left.npy`, ...).
pub fn golden(stem: &str) -> (Array, Array, Vec<f32>) {
    let read = |suffix: &str| read_npy(fixture(&format!("{stem}.{suffix}.npy"))).unwrap();
    (read("left"), read("right"), read("keras_out").into_data())
}

/// Encoder-only fixtures (`(file, stem)`; the golden is the euclidean distance between the
/// encoder outputs of left and right) give Keras' distances on the GPU, within
/// `atol + rtol·|ref|`.
pub fn encoder_files_match_keras_on_the_gpu(gpu: &std::sync::Arc<Gpu>, files: &[(&str, &str)], atol: f32, rtol: f32) {
    for (file, stem) in files {
        let model = SiameseModel::load_on(gpu.clone(), fixture(file)).unwrap();
        let (left, right, want) = golden(stem);
        let got = model.distances(&left, &right, Distance::Euclidean).unwrap();
        super::assert_close(&format!("{file} vs Keras"), &got, &want, atol, rtol);
    }
}

/// As [`encoder_files_match_keras_on_the_gpu`], on the CPU reference.
pub fn encoder_files_match_keras_on_the_cpu_reference(files: &[(&str, &str)], atol: f32, rtol: f32) {
    for (file, stem) in files {
        let spec = load_keras_file(fixture(file)).unwrap().spec;
        let (left, right, want) = golden(stem);
        let pairs = left.batch();
        let a = spec.reference_forward(left.data(), pairs).unwrap();
        let b = spec.reference_forward(right.data(), pairs).unwrap();
        let dim = a.len() / pairs;
        let got: Vec<f32> = (0..pairs)
            .map(|i| {
                let (a, b) = (&a[i * dim..(i + 1) * dim], &b[i * dim..(i + 1) * dim]);
                a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt()
            })
            .collect();
        super::assert_close(&format!("{file} (CPU reference) vs Keras"), &got, &want, atol, rtol);
    }
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

/// The kernels `model` runs per call, as `describe` lists them without the layer names.
pub fn kernels(model: &SiameseModel) -> Vec<String> {
    model.graph().describe().iter().map(|line| line.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")).collect()
}

pub fn load_err(path: &Path) -> Error {
    let err = model::load(path).expect_err("loading should fail");
    // The same error through the full loader.
    let again = load_keras_file(path).expect_err("loading should fail");
    assert_eq!(err.to_string(), again.to_string());
    err
}
