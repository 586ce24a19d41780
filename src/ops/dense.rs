//! Dense (fully connected) layer: `activate(x · kernel + bias)`, kernel `(in, out)` as
//! Keras stores it, optionally with a residual `activate(x · kernel + bias + residual)`.
//! Kernel: `shaders/dense.wgsl`.

use super::{groups, kernel_buffer, prepare_dispatch, shape_str, weight_buffer, Activation, Dispatch, Precision};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::shaders;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct DenseParams {
    rows: u32,
    in_features: u32,
    out_features: u32,
    kernel_stride: u32,
}

/// Rows and columns of outputs per invocation, invocations per workgroup axis (dense.wgsl).
const ROWS: usize = 16;
const COLUMNS: usize = 8;
const WORKGROUP: usize = 8;

/// A Dense layer resident on the GPU.
#[derive(Debug)]
pub struct Dense {
    in_features: usize,
    out_features: usize,
    activation: Activation,
    kernel: wgpu::Buffer,
    /// 32-bit words per kernel row (see [`Precision`]).
    kernel_stride: u32,
    bias: wgpu::Buffer,
    pipeline: wgpu::ComputePipeline,
    /// A second input of the output's shape is added before the activation (the
    /// `dense_residual` module, residual.wgsl).
    residual: bool,
}

/// Override constants of dense.wgsl.
pub(crate) fn dense_constants(activation: Activation) -> Vec<(&'static str, f64)> {
    activation.constants()
}

/// The dense module for `precision`, with the residual binding (residual.wgsl) or without.
pub(crate) fn dense_shader(precision: Precision, residual: bool) -> &'static shaders::ShaderSource {
    match residual {
        false => precision.pick(&shaders::DENSE, &shaders::DENSE_F16),
        true => precision.pick(&shaders::DENSE_RESIDUAL, &shaders::DENSE_F16_RESIDUAL),
    }
}

/// Checks the residual a residual op (`wanted`) is handed against its output shape `out`.
pub(crate) fn check_residual<'a>(
    op: &'static str,
    wanted: bool,
    residual: Option<(&[usize], &'a wgpu::Buffer)>,
    out: &[usize],
) -> Result<Option<&'a wgpu::Buffer>> {
    match residual {
        None if wanted => Err(Error::shape(op, format!("a residual input of shape {}", shape_str(out)), "none")),
        Some(_) if !wanted => Err(Error::shape(op, "no residual input (built without one)", "a residual input")),
        Some((shape, _)) if shape != out => {
            Err(Error::shape(format!("{op} residual"), shape_str(out), shape_str(shape)))
        }
        Some((_, buffer)) => Ok(Some(buffer)),
        None => Ok(None),
    }
}

impl Dense {
    /// Uploads `kernel` (`[in_features, out_features]`, row-major) and `bias`
    /// (`[out_features]`, zeros when None) and compiles the kernel; f32 weights.
    pub fn new(
        gpu: &Gpu,
        in_features: usize,
        out_features: usize,
        kernel: &[f32],
        bias: Option<&[f32]>,
        activation: Activation,
    ) -> Result<Self> {
        Self::with_precision(gpu, in_features, out_features, kernel, bias, activation, Precision::F32)
    }

    /// As [`new`](Self::new), with the kernel stored in `precision`.
    #[allow(clippy::too_many_arguments, reason = "new's arguments plus the storage format")]
    pub fn with_precision(
        gpu: &Gpu,
        in_features: usize,
        out_features: usize,
        kernel: &[f32],
        bias: Option<&[f32]>,
        activation: Activation,
        precision: Precision,
    ) -> Result<Self> {
        Self::build(gpu, in_features, out_features, kernel, bias, activation, precision, false)
    }

    /// As [`with_precision`](Self::with_precision), plus a second input of the output's
    /// shape added before the activation (a residual `Add` fused in):
    /// `activate(x · kernel + bias + residual)`; bind it with
    /// [`prepare_with_residual`](Self::prepare_with_residual).
    #[allow(clippy::too_many_arguments, reason = "with_precision's arguments")]
    pub fn with_residual(
        gpu: &Gpu,
        in_features: usize,
        out_features: usize,
        kernel: &[f32],
        bias: Option<&[f32]>,
        activation: Activation,
        precision: Precision,
    ) -> Result<Self> {
        Self::build(gpu, in_features, out_features, kernel, bias, activation, precision, true)
    }

