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

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::layers::LayerOp;
use crate::model::ModelSpec;
use crate::ops::search::{order_key, MATRIX_QUERY_TILE, MATRIX_ROW_TILE};
use crate::ops::{submit_and_read, weight_buffer, Distance, DistanceMatrix, MatrixShape, TopK, TopKShape};
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

/// The k nearest rows of `gallery` (`[G, D]`) to `query` by brute force on the CPU with
/// [`crate::reference::distance`]: (row, distance) ascending, equal distances by smaller
/// row, NaN last (the order of [`GpuSearch::search`]). `metric` is one of
/// [`Distance::ALL`]. For tests.
pub fn brute_force_top_k(gallery: &Array, query: &[f32], k: usize, metric: Distance) -> Vec<(usize, f32)> {
    let mut all: Vec<(usize, f32)> =
        (0..gallery.batch()).map(|i| (i, crate::reference::distance(query, gallery.row(i), metric))).collect();
    sort_nearest(&mut all);
    all.truncate(k);
    all
}

/// Sorts (index, distance) by the order top_k uses: distance key, then index.
fn sort_nearest(results: &mut [(usize, f32)]) {
    results.sort_by_key(|&(index, distance)| (order_key(distance), index));
}

/// `[rows, dim]` row-major values as `[dim, rows]`: the resident gallery layout
/// `distance_matrix` reads (see shaders/search.wgsl).
fn transpose(values: &[f32], dim: usize) -> Vec<f32> {
    let rows = values.len() / dim;
    (0..dim).flat_map(|col| (0..rows).map(move |row| values[row * dim + col])).collect()
}

/// One storage buffer holding gallery rows `start..start + rows`, transposed
/// (`[dim, rows]`).
#[derive(Debug)]
struct Block {
    buffer: wgpu::Buffer,
    start: usize,
    rows: usize,
}

/// Gallery rows one distance_matrix + top_k pair handles: rows `offset..offset + rows` of
/// block `block`, global rows `start..start + rows`.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    block: usize,
    offset: usize,
    start: usize,
    rows: usize,
}

/// How one search is cut to fit the device: gallery rows per chunk, queries per submit,
/// chunks per submit.
#[derive(Clone, Copy, Debug)]
struct Plan {
    chunk_rows: usize,
    query_rows: usize,
    chunks_per_submit: usize,
}

/// A buffer kept between searches, recreated only when a search needs a bigger one.
#[derive(Debug, Default)]
struct Reusable {
    buffer: Option<wgpu::Buffer>,
    len: usize,
}

impl Reusable {
    fn get(&mut self, gpu: &Gpu, label: &str, len: usize, usage: wgpu::BufferUsages) -> &wgpu::Buffer {
        if self.len < len {
            self.buffer = None;
        }
        if self.buffer.is_none() {
            self.len = len;
        }
        self.buffer.get_or_insert_with(|| gpu.create_buffer(label, len as u64 * 4, usage))
    }
}

/// Scratch buffers of a search, reused across calls.
#[derive(Debug, Default)]
struct Scratch {
    queries: Reusable,
    matrix: Reusable,
    indices: Reusable,
    distances: Reusable,
    staging: Reusable,
}

/// A gallery resident on the GPU, answering k-nearest-neighbour queries.
///
/// Each search records, per gallery chunk, a `distance_matrix` and a `top_k` dispatch
/// into one encoder, submits once and reads back only the `Q × k` results per chunk; the
/// distance matrix never leaves the GPU. Chunks exist when the gallery (or the query ×
/// gallery matrix) is larger than one storage binding or the workgroup-count limits;
/// their results are merged on the host with global indices and the same tie order.
#[derive(Debug)]
pub struct GpuSearch {
    gpu: Arc<Gpu>,
    rows: usize,
    dim: usize,
    blocks: Vec<Block>,
    /// One per metric, in [`Distance::ALL`] order.
    matrices: Vec<DistanceMatrix>,
    top_k: TopK,
    chunk_cap: Option<usize>,
    scratch: Mutex<Scratch>,
}

/// The search sums squares of `dim`-value embeddings in f32 (Σ(a−b)² up to 4·m²·dim, and
/// cosine's norms): values so large that these could overflow are refused, since an
/// overflowed sum would rank rows wrongly with no sign of it (a cosine of inf norms is 1).
/// Embeddings up to ~1e18 in 128 dimensions pass; trained encoders stay far below.
fn check_sum_range(what: &str, values: &[f32], dim: usize) -> Result<()> {
    let largest = values.iter().fold(0.0f64, |m, &v| m.max(f64::from(v.abs())));
    let limit = (f64::from(f32::MAX) / (4.0 * dim.max(1) as f64)).sqrt();
    if largest > limit {
        return Err(Error::input(
            what,
            format!(
                "embedding values up to {largest:e} are too large for the search's float32 sums of squares \
                 (at most {limit:e} for {dim}-value embeddings)"
            ),
        ));
    }
    Ok(())
}

