//! Keras model files: a Keras 3 `.keras` zip (`config.json`, `metadata.json`,
//! `model.weights.h5`) or a legacy HDF5 `.h5` / `.hdf5` file (root attribute
//! `model_config` + group `model_weights`), from Keras 3 or tf.keras 2: opening them
//! ([`Source`]), reading their HDF5 weights, and loading them ([`load_keras_file`]).
//!
//! This is the ONE place that knows how Keras lays weights out in HDF5. Both layouts are
//! mapped onto the names the model-directory loader reads (`{layer}/{variable}`, see
//! docs/model-format.md), then the importer ([`super::from_model`]) builds the layers, so
//! every layer the engine runs loads from these files too.
//!
//! Keras 3 (`model.weights.h5`): one group per saved layer, its datasets named per class
//! as [`super::variables`] describes.
//!
//! Legacy HDF5: `model_weights/{layer}` per top-level layer, its attribute `weight_names`
//! (split into `weight_names0`, `weight_names1`, … past 64 KiB) naming datasets under that
//! group. A nested model's group holds all its layers' weights. Names vary by version
//! (`encoder/conv2d/kernel`, `conv2d/kernel:0`, `mha/query/kernel`): the `:0` is stripped
//! and the name is cut to start at the first component that is a layer name.
//!
//! Whole Siamese models (two inputs): [`super::twin`] finds the shared encoder, which
//! becomes the [`ModelSpec`], and the head after it (a [`TwinHead`]).

use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};
use std::path::Path;

use hdf5_reader::group::Group;
use hdf5_reader::{Attribute, Datatype, Hdf5File};
use serde_json::Value;

use super::config::{Entry, ModelView};
use super::twin::Plan;
use crate::error::{Error, Result};
use crate::model::weights::Weight;
use crate::model::{LoadOptions, ModelSpec, TwinHead};

/// File extensions [`crate::model::load`] hands to this loader.
pub const EXTENSIONS: [&str; 3] = ["keras", "h5", "hdf5"];

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

/// Each saved layer's weights in our names (`{layer}/{variable}`), by layer name.
pub(super) type LayerWeights = BTreeMap<String, BTreeMap<String, Weight>>;

/// Whether `path` names a Keras model file (by its extension).
pub fn is_keras_file(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Loads a `.keras` or legacy `.h5` model file: the encoder (the shared one of a whole
/// Siamese model) and the twin's head. Unsupported layers are typed errors naming the
/// class and the file.
pub fn load_keras_file(path: impl AsRef<Path>) -> Result<KerasFile> {
    load_keras_file_with(path, &LoadOptions::default())
}

/// [`load_keras_file`] with options: Keras custom classes loaded as built-ins
/// ([`LoadOptions::custom_layers`]). Keras' mask propagation is applied to the encoder
/// ([`crate::passes::apply_masks`]).
pub fn load_keras_file_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<KerasFile> {
    let source = Source::open_with(path.as_ref(), &options.custom_layers)?;
    let top = ModelView::parse(&source.root, &source.file)?;
    let weights = source.weights_by_layer(&top)?;
    let plan = Plan::of(&top, &source.file)?;
    let spec = crate::passes::apply_masks(&plan.build_encoder(&source, &top, &weights)?)?;
    let head = plan.head(&source, &top, &spec, &weights, options)?;
    Ok(KerasFile { spec, encoder: plan.encoder_name(), head })
}

/// The key under which [`apply_custom_layers`] keeps a layer entry's own class (for the
/// weights file's group names, which follow it, and for errors).
pub(super) const CUSTOM_CLASS_KEY: &str = "siamese_custom_class";

/// Loads the Keras custom classes of `custom` (`(custom class, built-in class)`) as their
/// built-ins: every layer entry of the model config whose `class_name` (or
/// `registered_name`, `package>Name`) names a custom class gets the built-in's class name,
/// its own kept under [`CUSTOM_CLASS_KEY`]. The builders then read its config as the
/// built-in's (missing keys take the built-in's defaults) and its weights by the
/// built-in's names. An unknown built-in is an error listing the supported classes.
pub(crate) fn apply_custom_layers(root: &mut Value, custom: &[(String, String)]) -> Result<()> {
    for (name, builtin) in custom {
        if !super::is_supported(builtin) || name.is_empty() {
            return Err(Error::input(
                format!("custom layer {name}={builtin}"),
                format!(
                    "{builtin:?} is not a built-in class the importer runs (supported: {})",
                    super::layers::SUPPORTED_LAYERS.as_str()
                ),
            ));
        }
    }
    if custom.is_empty() {
        return Ok(());
    }
    fn walk(value: &mut Value, custom: &[(String, String)]) {
        match value {
            Value::Object(map) => {
                let names = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_string);
                let (class, registered) = (names("class_name"), names("registered_name"));
                // `Name`, or `package>Name` as Keras 3 registers it (a legacy `.h5` writes
                // that as the class name).
                let names_it = |text: &str, name: &str| text == name || text.rsplit('>').next() == Some(name);
                let found = custom.iter().find(|(name, _)| {
                    class.as_deref().is_some_and(|c| names_it(c, name))
                        || registered.as_deref().is_some_and(|r| names_it(r, name))
                });
                if let (Some((_, builtin)), Some(class)) = (found, class) {
                    map.insert(CUSTOM_CLASS_KEY.into(), Value::String(class));
                    map.insert("class_name".into(), Value::String(builtin.clone()));
                }
                map.values_mut().for_each(|v| walk(v, custom));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, custom)),
            _ => {}
        }
    }
    walk(root, custom);
    Ok(())
}

