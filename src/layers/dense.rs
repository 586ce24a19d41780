//! Dense over the last axis (`[.., in] → [.., out]`, kernel `[in, out]`), with bias and
//! activation fused. Kernel family: `ops::dense` / `shaders/dense.wgsl`.

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
}

impl LayerOp for Dense {
    fn name(&self) -> &'static str {
        "dense"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        match inputs[0].split_last() {
            Some((&last, rest)) if last == self.in_features && !rest.is_empty() => {
                Ok(rest.iter().copied().chain([self.out_features]).collect())
            }
            _ => Err(Error::shape(
                "dense input",
                format!("[batch, ..., {}]", self.in_features),
                format!("{:?}", inputs[0]),
            )),
        }
    }

    fn settings(&self) -> String {
        format!("{} {} {:?} bias {}", self.in_features, self.out_features, self.activation, self.bias.is_some())
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
        if self.activation != Activation::Linear || scale.len() != self.out_features {
            return None;
        }
        let (kernel, bias) = fold_channel_affine(&self.kernel, self.bias.as_deref(), scale, shift)?;
        Some(Arc::new(Self { kernel, bias: Some(bias), ..self.clone() }))
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let zeros = vec![0.0; self.out_features];
        let rows = inputs.x().len() / self.in_features.max(1);
        let bias = self.bias.as_deref().unwrap_or(&zeros);
        Ok(reference::dense(inputs.x(), rows, &self.kernel, bias, self.in_features, self.activation))
    }

    fn compile(&self, gpu: &Gpu, precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        let (i, o) = (self.in_features, self.out_features);
        let op = ops::Dense::with_precision(gpu, i, o, &self.kernel, self.bias.as_deref(), self.activation, precision)?;
        Ok(Some(Box::new(op)))
    }
}

impl Kernel for ops::Dense {
    fn describe(&self) -> String {
        format!("dense (activation {:?})", self.activation())
    }

    fn max_rows(&self, _inputs: &[&[usize]], output: &[usize], _binding: usize, groups: usize) -> usize {
        rows_for_items(output[1..output.len() - 1].iter().product(), groups)
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        Ok(vec![ops::Dense::prepare(self, ctx.gpu, io.shapes[0], io.inputs[0], io.output)?])
    }
}
