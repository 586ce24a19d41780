//! Conv1D (Keras semantics: cross-correlation over the time axis of `[batch, steps,
//! channels]`, kernel `(k, in_c / groups, filters)`, `valid` / `same` / `causal` padding,
//! stride, dilation, groups, bias, activation). A sequence is the image `[batch, 1, steps,
//! channels]` (the same values in the same order), so the layer runs as a Conv2D (or, with
//! `groups > 1`, a grouped Conv2D) with a `(1, k)` kernel: Keras' kernel is the HWIO kernel
//! `(1, k, in_c / groups, filters)` as it is. `causal` is Keras' own rewrite: `dilation ·
//! (k − 1)` zeros before the first step, then `valid`. A following activation fuses into
//! its epilogue and a following BatchNormalization folds into its weights, as for the 2-D
//! layers. Kernel families: `ops::conv2d` / `shaders/conv2d.wgsl`, and
//! `ops::depthwise_conv2d` / `shaders/depthwise_conv2d.wgsl` for `groups > 1`.

use std::sync::Arc;

use super::{btf, Conv2d, DepthwiseConv2d, Inputs, Io, Kernel, LayerOp, PlanContext, RunOptions, Scratch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{Activation, Conv2dConfig, DepthwiseConv2dConfig, Dispatch, Padding, Precision};

/// Keras Conv1D's `padding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conv1dPadding {
    /// No padding: `(steps − dilation·(k − 1) − 1) / stride + 1` outputs.
    Valid,
    /// `ceil(steps / stride)` outputs, the padding split as TensorFlow / JAX do (the
    /// smaller half first).
    Same,
    /// `dilation · (k − 1)` zeros before the first step, none after: output `t` reads
    /// steps `<= t · stride` only; `ceil(steps / stride)` outputs.
    Causal,
}

/// Shape and hyper-parameters of a Conv1D layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv1dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels (Keras `filters`).
    pub filters: usize,
    /// Kernel length (Keras `kernel_size`).
    pub kernel: usize,
    /// Stride over the steps.
    pub stride: usize,
    /// Dilation (Keras `dilation_rate`).
    pub dilation: usize,
    /// Padding mode.
    pub padding: Conv1dPadding,
    /// Channel groups: divides `in_channels` and `filters` (1: a plain convolution).
    pub groups: usize,
    /// Fused activation.
    pub activation: Activation,
}

impl Conv1dConfig {
    /// Number of kernel values, `k · (in_channels / groups) · filters`.
    pub fn kernel_len(&self) -> usize {
        self.kernel * (self.in_channels / self.groups.max(1)) * self.filters
    }

    /// The kernel's shape as Keras stores it, `[k, in_channels / groups, filters]`.
    pub fn kernel_shape(&self) -> [usize; 3] {
        [self.kernel, self.in_channels / self.groups.max(1), self.filters]
    }

    /// The 2-D convolution over `[batch, 1, steps, channels]` it is.
    pub fn as_conv2d(&self) -> Conv2dConfig {
        let padding = match self.padding {
            Conv1dPadding::Valid => Padding::Valid,
            Conv1dPadding::Same => Padding::Same,
            Conv1dPadding::Causal => Padding::Explicit {
                top: 0,
                bottom: 0,
                left: self.dilation.saturating_mul(self.kernel.saturating_sub(1)),
                right: 0,
            },
        };
        Conv2dConfig {
            in_channels: self.in_channels,
            filters: self.filters,
            kernel: (1, self.kernel),
            strides: (1, self.stride),
            dilation: (1, self.dilation),
            padding,
            activation: self.activation,
        }
    }

    fn check(&self) -> Result<()> {
        let sizes = [self.in_channels, self.filters, self.kernel, self.stride, self.dilation, self.groups];
        if sizes.contains(&0) {
            return Err(Error::shape(
                "conv1d config",
                "all sizes, the stride, dilation and groups >= 1",
                format!("{self:?}"),
            ));
        }
        if !self.in_channels.is_multiple_of(self.groups) || !self.filters.is_multiple_of(self.groups) {
            return Err(Error::shape(
                "conv1d groups",
                format!("a divisor of the input channels ({}) and filters ({})", self.in_channels, self.filters),
                self.groups.to_string(),
            ));
        }
        Ok(())
    }
}

/// A Conv1D layer: its config, and the 2-D layer over `[batch, 1, steps, channels]` that
/// holds its weights and computes it (a [`Conv2d`], or a [`DepthwiseConv2d`] for
/// `groups > 1`).
#[derive(Clone, Debug)]
pub struct Conv1d {
    config: Conv1dConfig,
    image: Arc<dyn LayerOp>,
}

/// `[b, t, c]` → the image `[b, 1, t, c]`.
fn as_image(shape: &[usize]) -> Result<[usize; 4]> {
    let [b, t, c] = btf(shape)?;
    Ok([b, 1, t, c])
}

