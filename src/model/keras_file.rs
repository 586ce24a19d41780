//! Whole Keras model files → [`ModelSpec`]: a Keras 3 `.keras` zip (`config.json`,
//! `metadata.json`, `model.weights.h5`) or a legacy HDF5 `.h5` / `.hdf5` file (root
//! attribute `model_config` + group `model_weights`), from Keras 3 or tf.keras 2.
//!
//! This is the ONE place that knows how Keras lays weights out in HDF5. Both layouts are
//! mapped onto the names the model-directory loader reads (`{layer}/{variable}`, see
//! docs/model-format.md), then [`super::keras`] builds the layers, so every layer the
//! engine runs loads from these files too.
//!
//! Keras 3 (`model.weights.h5`): a model's layers are groups under `{model}/layers/`,
//! named after the layer's CLASS in snake case (`conv2d`, `conv2d_1`, … numbered among
//! siblings in `model.layers` order; a Sequential's list leaves out its InputLayer), each
//! with `vars/0`, `vars/1`, … in variable-creation order and a `vars@name` attribute
//! holding the layer's real name (matched first; the class numbering is the fallback).
//! Per class:
//!
//! | class | datasets | our names |
//! |---|---|---|
//! | Conv2D, Dense | `vars/0`, `vars/1` | `kernel`, `bias` (absent when `use_bias=False`) |
//! | LayerNormalization | `vars/0`, `vars/1` | `gamma` (if `scale`), `beta` (if `center`): indices shift |
//! | Embedding | `vars/0` | `embeddings` |
//! | LSTM / GRU | `cell/vars/0,1,2` | `{lstm_cell,gru_cell}/kernel`, `recurrent_kernel`, `bias` |
//! | Bidirectional | `{forward,backward}_layer/cell/vars/…` | `{inner layer name}/{cell}/…` |
//! | MultiHeadAttention | `{query,key,value,output}_dense/vars/0,1` | `{query,key,value,attention_output}/kernel`, `bias` |
//!
//! Any other dataset under a layer's group keeps its path (`{layer}/vars/3`), so the
//! builder reports it as a weight no layer uses: nothing in the file is silently dropped.
//!
//! Legacy HDF5: `model_weights/{layer}` per top-level layer, its attribute `weight_names`
//! (split into `weight_names0`, `weight_names1`, … past 64 KiB) naming datasets under that
//! group. A nested model's group holds all its layers' weights. Names vary by version
//! (`encoder/conv2d/kernel`, `conv2d/kernel:0`, `mha/query/kernel`): the `:0` is stripped
//! and the name is cut to start at the first component that is a layer name.
//!
//! Whole Siamese models (two inputs): the shared encoder is the layer called twice, once
//! on each input (a nested Sequential/Functional model or a single layer); it becomes the
//! [`ModelSpec`]. The head after it is a [`TwinHead`].

use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};
use std::path::Path;

use hdf5_reader::group::Group;
use hdf5_reader::{Attribute, Datatype, Hdf5File};
use serde_json::{json, Value};

use super::keras;
use super::weights::{Weight, Weights};
use super::ModelSpec;
use crate::error::{Error, Result};
use crate::ops::LearnedHead;

/// File extensions [`crate::model::load`] hands to this loader.
pub const EXTENSIONS: [&str; 3] = ["keras", "h5", "hdf5"];

/// The twin heads that load, for error messages.
pub const SUPPORTED_HEADS: &str = "a head with a Lambda layer (Python code: replaced by the run-time --distance; \
                                   only with no trained layer in the head and nothing after the Lambda but \
                                   Dropout, Flatten, Reshape or a linear Activation), \
                                   or exactly Subtract(a, b) -> Multiply(d, d) -> Dense(1, sigmoid) (the learned \
                                   squared head); Subtract -> Dense without a square or abs has no equivalent";

/// The most bytes `config.json` or `metadata.json` of a `.keras` zip may inflate to: real
/// ones are kilobytes (a 1,000-layer model's config is a few MiB).
const MAX_JSON_MEMBER: u64 = 64 << 20;

/// The most bytes `model.weights.h5` may inflate to: 4 GiB holds a billion float32
/// weights, beyond any model one wgpu storage binding can run.
const MAX_WEIGHTS_MEMBER: u64 = 4 << 30;

/// A Keras model file, loaded: the shared encoder and what the file had after it.
#[derive(Clone, Debug)]
pub struct KerasFile {
    /// The shared encoder.
    pub spec: ModelSpec,
    /// The name of the shared encoder layer found in a whole Siamese model; None for a
    /// file that is just an encoder.
    pub encoder: Option<String>,
    /// The twin's head.
    pub head: TwinHead,
}

/// What a whole Siamese model computes after its shared encoder.
#[derive(Clone, Debug, PartialEq)]
pub enum TwinHead {
    /// No head: an encoder-only file (or a twin that outputs both embeddings).
    None,
    /// The head holds a layer that cannot run here (a `Lambda`: Python code); the whole
    /// head is replaced by the run-time `--distance`. Only when that drops nothing: no
    /// trained layer in the head, and only pass-through layers after the Lambda (otherwise
    /// loading is an error).
    Replaced {
        /// The layer that cannot run.
        layer: String,
        /// Its Keras class.
        class: String,
    },
    /// Subtract → Multiply(d, d) → Dense(1, sigmoid): `σ(Σ w·(a − b)² + b)`, which the
    /// distance shader fuses ([`crate::ops::Distance::Learned`]).
    Learned(LearnedHead),
}

impl std::fmt::Display for TwinHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TwinHead::None => f.write_str("none"),
            TwinHead::Replaced { layer, class } => {
                write!(f, "{class} {layer:?} cannot run here (Python code): replaced by the run-time --distance")
            }
            TwinHead::Learned(head) => write!(
                f,
                "learned: sigmoid(sum w*(a-b)^2 + b) over {} values (Subtract -> Multiply -> Dense(1, sigmoid))",
                head.weights.len()
            ),
        }
    }
}

