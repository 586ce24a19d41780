//! Conv2D (Keras semantics: cross-correlation, HWIO kernel, `valid`/`same`, strides,
//! dilation), with bias, activation, a residual `Add` before the activation, or a 2×2
//! max-pool fused into its epilogue by the passes. Kernel family: `ops::conv2d` / `shaders/conv2d.wgsl`; a 1×1 stride-1
//! convolution runs the Dense GEMM (`ops::dense`) over its pixels.

use std::sync::Arc;

use super::dense::{add_then_activate, check_residual_shape, residual_io};
use super::{fold_channel_affine, nhwc, rows_for_items, Inputs, Io, Kernel, LayerOp, PlanContext};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::{self, Activation, Conv2dConfig, Dispatch, Padding, Precision};
use crate::reference;

/// A Conv2D layer.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// Hyper-parameters (the fused activation included).
    pub config: Conv2dConfig,
    /// HWIO kernel `[k_h, k_w, in_c, out_c]`.
    pub kernel: Vec<f32>,
    /// Bias (None when `use_bias=False`).
    pub bias: Option<Vec<f32>>,
    /// A 2×2 / stride-2 valid max-pool fused in (set by the fusion pass).
    pub pooled: bool,
    /// A second input of the output's shape is added before the activation (a residual
    /// `Add` fused in by the passes; never with `pooled`).
    pub residual: bool,
}

impl Conv2d {
    /// A convolution with nothing fused in but its own activation.
    pub fn new(config: Conv2dConfig, kernel: Vec<f32>, bias: Option<Vec<f32>>) -> Self {
        Self { config, kernel, bias, pooled: false, residual: false }
    }
}

impl Conv2d {
    /// A 1×1, stride-1, unpadded convolution with nothing pooled: a GEMM over the pixels.
    pub fn is_pointwise(&self) -> bool {
        let c = &self.config;
        !self.pooled && c.kernel == (1, 1) && c.strides == (1, 1) && matches!(c.padding, Padding::Valid | Padding::Same)
    }
}

impl LayerOp for Conv2d {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn arity(&self) -> usize {
        1 + self.residual as usize
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let mut out = self.config.output_shape(inputs[0])?;
        if self.pooled {
            out = ops::Pool2dConfig::max_2x2().output_shape(&out)?;
        }
        check_residual_shape("conv2d", self.residual, inputs, &out)?;
        Ok(out)
    }

    fn settings(&self) -> String {
        let pooled = if self.pooled { " + max_pool 2x2" } else { "" };
        let residual = if self.residual { " + residual" } else { "" };
        format!("{:?} bias {}{pooled}{residual}", self.config, self.bias.is_some())
    }

    fn weights(&self) -> Vec<&[f32]> {
        vec![&self.kernel, self.bias.as_deref().unwrap_or(&[])]
    }

    fn flops(&self, inputs: &[&[usize]]) -> u64 {
        let Ok(out) = self.config.output_shape(inputs[0]) else { return 0 };
        let per_output = self.config.kernel.0 * self.config.kernel.1 * self.config.in_channels;
        2 * (out.iter().product::<usize>() * per_output) as u64
    }

    fn with_activation(&self, activation: Activation) -> Option<Arc<dyn LayerOp>> {
        (!self.pooled && self.config.activation == Activation::Linear).then(|| {
            let mut fused = self.clone();
            fused.config.activation = activation;
            Arc::new(fused) as Arc<dyn LayerOp>
        })
    }

    fn with_padding(&self, padding: Padding) -> Option<Arc<dyn LayerOp>> {
        (!self.pooled && self.config.padding == Padding::Valid).then(|| {
            let mut padded = self.clone();
            padded.config.padding = padding;
            Arc::new(padded) as Arc<dyn LayerOp>
        })
    }

