//! A standalone activation layer (Keras `Activation`, `ReLU`, ...), in place on its input.
//! The fusion pass folds it into a Conv2D or Dense before it when it can. Kernel family:
//! `ops::elementwise` / `shaders/activation.wgsl`. [`CopyingActivation`] is the same map
//! written to a new buffer, for an input that other layers read too (Xception's and
//! NASNet's `relu` on a tensor that also feeds a residual branch).

use super::{Inputs, Io, Kernel, LayerOp, PlanContext};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::{Activation, ActivationOp, ChannelAffine, Dispatch, Precision};
use crate::reference;

/// An elementwise activation.
#[derive(Clone, Debug)]
pub struct ActivationLayer(pub Activation);

impl LayerOp for ActivationLayer {
    fn name(&self) -> &'static str {
        "activation"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        Ok(inputs[0].to_vec())
    }

    fn settings(&self) -> String {
        format!("{:?}", self.0)
    }

    fn is_view(&self) -> bool {
        self.0 == Activation::Linear
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        Ok(inputs.x().iter().map(|&v| reference::activation(v, self.0)).collect())
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        if self.0 == Activation::Linear {
            return Ok(None);
        }
        Ok(Some(Box::new(ActivationOp::new(gpu, self.0)?)))
    }
}

/// An elementwise activation written to its own output buffer, leaving its input as it
/// was (see [`crate::passes::copy_shared_activations`], which puts it where an in-place
/// [`ActivationLayer`] would overwrite a value another layer reads). Its kernel is the
/// channel affine with one channel, scale 1 and shift 0 (`x · 1 + 0` is `x` exactly).
#[derive(Clone, Debug)]
pub struct CopyingActivation(pub Activation);

impl LayerOp for CopyingActivation {
    fn name(&self) -> &'static str {
        "activation"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        Ok(inputs[0].to_vec())
    }

    fn settings(&self) -> String {
        format!("{:?} (copying)", self.0)
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        ActivationLayer(self.0).reference(inputs)
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(ChannelAffine::new(gpu, &[1.0], &[0.0], self.0)?)))
    }
}

impl Kernel for ActivationOp {
    fn describe(&self) -> String {
        format!("activation {:?}", self.activation())
    }

    fn in_place(&self) -> bool {
        true
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        Ok(vec![ActivationOp::prepare(self, ctx.gpu, io.shapes[0].iter().product(), io.inputs[0])?])
    }
}
