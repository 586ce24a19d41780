//! Conv2D, Keras semantics: channels-last input, HWIO kernel, cross-correlation (no
//! flip), `valid`/`same` padding, strides, dilation, fused bias + activation (and,
//! optionally, a residual added before the activation).
//! Kernel: `shaders/conv2d.wgsl` (implicit GEMM, no im2col buffer).

use super::{
    groups, kernel_buffer, prepare_dispatch, shape_str, weight_buffer, window_output, Activation, Dispatch, Padding,
    Precision,
};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::shaders;

/// Shape and hyper-parameters of a Conv2D layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels (Keras `filters`).
    pub filters: usize,
    /// Kernel (height, width).
    pub kernel: (usize, usize),
    /// Strides (y, x).
    pub strides: (usize, usize),
    /// Dilation (y, x).
    pub dilation: (usize, usize),
    /// Padding mode.
    pub padding: Padding,
    /// Fused activation.
    pub activation: Activation,
}

/// Output geometry of a convolution or pooling window over an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Output (height, width).
    pub out: (usize, usize),
    /// Padding (top, left).
    pub pad: (usize, usize),
}

impl Conv2dConfig {
    /// Kernel extent once dilated, (height, width).
    pub fn dilated_kernel(&self) -> (usize, usize) {
        (
            (self.kernel.0.saturating_sub(1)) * self.dilation.0 + 1,
            (self.kernel.1.saturating_sub(1)) * self.dilation.1 + 1,
        )
    }

    /// Output size and padding for an `in_h × in_w` input.
    pub fn window(&self, in_h: usize, in_w: usize) -> Option<Window> {
        let (kh, kw) = self.dilated_kernel();
        let (out_h, pad_top) = window_output(in_h, kh, self.strides.0, self.padding, 0)?;
        let (out_w, pad_left) = window_output(in_w, kw, self.strides.1, self.padding, 1)?;
        Some(Window { out: (out_h, out_w), pad: (pad_top, pad_left) })
    }

    /// Output shape for a `[batch, h, w, c]` input.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let &[batch, h, w, c] = input else {
            return Err(Error::shape("conv2d input", "[batch, height, width, channels]", shape_str(input)));
        };
        if c != self.in_channels {
            return Err(Error::shape("conv2d input channels", self.in_channels.to_string(), c.to_string()));
        }
        let window = self.window(h, w).ok_or_else(|| {
            Error::shape(
                "conv2d input",
                format!("height and width >= dilated kernel {:?} with valid padding", self.dilated_kernel()),
                shape_str(input),
            )
        })?;
        Ok(vec![batch, window.out.0, window.out.1, self.filters])
    }

    fn check(&self) -> Result<()> {
        let positive = [
            self.in_channels,
            self.filters,
            self.kernel.0,
            self.kernel.1,
            self.strides.0,
            self.strides.1,
            self.dilation.0,
            self.dilation.1,
        ];
        if positive.contains(&0) {
            return Err(Error::shape("conv2d config", "all sizes, strides and dilations >= 1", format!("{self:?}")));
        }
        Ok(())
    }

    /// Number of kernel values (kh·kw·in·out).
    pub fn kernel_len(&self) -> usize {
        self.kernel.0 * self.kernel.1 * self.in_channels * self.filters
    }
}

/// The window uniform of conv2d.wgsl, which depthwise_conv2d.wgsl's begins with too.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Conv2dParams {
    batch: u32,
    in_h: u32,
    in_w: u32,
    in_c: u32,
    out_h: u32,
    out_w: u32,
    out_c: u32,
    k_h: u32,
    k_w: u32,
    stride_y: u32,
    stride_x: u32,
    dilation_y: u32,
    dilation_x: u32,
    pad_top: u32,
    pad_left: u32,
    kernel_stride: u32,
}