impl Conv1d {
    /// The layer for `config`, with Keras' kernel `(k, in_c / groups, filters)` and a bias
    /// of `filters` values (None: `use_bias=False`), all checked.
    pub fn new(config: Conv1dConfig, kernel: Vec<f32>, bias: Option<Vec<f32>>) -> Result<Self> {
        config.check()?;
        if kernel.len() != config.kernel_len() {
            return Err(Error::shape(
                "conv1d kernel",
                format!("{} values {:?}", config.kernel_len(), config.kernel_shape()),
                format!("{} values", kernel.len()),
            ));
        }
        if let Some(b) = bias.as_ref().filter(|b| b.len() != config.filters) {
            return Err(Error::shape(
                "conv1d bias",
                format!("{} values", config.filters),
                format!("{} values", b.len()),
            ));
        }
        let conv = config.as_conv2d();
        let image: Arc<dyn LayerOp> = if config.groups == 1 {
            Arc::new(Conv2d::new(conv, kernel, bias))
        } else {
            Arc::new(DepthwiseConv2d::grouped(DepthwiseConv2dConfig { conv, groups: config.groups }, kernel, bias)?)
        };
        Ok(Self { config, image })
    }

    /// The layer's configuration.
    pub fn config(&self) -> &Conv1dConfig {
        &self.config
    }

    /// This layer with another 2-D layer (the same config but for `activation`).
    fn with_image(&self, image: Arc<dyn LayerOp>, activation: Activation) -> Arc<dyn LayerOp> {
        Arc::new(Self { config: Conv1dConfig { activation, ..self.config.clone() }, image })
    }
}

impl LayerOp for Conv1d {
    fn name(&self) -> &'static str {
        "conv1d"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let image = as_image(inputs[0])?;
        if image[3] != self.config.in_channels {
            return Err(Error::shape(
                "conv1d input channels",
                self.config.in_channels.to_string(),
                image[3].to_string(),
            ));
        }
        let out = self.image.output_shape(&[&image]).map_err(|e| match e {
            Error::ShapeMismatch { .. } => {
                let steps = self.config.dilation.saturating_mul(self.config.kernel - 1).saturating_add(1);
                Error::shape(
                    "conv1d input",
                    format!("at least {steps} steps (valid padding)"),
                    format!("{:?}", inputs[0]),
                )
            }
            other => other,
        })?;
        Ok(vec![out[0], out[2], out[3]])
    }

    fn settings(&self) -> String {
        format!("{:?} as {}", self.config, self.image.settings())
    }

    fn weights(&self) -> Vec<&[f32]> {
        self.image.weights()
    }

    fn flops(&self, inputs: &[&[usize]]) -> u64 {
        as_image(inputs[0]).map_or(0, |image| self.image.flops(&[&image]))
    }

    fn with_activation(&self, activation: Activation) -> Option<Arc<dyn LayerOp>> {
        Some(self.with_image(self.image.with_activation(activation)?, activation))
    }

    fn with_channel_affine(&self, scale: &[f32], shift: &[f32]) -> Option<Arc<dyn LayerOp>> {
        Some(self.with_image(self.image.with_channel_affine(scale, shift)?, self.config.activation))
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let image = as_image(inputs.shape())?;
        self.image.reference(&Inputs { values: inputs.values, shapes: &[&image], mask: inputs.mask })
    }

    fn compile(&self, gpu: &Gpu, precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        let kernel = self
            .image
            .compile(gpu, precision)?
            .ok_or_else(|| Error::input("conv1d", "the 2-D convolution compiled to no kernel"))?;
        Ok(Some(Box::new(Conv1dKernel(kernel))))
    }
}

/// The 2-D kernel, handed the sequences as images.
#[derive(Debug)]
struct Conv1dKernel(Box<dyn Kernel>);

/// Input shapes as images (shapes checked by the layer's shape rule first).
fn images(shapes: &[&[usize]]) -> Result<Vec<[usize; 4]>> {
    shapes.iter().map(|s| as_image(s)).collect()
}

impl Kernel for Conv1dKernel {
    fn describe(&self) -> String {
        format!("{} (1-D)", self.0.describe())
    }

    fn scratch(&self, inputs: &[&[usize]]) -> Vec<Scratch> {
        let Ok(images) = images(inputs) else { return Vec::new() };
        self.0.scratch(&images.iter().map(|s| &s[..]).collect::<Vec<_>>())
    }

    fn output_len(&self, output: &[usize], options: RunOptions) -> usize {
        as_image(output).map_or_else(|_| output.iter().product(), |image| self.0.output_len(&image, options))
    }

    fn dispatch_count(&self, steps: usize, options: RunOptions) -> usize {
        self.0.dispatch_count(steps, options)
    }

    fn check_options(&self, options: RunOptions) -> Result<()> {
        self.0.check_options(options)
    }

    fn max_rows(&self, inputs: &[&[usize]], output: &[usize], binding: usize, groups: usize) -> usize {
        let (Ok(images), Ok(output)) = (images(inputs), as_image(output)) else { return 1 };
        self.0.max_rows(&images.iter().map(|s| &s[..]).collect::<Vec<_>>(), &output, binding, groups)
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        let images = images(io.shapes)?;
        let shapes: Vec<&[usize]> = images.iter().map(|s| &s[..]).collect();
        let output = as_image(io.output_shape)?;
        self.0.prepare(ctx, &Io { inputs: io.inputs, shapes: &shapes, output: io.output, output_shape: &output })
    }
}
