//! Layers that move no data: Flatten (a view of NHWC memory order, `(y·W + x)·C + c`),
//! Identity (Dropout and the other inference no-ops) and Masking (the mask it defines is
//! computed on the host from the input; the values pass through).

use super::{Inputs, Kernel, LayerOp};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::Precision;

/// Flatten: `[batch, ...]` → `[batch, product]`, a free view.
#[derive(Clone, Debug)]
pub struct Flatten;

/// A layer that does nothing at inference (Dropout, GaussianNoise, ...).
#[derive(Clone, Debug)]
pub struct Identity;

/// Keras Masking: time steps whose features all equal `mask_value` are skipped by the
/// recurrent layers. Must come right after the input (the mask is computed on the host).
#[derive(Clone, Debug)]
pub struct Masking {
    /// The padding value.
    pub mask_value: f32,
}

macro_rules! view {
    ($layer:ty, $name:literal, |$self:ident| $settings:expr, |$inputs:ident| $shape:expr) => {
        impl LayerOp for $layer {
            fn name(&self) -> &'static str {
                $name
            }

            fn output_shape(&self, $inputs: &[&[usize]]) -> Result<Vec<usize>> {
                $shape
            }

            fn settings(&$self) -> String {
                $settings
            }

            fn is_view(&self) -> bool {
                true
            }

            fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
                Ok(inputs.x().to_vec())
            }

            fn compile(&self, _gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
                Ok(None)
            }

        }
    };
}

view!(Flatten, "flatten", |self| String::new(), |inputs| match inputs[0].split_first() {
    Some((&batch, rest)) => Ok(vec![batch, rest.iter().product()]),
    None => Err(Error::shape("flatten input", "[batch, ...]", "[]")),
});
view!(Identity, "identity", |self| String::new(), |inputs| Ok(inputs[0].to_vec()));
view!(Masking, "masking", |self| format!("{:08x}", self.mask_value.to_bits()), |inputs| Ok(inputs[0].to_vec()));