/// Whether `path` names a Keras model file (by its extension).
pub fn is_keras_file(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Loads a `.keras` or legacy `.h5` model file: the encoder (the shared one of a whole
/// Siamese model) and the twin's head. Unsupported layers are typed errors naming the
/// class and the file.
pub fn load_keras_file(path: impl AsRef<Path>) -> Result<KerasFile> {
    let source = Source::open(path.as_ref())?;
    let top = ModelView::parse(&source.root, &source.file)?;
    let weights = source.weights_by_layer(&top)?;
    let plan = Plan::of(&top, &source.file)?;
    let spec = plan.build_encoder(&source, &top, &weights)?;
    let head = plan.head(&source, &top, &spec, &weights)?;
    Ok(KerasFile { spec, encoder: plan.encoder_name(), head })
}

// ---------------------------------------------------------------------------------------
// Reading the file: config JSON and HDF5 weights.

/// Which of the two layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// Keras 3 `.keras` zip.
    Keras3,
    /// Legacy HDF5 full-model file.
    Legacy,
}

/// An opened model file.
struct Source {
    /// The path, for error messages.
    file: String,
    format: Format,
    /// The model config (`{"class_name", "config"}`), with the file's `keras_version`.
    root: Value,
    h5: Hdf5File,
}

impl Source {
    fn open(path: &Path) -> Result<Self> {
        let file = path.display().to_string();
        let format_error = |reason: String| Error::ModelFormat { file: file.clone(), reason };
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if bytes.starts_with(b"PK") {
            return Self::open_zip(bytes, file);
        }
        let h5 = open_hdf5(bytes).map_err(|e| {
            format_error(format!(
                "not a Keras model file: neither a Keras 3 .keras zip nor a legacy HDF5 .h5 file ({e})"
            ))
        })?;
        let root_group = h5.root_group().map_err(|e| format_error(format!("unreadable HDF5 file: {e}")))?;
        let config = root_group.attribute("model_config").and_then(|a| a.read_string()).map_err(|_| {
            format_error(
                "HDF5 file without a `model_config` attribute: a weights-only file (save_weights)? \
                     Save the whole model with model.save(\"model.h5\") or, better, model.save(\"model.keras\")"
                    .into(),
            )
        })?;
        let mut root: Value = serde_json::from_str(&config)
            .map_err(|e| format_error(format!("the `model_config` attribute is not valid JSON: {e}")))?;
        if let Ok(version) = root_group.attribute("keras_version").and_then(|a| a.read_string()) {
            stamp_version(&mut root, &version);
        }
        Ok(Self { file, format: Format::Legacy, root, h5 })
    }

    fn open_zip(bytes: Vec<u8>, file: String) -> Result<Self> {
        let format_error = |reason: String| Error::ModelFormat { file: file.clone(), reason };
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| format_error(format!("not a readable .keras (zip) file: {e}")))?;
        // A member is refused by its declared size before anything is inflated, and read
        // through `take` so a header that understates the size cannot get past the limit:
        // memory is bounded by the smaller of the two, never by what the data inflates to.
        let mut entry = |name: &str, limit: u64| -> Result<Option<Vec<u8>>> {
            let member = match zip.by_name(name) {
                Ok(member) => member,
                Err(zip::result::ZipError::FileNotFound) => return Ok(None),
                Err(e) => return Err(format_error(format!("cannot read {name} from the zip: {e}"))),
            };
            let declared = member.size();
            if declared > limit {
                return Err(format_error(format!(
                    "{name} in the zip declares {declared} bytes uncompressed, more than the {} limit for it",
                    byte_size(limit)
                )));
            }
            let mut data = Vec::new();
            member
                .take(declared + 1)
                .read_to_end(&mut data)
                .map_err(|e| format_error(format!("cannot read {name} from the zip: {e}")))?;
            if data.len() as u64 > declared {
                return Err(format_error(format!(
                    "{name} in the zip inflates to more than the {declared} bytes its header declares \
                     (a damaged or forged zip); reading stopped there (limit {})",
                    byte_size(limit)
                )));
            }
            Ok(Some(data))
        };
        let config = entry("config.json", MAX_JSON_MEMBER)?.ok_or_else(|| {
            format_error("a zip without config.json: not a Keras 3 .keras model file (save with model.save)".into())
        })?;
        let metadata = entry("metadata.json", MAX_JSON_MEMBER)?;
        let weights = entry("model.weights.h5", MAX_WEIGHTS_MEMBER)?.ok_or_else(|| {
            format_error("the .keras zip has no model.weights.h5 (sharded or npz weights are not supported)".into())
        })?;
        let mut root: Value =
            serde_json::from_slice(&config).map_err(|e| format_error(format!("config.json is not valid JSON: {e}")))?;
        let version = metadata
            .and_then(|m| serde_json::from_slice::<Value>(&m).ok())
            .and_then(|m| m.get("keras_version").and_then(Value::as_str).map(str::to_string));
        if let Some(version) = version {
            stamp_version(&mut root, &version);
        }
        let h5 = open_hdf5(weights)
            .map_err(|e| format_error(format!("model.weights.h5 in the zip is not a readable HDF5 file: {e}")))?;
        Ok(Self { file, format: Format::Keras3, root, h5 })
    }

    /// The file's name for weight errors.
    fn weights_file(&self) -> String {
        match self.format {
            Format::Keras3 => format!("{} (model.weights.h5)", self.file),
            Format::Legacy => self.file.clone(),
        }
    }

    fn hdf5_error(&self, what: &str, e: hdf5_reader::error::Error) -> Error {
        Error::ModelFormat { file: self.weights_file(), reason: format!("{what}: {e}") }
    }

    /// The weights of every saved layer of the top-level model, by layer name, in our
    /// names (`{layer}/{variable}`; for a nested model, its layers' names), plus the
    /// model's own variables under the model's name.
    fn weights_by_layer(&self, top: &ModelView) -> Result<BTreeMap<String, BTreeMap<String, Weight>>> {
        let mut out = match self.format {
            Format::Keras3 => self.keras3_model(top, "")?,
            Format::Legacy => {
                let mut out = BTreeMap::new();
                for entry in top.saved() {
                    let candidates: Vec<String> = match entry.nested(&self.file)? {
                        Some(nested) => nested.saved().iter().map(|e| e.name.clone()).collect(),
                        None => vec![entry.name.clone()],
                    };
                    let group = format!("model_weights/{}", entry.name);
                    out.insert(entry.name.clone(), self.legacy_group(&group, &entry.name, &candidates)?);
                }
                out
            }
        };
        let own = match self.format {
            Format::Keras3 => self.keras3_own_vars("", &top.name)?,
            Format::Legacy => {
                self.legacy_group("model_weights/top_level_model_weights", &top.name, std::slice::from_ref(&top.name))?
            }
        };
        if !own.is_empty() {
            out.entry(top.name.clone()).or_default().extend(own);
        }
        Ok(out)
    }

    /// Keras 3: the weights of every saved layer of the model stored at `model_path`
    /// (`""` for the top level, `layers/sequential` for a nested one), by layer name.
    fn keras3_model(&self, model: &ModelView, model_path: &str) -> Result<BTreeMap<String, BTreeMap<String, Weight>>> {
        let container = join(model_path, "layers");
        let groups = self.keras3_groups(&container, model.saved())?;
        let mut out = BTreeMap::new();
        for entry in model.saved() {
            let Some(group) = groups.get(&entry.name) else {
                out.insert(entry.name.clone(), BTreeMap::new());
                continue;
            };
            let weights = match entry.nested(&self.file)? {
                Some(nested) => {
                    let mut all: BTreeMap<String, Weight> =
                        self.keras3_model(&nested, group)?.into_values().flatten().collect();
                    all.extend(self.keras3_own_vars(group, &entry.name)?);
                    all
                }
                None => self.keras3_layer(group, entry)?,
            };
            out.insert(entry.name.clone(), weights);
        }
        Ok(out)
    }

    /// Keras 3: which group under `container` holds each entry: by the `vars@name`
    /// attribute, else by the class-name numbering Keras uses.
    fn keras3_groups(&self, container: &str, entries: &[Entry]) -> Result<HashMap<String, String>> {
        let Ok(group) = self.h5.group(container) else {
            return Ok(HashMap::new());
        };
        let (subgroups, _) = group.member_names().map_err(|e| self.hdf5_error(container, e))?;
        let mut by_name: HashMap<String, String> = HashMap::new();
        for sub in &subgroups {
            let vars = self.h5.group(&format!("{container}/{sub}/vars"));
            if let Some(name) = vars.ok().and_then(|v| v.attribute("name").ok()).and_then(|a| a.read_string().ok()) {
                by_name.entry(name).or_insert_with(|| sub.clone());
            }
        }
        let mut used: HashMap<String, usize> = HashMap::new();
        let mut out = HashMap::new();
        for entry in entries {
            let base = snake_case(&entry.class);
            let numbered = match used.get_mut(&base) {
                Some(count) => {
                    *count += 1;
                    format!("{base}_{count}")
                }
                None => {
                    used.insert(base.clone(), 0);
                    base
                }
            };
            let found = by_name.get(&entry.name).cloned().or_else(|| subgroups.contains(&numbered).then_some(numbered));
            if let Some(sub) = found {
                out.insert(entry.name.clone(), format!("{container}/{sub}"));
            }
        }
        Ok(out)
    }

    /// Keras 3: one (non-model) layer's datasets in our names.
    fn keras3_layer(&self, group: &str, entry: &Entry) -> Result<BTreeMap<String, Weight>> {
        let known: HashMap<String, String> =
            keras::keras3_variables(&entry.class, entry.config(), &entry.name).into_iter().collect();
        let mut out = BTreeMap::new();
        for (relative, absolute) in self.datasets_under(group)? {
            let name = known.get(&relative).cloned().unwrap_or_else(|| format!("{}/{relative}", entry.name));
            out.insert(name, self.read_weight(&absolute)?);
        }
        Ok(out)
    }

    /// Keras 3: a model's own variables (`{model_path}/vars/*`), which no layer reads.
    fn keras3_own_vars(&self, model_path: &str, model_name: &str) -> Result<BTreeMap<String, Weight>> {
        let vars = join(model_path, "vars");
        let Ok(group) = self.h5.group(&vars) else {
            return Ok(BTreeMap::new());
        };
        let (_, datasets) = group.member_names().map_err(|e| self.hdf5_error(&vars, e))?;
        datasets
            .iter()
            .map(|d| Ok((format!("{model_name}/vars/{d}"), self.read_weight(&format!("{vars}/{d}"))?)))
            .collect()
    }

    /// Every dataset under `group`, recursively: (path relative to it with leading `_`
    /// stripped from each part, absolute path).
    fn datasets_under(&self, group: &str) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut pending = vec![String::new()];
        while let Some(relative) = pending.pop() {
            let absolute = join(group, &relative);
            let g = self.h5.group(&absolute).map_err(|e| self.hdf5_error(&absolute, e))?;
            let (groups, datasets) = g.member_names().map_err(|e| self.hdf5_error(&absolute, e))?;
            for d in datasets {
                out.push((clean_path(&join(&relative, &d)), join(&absolute, &d)));
            }
            pending.extend(groups.iter().map(|sub| join(&relative, sub)));
        }
        Ok(out)
    }

    /// Legacy HDF5: the datasets `weight_names` lists in `group` (one top-level layer, or a
    /// whole nested model), named from the first path part that is one of `layers`.
    fn legacy_group(&self, group: &str, owner: &str, layers: &[String]) -> Result<BTreeMap<String, Weight>> {
        let Ok(g) = self.h5.group(group) else {
            return Ok(BTreeMap::new());
        };
        let names =
            string_list(&g, "weight_names").map_err(|e| self.hdf5_error(&format!("{group}@weight_names"), e))?;
        let mut out = BTreeMap::new();
        for stored in names {
            let clean = stored.split('/').map(|part| part.split(':').next().unwrap_or(part)).collect::<Vec<_>>();
            let ours = match clean.iter().position(|part| layers.iter().any(|l| l == part)) {
                Some(start) => clean[start..].join("/"),
                None => format!("{owner}/{}", clean.join("/")),
            };
            out.insert(ours, self.read_weight(&format!("{group}/{stored}"))?);
        }
        Ok(out)
    }

    /// One dataset as f32 (float16, float32 and float64 are accepted).
    fn read_weight(&self, path: &str) -> Result<Weight> {
        let file = self.weights_file();
        let dataset = self.h5.dataset(path).map_err(|e| self.hdf5_error(&format!("dataset {path}"), e))?;
        let shape: Vec<usize> = dataset.shape().iter().map(|&d| d as usize).collect();
        let bad = |got: String| Error::BadWeight {
            file: file.clone(),
            name: path.to_string(),
            expected: "a float16, float32 or float64 array".into(),
            got,
        };
        let size = match dataset.dtype() {
            Datatype::FloatingPoint { size, .. } if [2, 4, 8].contains(size) => *size as usize,
            other => return Err(bad(format!("{other:?}"))),
        };
        // A dataset cannot hold more than its file could expand to (deflate tops out near
        // 1032:1): refuse a declared shape beyond that before anything is allocated.
        let file_len = self.h5.superblock().eof_address;
        let declared = shape.iter().try_fold(size as u64, |n, &d| n.checked_mul(d as u64));
        match declared {
            Some(n) if n <= file_len.saturating_mul(1032).saturating_add(1 << 20) => {}
            _ => {
                return Err(bad(format!(
                    "shape {shape:?} of {size}-byte values, more than a {file_len}-byte file can hold"
                )))
            }
        }
        let bytes = dataset.read_native_bytes().map_err(|e| self.hdf5_error(&format!("dataset {path}"), e))?;
        let data: Vec<f32> = match size {
            2 => bytes.chunks_exact(2).map(|c| half::f16::from_ne_bytes([c[0], c[1]]).to_f32()).collect(),
            4 => bytes.chunks_exact(4).map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect(),
            _ => bytes
                .chunks_exact(8)
                .map(|c| f64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
                .collect(),
        };
        if data.len() != shape.iter().product::<usize>() {
            return Err(bad(format!("{} values for shape {shape:?}", data.len())));
        }
        Ok(Weight { shape, data })
    }
}

