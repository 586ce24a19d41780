//! Keras UnitNormalization: `x · min(rsqrt(Σ x²), 1e12)` along a run of axes (Keras 3
//! `ops.normalize(order=2, epsilon=1e-12)`, i.e. `x / max(‖x‖, 1e-12)`), in place. Kernel
//! family: `ops::softmax` / `shaders/softmax.wgsl` (MODE 2).

use std::ops::Range;

use super::softmax::{check_axes, reference_along, AxisKernel};
use super::{Inputs, Kernel, LayerOp};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::{AxisMode, AxisOp, Precision};

/// L2 normalisation along `axes` (batch axis = 0; one contiguous run).
#[derive(Clone, Debug)]
pub struct UnitNorm {
    /// The axes normalised together (Keras `axis`, resolved against the input's rank).
    pub axes: Range<usize>,
}

impl LayerOp for UnitNorm {
    fn name(&self) -> &'static str {
        "unit_normalization"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        check_axes("unit normalization input", &self.axes, inputs[0])
    }

    fn settings(&self) -> String {
        format!("axes {:?}", self.axes)
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        reference_along(inputs.x(), inputs.shape(), &self.axes, AxisMode::L2Normalize)
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(AxisKernel { op: AxisOp::new(gpu, AxisMode::L2Normalize)?, axes: self.axes.clone() })))
    }
}