    #[allow(clippy::too_many_arguments, reason = "with_precision's arguments plus the residual flag")]
    fn build(
        gpu: &Gpu,
        in_features: usize,
        out_features: usize,
        kernel: &[f32],
        bias: Option<&[f32]>,
        activation: Activation,
        precision: Precision,
        residual: bool,
    ) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(Error::shape("dense", "in and out features >= 1", format!("({in_features}, {out_features})")));
        }
        if kernel.len() != in_features * out_features {
            return Err(Error::shape(
                "dense kernel",
                format!("{} values ({in_features}×{out_features})", in_features * out_features),
                format!("{} values", kernel.len()),
            ));
        }
        let zeros;
        let bias = match bias {
            Some(b) if b.len() != out_features => {
                return Err(Error::shape("dense bias", format!("{out_features} values"), format!("{} values", b.len())))
            }
            Some(b) => b,
            None => {
                zeros = vec![0.0; out_features];
                &zeros
            }
        };
        let (kernel, kernel_stride) = kernel_buffer(gpu, "dense kernel", kernel, out_features, precision)?;
        Ok(Self {
            in_features,
            out_features,
            activation,
            kernel,
            kernel_stride,
            bias: weight_buffer(gpu, "dense bias", bias)?,
            pipeline: gpu.pipeline(dense_shader(precision, residual), "dense", &dense_constants(activation))?,
            residual,
        })
    }

    /// The fused activation.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// Whether a residual input is added before the activation.
    pub fn residual(&self) -> bool {
        self.residual
    }

    /// Output shape for `input` (`[..., in_features]` → `[..., out_features]`, as Keras
    /// applies Dense to the last axis).
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        match input.split_last() {
            Some((&last, rest)) if last == self.in_features && !rest.is_empty() => {
                let mut out = rest.to_vec();
                out.push(self.out_features);
                Ok(out)
            }
            _ => Err(Error::shape("dense input", format!("[batch, ..., {}]", self.in_features), shape_str(input))),
        }
    }

    /// Multiply-adds ×2 for one input of `input` shape (with batch).
    pub fn flops(&self, input: &[usize]) -> u64 {
        let rows: usize = input[..input.len().saturating_sub(1)].iter().product();
        2 * (rows * self.in_features * self.out_features) as u64
    }

    /// Binds `input` (shape `input_shape`) and `output` into a ready dispatch.
    pub fn prepare(
        &self,
        gpu: &Gpu,
        input_shape: &[usize],
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        self.prepare_with_residual(gpu, input_shape, input, None, output)
    }

    /// As [`prepare`](Self::prepare), with the residual (its shape and buffer) a
    /// [`with_residual`](Self::with_residual) op adds; None for any other op. The residual
    /// must have the output's shape and must not be `output`.
    pub fn prepare_with_residual(
        &self,
        gpu: &Gpu,
        input_shape: &[usize],
        input: &wgpu::Buffer,
        residual: Option<(&[usize], &wgpu::Buffer)>,
        output: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let out = self.output_shape(input_shape)?;
        // The residual is binding 5 of the residual module only (it must not be `output`:
        // read and read-write of one buffer in one dispatch is not allowed).
        let residual = check_residual("dense", self.residual, residual, &out)?;
        let rows: usize = input_shape[..input_shape.len() - 1].iter().product();
        let params = DenseParams {
            rows: rows as u32,
            in_features: self.in_features as u32,
            out_features: self.out_features as u32,
            kernel_stride: self.kernel_stride,
        };
        let workgroups = [
            groups(gpu, "dense", self.out_features, COLUMNS * WORKGROUP)?,
            groups(gpu, "dense", rows, ROWS * WORKGROUP)?,
            1,
        ];
        Ok(prepare_dispatch(
            gpu,
            "dense",
            &self.pipeline,
            &params,
            &[&[input, &self.kernel, &self.bias, output], residual.as_slice()].concat(),
            workgroups,
        ))
    }
}