/// `64 MiB`, `4 GiB`: a limit as people write it.
fn byte_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b => format!("{b} bytes"),
    }
}

/// Parses HDF5 bytes, refusing a file shorter than its superblock says (cut short).
fn open_hdf5(bytes: Vec<u8>) -> std::result::Result<Hdf5File, String> {
    let len = bytes.len() as u64;
    let h5 = Hdf5File::from_vec(bytes).map_err(|e| e.to_string())?;
    let superblock = h5.superblock();
    let end = superblock.base_address.saturating_add(superblock.eof_address);
    if end > len {
        return Err(format!("truncated: {len} of {end} bytes"));
    }
    Ok(h5)
}

/// Adds the file's Keras version to a model config (tf.keras 2 activations differ).
fn stamp_version(root: &mut Value, version: &str) {
    if let Some(map) = root.as_object_mut() {
        map.entry("keras_version").or_insert_with(|| Value::String(version.to_string()));
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// Older Keras 3 versions name sub-objects by their private attribute (`_query_dense`).
fn clean_path(path: &str) -> String {
    path.split('/').map(|p| p.trim_start_matches('_')).collect::<Vec<_>>().join("/")
}

/// A string-array attribute; Keras splits ones over 64 KiB into `NAME0`, `NAME1`, ….
/// An empty list may be stored as an empty float64 array.
fn string_list(group: &Group, name: &str) -> std::result::Result<Vec<String>, hdf5_reader::error::Error> {
    let strings = |attr: Attribute| {
        if attr.decoded_strings.is_none() && !attr.shape.is_empty() && attr.shape.iter().product::<u64>() == 0 {
            return Ok(Vec::new());
        }
        attr.read_strings()
    };
    match group.attribute(name) {
        Ok(attr) => strings(attr),
        Err(missing) => {
            let mut out = Vec::new();
            let mut part = 0;
            while let Ok(attr) = group.attribute(&format!("{name}{part}")) {
                out.extend(strings(attr)?);
                part += 1;
            }
            if part == 0 {
                return Err(missing);
            }
            Ok(out)
        }
    }
}

/// Keras' `to_snake_case` (the weights-file group names): `MaxPooling2D` →
/// `max_pooling2d`, `MultiHeadAttention` → `multi_head_attention`, `LSTM` → `lstm`.
fn snake_case(class: &str) -> String {
    let chars: Vec<char> = class.chars().filter(|c| c.is_alphanumeric() || *c == '_').collect();
    // re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name): left to right, matches do not overlap.
    let mut first = Vec::with_capacity(chars.len() * 2);
    let mut i = 0;
    while i < chars.len() {
        let run = chars[i + 1..].iter().skip(1).take_while(|c| c.is_ascii_lowercase()).count();
        if i + 2 < chars.len() && chars[i + 1].is_ascii_uppercase() && run > 0 {
            first.push(chars[i]);
            first.push('_');
            first.extend_from_slice(&chars[i + 1..i + 2 + run]);
            i += 2 + run;
        } else {
            first.push(chars[i]);
            i += 1;
        }
    }
    // re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    let mut out = String::with_capacity(first.len() * 2);
    let mut i = 0;
    while i < first.len() {
        out.push(first[i].to_ascii_lowercase());
        if i + 1 < first.len() && first[i].is_ascii_lowercase() && first[i + 1].is_ascii_uppercase() {
            out.push('_');
            out.push(first[i + 1].to_ascii_lowercase());
            i += 2;
        } else {
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The model config.

/// One layer entry of a model config.
#[derive(Clone, Debug)]
struct Entry<'a> {
    name: String,
    class: String,
    value: &'a Value,
}

impl<'a> Entry<'a> {
    fn config(&self) -> &'a Value {
        self.value.get("config").unwrap_or(&Value::Null)
    }

    /// The nested model this entry is (a Sequential/Functional layer), if it is one.
    fn nested(&self, file: &str) -> Result<Option<ModelView<'a>>> {
        let is_model = matches!(self.class.as_str(), "Sequential" | "Functional" | "Model")
            || self.config().get("layers").is_some_and(Value::is_array);
        if is_model {
            ModelView::parse(self.value, file).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The calls of this layer: for each, the (layer, node index) pairs it reads.
    fn calls(&self) -> Vec<Vec<(String, u64)>> {
        let nodes = self.value.get("inbound_nodes").and_then(Value::as_array).cloned().unwrap_or_default();
        nodes.iter().map(node_inputs).collect()
    }

    /// The names of the layers call `index` reads, each once.
    fn parents(&self, index: usize) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for (name, _) in self.calls().into_iter().nth(index).unwrap_or_default() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }
}

/// The tensors a call reads, in Keras 3 (`{"args": [...], "kwargs": {...}}` holding
/// `keras_history: [layer, node, tensor]`) or Keras 2 (`[[layer, node, tensor, kwargs], ...]`) form.
fn node_inputs(node: &Value) -> Vec<(String, u64)> {
    fn collect(value: &Value, out: &mut Vec<(String, u64)>) {
        match value {
            Value::Object(map) => {
                if let Some(history) = map.get("keras_history").and_then(Value::as_array) {
                    if let Some(name) = history.first().and_then(Value::as_str) {
                        out.push((name.to_string(), history.get(1).and_then(Value::as_u64).unwrap_or(0)));
                    }
                    return;
                }
                for key in ["config", "args", "kwargs"] {
                    if let Some(inner) = map.get(key) {
                        collect(inner, out);
                    }
                }
            }
            Value::Array(items) if items.len() >= 3 && items[0].is_string() && items[1].is_u64() => {
                if let Some(name) = items[0].as_str() {
                    out.push((name.to_string(), items[1].as_u64().unwrap_or(0)));
                }
            }
            Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    collect(node, &mut out);
    out
}

/// A Sequential or Functional model config.
#[derive(Clone, Debug)]
struct ModelView<'a> {
    class: String,
    name: String,
    entries: Vec<Entry<'a>>,
    /// Input layer names (Functional; a Sequential has one input).
    inputs: Vec<String>,
    /// Output layer names.
    outputs: Vec<String>,
}

impl<'a> ModelView<'a> {
    fn parse(root: &'a Value, file: &str) -> Result<Self> {
        let format_error = |reason: String| Error::ModelFormat { file: file.to_string(), reason };
        let class = root
            .get("class_name")
            .and_then(Value::as_str)
            .ok_or_else(|| format_error("the model config has no \"class_name\"".into()))?
            .to_string();
        let config = root.get("config").ok_or_else(|| format_error("the model config has no \"config\"".into()))?;
        let name =
            config.get("name").or_else(|| root.get("name")).and_then(Value::as_str).unwrap_or("model").to_string();
        let layers = config.get("layers").and_then(Value::as_array).ok_or_else(|| {
            format_error(format!("model {name:?} ({class}) has no \"layers\" list: expected Sequential or Functional"))
        })?;
        let entries = layers
            .iter()
            .map(|layer| {
                let class = layer
                    .get("class_name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format_error(format!("a layer of {name:?} has no \"class_name\"")))?
                    .to_string();
                let layer_name = layer
                    .get("name")
                    .or_else(|| layer.get("config").and_then(|c| c.get("name")))
                    .and_then(Value::as_str)
                    .unwrap_or(&class)
                    .to_string();
                Ok(Entry { name: layer_name, class, value: layer })
            })
            .collect::<Result<Vec<_>>>()?;
        let (inputs, outputs) = if class == "Sequential" {
            let first = entries.first().filter(|e| e.class == "InputLayer").map(|e| e.name.clone());
            (first.into_iter().collect(), entries.last().map(|e| e.name.clone()).into_iter().collect())
        } else {
            (keras::endpoints(config, "input_layers"), keras::endpoints(config, "output_layers"))
        };
        Ok(Self { class, name, entries, inputs, outputs })
    }

    /// The layers as `model.layers` lists them (and the weights file saves them): a
    /// Sequential leaves out its InputLayer.
    fn saved(&self) -> &[Entry<'a>] {
        match self.entries.split_first() {
            Some((first, rest)) if self.class == "Sequential" && first.class == "InputLayer" => rest,
            _ => &self.entries,
        }
    }

    fn entry(&self, name: &str) -> Option<&Entry<'a>> {
        self.entries.iter().find(|e| e.name == name)
    }
}

// ---------------------------------------------------------------------------------------
// Encoder and head.

/// What the top-level model is.
enum Plan {
    /// One input: the whole model is the encoder.
    Encoder,
    /// Two inputs: the layer `encoder` is called on both; `head` are the layers after it.
    Twin { encoder: String, inputs: [String; 2], head: Vec<String> },
}

impl Plan {
    fn of(top: &ModelView, file: &str) -> Result<Self> {
        if top.class == "Sequential" || top.inputs.len() == 1 {
            return Ok(Plan::Encoder);
        }
        let format_error = |reason: String| Error::ModelFormat { file: file.to_string(), reason };
        let [a, b] = top.inputs.as_slice() else {
            return Err(format_error(format!(
                "model {:?} has {} inputs {:?}: expected one (an encoder) or two (a Siamese twin)",
                top.name,
                top.inputs.len(),
                top.inputs
            )));
        };
        let shared: Vec<&Entry> = top
            .entries
            .iter()
            .filter(|e| {
                let calls = e.calls().len();
                let parents = [e.parents(0), e.parents(1)];
                calls == 2
                    && (parents == [vec![a.clone()], vec![b.clone()]] || parents == [vec![b.clone()], vec![a.clone()]])
            })
            .collect();
        let encoder = match shared.as_slice() {
            [one] => one.name.clone(),
            [] => {
                return Err(format_error(format!(
                    "model {:?} has two inputs ({a:?}, {b:?}) but no layer called once on each of them: a Siamese \
                     model must apply one shared encoder (a layer or a nested model) directly to both inputs",
                    top.name
                )))
            }
            several => {
                return Err(format_error(format!(
                    "model {:?}: several layers are called on both inputs ({}): expected one shared encoder",
                    top.name,
                    several.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")
                )))
            }
        };
        let head = top
            .entries
            .iter()
            .filter(|e| e.class != "InputLayer" && e.name != encoder)
            .map(|e| e.name.clone())
            .collect();
        Ok(Plan::Twin { encoder, inputs: [a.clone(), b.clone()], head })
    }

    fn encoder_name(&self) -> Option<String> {
        match self {
            Plan::Encoder => None,
            Plan::Twin { encoder, .. } => Some(encoder.clone()),
        }
    }

    /// The encoder's model config (a nested model's own; a single shared layer wrapped in
    /// a Sequential behind the first input) and its weights.
    fn encoder_parts(
        &self,
        source: &Source,
        top: &ModelView,
        weights: &BTreeMap<String, BTreeMap<String, Weight>>,
    ) -> Result<(Value, BTreeMap<String, Weight>)> {
        let version = source.root.get("keras_version").cloned();
        let (mut root, tensors) = match self {
            Plan::Encoder => (source.root.clone(), weights_of_model(weights)),
            Plan::Twin { encoder, inputs, .. } => {
                let entry = top.entry(encoder).ok_or_else(|| Error::ModelFormat {
                    file: source.file.clone(),
                    reason: format!("no layer {encoder:?}"),
                })?;
                let tensors = weights.get(encoder).cloned().unwrap_or_default();
                if entry.nested(&source.file)?.is_some() {
                    (json!({"class_name": entry.class, "config": entry.config()}), tensors)
                } else {
                    let input = top.entry(&inputs[0]).map(|e| e.value.clone()).unwrap_or(Value::Null);
                    let layers = json!([input, entry.value]);
                    (json!({"class_name": "Sequential", "config": {"name": encoder, "layers": layers}}), tensors)
                }
            }
        };
        if let (Some(version), Some(map)) = (version, root.as_object_mut()) {
            map.entry("keras_version").or_insert(version);
        }
        Ok((root, tensors))
    }

    fn build_encoder(
        &self,
        source: &Source,
        top: &ModelView,
        weights: &BTreeMap<String, BTreeMap<String, Weight>>,
    ) -> Result<ModelSpec> {
        let (root, tensors) = self.encoder_parts(source, top, weights)?;
        keras::from_value(&root, &source.file, Weights::from_map(&source.weights_file(), tensors))
    }

    /// The twin's head: a Lambda with nothing trained around it → replaced (see
    /// [`LambdaHead`]; with trained layers → an error); Subtract → Multiply(d, d) →
    /// Dense(1, sigmoid) → learned; nothing → None; anything else → an error.
    fn head(
        &self,
        source: &Source,
        top: &ModelView,
        spec: &ModelSpec,
        weights: &BTreeMap<String, BTreeMap<String, Weight>>,
    ) -> Result<TwinHead> {
        let Plan::Twin { encoder, head, .. } = self else {
            return Ok(TwinHead::None);
        };
        let layers: Vec<&Entry> = head.iter().filter_map(|name| top.entry(name)).collect();
        if layers.is_empty() {
            return Ok(TwinHead::None);
        }
        if let Some(lambda) = LambdaHead::of(&layers, weights) {
            if lambda.blockers.is_empty() {
                return Ok(TwinHead::Replaced {
                    layer: lambda.lambda.name.clone(),
                    class: lambda.lambda.class.clone(),
                });
            }
            return Err(Error::ModelFormat { file: source.file.clone(), reason: lambda.reason(encoder) });
        }
        let unsupported = |supported: &'static str| Error::UnsupportedLayer {
            file: source.file.clone(),
            layer: format!("head {}", layers.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(" -> ")),
            class: layers.iter().map(|e| e.class.as_str()).collect::<Vec<_>>().join(" -> "),
            supported,
        };
        let classes: Vec<&str> = layers.iter().map(|e| e.class.as_str()).collect();
        if classes == ["Subtract", "Dense"] {
            return Err(unsupported(
                "the learned squared head Subtract -> Multiply(d, d) -> Dense(1, sigmoid), or a Lambda head \
                 (replaced by --distance); Subtract -> Dense alone is sigmoid(w.(a-b) + b), with no abs or square, \
                 which no distance reproduces",
            ));
        }
        let [subtract, multiply, dense] = layers.as_slice() else {
            return Err(unsupported(SUPPORTED_HEADS));
        };
        let reads = |e: &Entry| -> Vec<(String, u64)> {
            let calls = e.calls();
            if calls.len() == 1 {
                calls.into_iter().next().unwrap_or_default()
            } else {
                Vec::new()
            }
        };
        let sub_in = reads(subtract);
        let mul_in = reads(multiply);
        let dense_in = reads(dense);
        let activation = dense.config().get("activation").map(|a| match a {
            Value::Object(map) => map.get("config").or_else(|| map.get("class_name")).cloned().unwrap_or(Value::Null),
            other => other.clone(),
        });
        let shape_ok = subtract.class == "Subtract"
            && multiply.class == "Multiply"
            && dense.class == "Dense"
            && sub_in.len() == 2
            && sub_in.iter().all(|(name, _)| name == encoder)
            && sub_in[0].1 != sub_in[1].1
            && mul_in.len() == 2
            && mul_in.iter().all(|(name, _)| *name == subtract.name)
            && dense_in.len() == 1
            && dense_in[0].0 == multiply.name
            && dense.config().get("units").and_then(Value::as_u64) == Some(1)
            && activation.as_ref().and_then(Value::as_str) == Some("sigmoid")
            && top.outputs == [dense.name.clone()];
        if !shape_ok {
            return Err(unsupported(SUPPORTED_HEADS));
        }
        let embedding = spec.embedding_shape(1)?;
        let [dim] = embedding.as_slice() else {
            return Err(Error::UnsupportedConfig {
                layer: dense.name.clone(),
                key: "input".into(),
                value: format!("an embedding of shape {embedding:?}"),
                hint: " (the learned head needs a flat embedding: end the encoder with Flatten or pooling)".into(),
            });
        };
        let mut tensors =
            Weights::from_map(&source.weights_file(), weights.get(&dense.name).cloned().unwrap_or_default());
        let kernel = tensors.take(&dense.name, "kernel", &[*dim, 1])?;
        let use_bias = dense.config().get("use_bias").and_then(Value::as_bool).unwrap_or(true);
        let bias = if use_bias { tensors.take(&dense.name, "bias", &[1])?[0] } else { 0.0 };
        tensors.finish()?;
        Ok(TwinHead::Learned(LearnedHead { weights: kernel, bias, squared: true }))
    }
}

