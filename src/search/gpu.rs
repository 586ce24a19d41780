//! The gallery resident on the GPU ([`GpuSearch`]): distance-matrix and top-k kernels per
//! gallery chunk, one submit per search; and the CPU brute force the tests compare it to.

use std::sync::{Arc, Mutex};

use super::{Gallery, MAX_MATRIX_ELEMENTS};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::search::{order_key, MATRIX_QUERY_TILE, MATRIX_ROW_TILE};
use crate::ops::{submit_and_read, weight_buffer, Distance, DistanceMatrix, MatrixShape, TopK, TopKShape};
use crate::tensor::Array;

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
