//! InceptionResNetV2's `CustomScaleLayer(scale)`: `inputs[0] + inputs[1] · scale`, the
//! shortcut plus the scaled residual branch, two tensors of one shape. Two dispatches: the
//! channel affine with one channel (`ops::affine`, scale `scale`, shift 0) writes the scaled
//! branch into a scratch buffer, the strided kernel (`ops::strided`) adds the shortcut to it,
//! in Keras' order (the product rounded to f32 first, then the sum).

use super::{Inputs, Io, Kernel, LayerOp, PlanContext, Scratch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::strided::contiguous_strides;
use crate::ops::{Activation, ChannelAffine, Combine, Dispatch, Precision, StridedOp, StridedSpace};

/// `shortcut + residual · scale` (Keras' `CustomScaleLayer` of keras.applications).
#[derive(Clone, Debug)]
pub struct ScaledAdd {
    /// The residual branch's factor.
    pub scale: f32,
}

impl LayerOp for ScaledAdd {
    fn name(&self) -> &'static str {
        "scaled_add"
    }

    fn arity(&self) -> usize {
        2
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        match inputs {
            [shortcut, residual] if shortcut == residual => Ok(shortcut.to_vec()),
            _ => Err(Error::shape("scaled add inputs", "two tensors of one shape", format!("{inputs:?}"))),
        }
    }

    fn settings(&self) -> String {
        format!("scale {:08x}", self.scale.to_bits())
    }

    fn flops(&self, inputs: &[&[usize]]) -> u64 {
        2 * inputs[0].iter().product::<usize>() as u64
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        Ok(inputs.values[0].iter().zip(inputs.values[1]).map(|(&x, &r)| x + r * self.scale).collect())
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(ScaledAddKernel {
            scale: ChannelAffine::new(gpu, &[self.scale], &[0.0], Activation::Linear)?,
            add: StridedOp::new(gpu, Combine::Add)?,
        })))
    }
}

#[derive(Debug)]
struct ScaledAddKernel {
    scale: ChannelAffine,
    add: StridedOp,
}

const SCALED_SCRATCH: &str = "scaled residual";

impl Kernel for ScaledAddKernel {
    fn describe(&self) -> String {
        "scaled add (channel affine, strided add)".into()
    }

    fn scratch(&self, inputs: &[&[usize]]) -> Vec<Scratch> {
        vec![Scratch { key: SCALED_SCRATCH, len: inputs[0].iter().product(), ones: false }]
    }

    fn dispatch_count(&self, _steps: usize, _options: super::RunOptions) -> usize {
        2
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        let scaled = ctx.scratch(SCALED_SCRATCH)?;
        let shape = io.output_shape;
        let strides = contiguous_strides(shape);
        let space = StridedSpace::over(shape, strides.clone(), strides);
        Ok(vec![
            self.scale.prepare(ctx.gpu, shape.iter().product(), io.inputs[1], scaled)?,
            self.add.prepare(ctx.gpu, &space, io.inputs[0], scaled, io.output, 1.0)?,
        ])
    }
}