/// A twin head holding a Lambda (Python code, which cannot run here). The run-time
/// `--distance` replaces it only when nothing in the head would be lost: no layer of the
/// head holds trained weights, and the layers after the Lambda only pass its one value per
/// pair through (Dropout and the like, Flatten, Reshape, a linear Activation).
struct LambdaHead<'a> {
    /// The Lambda nearest the output (the last in the config's topological order).
    lambda: Entry<'a>,
    /// The layers that stop the replacement, in config order.
    blockers: Vec<Blocker>,
}

/// A head layer that replacing a Lambda head by `--distance` would silently drop.
struct Blocker {
    name: String,
    class: String,
    /// Its stored weights (0: an untrained layer after the Lambda that changes its value).
    parameters: usize,
    /// Whether it reads the Lambda's output (directly or through other layers).
    after: bool,
}

impl<'a> LambdaHead<'a> {
    fn of(layers: &[&Entry<'a>], weights: &BTreeMap<String, BTreeMap<String, Weight>>) -> Option<Self> {
        let lambda = (*layers.iter().rev().find(|e| e.class == "Lambda")?).clone();
        // Layers downstream of the Lambda: config order is topological.
        let mut after: Vec<&str> = vec![lambda.name.as_str()];
        for entry in layers {
            if entry.calls().iter().flatten().any(|(parent, _)| after.contains(&parent.as_str())) {
                after.push(entry.name.as_str());
            }
        }
        let passes_value_through = |e: &Entry| {
            keras::IDENTITY_AT_INFERENCE.contains(&e.class.as_str())
                || matches!(e.class.as_str(), "Flatten" | "Reshape")
                || (e.class == "Activation"
                    && e.config().get("activation").and_then(Value::as_str).is_none_or(|a| a == "linear"))
        };
        let blockers = layers
            .iter()
            .filter(|e| e.name != lambda.name)
            .filter_map(|e| {
                let parameters = weights.get(&e.name).map_or(0, |w| w.values().map(|w| w.data.len()).sum());
                let after = after.contains(&e.name.as_str());
                (parameters > 0 || (after && !passes_value_through(e))).then(|| Blocker {
                    name: e.name.clone(),
                    class: e.class.clone(),
                    parameters,
                    after,
                })
            })
            .collect();
        Some(Self { lambda, blockers })
    }

    /// Why the head cannot load (when there are blockers).
    fn reason(&self, encoder: &str) -> String {
        let list = |after: bool| -> Vec<String> {
            self.blockers.iter().filter(|b| b.after == after).map(Blocker::describe).collect()
        };
        let mut clauses = Vec::new();
        let (followed, before) = (list(true), list(false));
        if !followed.is_empty() {
            clauses.push(format!("is followed by {}", followed.join(", ")));
        }
        if !before.is_empty() {
            clauses.push(format!("comes after {}", before.join(", ")));
        }
        format!(
            "the head's {} {:?} (Python code, which cannot run here) {}: layers after or around a Lambda head \
             cannot run yet, and replacing the head by the run-time --distance would drop them (printing \
             distances where the model outputs their result); to compare embeddings with a --distance, save \
             the shared encoder {encoder:?} alone",
            self.lambda.class,
            self.lambda.name,
            clauses.join(" and ")
        )
    }

    /// Each head layer's reason for `siamese inspect`, by name (the Lambda's too).
    fn row_reasons(&self) -> HashMap<String, String> {
        let mut out: HashMap<String, String> = self
            .blockers
            .iter()
            .map(|b| {
                let why = match (b.parameters, b.after) {
                    (0, _) => format!("changes the value of {} {:?}", self.lambda.class, self.lambda.name),
                    (_, true) => {
                        format!("trained layer after {} {:?}: cannot run yet", self.lambda.class, self.lambda.name)
                    }
                    (_, false) => format!("trained layer in a {} head: cannot run yet", self.lambda.class),
                };
                (b.name.clone(), why)
            })
            .collect();
        if !self.blockers.is_empty() {
            out.insert(self.lambda.name.clone(), "Python code; the layers around it cannot run yet".into());
        }
        out
    }
}

impl Blocker {
    fn describe(&self) -> String {
        match self.parameters {
            0 => format!("layer {:?} ({}), which changes its value", self.name, self.class),
            n => format!("trained layer {:?} ({}, {n} parameters)", self.name, self.class),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Inspection.

/// How a layer of a model file runs here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Runs {
    /// A model input.
    Input,
    /// A compute layer of the encoder, on the GPU.
    Gpu,
    /// The shared encoder (a nested model: its layers follow, indented).
    SharedEncoder,
    /// Part of the learned head, fused into the distance shader.
    LearnedHead,
    /// Part of a head replaced by the run-time `--distance`.
    Replaced,
    /// A Keras 3 operation node computing a Masking layer's mask, which the Masking
    /// layer computes here.
    Mask,
    /// Not supported (the reason, when the loader gave one).
    Unsupported(String),
}

impl std::fmt::Display for Runs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Runs::Input => f.write_str("input"),
            Runs::Gpu => f.write_str("GPU"),
            Runs::SharedEncoder => f.write_str("shared encoder (both inputs)"),
            Runs::LearnedHead => f.write_str("GPU (learned head, fused into the distance)"),
            Runs::Replaced => f.write_str("replaced by --distance"),
            Runs::Mask => f.write_str("mask of the Masking layer (computed with it)"),
            Runs::Unsupported(reason) if reason.is_empty() => f.write_str("UNSUPPORTED"),
            Runs::Unsupported(reason) => write!(f, "UNSUPPORTED: {reason}"),
        }
    }
}

