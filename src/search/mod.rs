//! Nearest-neighbour search over a gallery of embeddings ("siamese search"): embed a
//! gallery once ([`Gallery::embed`]), save it with its ids ([`Gallery::save`], one
//! safetensors file), then answer queries with the k nearest gallery rows on the GPU
//! ([`GpuSearch`], kernels in `shaders/search.wgsl`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use siamese_wgpu::{Distance, Gallery, GpuSearch, SiameseModel};
//! # fn main() -> siamese_wgpu::Result<()> {
//! # let (model, images, ids, queries): (SiameseModel, siamese_wgpu::Array, Vec<String>, siamese_wgpu::Array) = todo!();
//! let gallery = Gallery::embed(&model, ids, &images, true)?;
//! gallery.save("gallery.safetensors")?;
//! let search = GpuSearch::new(model.gpu().clone(), &gallery)?;
//! let nearest = search.search(&model.embed(&queries)?, 5, Distance::Euclidean)?;
//! for (index, distance) in &nearest[0] {
//!     println!("{} at {distance}", gallery.ids[*index]);
//! }
//! # Ok(()) }
//! ```

mod gpu;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;

pub use gpu::{brute_force_top_k, GpuSearch};

use crate::error::{Error, Result};
use crate::layers::LayerOp;
use crate::model::ModelSpec;
use crate::ops::Distance;
use crate::siamese::SiameseModel;
use crate::tensor::Array;

/// Samples per [`SiameseModel::embed`] call in [`Gallery::embed`]: one progress step.
pub const EMBED_CHUNK: usize = 256;

/// Most values of the scratch distance matrix of one search step (256 MiB of f32): bounds
/// the memory a search takes on top of the gallery, whatever the device allows.
pub const MAX_MATRIX_ELEMENTS: usize = 64 << 20;

/// Name of the embeddings tensor in a gallery file.
const EMBEDDINGS_TENSOR: &str = "embeddings";
/// Metadata keys of a gallery file.
const IDS_KEY: &str = "ids";
const MODEL_KEY: &str = "model";
const FINGERPRINT_KEY: &str = "model_fingerprint";
const DIM_KEY: &str = "embedding_dim";
const METRIC_KEY: &str = "metric";
const FORMAT_KEY: &str = "format";
const FORMAT: &str = "siamese-gallery/1";

/// A gallery: one embedding row per id.
///
/// On disk (see [`save`](Self::save)) a safetensors file: tensor `"embeddings"` f32
/// `[G, D]`, and in `__metadata__` the ids as a JSON array of strings under `"ids"`,
/// `"format": "siamese-gallery/1"`, `"embedding_dim": "D"`, plus `"model"`,
/// `"model_fingerprint"` and `"metric"` when set.
#[derive(Clone, Debug, PartialEq)]
pub struct Gallery {
    /// The id of each row (file name, label...), `G` of them.
    pub ids: Vec<String>,
    /// `[G, D]` embeddings, row `i` belongs to `ids[i]`.
    pub embeddings: Array,
    /// What made the embeddings (e.g. the model directory), if known.
    pub model: Option<String>,
    /// The [`model_fingerprint`] of the encoder that made the embeddings, if recorded
    /// ([`embed`](Self::embed) does): [`check_model`](Self::check_model) compares it.
    pub model_fingerprint: Option<String>,
    /// The metric the gallery is meant to be searched with, if recorded.
    pub metric: Option<Distance>,
}

/// What [`Gallery::check_model`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelCheck {
    /// The gallery was embedded by this model (same fingerprint).
    Same,
    /// The gallery records no model (saved by an older version, or built with
    /// [`Gallery::new`]): nothing to check against.
    NotRecorded,
}

/// A stable fingerprint of an encoder, 16 hex digits: FNV-1a 64 over its input shape and,
/// layer by layer, its kind and settings, the values it reads and the bits of every
/// weight. Names (the model's, its layers') are left out: renaming changes no embedding.
/// Equal fingerprints: the same encoder (the `--precision` the weights are stored in
/// aside); different ones: embeddings that must not be compared.
pub fn model_fingerprint(spec: &ModelSpec) -> String {
    let mut hash = Fnv1a::default();
    hash.sizes(&spec.input_shape);
    for layer in &spec.layers {
        let (settings, weights) = layer_settings_and_weights(&*layer.op);
        hash.bytes(settings.as_bytes());
        hash.sizes(&[settings.len(), weights.len()]);
        for values in weights {
            hash.sizes(&[values.len()]);
            values.iter().for_each(|v| hash.bytes(&v.to_le_bytes()));
        }
        hash.sizes(&layer.inputs);
    }
    format!("{:016x}", hash.0)
}

