//! MaxPooling2D, AveragePooling2D and GlobalAveragePooling2D / GlobalMaxPooling2D
//! (channels-last; the 1-D layers run these on `[batch, 1, steps, channels]`).
//! Kernel: `shaders/pool2d.wgsl`.

use super::conv2d::Window;
use super::{linear_dispatch, prepare_dispatch, shape_str, window_output, Dispatch, Padding};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::shaders;

/// Max or average.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// Maximum over the window (padding ignored).
    Max,
    /// Mean over the window cells inside the image.
    Average,
}

impl PoolKind {
    /// The pipeline override constants selecting this kind (`MODE` in pool2d.wgsl).
    pub fn constants(self) -> [(&'static str, f64); 1] {
        [("MODE", if self == PoolKind::Max { 0.0 } else { 1.0 })]
    }
}

/// Pooling window settings (Keras `pool_size`, `strides`, `padding`).
#[derive(Clone, Debug, PartialEq)]
pub struct Pool2dConfig {
    /// Max or average.
    pub kind: PoolKind,
    /// Window (height, width).
    pub pool: (usize, usize),
    /// Strides (y, x); Keras' default is the pool size.
    pub strides: (usize, usize),
    /// Padding mode.
    pub padding: Padding,
}

impl Pool2dConfig {
    /// The 2×2, stride-2, valid max-pool that a Conv2D can fuse into its epilogue.
    pub fn max_2x2() -> Self {
        Self { kind: PoolKind::Max, pool: (2, 2), strides: (2, 2), padding: Padding::Valid }
    }

    /// Output size and padding for an `in_h × in_w` input.
    pub fn window(&self, in_h: usize, in_w: usize) -> Option<Window> {
        let (out_h, pad_top) = window_output(in_h, self.pool.0, self.strides.0, self.padding, 0)?;
        let (out_w, pad_left) = window_output(in_w, self.pool.1, self.strides.1, self.padding, 1)?;
        Some(Window { out: (out_h, out_w), pad: (pad_top, pad_left) })
    }

    /// Output shape for a `[batch, h, w, c]` input.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let &[batch, h, w, c] = input else {
            return Err(Error::shape("pool2d input", "[batch, height, width, channels]", shape_str(input)));
        };
        let window = self.window(h, w).ok_or_else(|| {
            Error::shape(
                "pool2d input",
                format!("height and width >= pool {:?} (valid padding)", self.pool),
                shape_str(input),
            )
        })?;
        Ok(vec![batch, window.out.0, window.out.1, c])
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Pool2dParams {
    batch: u32,
    in_h: u32,
    in_w: u32,
    channels: u32,
    out_h: u32,
    out_w: u32,
    pool_h: u32,
    pool_w: u32,
    stride_y: u32,
    stride_x: u32,
    pad_top: u32,
    pad_left: u32,
}

/// Invocations per workgroup (LINEAR_WORKGROUP in common.wgsl).
const WORKGROUP: usize = 256;

/// A 2D pooling layer.
#[derive(Debug)]
pub struct Pool2d {
    config: Pool2dConfig,
    pipeline: wgpu::ComputePipeline,
}

impl Pool2d {
    /// Compiles the pooling kernel for `config`.
    pub fn new(gpu: &Gpu, config: Pool2dConfig) -> Result<Self> {
        if [config.pool.0, config.pool.1, config.strides.0, config.strides.1].contains(&0) {
            return Err(Error::shape("pool2d config", "pool sizes and strides >= 1", format!("{config:?}")));
        }
        Ok(Self { pipeline: gpu.pipeline(&shaders::POOL2D, "pool2d", &config.kind.constants())?, config })
    }

    /// Output shape for a `[batch, h, w, c]` input.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.config.output_shape(input)
    }

