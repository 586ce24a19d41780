//! Reductions along a run of axes, in place: softmax, log-softmax (Keras `Softmax`, the
//! `softmax` / `log_softmax` activations) and L2 normalisation (Keras `UnitNormalization`).
//! Kernel: `shaders/softmax.wgsl`.

use super::{linear_dispatch, prepare_dispatch, shape_str, Dispatch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::shaders;

/// What the kernel computes along the axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AxisMode {
    /// exp(x − max) / Σ exp(x − max).
    Softmax,
    /// (x − max) − log Σ exp(x − max).
    LogSoftmax,
    /// x · min(rsqrt(Σ x²), 1e12) (Keras 3's `ops.normalize`, epsilon 1e-12).
    L2Normalize,
}

impl AxisMode {
    /// Every mode, for tests and the pipeline list.
    pub const ALL: [AxisMode; 3] = [AxisMode::Softmax, AxisMode::LogSoftmax, AxisMode::L2Normalize];

    /// The pipeline override constants selecting this mode (`MODE` in softmax.wgsl).
    pub fn constants(self) -> [(&'static str, f64); 1] {
        let mode = match self {
            AxisMode::Softmax => 0.0,
            AxisMode::LogSoftmax => 1.0,
            AxisMode::L2Normalize => 2.0,
        };
        [("MODE", mode)]
    }
}

/// `shape` viewed as `[outer, axis_len, inner]` around the axes `axes` (batch axis = 0),
/// checked: the axes must be a non-empty run inside the shape.
pub fn axis_split(shape: &[usize], axes: &std::ops::Range<usize>) -> Result<(usize, usize, usize)> {
    if axes.is_empty() || axes.end > shape.len() {
        return Err(Error::shape("axis reduction input", format!("axes {axes:?} inside the shape"), shape_str(shape)));
    }
    let product = |dims: &[usize]| dims.iter().product::<usize>();
    Ok((product(&shape[..axes.start]), product(&shape[axes.clone()]), product(&shape[axes.end..])))
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct AxisParams {
    rows: u32,
    axis_len: u32,
    inner: u32,
    _pad: u32,
}

/// A softmax / log-softmax / L2 normalisation along a run of axes, in place.
#[derive(Debug)]
pub struct AxisOp {
    mode: AxisMode,
    pipeline: wgpu::ComputePipeline,
}

impl AxisOp {
    /// Compiles the kernel for `mode`.
    pub fn new(gpu: &Gpu, mode: AxisMode) -> Result<Self> {
        Ok(Self { mode, pipeline: gpu.pipeline(&shaders::SOFTMAX, "softmax", &mode.constants())? })
    }

    /// What it computes.
    pub fn mode(&self) -> AxisMode {
        self.mode
    }

    /// A dispatch over `data` of `shape` along `axes` (batch axis = 0), in place.
    pub fn prepare(
        &self,
        gpu: &Gpu,
        shape: &[usize],
        axes: &std::ops::Range<usize>,
        data: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let (outer, axis_len, inner) = axis_split(shape, axes)?;
        let rows = outer * inner;
        let params = AxisParams { rows: rows as u32, axis_len: axis_len as u32, inner: inner as u32, _pad: 0 };
        let workgroups = linear_dispatch(gpu, "softmax", rows, 1)?;
        Ok(prepare_dispatch(gpu, "softmax", &self.pipeline, &params, &[data], workgroups))
    }
}
