//! Nearest-neighbour search kernels: the query × gallery distance matrix and the
//! per-query top-k selection that reads it on the GPU. Kernel: `shaders/search.wgsl`.
//! [`crate::search::GpuSearch`] records both into one encoder.

use super::{check_binding, groups, linear_dispatch, prepare_dispatch, Dispatch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::Distance;
use crate::shaders;

/// Gallery rows per `distance_matrix` workgroup (64 invocations × 4 rows).
pub const MATRIX_ROW_TILE: usize = 256;
/// Queries per `distance_matrix` workgroup.
pub const MATRIX_QUERY_TILE: usize = 8;
/// Index written by `top_k` into the slots beyond the row length (k > cols).
pub const NO_INDEX: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct MatrixParams {
    queries: u32,
    rows: u32,
    dim: u32,
    gallery_offset: u32,
    gallery_stride: u32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct TopKParams {
    rows: u32,
    cols: u32,
    k: u32,
    index_offset: u32,
    out_offset: u32,
    _pad: [u32; 3],
}

/// Checks that `buffer` holds at least `elements` 4-byte values.
fn check_buffer(what: &str, buffer: &wgpu::Buffer, elements: usize) -> Result<()> {
    let needed = elements as u64 * 4;
    if buffer.size() < needed {
        return Err(Error::shape(
            what,
            format!("a buffer of at least {needed} bytes"),
            format!("{} bytes", buffer.size()),
        ));
    }
    Ok(())
}

/// Converts a size that the shader indexes with u32, naming it in the error.
fn to_u32(what: &str, value: usize) -> Result<u32> {
    u32::try_from(value).map_err(|_| Error::LimitExceeded {
        what: what.to_string(),
        needed: value as u64,
        limit: u32::MAX as u64,
    })
}

/// The sizes of one distance-matrix dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatrixShape {
    /// Query rows (`Q`).
    pub queries: usize,
    /// Gallery rows compared, starting at `gallery_offset` (`G`).
    pub rows: usize,
    /// Values per vector (`D`).
    pub dim: usize,
    /// First gallery row (in rows, not bytes) of the gallery buffer to compare.
    pub gallery_offset: usize,
    /// Rows the gallery buffer holds: it is stored transposed, `[dim, gallery_stride]`
    /// (column `c` of row `r` at `c · gallery_stride + r`).
    pub gallery_stride: usize,
}

/// `distances[q, r] = dist(queries[q], gallery[gallery_offset + r])` for one metric, with
/// the guards of [`crate::ops::PairDistance`] (identical rows give exactly 0).
#[derive(Debug)]
pub struct DistanceMatrix {
    metric: Distance,
    pipeline: wgpu::ComputePipeline,
}

impl DistanceMatrix {
    /// Compiles the kernel for `metric` (one of [`Distance::ALL`]; the learned head is a
    /// match probability, not a metric to rank by).
    pub fn new(gpu: &Gpu, metric: Distance) -> Result<Self> {
        if !Distance::ALL.contains(&metric) {
            return Err(Error::input(
                "metric",
                format!("search ranks by euclidean, sqeuclidean, cosine or manhattan, not {metric}"),
            ));
        }
        Ok(Self { metric, pipeline: gpu.pipeline(&shaders::SEARCH, "distance_matrix", &metric.constants())? })
    }

    /// The metric computed.
    pub fn metric(&self) -> Distance {
        self.metric
    }

    /// A dispatch reading `[queries, dim]` from `queries` and rows `gallery_offset..+rows`
    /// of the transposed `[dim, gallery_stride]` `gallery`, writing `[queries, rows]` to
    /// `distances`.
    pub fn prepare(
        &self,
        gpu: &Gpu,
        shape: MatrixShape,
        queries: &wgpu::Buffer,
        gallery: &wgpu::Buffer,
        distances: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let MatrixShape { queries: count, rows, dim, gallery_offset, gallery_stride } = shape;
        if count == 0 || rows == 0 || dim == 0 {
            return Err(Error::input(
                "distance matrix",
                format!("needs at least one query, one gallery row and one value each, got {count} × {rows} × {dim}"),
            ));
        }
        if gallery_offset + rows > gallery_stride {
            return Err(Error::shape(
                "search gallery",
                format!("rows {gallery_offset}..{} inside the gallery buffer", gallery_offset + rows),
                format!("{gallery_stride} rows"),
            ));
        }
        let gallery_len = gallery_stride * dim;
        check_binding(gpu, "search queries", count * dim)?;
        check_binding(gpu, "search gallery", gallery_len)?;
        check_binding(gpu, "search distance matrix", count * rows)?;
        check_buffer("search queries", queries, count * dim)?;
        check_buffer("search gallery", gallery, gallery_len)?;
        check_buffer("search distance matrix", distances, count * rows)?;
        let params = MatrixParams {
            queries: to_u32("search queries", count)?,
            rows: to_u32("search gallery rows", rows)?,
            dim: to_u32("search embedding size", dim)?,
            gallery_offset: to_u32("search gallery offset", gallery_offset)?,
            gallery_stride: to_u32("search gallery rows", gallery_stride)?,
            _pad: [0; 3],
        };
        let workgroups = [
            groups(gpu, "distance matrix gallery", rows, MATRIX_ROW_TILE)?,
            groups(gpu, "distance matrix query", count, MATRIX_QUERY_TILE)?,
            1,
        ];
        Ok(prepare_dispatch(
            gpu,
            "distance matrix",
            &self.pipeline,
            &params,
            &[queries, gallery, distances],
            workgroups,
        ))
    }
}

/// The sizes of one top-k dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopKShape {
    /// Matrix rows (queries).
    pub rows: usize,
    /// Matrix columns (gallery rows of this chunk).
    pub cols: usize,
    /// Results per row; slots beyond `cols` get [`NO_INDEX`] and a NaN.
    pub k: usize,
    /// Added to every column written (the chunk's first global gallery row).
    pub index_offset: usize,
    /// First output slot (in values): row `r` writes `out_offset + r·k ..+ k`.
    pub out_offset: usize,
}

