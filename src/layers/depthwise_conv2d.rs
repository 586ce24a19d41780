//! Grouped convolutions (Keras semantics: cross-correlation, `valid`/`same`, strides,
//! dilation): [`DepthwiseConv2d`] runs Keras' DepthwiseConv2D and Conv2D with `groups > 1`;
//! [`SeparableConv2d`] is Keras' SeparableConv2D, a depthwise convolution (no bias) then a
//! 1×1 Conv2D with the bias and activation, as ONE node whose kernel issues two
//! dispatches (the depthwise output goes to a scratch buffer). Both take a following
//! activation into their epilogue and fold a following BatchNormalization into their
//! (pointwise) weights. Kernel family: `ops::depthwise_conv2d` /
//! `shaders/depthwise_conv2d.wgsl`, plus `ops::conv2d` for the pointwise step.

use std::sync::Arc;

use super::{fold_channel_affine, nhwc, rows_for_items, Inputs, Io, Kernel, LayerOp, PlanContext, Scratch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{self, Activation, Conv2dConfig, DepthwiseConv2dConfig, Dispatch, Padding, Precision};
use crate::reference;

/// A grouped convolution: Keras DepthwiseConv2D (groups = input channels, filters =
/// channels · depth_multiplier) or Conv2D with `groups > 1`.
#[derive(Clone, Debug)]
pub struct DepthwiseConv2d {
    /// Hyper-parameters (the fused activation included).
    pub config: DepthwiseConv2dConfig,
    /// Kernel `[k_h, k_w, in_c / groups, filters]`: Keras' grouped Conv2D kernel, and
    /// Keras' depthwise kernel `(k_h, k_w, C, m)` read as `(k_h, k_w, 1, C·m)`.
    pub kernel: Vec<f32>,
    /// Bias `[filters]` (None when `use_bias=False`).
    pub bias: Option<Vec<f32>>,
}

impl DepthwiseConv2d {
    /// Keras DepthwiseConv2D over `channels` with `depth_multiplier`: the `conv` sizes
    /// (`in_channels`, `filters` are set here), the `(k_h, k_w, C, m)` kernel.
    pub fn depthwise(
        channels: usize,
        depth_multiplier: usize,
        mut conv: Conv2dConfig,
        kernel: Vec<f32>,
        bias: Option<Vec<f32>>,
    ) -> Result<Self> {
        conv.in_channels = channels;
        conv.filters = channels.checked_mul(depth_multiplier).ok_or_else(|| {
            Error::shape("depthwise conv2d", "channels · depth_multiplier below 2^64", depth_multiplier.to_string())
        })?;
        Self::grouped(DepthwiseConv2dConfig { conv, groups: channels }, kernel, bias)
    }

    /// A grouped convolution, its config, kernel and bias checked.
    pub fn grouped(config: DepthwiseConv2dConfig, kernel: Vec<f32>, bias: Option<Vec<f32>>) -> Result<Self> {
        config.check()?;
        if kernel.len() != config.kernel_len() {
            return Err(Error::shape(
                "grouped conv2d kernel",
                format!("{:?}", config.kernel_shape()),
                format!("{} values", kernel.len()),
            ));
        }
        if let Some(b) = bias.as_ref().filter(|b| b.len() != config.conv.filters) {
            return Err(Error::shape("grouped conv2d bias", config.conv.filters.to_string(), b.len().to_string()));
        }
        Ok(Self { config, kernel, bias })
    }

    /// Whether this is a depthwise convolution (one group per input channel).
    pub fn is_depthwise(&self) -> bool {
        self.config.groups == self.config.conv.in_channels
    }
}

/// The plain-Rust grouped convolution on an NHWC input (f64 sums), with the config's
/// activation; returns the output and its shape.
pub fn grouped_conv2d_reference(
    input: &[f32],
    shape: [usize; 4],
    config: &DepthwiseConv2dConfig,
    kernel: &[f32],
    bias: Option<&[f32]>,
) -> Result<(Vec<f32>, [usize; 4])> {
    let [batch, h, w, c] = shape;
    let out_shape = config.output_shape(&shape)?;
    let window = config.conv.window(h, w).ok_or_else(|| Error::shape("grouped conv2d", "a window", "none"))?;
    let (conv, (out_h, out_w), f) = (&config.conv, window.out, config.conv.filters);
    let (group_in, group_out) = (config.group_in(), config.group_out());
    let mut out = vec![0.0; out_shape.iter().product()];
    for b in 0..batch {
        for oy in 0..out_h {
            for ox in 0..out_w {
                for co in 0..f {
                    let first = (co / group_out) * group_in;
                    let mut sum = bias.map_or(0.0, |bias| bias[co] as f64);
                    for ky in 0..conv.kernel.0 {
                        for kx in 0..conv.kernel.1 {
                            let iy = (oy * conv.strides.0 + ky * conv.dilation.0) as isize - window.pad.0 as isize;
                            let ix = (ox * conv.strides.1 + kx * conv.dilation.1) as isize - window.pad.1 as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            for k in 0..group_in {
                                let x = input[((b * h + iy as usize) * w + ix as usize) * c + first + k];
                                let weight = kernel[((ky * conv.kernel.1 + kx) * group_in + k) * f + co];
                                sum += x as f64 * weight as f64;
                            }
                        }
                    }
                    out[((b * out_h + oy) * out_w + ox) * f + co] = reference::activation(sum as f32, conv.activation);
                }
            }
        }
    }
    Ok((out, [batch, out_h, out_w, f]))
}

impl LayerOp for DepthwiseConv2d {
    fn name(&self) -> &'static str {
        if self.is_depthwise() {
            "depthwise_conv2d"
        } else {
            "grouped_conv2d"
        }
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        self.config.output_shape(inputs[0])
    }

    fn settings(&self) -> String {
        format!("{:?} bias {}", self.config, self.bias.is_some())
    }

    fn weights(&self) -> Vec<&[f32]> {
        vec![&self.kernel, self.bias.as_deref().unwrap_or(&[])]
    }

    fn flops(&self, inputs: &[&[usize]]) -> u64 {
        self.config.flops(inputs[0])
    }

    fn with_activation(&self, activation: Activation) -> Option<Arc<dyn LayerOp>> {
        (self.config.conv.activation == Activation::Linear).then(|| {
            let mut fused = self.clone();
            fused.config.conv.activation = activation;
            Arc::new(fused) as Arc<dyn LayerOp>
        })
    }

    fn with_padding(&self, padding: Padding) -> Option<Arc<dyn LayerOp>> {
        (self.config.conv.padding == Padding::Valid).then(|| {
            let mut padded = self.clone();
            padded.config.conv.padding = padding;
            Arc::new(padded) as Arc<dyn LayerOp>
        })
    }

    fn with_channel_affine(&self, scale: &[f32], shift: &[f32]) -> Option<Arc<dyn LayerOp>> {
        if self.config.conv.activation != Activation::Linear || scale.len() != self.config.conv.filters {
            return None;
        }
        let (kernel, bias) = fold_channel_affine(&self.kernel, self.bias.as_deref(), scale, shift)?;
        Some(Arc::new(Self { config: self.config.clone(), kernel, bias: Some(bias) }))
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let shape = nhwc(inputs.shape())?;
        Ok(grouped_conv2d_reference(inputs.x(), shape, &self.config, &self.kernel, self.bias.as_deref())?.0)
    }

    fn compile(&self, gpu: &Gpu, precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        let op = ops::DepthwiseConv2d::new(gpu, self.config.clone(), &self.kernel, self.bias.as_deref(), precision)?;
        Ok(Some(Box::new(op)))
    }
}

