//! ConvNeXt's LayerScale (`keras.applications.convnext.LayerScale`): `x · gamma` over the
//! last axis, a trained `gamma` of `projection_dim` values. The per-channel affine kernel
//! (`ops::affine` / `shaders/affine.wgsl`) with shift 0.

use std::sync::Arc;

use super::{rows_and_features, Inputs, Kernel, LayerOp};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{Activation, ChannelAffine, Precision};
use crate::reference;

/// `activate(x · gamma[c])` over the last axis.
#[derive(Clone, Debug)]
pub struct LayerScale {
    /// The per-channel scale.
    pub gamma: Vec<f32>,
    /// Applied after the scale (set by the fusion pass).
    pub activation: Activation,
}

impl LayerOp for LayerScale {
    fn name(&self) -> &'static str {
        "layer_scale"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        match inputs[0].last() {
            Some(&c) if c == self.gamma.len() && inputs[0].len() >= 2 => Ok(inputs[0].to_vec()),
            _ => Err(Error::shape(
                "layer scale input",
                format!("[batch, ..., {}]", self.gamma.len()),
                format!("{:?}", inputs[0]),
            )),
        }
    }

    fn settings(&self) -> String {
        format!("{:?}", self.activation)
    }

    fn weights(&self) -> Vec<&[f32]> {
        vec![&self.gamma]
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
            .map(|(i, &x)| reference::activation(x * self.gamma[i % channels], self.activation))
            .collect())
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        let shift = vec![0.0; self.gamma.len()];
        Ok(Some(Box::new(ChannelAffine::new(gpu, &self.gamma, &shift, self.activation)?)))
    }
}