/// One row of an [`Inspection`].
#[derive(Clone, Debug)]
pub struct LayerInfo {
    /// Layer name.
    pub name: String,
    /// Keras class.
    pub class: String,
    /// Nesting depth (1 for the layers of a nested encoder).
    pub depth: usize,
    /// Output shape with the batch axis (None = variable), when known.
    pub output_shape: Option<Vec<Option<usize>>>,
    /// Number of weights stored for it.
    pub parameters: usize,
    /// How it runs here.
    pub runs: Runs,
}

/// A model file's layers and how each runs here (for `siamese inspect`).
#[derive(Clone, Debug)]
pub struct Inspection {
    /// The file.
    pub file: String,
    /// `Keras 3 .keras` or `legacy HDF5`, with the Keras version when recorded.
    pub format: String,
    /// The top-level model's name.
    pub model: String,
    /// The top-level model's class.
    pub class: String,
    /// The shared encoder's name (whole Siamese models).
    pub encoder: Option<String>,
    /// The head, when the file loads.
    pub head: Option<TwinHead>,
    /// Every layer, nested encoder layers after their model.
    pub layers: Vec<LayerInfo>,
    /// Why the file does not load, or None when it does.
    pub error: Option<String>,
}

/// Lists a model file's layers (name, class, output shape, parameters, how each runs).
/// Unsupported layers are listed, not errors; only an unreadable file is an error.
pub fn inspect(path: impl AsRef<Path>) -> Result<Inspection> {
    let source = Source::open(path.as_ref())?;
    let top = ModelView::parse(&source.root, &source.file)?;
    let weights = source.weights_by_layer(&top)?;
    let version = source.root.get("keras_version").and_then(Value::as_str).map(|v| format!(", Keras {v}"));
    let format = match source.format {
        Format::Keras3 => "Keras 3 .keras",
        Format::Legacy => "legacy HDF5",
    };
    let mut inspection = Inspection {
        file: source.file.clone(),
        format: format!("{format}{}", version.unwrap_or_default()),
        model: top.name.clone(),
        class: top.class.clone(),
        encoder: None,
        head: None,
        layers: Vec::new(),
        error: None,
    };
    let plan = match Plan::of(&top, &source.file) {
        Ok(plan) => plan,
        Err(e) => {
            inspection.error = Some(e.to_string());
            inspection.layers = rows(&top, 0, &weights_of_model(&weights), &HashMap::new(), class_runs);
            return Ok(inspection);
        }
    };
    inspection.encoder = plan.encoder_name();
    let spec = plan.build_encoder(&source, &top, &weights);
    let head = spec.as_ref().ok().map(|spec| plan.head(&source, &top, spec, &weights));
    inspection.error = match (&spec, &head) {
        (Err(e), _) | (_, Some(Err(e))) => Some(e.to_string()),
        _ => None,
    };
    let shapes = spec.as_ref().map(spec_shapes).unwrap_or_default();
    // The encoder layer the loader stopped at, and why.
    let failed_layer = match &spec {
        Err(Error::UnsupportedLayer { layer, .. }) => Some((layer.clone(), String::new())),
        Err(Error::UnsupportedConfig { layer, key, value, .. }) => Some((layer.clone(), format!("{key} = {value}"))),
        _ => None,
    };
    let head = head.and_then(Result::ok);
    let encoder_runs = |entry: &Entry| -> Runs {
        match &failed_layer {
            Some((layer, reason)) if *layer == entry.name => Runs::Unsupported(reason.clone()),
            _ => class_runs(entry),
        }
    };
    match &plan {
        Plan::Encoder => {
            let params = weights_of_model(&weights);
            inspection.layers = rows(&top, 0, &params, &shapes, encoder_runs);
        }
        Plan::Twin { encoder, head: head_names, .. } => {
            let declared = declared_shapes(&top);
            let head_layers: Vec<&Entry> = head_names.iter().filter_map(|name| top.entry(name)).collect();
            let lambda_rows = LambdaHead::of(&head_layers, &weights).map(|l| l.row_reasons()).unwrap_or_default();
            for entry in &top.entries {
                let layer_weights = weights.get(&entry.name).cloned().unwrap_or_default();
                let parameters = layer_weights.values().map(|w| w.data.len()).sum();
                let runs = if entry.class == "InputLayer" {
                    Runs::Input
                } else if entry.name == *encoder {
                    match entry.nested(&source.file)? {
                        Some(_) => Runs::SharedEncoder,
                        None => encoder_runs(entry),
                    }
                } else if let Some(reason) = lambda_rows.get(&entry.name) {
                    Runs::Unsupported(reason.clone())
                } else if head_names.contains(&entry.name) {
                    match &head {
                        Some(TwinHead::Learned(_)) => Runs::LearnedHead,
                        Some(TwinHead::Replaced { .. }) => Runs::Replaced,
                        Some(TwinHead::None) => Runs::Unsupported(String::new()),
                        None if spec.is_ok() => Runs::Unsupported("not a head that maps to a distance".into()),
                        None => Runs::Unsupported(String::new()),
                    }
                } else {
                    Runs::Unsupported(String::new())
                };
                let output_shape = if entry.name == *encoder {
                    let last = match entry.nested(&source.file)? {
                        Some(nested) => nested.outputs.first().cloned().unwrap_or_default(),
                        None => entry.name.clone(),
                    };
                    shapes.get(&last).cloned().or_else(|| declared.get(&entry.name).cloned())
                } else {
                    declared.get(&entry.name).cloned()
                };
                inspection.layers.push(LayerInfo {
                    name: entry.name.clone(),
                    class: entry.class.clone(),
                    depth: 0,
                    output_shape,
                    parameters,
                    runs,
                });
                if entry.name == *encoder {
                    if let Some(nested) = entry.nested(&source.file)? {
                        let mut inner = rows(&nested, 1, &layer_weights, &shapes, encoder_runs);
                        // The nested model's last layer outputs what the encoder does.
                        if let (Some(last), Some(shape)) = (inner.last_mut(), declared.get(&entry.name)) {
                            last.output_shape.get_or_insert_with(|| shape.clone());
                        }
                        inspection.layers.extend(inner);
                    }
                }
            }
        }
    }
    inspection.head = head;
    Ok(inspection)
}