fn describe(config: &DepthwiseConv2dConfig) -> String {
    if config.groups == config.conv.in_channels {
        format!("depthwise_conv2d ×{} (activation {:?})", config.group_out(), config.conv.activation)
    } else {
        format!("grouped_conv2d {} groups (activation {:?})", config.groups, config.conv.activation)
    }
}

impl Kernel for ops::DepthwiseConv2d {
    fn describe(&self) -> String {
        describe(self.config())
    }

    fn max_rows(&self, _inputs: &[&[usize]], output: &[usize], _binding: usize, groups: usize) -> usize {
        // 32 output pixels per workgroup row (depthwise_conv2d.wgsl), as rows_for_items counts.
        rows_for_items(output[1] * output[2], groups)
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        Ok(vec![ops::DepthwiseConv2d::prepare(self, ctx.gpu, io.shapes[0], io.inputs[0], io.output)?])
    }
}

/// Keras SeparableConv2D: a depthwise convolution (strides, dilation, padding; no bias,
/// no activation) into `channels · depth_multiplier` channels, then a 1×1 convolution to
/// `filters` with the bias and the activation.
#[derive(Clone, Debug)]
pub struct SeparableConv2d {
    /// The depthwise step (linear, no bias).
    pub depthwise: DepthwiseConv2d,
    /// The pointwise step: 1×1, stride 1, valid; kernel `[1, 1, C·m, filters]`.
    pub pointwise: super::Conv2d,
}

