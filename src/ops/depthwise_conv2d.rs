//! Grouped Conv2D, Keras semantics: channels-last input, cross-correlation, `valid` /
//! `same` / explicit padding, strides, dilation, fused bias + activation. Output channel
//! `co` of group `g = co / (filters / groups)` reads input channels
//! `g·(in/groups) .. (g+1)·(in/groups)`. DepthwiseConv2D is groups = in_channels with
//! filters = in_channels · depth_multiplier: Keras' `(k_h, k_w, C, m)` depthwise kernel is
//! this op's `(k_h, k_w, 1, C·m)` kernel, unchanged. Kernel: `shaders/depthwise_conv2d.wgsl`.

use super::conv2d::Conv2dParams;
use super::{groups, kernel_buffer, prepare_dispatch, shape_str, weight_buffer, Conv2dConfig, Dispatch, Precision};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::shaders;

/// A grouped convolution: a Conv2D's hyper-parameters and the number of groups.
#[derive(Clone, Debug, PartialEq)]
pub struct DepthwiseConv2dConfig {
    /// Sizes, strides, dilation, padding and activation (`in_channels` and `filters` of the
    /// whole layer).
    pub conv: Conv2dConfig,
    /// Channel groups: divides both `in_channels` and `filters` (in_channels: depthwise).
    pub groups: usize,
}

impl DepthwiseConv2dConfig {
    /// Input channels each output channel reads.
    pub fn group_in(&self) -> usize {
        self.conv.in_channels / self.groups.max(1)
    }

    /// Output channels per group (the depth multiplier of a depthwise convolution).
    pub fn group_out(&self) -> usize {
        self.conv.filters / self.groups.max(1)
    }

    /// Number of kernel values, `k_h·k_w·group_in·filters`.
    pub fn kernel_len(&self) -> usize {
        self.conv.kernel.0 * self.conv.kernel.1 * self.group_in() * self.conv.filters
    }

    /// The kernel's shape `[k_h, k_w, group_in, filters]`.
    pub fn kernel_shape(&self) -> [usize; 4] {
        [self.conv.kernel.0, self.conv.kernel.1, self.group_in(), self.conv.filters]
    }

    /// Output shape for a `[batch, h, w, c]` input.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.conv.output_shape(input)
    }

    /// Multiply-adds ×2 for one batch of `input` shape.
    pub fn flops(&self, input: &[usize]) -> u64 {
        let Ok(out) = self.conv.output_shape(input) else { return 0 };
        let per_output = self.conv.kernel.0 * self.conv.kernel.1 * self.group_in();
        2 * (out.iter().product::<usize>() * per_output) as u64
    }

    /// Sizes, strides and dilations are positive; groups divide both channel counts.
    pub fn check(&self) -> Result<()> {
        let c = &self.conv;
        let sizes =
            [c.in_channels, c.filters, c.kernel.0, c.kernel.1, c.strides.0, c.strides.1, c.dilation.0, c.dilation.1];
        if sizes.contains(&0) || self.groups == 0 {
            return Err(Error::shape(
                "grouped conv2d config",
                "all sizes, strides, dilations and groups >= 1",
                format!("{self:?}"),
            ));
        }
        if !c.in_channels.is_multiple_of(self.groups) || !c.filters.is_multiple_of(self.groups) {
            return Err(Error::shape(
                "grouped conv2d config",
                format!("groups ({}) dividing input channels and filters", self.groups),
                format!("{} input channels, {} filters", c.in_channels, c.filters),
            ));
        }
        Ok(())
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct DepthwiseParams {
    /// The window, as conv2d.wgsl's.
    conv: Conv2dParams,
    group_in: u32,
    group_out: u32,
    shared_input: u32,
    _pad: u32,
}

/// Output pixels and channels per invocation, invocations per workgroup axis
/// (depthwise_conv2d.wgsl).
const PIXELS: usize = 4;
const CHANNELS: usize = 8;
const WORKGROUP: usize = 8;

/// A grouped / depthwise convolution resident on the GPU.
#[derive(Debug)]
pub struct DepthwiseConv2d {
    config: DepthwiseConv2dConfig,
    kernel: wgpu::Buffer,
    /// 32-bit words per (ky, kx, k) kernel row (see [`Precision`]).
    kernel_stride: u32,
    bias: wgpu::Buffer,
    pipeline: wgpu::ComputePipeline,
}

impl DepthwiseConv2d {
    /// Uploads the `[k_h, k_w, group_in, filters]` kernel and the bias (zeros when None) in
    /// `precision` and compiles the kernel for the config's activation.
    pub fn new(
        gpu: &Gpu,
        config: DepthwiseConv2dConfig,
        kernel: &[f32],
        bias: Option<&[f32]>,
        precision: Precision,
    ) -> Result<Self> {
        config.check()?;
        if kernel.len() != config.kernel_len() {
            return Err(Error::shape(
                "grouped conv2d kernel",
                format!("{} values {:?}", config.kernel_len(), config.kernel_shape()),
                format!("{} values", kernel.len()),
            ));
        }
        let filters = config.conv.filters;
        let zeros = vec![0.0; filters];
        let bias = bias.unwrap_or(&zeros);
        if bias.len() != filters {
            return Err(Error::shape(
                "grouped conv2d bias",
                format!("{filters} values"),
                format!("{} values", bias.len()),
            ));
        }
        let (kernel, kernel_stride) = kernel_buffer(gpu, "depthwise_conv2d kernel", kernel, filters, precision)?;
        let pipeline = gpu.pipeline(
            precision.pick(&shaders::DEPTHWISE_CONV2D, &shaders::DEPTHWISE_CONV2D_F16),
            "depthwise_conv2d",
            &config.conv.activation.constants(),
        )?;
        Ok(Self { kernel, kernel_stride, bias: weight_buffer(gpu, "depthwise_conv2d bias", bias)?, pipeline, config })
    }

    /// The layer's configuration.
    pub fn config(&self) -> &DepthwiseConv2dConfig {
        &self.config
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
        let out = self.config.output_shape(input_shape)?;
        let c = &self.config.conv;
        let window = c.window(input_shape[1], input_shape[2]).ok_or_else(|| {
            Error::shape("grouped conv2d input", "an image at least as large as the kernel", shape_str(input_shape))
        })?;
        let params = DepthwiseParams {
            conv: Conv2dParams::new(c, input_shape, &out, &window, self.kernel_stride),
            group_in: self.config.group_in() as u32,
            group_out: self.config.group_out() as u32,
            // The 8 channels of an invocation start at a multiple of 8, so they lie in one
            // group when groups are multiples of 8 channels wide.
            shared_input: u32::from(self.config.group_out().is_multiple_of(CHANNELS)),
            _pad: 0,
        };
        let pixels = out[..3].iter().product::<usize>();
        let workgroups = [
            groups(gpu, "depthwise_conv2d", c.filters, CHANNELS * WORKGROUP)?,
            groups(gpu, "depthwise_conv2d", pixels, PIXELS * WORKGROUP)?,
            1,
        ];
        Ok(prepare_dispatch(
            gpu,
            "depthwise_conv2d",
            &self.pipeline,
            &params,
            &[input, &self.kernel, &self.bias, output],
            workgroups,
        ))
    }
}