/// How an encoder layer runs, judged by its class alone.
fn class_runs(entry: &Entry) -> Runs {
    if entry.class == "InputLayer" {
        Runs::Input
    } else if keras::is_supported(&entry.class) {
        Runs::Gpu
    } else if keras::MASK_OP_CLASSES.contains(&entry.class.as_str()) {
        Runs::Mask
    } else {
        Runs::Unsupported(String::new())
    }
}

/// All of a model's weights in one map.
fn weights_of_model(weights: &BTreeMap<String, BTreeMap<String, Weight>>) -> BTreeMap<String, Weight> {
    weights.values().flatten().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Rows for a model's layers: shapes from the loaded spec, else as Keras recorded them;
/// parameters from `weights` named `{layer}/...`.
fn rows(
    model: &ModelView,
    depth: usize,
    weights: &BTreeMap<String, Weight>,
    shapes: &HashMap<String, Vec<Option<usize>>>,
    runs: impl Fn(&Entry) -> Runs,
) -> Vec<LayerInfo> {
    let declared = declared_shapes(model);
    model
        .entries
        .iter()
        .map(|entry| {
            let prefix = format!("{}/", entry.name);
            LayerInfo {
                name: entry.name.clone(),
                class: entry.class.clone(),
                depth,
                output_shape: shapes.get(&entry.name).or_else(|| declared.get(&entry.name)).cloned(),
                parameters: weights.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(_, w)| w.data.len()).sum(),
                runs: runs(entry),
            }
        })
        .collect()
}