impl SeparableConv2d {
    /// The two steps, checked to chain: the depthwise one linear without bias, the
    /// pointwise one a 1×1 / stride 1 / valid convolution of its output.
    pub fn new(depthwise: DepthwiseConv2d, pointwise: super::Conv2d) -> Result<Self> {
        let p = &pointwise.config;
        let chains = depthwise.is_depthwise()
            && depthwise.bias.is_none()
            && depthwise.config.conv.activation == Activation::Linear
            && p.in_channels == depthwise.config.conv.filters
            && p.kernel == (1, 1)
            && p.strides == (1, 1)
            && p.dilation == (1, 1)
            && p.padding == Padding::Valid
            && pointwise.kernel.len() == p.kernel_len()
            && !pointwise.pooled;
        if !chains {
            return Err(Error::shape(
                "separable conv2d",
                "a linear depthwise step without bias, then a 1×1 valid conv of its output",
                format!("{:?} then {:?}", depthwise.config, p),
            ));
        }
        Ok(Self { depthwise, pointwise })
    }
}

/// Scratch key of the depthwise step's output.
const SEPARABLE_DEPTHWISE: &str = "separable_conv2d depthwise";

impl LayerOp for SeparableConv2d {
    fn name(&self) -> &'static str {
        "separable_conv2d"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let middle = self.depthwise.config.output_shape(inputs[0])?;
        self.pointwise.config.output_shape(&middle)
    }

    fn settings(&self) -> String {
        format!("{} then {}", self.depthwise.settings(), self.pointwise.settings())
    }

    fn weights(&self) -> Vec<&[f32]> {
        let mut weights = vec![self.depthwise.kernel.as_slice()];
        weights.extend(self.pointwise.weights());
        weights
    }

    fn flops(&self, inputs: &[&[usize]]) -> u64 {
        let Ok(middle) = self.depthwise.config.output_shape(inputs[0]) else { return 0 };
        self.depthwise.flops(inputs) + self.pointwise.flops(&[&middle])
    }

    fn with_activation(&self, activation: Activation) -> Option<Arc<dyn LayerOp>> {
        (self.pointwise.config.activation == Activation::Linear).then(|| {
            let mut fused = self.clone();
            fused.pointwise.config.activation = activation;
            Arc::new(fused) as Arc<dyn LayerOp>
        })
    }

    fn with_channel_affine(&self, scale: &[f32], shift: &[f32]) -> Option<Arc<dyn LayerOp>> {
        let p = &self.pointwise;
        if p.config.activation != Activation::Linear || scale.len() != p.config.filters {
            return None;
        }
        let (kernel, bias) = fold_channel_affine(&p.kernel, p.bias.as_deref(), scale, shift)?;
        let pointwise = super::Conv2d::new(p.config.clone(), kernel, Some(bias));
        Some(Arc::new(Self { depthwise: self.depthwise.clone(), pointwise }))
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let shape = nhwc(inputs.shape())?;
        let d = &self.depthwise;
        let (middle, middle_shape) = grouped_conv2d_reference(inputs.x(), shape, &d.config, &d.kernel, None)?;
        let inner = Inputs { values: &[&middle], shapes: &[&middle_shape], mask: inputs.mask };
        self.pointwise.reference(&inner)
    }

    fn compile(&self, gpu: &Gpu, precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        let d = &self.depthwise;
        let depthwise = ops::DepthwiseConv2d::new(gpu, d.config.clone(), &d.kernel, None, precision)?;
        let p = &self.pointwise;
        let pointwise = ops::Conv2d::with_precision(gpu, p.config.clone(), &p.kernel, p.bias.as_deref(), precision)?;
        Ok(Some(Box::new(SeparableKernel { depthwise, pointwise })))
    }
}