/// Per-row k smallest (distance, column) of a `[rows, cols]` f32 matrix, ascending, equal
/// distances by smaller column, NaN after +inf. Writes u32 indices and the distances' f32
/// bits; the matrix stays on the GPU.
#[derive(Debug)]
pub struct TopK {
    pipeline: wgpu::ComputePipeline,
}

impl TopK {
    /// Compiles the kernel.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Ok(Self { pipeline: gpu.pipeline(&shaders::SEARCH, "top_k", &[])? })
    }

    /// A dispatch reading the `[rows, cols]` `matrix` and writing `[rows, k]` indices and
    /// distances (at `out_offset`) into `indices` and `distances`.
    pub fn prepare(
        &self,
        gpu: &Gpu,
        shape: TopKShape,
        matrix: &wgpu::Buffer,
        indices: &wgpu::Buffer,
        distances: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let TopKShape { rows, cols, k, index_offset, out_offset } = shape;
        if k == 0 {
            return Err(Error::input("k", "must be at least 1"));
        }
        if rows == 0 || cols == 0 {
            return Err(Error::input(
                "top-k matrix",
                format!("needs at least one row and column, got {rows} × {cols}"),
            ));
        }
        // The largest index written must stay below NO_INDEX.
        if (index_offset + cols) as u64 > NO_INDEX as u64 {
            return Err(Error::LimitExceeded {
                what: "search gallery rows".into(),
                needed: (index_offset + cols) as u64,
                limit: NO_INDEX as u64,
            });
        }
        let out_len = out_offset + rows * k;
        check_binding(gpu, "search distance matrix", rows * cols)?;
        check_binding(gpu, "top-k output", out_len)?;
        check_buffer("search distance matrix", matrix, rows * cols)?;
        check_buffer("top-k indices", indices, out_len)?;
        check_buffer("top-k distances", distances, out_len)?;
        let params = TopKParams {
            rows: to_u32("top-k rows", rows)?,
            cols: to_u32("top-k columns", cols)?,
            k: to_u32("k", k)?,
            index_offset: to_u32("top-k index offset", index_offset)?,
            out_offset: to_u32("top-k output offset", out_offset)?,
            _pad: [0; 3],
        };
        // One workgroup per row: the "element" count handed to linear_dispatch is rows.
        let workgroups = linear_dispatch(gpu, "top-k", rows, 1)?;
        Ok(prepare_dispatch(gpu, "top-k", &self.pipeline, &params, &[matrix, indices, distances], workgroups))
    }
}

/// The unsigned key `top_k` orders distances by (`order_key` in search.wgsl): unsigned
/// order is float order, -0 equals +0, every NaN comes after +inf.
pub fn order_key(distance: f32) -> u32 {
    let bits = distance.to_bits();
    if distance.is_nan() {
        u32::MAX
    } else if bits == 0x8000_0000 {
        0x8000_0000
    } else if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}
