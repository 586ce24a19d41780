//! Keras `Softmax` (any run of axes), UnitNormalization (in `unit_norm.rs`, same kernel) and
//! the `softmax` / `log_softmax` activations of Dense / Conv layers (a softmax over the last
//! axis after the layer's own kernel: [`ThenSoftmax`]). In place. Kernel family:
//! `ops::softmax` / `shaders/softmax.wgsl`.

use std::ops::Range;
use std::sync::Arc;

use super::{Inputs, Io, Kernel, LayerOp, PlanContext, RunOptions, Scratch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::softmax::axis_split;
use crate::ops::{AxisMode, AxisOp, Dispatch, Precision};

/// Softmax (or log-softmax) along the axes `axes` of the input, batch axis = 0 (Keras' axis
/// numbers): one contiguous run, the batch axis excluded.
#[derive(Clone, Debug)]
pub struct Softmax {
    /// The axes normalised together (Keras `axis`, resolved against the input's rank).
    pub axes: Range<usize>,
    /// log_softmax instead of softmax.
    pub log: bool,
}

impl Softmax {
    /// Softmax over the last axis of a `rank`-axis value (batch axis included).
    pub fn last_axis(rank: usize, log: bool) -> Self {
        Self { axes: rank.saturating_sub(1)..rank, log }
    }

    fn mode(&self) -> AxisMode {
        if self.log {
            AxisMode::LogSoftmax
        } else {
            AxisMode::Softmax
        }
    }
}

/// The shape rule of the axis reductions: the axes inside the input, not the batch axis.
pub(crate) fn check_axes(what: &str, axes: &Range<usize>, input: &[usize]) -> Result<Vec<usize>> {
    if axes.start == 0 || axes.is_empty() || axes.end > input.len() {
        return Err(Error::shape(
            what,
            format!("an input with axes {axes:?} (batch axis 0 excluded)"),
            format!("{input:?}"),
        ));
    }
    Ok(input.to_vec())
}

/// The plain-Rust reduction along `axes` (f64 sums).
pub(crate) fn reference_along(x: &[f32], shape: &[usize], axes: &Range<usize>, mode: AxisMode) -> Result<Vec<f32>> {
    let (outer, len, inner) = axis_split(shape, axes)?;
    let mut out = vec![0.0; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * len + k) * inner + i;
            let values: Vec<f64> = (0..len).map(|k| x[at(k)] as f64).collect();
            let result: Vec<f64> = match mode {
                AxisMode::L2Normalize => {
                    let squares: f64 = values.iter().map(|v| v * v).sum();
                    let scale = (1.0 / squares.sqrt()).min(1e12);
                    values.iter().map(|v| v * scale).collect()
                }
                AxisMode::Softmax | AxisMode::LogSoftmax => {
                    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = values.iter().map(|v| (v - max).exp()).sum();
                    if mode == AxisMode::Softmax {
                        values.iter().map(|v| (v - max).exp() / sum).collect()
                    } else {
                        values.iter().map(|v| v - max - sum.ln()).collect()
                    }
                }
            };
            for (k, value) in result.into_iter().enumerate() {
                out[at(k)] = value as f32;
            }
        }
    }
    Ok(out)
}

impl LayerOp for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        check_axes("softmax input", &self.axes, inputs[0])
    }

    fn settings(&self) -> String {
        format!("axes {:?} log {}", self.axes, self.log)
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        reference_along(inputs.x(), inputs.shape(), &self.axes, self.mode())
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(AxisKernel { op: AxisOp::new(gpu, self.mode())?, axes: self.axes.clone() })))
    }
}

/// An axis reduction in place on its input.
#[derive(Debug)]
pub(crate) struct AxisKernel {
    pub(crate) op: AxisOp,
    pub(crate) axes: Range<usize>,
}

impl Kernel for AxisKernel {
    fn describe(&self) -> String {
        format!("{:?} over axes {:?}", self.op.mode(), self.axes).to_lowercase()
    }

    fn in_place(&self) -> bool {
        true
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        Ok(vec![self.op.prepare(ctx.gpu, io.shapes[0], &self.axes, io.inputs[0])?])
    }
}

/// A layer followed by a softmax over its output (Keras `Dense(activation="softmax")`): the
/// layer's own dispatches, then the softmax in place on its output buffer.
#[derive(Clone, Debug)]
pub struct ThenSoftmax {
    /// The layer.
    pub op: Arc<dyn LayerOp>,
    /// The softmax after it.
    pub softmax: Softmax,
}

impl LayerOp for ThenSoftmax {
    fn name(&self) -> &'static str {
        self.op.name()
    }

    fn arity(&self) -> usize {
        self.op.arity()
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let out = self.op.output_shape(inputs)?;
        self.softmax.output_shape(&[&out])
    }

    fn settings(&self) -> String {
        format!("{} then softmax {}", self.op.settings(), self.softmax.settings())
    }

    fn weights(&self) -> Vec<&[f32]> {
        self.op.weights()
    }

    fn parameter_count(&self) -> usize {
        self.op.parameter_count()
    }

    fn flops(&self, inputs: &[&[usize]]) -> u64 {
        self.op.flops(inputs)
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let out = self.op.reference(inputs)?;
        let shape = self.op.output_shape(inputs.shapes)?;
        reference_along(&out, &shape, &self.softmax.axes, self.softmax.mode())
    }

    fn compile(&self, gpu: &Gpu, precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        let inner = self.op.compile(gpu, precision)?.ok_or_else(|| {
            Error::input("softmax activation", format!("layer {} has no kernel of its own to follow", self.op.name()))
        })?;
        let softmax = AxisKernel { op: AxisOp::new(gpu, self.softmax.mode())?, axes: self.softmax.axes.clone() };
        Ok(Some(Box::new(ThenSoftmaxKernel { inner, softmax })))
    }
}

#[derive(Debug)]
struct ThenSoftmaxKernel {
    inner: Box<dyn Kernel>,
    softmax: AxisKernel,
}

impl Kernel for ThenSoftmaxKernel {
    fn describe(&self) -> String {
        format!("{} + {}", self.inner.describe(), self.softmax.describe())
    }

    fn in_place(&self) -> bool {
        self.inner.in_place()
    }

    fn reads_mask(&self) -> bool {
        self.inner.reads_mask()
    }

    fn scratch(&self, inputs: &[&[usize]]) -> Vec<Scratch> {
        self.inner.scratch(inputs)
    }

    fn output_len(&self, output: &[usize], options: RunOptions) -> usize {
        self.inner.output_len(output, options)
    }

    fn dispatch_count(&self, steps: usize, options: RunOptions) -> usize {
        self.inner.dispatch_count(steps, options) + 1
    }

    fn check_options(&self, options: RunOptions) -> Result<()> {
        self.inner.check_options(options)
    }

    fn max_rows(&self, inputs: &[&[usize]], output: &[usize], binding: usize, groups: usize) -> usize {
        self.inner.max_rows(inputs, output, binding, groups)
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        let mut dispatches = self.inner.prepare(ctx, io)?;
        dispatches.push(self.softmax.op.prepare(ctx.gpu, io.output_shape, &self.softmax.axes, io.output)?);
        Ok(dispatches)
    }
}