/// A SeparableConv2D on the GPU: the depthwise dispatch into scratch, then the pointwise.
#[derive(Debug)]
struct SeparableKernel {
    depthwise: ops::DepthwiseConv2d,
    pointwise: ops::Conv2d,
}

impl Kernel for SeparableKernel {
    fn describe(&self) -> String {
        let pointwise = self.pointwise.config();
        format!("{} + conv2d 1×1 (activation {:?})", describe(self.depthwise.config()), pointwise.activation)
    }

    fn scratch(&self, inputs: &[&[usize]]) -> Vec<Scratch> {
        let len = self.depthwise.config().output_shape(inputs[0]).map_or(0, |s| s.iter().product());
        vec![Scratch { key: SEPARABLE_DEPTHWISE, len: len.max(1), ones: false }]
    }

    fn dispatch_count(&self, _steps: usize, _options: super::RunOptions) -> usize {
        2
    }

    fn max_rows(&self, inputs: &[&[usize]], output: &[usize], binding: usize, groups: usize) -> usize {
        let middle = self.depthwise.config().output_shape(inputs[0]).map_or(0, |s| s.iter().product::<usize>());
        let pixels = output[1] * output[2];
        (binding / middle.max(1)).min(rows_for_items(pixels, groups))
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        let middle = ctx.scratch(SEPARABLE_DEPTHWISE)?;
        let middle_shape = self.depthwise.output_shape(io.shapes[0])?;
        Ok(vec![
            self.depthwise.prepare(ctx.gpu, io.shapes[0], io.inputs[0], middle)?,
            self.pointwise.prepare(ctx.gpu, &middle_shape, middle, io.output)?,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_output_is_the_pointwise_of_the_strided_depthwise() {
        let conv = Conv2dConfig {
            in_channels: 3,
            filters: 6,
            kernel: (3, 3),
            strides: (2, 2),
            dilation: (1, 1),
            padding: Padding::Same,
            activation: Activation::Linear,
        };
        let depthwise = DepthwiseConv2d::depthwise(3, 2, conv, vec![0.0; 54], None).unwrap();
        let point = Conv2dConfig {
            in_channels: 6,
            filters: 5,
            kernel: (1, 1),
            strides: (1, 1),
            padding: Padding::Valid,
            ..depthwise.config.conv
        };
        // A pointwise step that is not a 1×1 valid conv of the depthwise output is refused.
        let same = Conv2dConfig { padding: Padding::Same, ..point.clone() };
        let refused = SeparableConv2d::new(depthwise.clone(), super::super::Conv2d::new(same, vec![0.0; 30], None));
        assert!(refused.is_err());
        let separable = SeparableConv2d::new(depthwise, super::super::Conv2d::new(point, vec![0.0; 30], None)).unwrap();
        assert_eq!(separable.output_shape(&[&[2, 7, 9, 3]]).unwrap(), [2, 4, 5, 5]);
    }
}