/// f32 values one storage binding (and one buffer) holds, capped so that u32 indices in
/// the shaders cannot overflow.
fn binding_elements(limits: &wgpu::Limits) -> usize {
    let bytes = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
    (bytes / 4).min(u32::MAX as u64) as usize
}

impl GpuSearch {
    /// Uploads `gallery` (in as many storage buffers as the binding size needs) and
    /// compiles the kernels for every metric.
    pub fn new(gpu: Arc<Gpu>, gallery: &Gallery) -> Result<Self> {
        gallery.check()?;
        if gallery.is_empty() {
            return Err(Error::input("gallery", "is empty: nothing to search"));
        }
        let (rows, dim) = (gallery.len(), gallery.dim());
        check_sum_range("gallery", gallery.embeddings.data(), dim)?;
        let block_rows = binding_elements(&gpu.limits()) / dim;
        if block_rows == 0 {
            return Err(Error::LimitExceeded {
                what: "one gallery embedding (bytes)".into(),
                needed: dim as u64 * 4,
                limit: binding_elements(&gpu.limits()) as u64 * 4,
            });
        }
        let blocks = gpu.checked("uploading the gallery", || {
            (0..rows)
                .step_by(block_rows)
                .map(|start| {
                    let end = (start + block_rows).min(rows);
                    let data = transpose(&gallery.embeddings.data()[start * dim..end * dim], dim);
                    Ok(Block { buffer: weight_buffer(&gpu, "search gallery", &data)?, start, rows: end - start })
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let matrices = Distance::ALL.iter().map(|&metric| DistanceMatrix::new(&gpu, metric)).collect::<Result<_>>()?;
        let top_k = TopK::new(&gpu)?;
        Ok(Self { gpu, rows, dim, blocks, matrices, top_k, chunk_cap: None, scratch: Mutex::default() })
    }

    /// The GPU context in use.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// Number of gallery rows `G`.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether the gallery is empty (never: [`new`](Self::new) refuses one).
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Values per embedding `D`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of storage buffers the gallery occupies (more than one when it is larger
    /// than one storage binding).
    pub fn gallery_buffers(&self) -> usize {
        self.blocks.len()
    }

    /// Gallery rows per chunk (one distance_matrix + top_k pair): what fits one binding,
    /// the workgroup-count limit and [`MAX_MATRIX_ELEMENTS`], unless lowered by
    /// [`set_max_gallery_chunk`](Self::set_max_gallery_chunk).
    pub fn max_gallery_chunk(&self) -> usize {
        let limits = self.gpu.limits();
        let block_rows = binding_elements(&limits) / self.dim;
        let dispatchable = MATRIX_ROW_TILE * limits.max_compute_workgroups_per_dimension as usize;
        let fits = block_rows.min(dispatchable).clamp(1, MAX_MATRIX_ELEMENTS);
        self.chunk_cap.map_or(fits, |cap| cap.clamp(1, fits))
    }

    /// Caps the gallery rows per chunk (to bound GPU memory, or to test chunking); None
    /// restores the default.
    pub fn set_max_gallery_chunk(&mut self, rows: Option<usize>) {
        self.chunk_cap = rows;
    }

    /// The `k` nearest gallery rows to each query row of `queries` (`[Q, D]`, or any
    /// `[Q, ...]` with `D` values per row) by `metric` (one of [`Distance::ALL`]): per
    /// query, (gallery index, distance) ascending, equal distances by smaller index. Fewer
    /// than `k` when the gallery is smaller.
    pub fn search(&self, queries: &Array, k: usize, metric: Distance) -> Result<Vec<Vec<(usize, f32)>>> {
        if k == 0 {
            return Err(Error::input("k", "must be at least 1"));
        }
        let matrix = Distance::ALL.iter().position(|&m| m == metric).map(|i| &self.matrices[i]).ok_or_else(|| {
            Error::input("metric", format!("search ranks by euclidean, sqeuclidean, cosine or manhattan, not {metric}"))
        })?;
        let shape = queries.shape();
        if shape.len() < 2 || queries.row_len() != self.dim {
            return Err(Error::shape(
                "queries",
                format!("[Q, {}] (the gallery's embedding size)", self.dim),
                format!("{shape:?}"),
            ));
        }
        let count = queries.batch();
        if count == 0 {
            return Err(Error::input("queries", "the batch is empty (Q = 0)"));
        }
        queries.check_finite("queries")?;
        check_sum_range("queries", queries.data(), self.dim)?;
        // No more results than gallery rows: top_k then never pads.
        let k = k.min(self.rows);

        let plan = self.plan(count, k)?;
        let chunks = self.chunks(plan.chunk_rows);
        let mut scratch = self.scratch.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut nearest = vec![Vec::new(); count];
        self.gpu.checked("searching the gallery", || {
            for query_start in (0..count).step_by(plan.query_rows) {
                let query_end = (query_start + plan.query_rows).min(count);
                let rows = query_start..query_end;
                for group in chunks.chunks(plan.chunks_per_submit) {
                    let found = self.run(&mut scratch, matrix, queries, rows.clone(), group, k)?;
                    for (results, mut more) in nearest[rows.clone()].iter_mut().zip(found) {
                        results.append(&mut more);
                        sort_nearest(results);
                        results.truncate(k);
                    }
                }
            }
            Ok(())
        })?;
        // A gallery of large but finite embeddings can still overflow a metric's sums
        // (squared Euclidean beyond f32): never hand out inf or NaN as a distance.
        for (q, matches) in nearest.iter().enumerate() {
            if let Some(&(row, d)) = matches.iter().find(|(_, d)| !d.is_finite()) {
                return Err(Error::NonFinite {
                    what: format!("the {metric} distance of query {q} to gallery row {row}"),
                    reason: format!("{d}: beyond float32's range (embedding values too large for this metric)"),
                });
            }
        }
        Ok(nearest)
    }

    /// Cuts a search of `queries` rows into steps that fit the device.
    fn plan(&self, queries: usize, k: usize) -> Result<Plan> {
        let limits = self.gpu.limits();
        let binding = binding_elements(&limits);
        let max_groups = limits.max_compute_workgroups_per_dimension as usize;
        if k > binding {
            return Err(Error::LimitExceeded {
                what: "k (results per query)".into(),
                needed: k as u64,
                limit: binding as u64,
            });
        }
        let chunk_rows = self.max_gallery_chunk().min(self.rows);
        let staging = (limits.max_buffer_size / 4) as usize;
        let query_rows = queries
            .min(MATRIX_QUERY_TILE * max_groups)
            .min(max_groups * max_groups)
            .min(binding / self.dim)
            .min(binding / chunk_rows)
            .min(MAX_MATRIX_ELEMENTS / chunk_rows)
            .min(binding / k)
            .min(staging / (2 * k))
            .max(1);
        let outputs = query_rows * k;
        let chunks_per_submit = (binding / outputs).min(staging / (2 * outputs)).max(1);
        Ok(Plan { chunk_rows, query_rows, chunks_per_submit })
    }

    /// The gallery cut into chunks of at most `chunk_rows` rows, none across two buffers.
    fn chunks(&self, chunk_rows: usize) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        for (block, b) in self.blocks.iter().enumerate() {
            for offset in (0..b.rows).step_by(chunk_rows) {
                let rows = chunk_rows.min(b.rows - offset);
                chunks.push(Chunk { block, offset, start: b.start + offset, rows });
            }
        }
        chunks
    }

    /// One submit: distance_matrix + top_k for query rows `rows` against every chunk of
    /// `group`; returns each query's candidates from all of them (global indices).
    fn run(
        &self,
        scratch: &mut Scratch,
        matrix: &DistanceMatrix,
        queries: &Array,
        rows: std::ops::Range<usize>,
        group: &[Chunk],
        k: usize,
    ) -> Result<Vec<Vec<(usize, f32)>>> {
        use wgpu::BufferUsages as U;
        let gpu = &*self.gpu;
        let (count, dim) = (rows.len(), self.dim);
        let widest = group.iter().map(|c| c.rows).max().unwrap_or(1);
        let outputs = group.len() * count * k;
        let query_buffer = scratch.queries.get(gpu, "search queries", count * dim, U::STORAGE | U::COPY_DST);
        gpu.queue().write_buffer(
            query_buffer,
            0,
            bytemuck::cast_slice(&queries.data()[rows.start * dim..rows.end * dim]),
        );
        let matrix_buffer = scratch.matrix.get(gpu, "search distance matrix", count * widest, U::STORAGE);
        let indices = scratch.indices.get(gpu, "top-k indices", outputs, U::STORAGE | U::COPY_SRC);
        let distances = scratch.distances.get(gpu, "top-k distances", outputs, U::STORAGE | U::COPY_SRC);
        let staging = scratch.staging.get(gpu, "search staging", 2 * outputs, U::MAP_READ | U::COPY_DST);

        let mut dispatches = Vec::with_capacity(2 * group.len());
        for (slot, chunk) in group.iter().enumerate() {
            let block = &self.blocks[chunk.block];
            let shape = MatrixShape {
                queries: count,
                rows: chunk.rows,
                dim,
                gallery_offset: chunk.offset,
                gallery_stride: block.rows,
            };
            dispatches.push(matrix.prepare(gpu, shape, query_buffer, &block.buffer, matrix_buffer)?);
            let shape =
                TopKShape { rows: count, cols: chunk.rows, k, index_offset: chunk.start, out_offset: slot * count * k };
            dispatches.push(self.top_k.prepare(gpu, shape, matrix_buffer, indices, distances)?);
        }
        let values = submit_and_read(gpu, "search", &dispatches, &[(indices, outputs), (distances, outputs)], staging)?;
        let (index_bits, distance_values) = values.split_at(outputs);
        let mut found = vec![Vec::new(); count];
        for (slot, chunk) in group.iter().enumerate() {
            let picks = k.min(chunk.rows);
            for (query, results) in found.iter_mut().enumerate() {
                let start = (slot * count + query) * k;
                results.extend((start..start + picks).map(|i| (index_bits[i].to_bits() as usize, distance_values[i])));
            }
        }
        Ok(found)
    }
}
