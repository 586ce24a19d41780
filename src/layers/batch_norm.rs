//! BatchNormalization at inference: `γ·(x − μ)/√(σ² + ε) + β` over the last axis, with the
//! moving statistics from the file (`scale=False`: no γ; `center=False`: no β). A per-channel
//! affine kernel (`ops::affine` / `shaders/affine.wgsl`) with an activation fused; the
//! folding pass puts it into the Conv2D or Dense before it when nothing else reads that
//! op's output.

use std::sync::Arc;

use super::{rows_and_features, Inputs, Io, Kernel, LayerOp, PlanContext};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{Activation, ChannelAffine, Dispatch, Precision};
use crate::reference;

/// Inference BatchNormalization over the last axis.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    /// Scale γ `[channels]` (None when `scale=False`).
    pub gamma: Option<Vec<f32>>,
    /// Shift β `[channels]` (None when `center=False`).
    pub beta: Option<Vec<f32>>,
    /// Moving mean μ `[channels]`.
    pub mean: Vec<f32>,
    /// Moving variance σ² `[channels]`.
    pub variance: Vec<f32>,
    /// ε.
    pub eps: f32,
    /// Applied after the affine map (set by the fusion pass).
    pub activation: Activation,
}

impl BatchNorm {
    /// Channels normalised.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// The map as `x · scale + shift` per channel, computed in f32 as Keras computes it:
    /// `inv = rsqrt(σ² + ε) · γ`, `shift = β − μ · inv`.
    pub fn scale_and_shift(&self) -> (Vec<f32>, Vec<f32>) {
        let scale: Vec<f32> = (0..self.channels())
            .map(|c| {
                let inv = 1.0 / (self.variance[c] + self.eps).sqrt();
                self.gamma.as_ref().map_or(inv, |g| inv * g[c])
            })
            .collect();
        let shift = (0..self.channels())
            .map(|c| {
                let shift = -self.mean[c] * scale[c];
                self.beta.as_ref().map_or(shift, |b| shift + b[c])
            })
            .collect();
        (scale, shift)
    }
}

impl LayerOp for BatchNorm {
    fn name(&self) -> &'static str {
        "batch_norm"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let input = inputs[0];
        let sizes_agree =
            [&self.gamma, &self.beta].iter().all(|v| v.as_ref().is_none_or(|v| v.len() == self.channels()))
                && self.variance.len() == self.channels();
        match input.last() {
            Some(&c) if c == self.channels() && input.len() >= 2 && sizes_agree => Ok(input.to_vec()),
            _ => Err(Error::shape(
                "batch normalization input",
                format!("[batch, ..., {}]", self.channels()),
                format!("{input:?}"),
            )),
        }
    }

    fn settings(&self) -> String {
        let (scale, center) = (self.gamma.is_some(), self.beta.is_some());
        format!("{:08x} scale {scale} center {center} {:?}", self.eps.to_bits(), self.activation)
    }

    fn weights(&self) -> Vec<&[f32]> {
        let gamma = self.gamma.as_deref().unwrap_or(&[]);
        let beta = self.beta.as_deref().unwrap_or(&[]);
        vec![gamma, beta, &self.mean, &self.variance]
    }

    fn with_activation(&self, activation: Activation) -> Option<Arc<dyn LayerOp>> {
        (self.activation == Activation::Linear)
            .then(|| Arc::new(Self { activation, ..self.clone() }) as Arc<dyn LayerOp>)
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let (_, channels) = rows_and_features(inputs.shape());
        Ok(inputs
            .x()
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let c = i % channels;
                let normal = (x as f64 - self.mean[c] as f64) / (self.variance[c] as f64 + self.eps as f64).sqrt();
                let gamma = self.gamma.as_ref().map_or(1.0, |g| g[c] as f64);
                let beta = self.beta.as_ref().map_or(0.0, |b| b[c] as f64);
                reference::activation((gamma * normal + beta) as f32, self.activation)
            })
            .collect())
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        let (scale, shift) = self.scale_and_shift();
        Ok(Some(Box::new(ChannelAffine::new(gpu, &scale, &shift, self.activation)?)))
    }
}

impl Kernel for ChannelAffine {
    fn describe(&self) -> String {
        format!("channel affine (activation {:?})", self.activation())
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        Ok(vec![ChannelAffine::prepare(self, ctx.gpu, io.shapes[0].iter().product(), io.inputs[0], io.output)?])
    }
}