impl Conv2dParams {
    /// `c`'s window over a `[batch, h, w, c]` input of shape `input`, its output `out`
    /// (`[batch, out_h, out_w, filters]`), kernel rows `kernel_stride` words apart.
    pub(super) fn new(c: &Conv2dConfig, input: &[usize], out: &[usize], window: &Window, kernel_stride: u32) -> Self {
        Self {
            batch: input[0] as u32,
            in_h: input[1] as u32,
            in_w: input[2] as u32,
            in_c: c.in_channels as u32,
            out_h: out[1] as u32,
            out_w: out[2] as u32,
            out_c: c.filters as u32,
            k_h: c.kernel.0 as u32,
            k_w: c.kernel.1 as u32,
            stride_y: c.strides.0 as u32,
            stride_x: c.strides.1 as u32,
            dilation_y: c.dilation.0 as u32,
            dilation_x: c.dilation.1 as u32,
            pad_top: window.pad.0 as u32,
            pad_left: window.pad.1 as u32,
            kernel_stride,
        }
    }
}

/// Output pixels and channels per invocation, invocations per workgroup axis (conv2d.wgsl).
const PIXELS: usize = 16;
const CHANNELS: usize = 8;
const WORKGROUP: usize = 8;

/// A Conv2D layer resident on the GPU.
#[derive(Debug)]
pub struct Conv2d {
    config: Conv2dConfig,
    kernel: wgpu::Buffer,
    /// 32-bit words per (ky, kx, ci) kernel row (see [`Precision`]).
    kernel_stride: u32,
    bias: wgpu::Buffer,
    pipeline: wgpu::ComputePipeline,
    /// A fused 2×2 / stride 2 / valid MaxPooling2D follows (conv2d.wgsl `POOLED`).
    pooled: bool,
    /// A second input of the output's shape is added before the activation (the
    /// `conv2d_residual` module, residual.wgsl; never with `pooled`).
    residual: bool,
}

/// Override constants of conv2d.wgsl.
pub(crate) fn conv2d_constants(activation: Activation, pooled: bool) -> Vec<(&'static str, f64)> {
    let mut constants = activation.constants();
    constants.push(("POOLED", if pooled { 1.0 } else { 0.0 }));
    constants
}

/// The conv2d module for `precision`, with the residual binding (residual.wgsl) or without.
pub(crate) fn conv2d_shader(precision: Precision, residual: bool) -> &'static shaders::ShaderSource {
    match residual {
        false => precision.pick(&shaders::CONV2D, &shaders::CONV2D_F16),
        true => precision.pick(&shaders::CONV2D_RESIDUAL, &shaders::CONV2D_F16_RESIDUAL),
    }
}

impl Conv2d {
    /// Uploads the HWIO `kernel` and `bias` (zeros when None) and compiles the kernel; f32
    /// weights.
    pub fn new(gpu: &Gpu, config: Conv2dConfig, kernel: &[f32], bias: Option<&[f32]>) -> Result<Self> {
        Self::with_precision(gpu, config, kernel, bias, Precision::F32)
    }

    /// As [`new`](Self::new), with the kernel stored in `precision`.
    pub fn with_precision(
        gpu: &Gpu,
        config: Conv2dConfig,
        kernel: &[f32],
        bias: Option<&[f32]>,
        precision: Precision,
    ) -> Result<Self> {
        Self::build(gpu, config, kernel, bias, precision, false, false)
    }

    /// As [`with_precision`](Self::with_precision), plus a second input of the output's
    /// shape added before the activation (a residual `Add` fused in):
    /// `activate(conv + bias + residual)`; bind it with
    /// [`prepare_with_residual`](Self::prepare_with_residual).
    pub fn with_residual(
        gpu: &Gpu,
        config: Conv2dConfig,
        kernel: &[f32],
        bias: Option<&[f32]>,
        precision: Precision,
    ) -> Result<Self> {
        Self::build(gpu, config, kernel, bias, precision, false, true)
    }

    /// The convolution followed by a MaxPooling2D with 2×2 windows, stride 2 and valid
    /// padding ([`fuses_max_pool`](Self::fuses_max_pool)), in one dispatch: the conv
    /// output never reaches memory, and the op's output is the pooled tensor.
    pub fn with_max_pool(
        gpu: &Gpu,
        config: Conv2dConfig,
        kernel: &[f32],
        bias: Option<&[f32]>,
        precision: Precision,
    ) -> Result<Self> {
        Self::build(gpu, config, kernel, bias, precision, true, false)
    }

