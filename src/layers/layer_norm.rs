//! LayerNormalization over the last axis, optionally of the sum with a second input (the
//! residual of a post-LN transformer block, fused). Kernel family: `ops::layer_norm` /
//! `shaders/layer_norm.wgsl`.

use super::{rows_and_features, Inputs, Io, Kernel, LayerOp, PlanContext};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{self, Dispatch, Precision};
use crate::reference;

/// `LayerNorm(x [+ residual]) · gamma + beta` over the last axis.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// Scale `[features]` (ones when Keras' `scale=False`).
    pub gamma: Vec<f32>,
    /// Shift `[features]` (zeros when `center=False`).
    pub beta: Vec<f32>,
    /// Epsilon.
    pub eps: f32,
    /// Reads a second input of the same shape, added before normalising.
    pub residual: bool,
}

impl LayerOp for LayerNorm {
    fn name(&self) -> &'static str {
        "layer_norm"
    }

    fn arity(&self) -> usize {
        1 + usize::from(self.residual)
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let input = inputs[0];
        match input.last() {
            Some(&f) if f == self.gamma.len() && input.len() >= 2 && inputs.iter().all(|s| *s == input) => {
                Ok(input.to_vec())
            }
            _ => Err(Error::shape(
                "layer normalization input",
                format!("[batch, ..., {}]", self.gamma.len()),
                format!("{inputs:?}"),
            )),
        }
    }

    fn settings(&self) -> String {
        let residual = if self.residual { " + residual" } else { "" };
        format!("{:08x}{residual}", self.eps.to_bits())
    }

    fn weights(&self) -> Vec<&[f32]> {
        vec![&self.gamma, &self.beta]
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let residual = inputs.values.get(1).copied();
        Ok(reference::layer_norm(inputs.x(), residual, &self.gamma, &self.beta, self.eps))
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(ops::LayerNorm::new(gpu, &self.gamma, &self.beta, self.eps)?)))
    }
}

impl Kernel for ops::LayerNorm {
    fn describe(&self) -> String {
        "layer_norm".into()
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        let (rows, _) = rows_and_features(io.shapes[0]);
        Ok(vec![ops::LayerNorm::prepare(self, ctx.gpu, rows, io.inputs[0], io.inputs.get(1).copied(), io.output)?])
    }
}