    fn with_channel_affine(&self, scale: &[f32], shift: &[f32]) -> Option<Arc<dyn LayerOp>> {
        // After a fused residual the affine map would scale the residual too: no fold.
        if self.pooled
            || self.residual
            || self.config.activation != Activation::Linear
            || scale.len() != self.config.filters
        {
            return None;
        }
        let (kernel, bias) = fold_channel_affine(&self.kernel, self.bias.as_deref(), scale, shift)?;
        Some(Arc::new(Self { kernel, bias: Some(bias), ..self.clone() }))
    }

    fn with_residual(&self) -> Option<Arc<dyn LayerOp>> {
        (!self.pooled && !self.residual && self.config.activation == Activation::Linear)
            .then(|| Arc::new(Self { residual: true, ..self.clone() }) as Arc<dyn LayerOp>)
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let zeros = vec![0.0; self.config.filters];
        let bias = self.bias.as_deref().unwrap_or(&zeros);
        let shape = nhwc(inputs.shape())?;
        if self.residual {
            let linear = Conv2dConfig { activation: Activation::Linear, ..self.config.clone() };
            let (out, _) = reference::conv2d(inputs.x(), shape, &linear, &self.kernel, bias);
            return Ok(add_then_activate(out, inputs.values[1], self.config.activation));
        }
        let (out, shape) = reference::conv2d(inputs.x(), shape, &self.config, &self.kernel, bias);
        Ok(if self.pooled { reference::pool2d(&out, shape, &ops::Pool2dConfig::max_2x2()).0 } else { out })
    }

    fn compile(&self, gpu: &Gpu, precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        let (config, kernel, bias) = (self.config.clone(), &self.kernel, self.bias.as_deref());
        if self.is_pointwise() {
            // Over NHWC values a 1×1 stride-1 convolution is a plain GEMM: rows = pixels,
            // its `[1, 1, in, out]` kernel the Dense kernel's `[in, out]`.
            let (i, o) = (config.in_channels, config.filters);
            let gemm = if self.residual {
                ops::Dense::with_residual(gpu, i, o, kernel, bias, config.activation, precision)?
            } else {
                ops::Dense::with_precision(gpu, i, o, kernel, bias, config.activation, precision)?
            };
            return Ok(Some(Box::new(PointwiseConv(gemm))));
        }
        let op = if self.residual {
            ops::Conv2d::with_residual(gpu, config, kernel, bias, precision)?
        } else if self.pooled {
            ops::Conv2d::with_max_pool(gpu, config, kernel, bias, precision)?
        } else {
            ops::Conv2d::with_precision(gpu, config, kernel, bias, precision)?
        };
        Ok(Some(Box::new(op)))
    }
}

impl Kernel for ops::Conv2d {
    fn describe(&self) -> String {
        let pool = if self.pooled() { " + max_pool 2×2" } else { "" };
        let residual = if self.residual() { " + residual" } else { "" };
        format!("conv2d (activation {:?}){pool}{residual}", self.config().activation)
    }

    fn max_rows(&self, _inputs: &[&[usize]], output: &[usize], _binding: usize, groups: usize) -> usize {
        rows_for_items(output[1] * output[2], groups)
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        let residual = residual_io(self.residual(), io);
        Ok(vec![self.prepare_with_residual(ctx.gpu, io.shapes[0], io.inputs[0], residual, io.output)?])
    }
}

/// A 1×1 stride-1 convolution run as the Dense GEMM over its pixels.
#[derive(Debug)]
struct PointwiseConv(ops::Dense);

impl Kernel for PointwiseConv {
    fn describe(&self) -> String {
        let residual = if self.0.residual() { " + residual" } else { "" };
        format!("conv2d 1×1 as GEMM (activation {:?}){residual}", self.0.activation())
    }

    fn max_rows(&self, inputs: &[&[usize]], output: &[usize], binding: usize, groups: usize) -> usize {
        Kernel::max_rows(&self.0, inputs, output, binding, groups)
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        Kernel::prepare(&self.0, ctx, io)
    }
}