/// Each layer's output shape (batch axis None, variable time axis None) from the spec:
/// the time axis is found by shaping for 1 and for 2 steps.
fn spec_shapes(spec: &ModelSpec) -> HashMap<String, Vec<Option<usize>>> {
    let (Ok(one), Ok(two)) = (spec.shapes_for(1, 1), spec.shapes_for(1, 2)) else {
        return HashMap::new();
    };
    let shape = |i: usize| -> Vec<Option<usize>> {
        std::iter::once(None).chain(one[i].iter().zip(&two[i]).skip(1).map(|(&a, &b)| (a == b).then_some(a))).collect()
    };
    spec.layers.iter().enumerate().map(|(i, layer)| (layer.name.clone(), shape(i + 1))).collect()
}

/// Output shapes as Keras recorded them: InputLayer batch shapes, the shapes of tensors
/// read by later calls (Functional), the next layer's build input shape (Sequential).
fn declared_shapes(model: &ModelView) -> HashMap<String, Vec<Option<usize>>> {
    let as_shape = |v: &Value| -> Option<Vec<Option<usize>>> {
        v.as_array().map(|dims| dims.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
    };
    let mut out = HashMap::new();
    for (i, entry) in model.entries.iter().enumerate() {
        let config = entry.config();
        if let Some(shape) = config.get("batch_shape").or_else(|| config.get("batch_input_shape")).and_then(as_shape) {
            out.insert(entry.name.clone(), shape);
        }
        if model.class == "Sequential" {
            let next = model.entries.get(i + 1).and_then(|n| n.value.get("build_config")?.get("input_shape"));
            if let Some(shape) = next.and_then(as_shape) {
                out.entry(entry.name.clone()).or_insert(shape);
            }
        }
        fn tensors(value: &Value, out: &mut HashMap<String, Vec<Option<usize>>>) {
            match value {
                Value::Object(map) => {
                    let history = map.get("keras_history").and_then(Value::as_array);
                    let name = history.and_then(|h| h.first()).and_then(Value::as_str);
                    let shape = map.get("shape").and_then(Value::as_array);
                    if let (Some(name), Some(shape)) = (name, shape) {
                        let dims = shape.iter().map(|d| d.as_u64().map(|d| d as usize)).collect();
                        out.entry(name.to_string()).or_insert(dims);
                    }
                    map.values().for_each(|v| tensors(v, out));
                }
                Value::Array(items) => items.iter().for_each(|v| tensors(v, out)),
                _ => {}
            }
        }
        if let Some(nodes) = entry.value.get("inbound_nodes") {
            tensors(nodes, &mut out);
        }
    }
    // Layers nothing later reads (the model's output), and Sequential layers without a
    // build config after them: derived from their input for the simple cases.
    for (i, entry) in model.entries.iter().enumerate() {
        if out.contains_key(&entry.name) {
            continue;
        }
        let input = if model.class == "Sequential" {
            i.checked_sub(1).and_then(|p| out.get(&model.entries[p].name)).cloned()
        } else {
            let first = entry.calls().into_iter().next().and_then(|call| call.into_iter().next());
            first.and_then(|(parent, _)| out.get(&parent)).cloned()
        };
        let config = entry.config();
        let derived = match entry.class.as_str() {
            "Lambda" => config.get("output_shape").and_then(as_shape).map(|s| [vec![None], s].concat()),
            "Dense" => input.zip(config.get("units").and_then(Value::as_u64)).map(|(mut shape, units)| {
                if let Some(last) = shape.last_mut() {
                    *last = Some(units as usize);
                }
                shape
            }),
            "Activation" | "ReLU" | "BatchNormalization" | "LayerNormalization" | "Masking" => input,
            class if keras::IDENTITY_AT_INFERENCE.contains(&class) => input,
            _ => None,
        };
        if let Some(shape) = derived {
            out.insert(entry.name.clone(), shape);
        }
    }
    out
}

impl std::fmt::Display for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} ({}): {} {:?}", self.file, self.format, self.class, self.model)?;
        match &self.encoder {
            Some(encoder) => writeln!(f, "Siamese twin: shared encoder {encoder:?}")?,
            None => writeln!(f, "encoder only (the distance is chosen at run time)")?,
        }
        if let Some(head) = self.head.as_ref().filter(|h| **h != TwinHead::None) {
            writeln!(f, "head: {head}")?;
        }
        let shape = |s: &Option<Vec<Option<usize>>>| match s {
            Some(dims) => {
                let parts: Vec<String> =
                    dims.iter().map(|d| d.map_or_else(|| "None".to_string(), |d| d.to_string())).collect();
                format!("({})", parts.join(", "))
            }
            None => "?".into(),
        };
        let names: Vec<String> = self.layers.iter().map(|l| format!("{}{}", "  ".repeat(l.depth), l.name)).collect();
        let shapes: Vec<String> = self.layers.iter().map(|l| shape(&l.output_shape)).collect();
        let name_width = names.iter().map(String::len).chain([5]).max().unwrap_or(5);
        let class_width = self.layers.iter().map(|l| l.class.len()).chain([5]).max().unwrap_or(5);
        let shape_width = shapes.iter().map(String::len).chain([12]).max().unwrap_or(12);
        writeln!(
            f,
            "{:name_width$}  {:class_width$}  {:shape_width$}  {:>10}  runs",
            "layer", "class", "output shape", "params"
        )?;
        for ((layer, name), shape) in self.layers.iter().zip(&names).zip(&shapes) {
            writeln!(
                f,
                "{name:name_width$}  {:class_width$}  {shape:shape_width$}  {:>10}  {}",
                layer.class, layer.parameters, layer.runs
            )?;
        }
        let total: usize = self.layers.iter().filter(|l| l.runs != Runs::SharedEncoder).map(|l| l.parameters).sum();
        writeln!(f, "total parameters: {total}")?;
        match &self.error {
            None => write!(f, "loads: yes"),
            Some(error) => write!(f, "loads: no: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_matches_keras() {
        for (class, snake) in [
            ("Conv2D", "conv2d"),
            ("MaxPooling2D", "max_pooling2d"),
            ("MultiHeadAttention", "multi_head_attention"),
            ("LSTM", "lstm"),
            ("GRU", "gru"),
            ("GlobalAveragePooling1D", "global_average_pooling1d"),
            ("LayerNormalization", "layer_normalization"),
            ("InputLayer", "input_layer"),
            ("Sequential", "sequential"),
            ("Dense", "dense"),
            ("GRUCell", "gru_cell"),
            ("XAbCd", "x_ab_cd"),
            ("ReLU", "re_lu"),
        ] {
            assert_eq!(snake_case(class), snake, "{class}");
        }
    }

    #[test]
    fn node_formats() {
        let keras3: Value = serde_json::from_str(
            r#"{"args": [[{"class_name": "__keras_tensor__", "config": {"shape": [null, 8],
               "keras_history": ["encoder", 0, 0]}}, {"class_name": "__keras_tensor__",
               "config": {"shape": [null, 8], "keras_history": ["encoder", 1, 0]}}]], "kwargs": {}}"#,
        )
        .unwrap();
        assert_eq!(node_inputs(&keras3), [("encoder".to_string(), 0), ("encoder".to_string(), 1)]);
        let keras2: Value = serde_json::from_str(r#"[["encoder", 1, 0, {}], ["encoder", 2, 0, {}]]"#).unwrap();
        assert_eq!(node_inputs(&keras2), [("encoder".to_string(), 1), ("encoder".to_string(), 2)]);
    }
}