/// A layer's kind with its settings as text, and its weight arrays in a fixed order.
fn layer_settings_and_weights(op: &dyn LayerOp) -> (String, Vec<&[f32]>) {
    let settings = op.settings();
    let text = if settings.is_empty() { op.name().to_string() } else { format!("{} {settings}", op.name()) };
    (text, op.weights())
}

/// FNV-1a, 64 bits: tiny and stable across platforms and versions (std's hashers promise
/// neither), which a fingerprint written into files needs.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    fn bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Sizes as little-endian u64, whatever the platform's usize.
    fn sizes(&mut self, sizes: &[usize]) {
        sizes.iter().for_each(|&size| self.bytes(&(size as u64).to_le_bytes()));
    }
}

impl Gallery {
    /// A gallery from ids and `[G, D]` embeddings (checked: one id per row, finite values,
    /// `D >= 1`).
    pub fn new(ids: Vec<String>, embeddings: Array) -> Result<Self> {
        let gallery = Self { ids, embeddings, model: None, model_fingerprint: None, metric: None };
        gallery.check()?;
        Ok(gallery)
    }

    /// Embeds `inputs` (`[G, ...model input shape]`) with `model`, `EMBED_CHUNK` samples
    /// per call, one id per sample, recording the model's [`model_fingerprint`]. With
    /// `progress`, a progress bar goes to stderr when it is a terminal. Embeddings of any
    /// shape are flattened to `[G, D]`.
    pub fn embed(model: &SiameseModel, ids: Vec<String>, inputs: &Array, progress: bool) -> Result<Self> {
        let count = inputs.batch();
        if inputs.shape().len() < 2 {
            return Err(Error::shape("gallery inputs", "[G, ...input shape]", format!("{:?}", inputs.shape())));
        }
        if ids.len() != count {
            return Err(Error::shape("gallery ids", format!("one id per input ({count})"), ids.len().to_string()));
        }
        if count == 0 {
            return Err(Error::input("gallery inputs", "the batch is empty (G = 0)"));
        }
        let bar = progress_bar(progress, count);
        let sample = inputs.row_len();
        let mut values = Vec::new();
        let mut dim = 0;
        for start in (0..count).step_by(EMBED_CHUNK) {
            let end = (start + EMBED_CHUNK).min(count);
            let shape: Vec<usize> = std::iter::once(end - start).chain(inputs.shape()[1..].iter().copied()).collect();
            let chunk = Array::new(shape, inputs.data()[start * sample..end * sample].to_vec())?;
            let embedded = model.embed(&chunk)?;
            dim = embedded.row_len();
            values.extend_from_slice(embedded.data());
            bar.inc((end - start) as u64);
        }
        bar.finish_and_clear();
        let mut gallery = Self::new(ids, Array::new(vec![count, dim], values)?)?;
        gallery.model_fingerprint = Some(model_fingerprint(model.spec()));
        Ok(gallery)
    }

    /// Checks that `model` is the encoder that embedded this gallery (by
    /// [`model_fingerprint`]). Another model's query embeddings live in another space:
    /// its neighbours would be meaningless, so a different recorded fingerprint is an
    /// [`Error::InvalidInput`] naming both. A gallery that records none is
    /// [`ModelCheck::NotRecorded`], not an error.
    pub fn check_model(&self, model: &SiameseModel) -> Result<ModelCheck> {
        let Some(saved) = &self.model_fingerprint else { return Ok(ModelCheck::NotRecorded) };
        let current = model_fingerprint(model.spec());
        if *saved == current {
            return Ok(ModelCheck::Same);
        }
        let made_by = self.model.as_ref().map_or(String::new(), |m| format!(" {m}"));
        Err(Error::input(
            "gallery",
            format!(
                "it was embedded by model{made_by} (fingerprint {saved}), but this model's fingerprint is {current}: \
                 its neighbours would be meaningless; search with the model that embedded the gallery, or embed \
                 the gallery again with this one"
            ),
        ))
    }

    /// Number of rows `G`.
    pub fn len(&self) -> usize {
        self.embeddings.batch()
    }

    /// Whether the gallery has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per embedding `D`.
    pub fn dim(&self) -> usize {
        self.embeddings.row_len()
    }

