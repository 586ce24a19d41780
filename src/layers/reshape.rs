//! Layers that rearrange a sample's axes: Reshape (a free view: Keras reshapes row-major,
//! which is the engine's memory order), Permute and RepeatVector (strided copies, kernel
//! family `ops::strided` / `shaders/strided.wgsl`).

use super::{Inputs, Io, Kernel, LayerOp, PlanContext};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::strided::contiguous_strides;
use crate::ops::{Combine, Dispatch, Precision, StridedOp, StridedSpace};

/// Keras `Reshape(target_shape)`: one sample's values as `target` (None: the one axis Keras
/// writes as -1, inferred from the size).
#[derive(Clone, Debug)]
pub struct Reshape {
    /// The sample shape, batch axis excluded; at most one None.
    pub target: Vec<Option<usize>>,
}

impl LayerOp for Reshape {
    fn name(&self) -> &'static str {
        "reshape"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let input = inputs[0];
        let written = || {
            let dims: Vec<String> = self.target.iter().map(|d| d.map_or("-1".into(), |d| d.to_string())).collect();
            format!("({})", dims.join(", "))
        };
        let (&batch, sample) =
            input.split_first().ok_or_else(|| Error::shape("reshape input", "[batch, ...]", "[]"))?;
        let values: usize = sample.iter().product();
        let known: usize = self.target.iter().flatten().product();
        let free = self.target.iter().filter(|d| d.is_none()).count();
        let inferred = match free {
            0 if known == values => None,
            1 if known > 0 && values.is_multiple_of(known) => Some(values / known),
            _ => return Err(Error::shape("reshape", format!("{} values per sample", values), written())),
        };
        Ok(std::iter::once(batch).chain(self.target.iter().map(|d| d.or(inferred).unwrap_or(0))).collect())
    }

    fn settings(&self) -> String {
        format!("{:?}", self.target)
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

/// A layer that is one strided copy of its input.
trait StridedCopy: LayerOp + Clone + 'static {
    /// The copy's space over the output (strides into the input).
    fn space(&self, input: &[usize], output: &[usize]) -> StridedSpace;

    fn copy_reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let output = self.output_shape(inputs.shapes)?;
        let mut value = vec![0.0; output.iter().product()];
        self.space(inputs.shape(), &output).reference(Combine::First, inputs.x(), &[], 1.0, &mut value);
        Ok(value)
    }

    fn copy_kernel(&self, gpu: &Gpu) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(CopyKernel { layer: self.clone(), op: StridedOp::new(gpu, Combine::First)? })))
    }
}

#[derive(Debug)]
struct CopyKernel<L> {
    layer: L,
    op: StridedOp,
}

impl<L: StridedCopy> Kernel for CopyKernel<L> {
    fn describe(&self) -> String {
        format!("{} ({})", self.layer.name(), self.layer.settings())
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        let space = self.layer.space(io.shapes[0], io.output_shape);
        Ok(vec![self.op.prepare(ctx.gpu, &space, io.inputs[0], io.inputs[0], io.output, 1.0)?])
    }
}

/// Keras `Permute(dims)`: output sample axis `i` is input sample axis `order[i]` (0-based
/// here; Keras writes them 1-based).
#[derive(Clone, Debug)]
pub struct Permute {
    /// A permutation of `0..rank` of the sample axes.
    pub order: Vec<usize>,
}

impl LayerOp for Permute {
    fn name(&self) -> &'static str {
        "permute"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let input = inputs[0];
        let mut seen = vec![false; self.order.len()];
        let valid = input.len() == self.order.len() + 1
            && self.order.iter().all(|&axis| axis < seen.len() && !std::mem::replace(&mut seen[axis], true));
        if !valid {
            return Err(Error::shape(
                "permute input",
                format!("a sample of {} axes for the permutation {:?}", self.order.len(), self.order),
                format!("{input:?}"),
            ));
        }
        Ok(std::iter::once(input[0]).chain(self.order.iter().map(|&axis| input[axis + 1])).collect())
    }

    fn settings(&self) -> String {
        format!("{:?}", self.order)
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        self.copy_reference(inputs)
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        self.copy_kernel(gpu)
    }
}

impl StridedCopy for Permute {
    fn space(&self, input: &[usize], output: &[usize]) -> StridedSpace {
        let own = contiguous_strides(input);
        let a = std::iter::once(own[0]).chain(self.order.iter().map(|&axis| own[axis + 1])).collect();
        StridedSpace::over(output, a, vec![0; output.len()])
    }
}

/// Keras `RepeatVector(n)`: `[batch, features]` → `[batch, n, features]`.
#[derive(Clone, Debug)]
pub struct RepeatVector {
    /// Repetitions.
    pub times: usize,
}

impl LayerOp for RepeatVector {
    fn name(&self) -> &'static str {
        "repeat_vector"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        match inputs[0] {
            &[batch, features] => Ok(vec![batch, self.times, features]),
            other => Err(Error::shape("repeat_vector input", "[batch, features]", format!("{other:?}"))),
        }
    }

    fn settings(&self) -> String {
        self.times.to_string()
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        self.copy_reference(inputs)
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        self.copy_kernel(gpu)
    }
}

impl StridedCopy for RepeatVector {
    fn space(&self, input: &[usize], output: &[usize]) -> StridedSpace {
        StridedSpace::over(output, vec![input[1], 0, 1], vec![0; 3])
    }
}

/// `len` entries of one sample axis from `start` (ONNX `Slice` with step 1, and `Gather`
/// of one constant index, which also drops the axis: `keep_axis` false).
#[derive(Clone, Debug)]
pub struct SliceAxis {
    /// The sample axis (0 is the first axis after the batch).
    pub axis: usize,
    /// First entry taken.
    pub start: usize,
    /// Entries taken.
    pub len: usize,
    /// Whether the output keeps the axis (of `len` entries) or drops it (`len` 1).
    pub keep_axis: bool,
}

impl LayerOp for SliceAxis {
    fn name(&self) -> &'static str {
        "slice"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let input = inputs[0];
        let axis = self.axis + 1;
        let fits = axis < input.len() && self.len > 0 && self.start + self.len <= input[axis];
        if !fits || (!self.keep_axis && self.len != 1) {
            return Err(Error::shape(
                "slice input",
                format!("an axis {} of at least {} entries", self.axis, self.start + self.len),
                format!("{input:?}"),
            ));
        }
        let mut out = input.to_vec();
        if self.keep_axis {
            out[axis] = self.len;
        } else {
            out.remove(axis);
        }
        Ok(out)
    }

    fn settings(&self) -> String {
        format!(
            "axis {} [{}..{}]{}",
            self.axis,
            self.start,
            self.start + self.len,
            if self.keep_axis { "" } else { " drop" }
        )
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        self.copy_reference(inputs)
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        self.copy_kernel(gpu)
    }
}

impl StridedCopy for SliceAxis {
    fn space(&self, input: &[usize], output: &[usize]) -> StridedSpace {
        let axis = self.axis + 1;
        let own = contiguous_strides(input);
        // The output's axes are the input's, with the sliced axis kept (shorter) or dropped.
        let a: Vec<usize> =
            own.iter().enumerate().filter(|&(i, _)| self.keep_axis || i != axis).map(|(_, &s)| s).collect();
        let mut space = StridedSpace::over(output, a, vec![0; output.len()]);
        space.a_offset = self.start * own[axis];
        space
    }
}
