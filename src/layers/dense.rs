//! Dense over the last axis (`[.., in] → [.., out]`, kernel `[in, out]`), with bias and
//! activation (and a residual `Add` before it) fused. Kernel family: `ops::dense` / `shaders/dense.wgsl`.

use std::sync::Arc;

use super::{fold_channel_affine, rows_and_features, rows_for_items, Inputs, Io, Kernel, LayerOp, PlanContext};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{self, Activation, Dispatch, Precision};
use crate::reference;

/// A Dense layer.
#[derive(Clone, Debug)]
pub struct Dense {
    /// Input features.
    pub in_features: usize,
    /// Output features (Keras `units`).
    pub out_features: usize,
    /// `[in, out]` kernel.
    pub kernel: Vec<f32>,
    /// Bias (None when `use_bias=False`).
    pub bias: Option<Vec<f32>>,
    /// Fused activation.
    pub activation: Activation,
    /// A second input of the output's shape is added before the activation (a residual
    /// `Add` fused in by the passes).
    pub residual: bool,
}

impl LayerOp for Dense {
    fn name(&self) -> &'static str {
        "dense"
    }

    fn arity(&self) -> usize {
        1 + self.residual as usize
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let out: Vec<usize> = match inputs[0].split_last() {
            Some((&last, rest)) if last == self.in_features && !rest.is_empty() => {
                rest.iter().copied().chain([self.out_features]).collect()
            }
            _ => {
                return Err(Error::shape(
                    "dense input",
                    format!("[batch, ..., {}]", self.in_features),
                    format!("{:?}", inputs[0]),
                ))
            }
        };
        check_residual_shape("dense", self.residual, inputs, &out)?;
        Ok(out)
    }

    fn settings(&self) -> String {
        let residual = if self.residual { " + residual" } else { "" };
        format!(
            "{} {} {:?} bias {}{residual}",
            self.in_features,
            self.out_features,
            self.activation,
            self.bias.is_some()
        )
    }

    fn weights(&self) -> Vec<&[f32]> {
        vec![&self.kernel, self.bias.as_deref().unwrap_or(&[])]
    }

    fn flops(&self, inputs: &[&[usize]]) -> u64 {
        let (rows, _) = rows_and_features(inputs[0]);
        2 * (rows * self.in_features * self.out_features) as u64
    }

    fn with_activation(&self, activation: Activation) -> Option<Arc<dyn LayerOp>> {
        (self.activation == Activation::Linear)
            .then(|| Arc::new(Self { activation, ..self.clone() }) as Arc<dyn LayerOp>)
    }

    fn with_channel_affine(&self, scale: &[f32], shift: &[f32]) -> Option<Arc<dyn LayerOp>> {
        // After a fused residual the affine map would scale the residual too: no fold.
        if self.residual || self.activation != Activation::Linear || scale.len() != self.out_features {
            return None;
        }
        let (kernel, bias) = fold_channel_affine(&self.kernel, self.bias.as_deref(), scale, shift)?;
        Some(Arc::new(Self { kernel, bias: Some(bias), ..self.clone() }))
    }

    fn with_residual(&self) -> Option<Arc<dyn LayerOp>> {
        (!self.residual && self.activation == Activation::Linear)
            .then(|| Arc::new(Self { residual: true, ..self.clone() }) as Arc<dyn LayerOp>)
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let zeros = vec![0.0; self.out_features];
        let rows = inputs.x().len() / self.in_features.max(1);
        let bias = self.bias.as_deref().unwrap_or(&zeros);
        if !self.residual {
            return Ok(reference::dense(inputs.x(), rows, &self.kernel, bias, self.in_features, self.activation));
        }
        let linear = reference::dense(inputs.x(), rows, &self.kernel, bias, self.in_features, Activation::Linear);
        Ok(add_then_activate(linear, inputs.values[1], self.activation))
    }

    fn compile(&self, gpu: &Gpu, precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        let (i, o) = (self.in_features, self.out_features);
        let (kernel, bias) = (&self.kernel, self.bias.as_deref());
        let op = if self.residual {
            ops::Dense::with_residual(gpu, i, o, kernel, bias, self.activation, precision)?
        } else {
            ops::Dense::with_precision(gpu, i, o, kernel, bias, self.activation, precision)?
        };
        Ok(Some(Box::new(op)))
    }
}

/// `activate(linear + residual)`, elementwise: the reference epilogue of a residual op.
pub(crate) fn add_then_activate(mut linear: Vec<f32>, residual: &[f32], activation: Activation) -> Vec<f32> {
    for (y, r) in linear.iter_mut().zip(residual) {
        *y = reference::activation(*y + r, activation);
    }
    linear
}

/// A residual op's second input must have its output's shape (no broadcasting).
pub(crate) fn check_residual_shape(op: &str, residual: bool, inputs: &[&[usize]], out: &[usize]) -> Result<()> {
    match inputs.get(1) {
        Some(shape) if residual && *shape != out => {
            Err(Error::shape(format!("{op} residual"), format!("{out:?}"), format!("{shape:?}")))
        }
        _ => Ok(()),
    }
}

/// The residual binding of a residual kernel's `io`: its second input with its shape.
pub(crate) fn residual_io<'a>(residual: bool, io: &Io<'a>) -> Option<(&'a [usize], &'a wgpu::Buffer)> {
    residual.then(|| (io.shapes.get(1).copied(), io.inputs.get(1).copied())).and_then(|(s, b)| Some((s?, b?)))
}

impl Kernel for ops::Dense {
    fn describe(&self) -> String {
        let residual = if self.residual() { " + residual" } else { "" };
        format!("dense (activation {:?}){residual}", self.activation())
    }

    fn max_rows(&self, _inputs: &[&[usize]], output: &[usize], _binding: usize, groups: usize) -> usize {
        rows_for_items(output[1..output.len() - 1].iter().product(), groups)
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        let residual = residual_io(self.residual(), io);
        Ok(vec![self.prepare_with_residual(ctx.gpu, io.shapes[0], io.inputs[0], residual, io.output)?])
    }
}