/// Which of the two layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Format {
    /// Keras 3 `.keras` zip.
    Keras3,
    /// Legacy HDF5 full-model file.
    Legacy,
}

/// An opened model file.
pub(super) struct Source {
    /// The path, for error messages.
    pub file: String,
    /// Which layout it has.
    pub format: Format,
    /// The model config (`{"class_name", "config"}`), with the file's `keras_version`.
    pub root: Value,
    h5: Hdf5File,
}

impl Source {
    /// Opens a `.keras` zip or a legacy `.h5` file (told apart by their first bytes).
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, &[])
    }

    /// [`open`](Self::open), with Keras custom classes read as built-ins (see
    /// [`apply_custom_layers`]).
    pub fn open_with(path: &Path, custom: &[(String, String)]) -> Result<Self> {
        let mut source = Self::open_file(path)?;
        apply_custom_layers(&mut source.root, custom)?;
        Ok(source)
    }

    fn open_file(path: &Path) -> Result<Self> {
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
    pub fn weights_file(&self) -> String {
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
    pub fn weights_by_layer(&self, top: &ModelView) -> Result<LayerWeights> {
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
    fn keras3_model(&self, model: &ModelView, model_path: &str) -> Result<LayerWeights> {
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
            // Keras names the group after the layer's own class, a custom one included.
            let own = entry.value.get(CUSTOM_CLASS_KEY).and_then(Value::as_str).unwrap_or(entry.class);
            let base = snake_case(own);
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
        let known: HashMap<String, String> = super::keras3_variables(entry).into_iter().collect();
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
            expected: "a float16, float32 or float64 array (or integers: Normalization's count)".into(),
            got,
        };
        // Integers (a Normalization's sample count) are read as f32 too.
        let (size, integer) = match dataset.dtype() {
            Datatype::FloatingPoint { size, .. } if [2, 4, 8].contains(size) => (*size as usize, None),
            Datatype::FixedPoint { size, signed, .. } if [1, 2, 4, 8].contains(size) => (*size as usize, Some(*signed)),
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
        let data: Vec<f32> = match (size, integer) {
            (_, Some(signed)) => bytes.chunks_exact(size).map(|c| integer_value(c, signed) as f32).collect(),
            (2, None) => bytes.chunks_exact(2).map(|c| half::f16::from_ne_bytes([c[0], c[1]]).to_f32()).collect(),
            (4, None) => bytes.chunks_exact(4).map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect(),
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

/// A native-order integer of 1 to 8 bytes, as f64.
fn integer_value(bytes: &[u8], signed: bool) -> f64 {
    let mut word = [0u8; 8];
    let native_low_first = cfg!(target_endian = "little");
    if native_low_first {
        word[..bytes.len()].copy_from_slice(bytes);
    } else {
        word[8 - bytes.len()..].copy_from_slice(bytes);
    }
    let unsigned = if native_low_first { u64::from_le_bytes(word) } else { u64::from_be_bytes(word) };
    let bits = 8 * bytes.len() as u32;
    if signed && bits < 64 && unsigned >> (bits - 1) & 1 == 1 {
        (unsigned as i64 - (1i64 << bits)) as f64
    } else if signed {
        unsigned as i64 as f64
    } else {
        unsigned as f64
    }
}

/// All of a model's weights in one map.
pub(super) fn weights_of_model(weights: &LayerWeights) -> BTreeMap<String, Weight> {
    weights.values().flatten().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// How many values some weights hold.
pub(super) fn parameters<'w>(weights: impl IntoIterator<Item = &'w Weight>) -> usize {
    weights.into_iter().map(|w| w.data.len()).sum()
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
}