    /// Checks the invariants [`new`](Self::new) promises (the fields are public).
    fn check(&self) -> Result<()> {
        let shape = self.embeddings.shape();
        if shape.len() != 2 || shape[1] == 0 {
            return Err(Error::shape("gallery embeddings", "[G, D] with D >= 1", format!("{shape:?}")));
        }
        if self.ids.len() != shape[0] {
            return Err(Error::shape(
                "gallery ids",
                format!("one id per embedding row ({})", shape[0]),
                self.ids.len().to_string(),
            ));
        }
        self.embeddings.check_finite("gallery embeddings")
    }

    /// Writes the gallery as one safetensors file (format in the type's docs).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.check()?;
        let encode = |reason: String| Error::Decode { path: path.to_path_buf(), reason };
        let mut metadata = HashMap::new();
        metadata.insert(FORMAT_KEY.to_string(), FORMAT.to_string());
        metadata.insert(IDS_KEY.to_string(), serde_json::to_string(&self.ids).map_err(|e| encode(e.to_string()))?);
        metadata.insert(DIM_KEY.to_string(), self.dim().to_string());
        if let Some(model) = &self.model {
            metadata.insert(MODEL_KEY.to_string(), model.clone());
        }
        if let Some(fingerprint) = &self.model_fingerprint {
            metadata.insert(FINGERPRINT_KEY.to_string(), fingerprint.clone());
        }
        if let Some(metric) = self.metric {
            metadata.insert(METRIC_KEY.to_string(), metric.name().to_string());
        }
        let bytes: Vec<u8> = self.embeddings.data().iter().flat_map(|v| v.to_le_bytes()).collect();
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, self.embeddings.shape().to_vec(), &bytes)
                .map_err(|e| encode(format!("cannot encode the embeddings: {e}")))?;
        let file = safetensors::serialize([(EMBEDDINGS_TENSOR, view)], Some(metadata))
            .map_err(|e| encode(format!("cannot encode the gallery: {e}")))?;
        std::fs::write(path, file).map_err(|e| Error::io(path, e))
    }

    /// Reads a gallery written by [`save`](Self::save). A file that is not one (not
    /// safetensors, no f32 `[G, D]` "embeddings", ids missing or not one per row,
    /// non-finite values) is an [`Error::Decode`] naming the file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bad = |reason: String| Error::Decode { path: path.to_path_buf(), reason };
        let tensors = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a gallery (safetensors) file: {e}")))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a gallery (safetensors) file: {e}")))?;
        let view = tensors
            .tensor(EMBEDDINGS_TENSOR)
            .map_err(|_| bad(format!("no tensor {EMBEDDINGS_TENSOR:?}: not a gallery file")))?;
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(bad(format!("tensor {EMBEDDINGS_TENSOR:?} is {:?}, expected F32", view.dtype())));
        }
        let shape = view.shape().to_vec();
        if shape.len() != 2 || shape[1] == 0 {
            return Err(bad(format!("tensor {EMBEDDINGS_TENSOR:?} has shape {shape:?}, expected [G, D] with D >= 1")));
        }
        let shape_dim = shape[1];
        let values: Vec<f32> =
            view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let embeddings = Array::new(shape, values).map_err(|e| bad(e.to_string()))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let ids_json =
            metadata.get(IDS_KEY).ok_or_else(|| bad(format!("no {IDS_KEY:?} in the metadata: not a gallery file")))?;
        let ids: Vec<String> = serde_json::from_str(ids_json)
            .map_err(|e| bad(format!("metadata {IDS_KEY:?} is not a JSON array of strings: {e}")))?;
        let metric = match metadata.get(METRIC_KEY) {
            Some(name) => Some(name.parse::<Distance>().map_err(|e| bad(format!("metadata {METRIC_KEY:?}: {e}")))?),
            None => None,
        };
        if let Some(dim) = metadata.get(DIM_KEY) {
            if dim.parse::<usize>().ok() != Some(shape_dim) {
                return Err(bad(format!(
                    "metadata {DIM_KEY:?} is {dim:?}, but the embeddings have {shape_dim} values per row"
                )));
            }
        }
        let gallery = Self {
            ids,
            embeddings,
            model: metadata.get(MODEL_KEY).cloned(),
            model_fingerprint: metadata.get(FINGERPRINT_KEY).cloned(),
            metric,
        };
        gallery.check().map_err(|e| bad(e.to_string()))?;
        Ok(gallery)
    }
}

fn progress_bar(progress: bool, count: usize) -> indicatif::ProgressBar {
    let target = if progress && std::io::stderr().is_terminal() {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    };
    let bar = indicatif::ProgressBar::with_draw_target(Some(count as u64), target);
    if let Ok(style) = indicatif::ProgressStyle::with_template("embedding gallery {bar:40} {pos}/{len} ({eta})") {
        bar.set_style(style);
    }
    bar
}