    /// Binds `input` and `output` into a ready dispatch.
    pub fn prepare(
        &self,
        gpu: &Gpu,
        input_shape: &[usize],
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let out = self.output_shape(input_shape)?;
        let window = self.config.window(input_shape[1], input_shape[2]).ok_or_else(|| {
            Error::shape("pool2d input", "an image at least as large as the pool", shape_str(input_shape))
        })?;
        let params = Pool2dParams {
            batch: input_shape[0] as u32,
            in_h: input_shape[1] as u32,
            in_w: input_shape[2] as u32,
            channels: input_shape[3] as u32,
            out_h: out[1] as u32,
            out_w: out[2] as u32,
            pool_h: self.config.pool.0 as u32,
            pool_w: self.config.pool.1 as u32,
            stride_y: self.config.strides.0 as u32,
            stride_x: self.config.strides.1 as u32,
            pad_top: window.pad.0 as u32,
            pad_left: window.pad.1 as u32,
        };
        let workgroups = linear_dispatch(gpu, "pool2d", out.iter().product(), WORKGROUP)?;
        Ok(prepare_dispatch(gpu, "pool2d", &self.pipeline, &params, &[input, output], workgroups))
    }
}

/// GlobalAveragePooling2D: `[batch, h, w, c]` → `[batch, c]`.
#[derive(Debug)]
pub struct GlobalAveragePool2d {
    pipeline: wgpu::ComputePipeline,
}

impl GlobalAveragePool2d {
    /// Compiles the kernel.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Ok(Self { pipeline: gpu.pipeline(&shaders::POOL2D, "global_average_pool2d", &[])? })
    }

    /// Output shape for a `[batch, h, w, c]` input.
    pub fn output_shape(input: &[usize]) -> Result<Vec<usize>> {
        match *input {
            [batch, h, w, c] if h > 0 && w > 0 => Ok(vec![batch, c]),
            _ => Err(Error::shape("global_average_pool2d input", "[batch, height, width, channels]", shape_str(input))),
        }
    }

    /// Binds `input` and `output` into a ready dispatch.
    pub fn prepare(
        &self,
        gpu: &Gpu,
        input_shape: &[usize],
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let out = Self::output_shape(input_shape)?;
        let params = global_params(input_shape);
        let workgroups = linear_dispatch(gpu, "global_average_pool2d", out.iter().product(), WORKGROUP)?;
        Ok(prepare_dispatch(gpu, "global_average_pool2d", &self.pipeline, &params, &[input, output], workgroups))
    }
}

/// Params of one window over the whole `[batch, h, w, c]` image (one output cell).
fn global_params(input_shape: &[usize]) -> Pool2dParams {
    Pool2dParams {
        batch: input_shape[0] as u32,
        in_h: input_shape[1] as u32,
        in_w: input_shape[2] as u32,
        channels: input_shape[3] as u32,
        out_h: 1,
        out_w: 1,
        pool_h: input_shape[1] as u32,
        pool_w: input_shape[2] as u32,
        stride_y: 1,
        stride_x: 1,
        pad_top: 0,
        pad_left: 0,
    }
}

/// Global max or average pooling: `[batch, h, w, c]` → `[batch, c]` values, the `pool2d`
/// entry point with one window over the whole image (sized per call, so any image size).
#[derive(Debug)]
pub struct GlobalPool {
    kind: PoolKind,
    pipeline: wgpu::ComputePipeline,
}

impl GlobalPool {
    /// Compiles the kernel for `kind`.
    pub fn new(gpu: &Gpu, kind: PoolKind) -> Result<Self> {
        Ok(Self { kind, pipeline: gpu.pipeline(&shaders::POOL2D, "pool2d", &kind.constants())? })
    }

    /// Max or average.
    pub fn kind(&self) -> PoolKind {
        self.kind
    }

    /// Binds `input` (`[batch, h, w, c]`) and `output` (`batch · c` values).
    pub fn prepare(
        &self,
        gpu: &Gpu,
        input_shape: &[usize],
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let out = GlobalAveragePool2d::output_shape(input_shape)?;
        let workgroups = linear_dispatch(gpu, "global pool", out.iter().product(), WORKGROUP)?;
        Ok(prepare_dispatch(
            gpu,
            "global pool",
            &self.pipeline,
            &global_params(input_shape),
            &[input, output],
            workgroups,
        ))
    }
}