    /// Whether a pooling layer can be fused into the convolution before it.
    pub fn fuses_max_pool(pool: &super::Pool2dConfig) -> bool {
        *pool == super::Pool2dConfig::max_2x2()
    }

    fn build(
        gpu: &Gpu,
        config: Conv2dConfig,
        kernel: &[f32],
        bias: Option<&[f32]>,
        precision: Precision,
        pooled: bool,
        residual: bool,
    ) -> Result<Self> {
        config.check()?;
        if kernel.len() != config.kernel_len() {
            return Err(Error::shape(
                "conv2d kernel",
                format!(
                    "{} values (HWIO {:?})",
                    config.kernel_len(),
                    (config.kernel.0, config.kernel.1, config.in_channels, config.filters)
                ),
                format!("{} values", kernel.len()),
            ));
        }
        let zeros;
        let bias = match bias {
            Some(b) if b.len() != config.filters => {
                return Err(Error::shape(
                    "conv2d bias",
                    format!("{} values", config.filters),
                    format!("{} values", b.len()),
                ))
            }
            Some(b) => b,
            None => {
                zeros = vec![0.0; config.filters];
                &zeros
            }
        };
        let (kernel, kernel_stride) = kernel_buffer(gpu, "conv2d kernel", kernel, config.filters, precision)?;
        Ok(Self {
            kernel,
            kernel_stride,
            bias: weight_buffer(gpu, "conv2d bias", bias)?,
            pipeline: gpu.pipeline(
                conv2d_shader(precision, residual),
                "conv2d",
                &conv2d_constants(config.activation, pooled),
            )?,
            config,
            pooled,
            residual,
        })
    }

    /// The layer's configuration.
    pub fn config(&self) -> &Conv2dConfig {
        &self.config
    }

    /// Whether a 2×2 max-pool is fused in.
    pub fn pooled(&self) -> bool {
        self.pooled
    }

    /// Whether a residual input is added before the activation.
    pub fn residual(&self) -> bool {
        self.residual
    }

    /// Output shape for a `[batch, h, w, c]` input (pooled when a max-pool is fused in).
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let mut out = self.config.output_shape(input)?;
        if self.pooled {
            if out[1] < 2 || out[2] < 2 {
                return Err(Error::shape("max pooling after conv2d", "a conv output of at least 2×2", shape_str(&out)));
            }
            out[1] /= 2;
            out[2] /= 2;
        }
        Ok(out)
    }

    /// Multiply-adds ×2 for one batch of `input` shape (the pooling is not counted).
    pub fn flops(&self, input: &[usize]) -> u64 {
        let Ok(out) = self.config.output_shape(input) else { return 0 };
        let per_output = self.config.kernel.0 * self.config.kernel.1 * self.config.in_channels;
        2 * (out.iter().product::<usize>() * per_output) as u64
    }

    /// Binds `input` and `output` into a ready dispatch.
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
        // What the op writes (pooled or not), and the convolution's own output size.
        let written = self.output_shape(input_shape)?;
        // The residual is binding 5 of the residual module only (see dense.rs).
        let residual = super::dense::check_residual("conv2d", self.residual, residual, &written)?;
        let out = self.config.output_shape(input_shape)?;
        let window = self.config.window(input_shape[1], input_shape[2]).ok_or_else(|| {
            Error::shape("conv2d input", "an image at least as large as the kernel", shape_str(input_shape))
        })?;
        let c = &self.config;
        let params = Conv2dParams::new(c, input_shape, &out, &window, self.kernel_stride);
        // Work items (conv2d.wgsl `work_items`): one per written pixel, 4 per pooled pixel.
        let pixels = written[..3].iter().product::<usize>() * if self.pooled { 4 } else { 1 };
        let workgroups = [
            groups(gpu, "conv2d", c.filters, CHANNELS * WORKGROUP)?,
            groups(gpu, "conv2d", pixels, PIXELS * WORKGROUP)?,
            1,
        ];
        Ok(prepare_dispatch(
            gpu,
            "conv2d",
            &self.pipeline,
            &params,
            &[&[input, &self.kernel, &self.bias, output], residual.as_slice()].concat(),
            workgroups,
        ))
    }
}
