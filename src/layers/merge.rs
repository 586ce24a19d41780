//! Merges: Keras' Add, Subtract, Multiply, Average, Maximum and Minimum layers over any
//! number of inputs with numpy broadcasting (squeeze-excite's `[N,1,1,C] · [N,H,W,C]`),
//! Keras 3's operation nodes that combine two tensors (`x - y`, `x / y`) or a tensor and a
//! constant (`x + 3.0`, `x * (1/6)`, `2 - x`: [`Scalar`]), and Concatenate along any axis
//! but the batch. Kernel family: `ops::strided` / `shaders/strided.wgsl`, one dispatch per
//! input after the first (a scratch buffer between, for three or more).

use super::{Inputs, Io, Kernel, LayerOp, PlanContext, Scratch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::strided::{broadcast_shape, broadcast_strides, contiguous_strides};
use crate::ops::{Combine, Dispatch, Precision, StridedOp, StridedSpace};

/// What a [`Merge`] computes over its inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeKind {
    /// `a + b + ...` (Keras `Add`, `x + y`).
    Add,
    /// `a - b` (Keras `Subtract`, two inputs).
    Subtract,
    /// `a · b · ...` (Keras `Multiply`).
    Multiply,
    /// `a / b` (Keras 3 `x / y`, two inputs).
    Divide,
    /// `(a + b + ...) / n` (Keras `Average`).
    Average,
    /// Elementwise maximum (Keras `Maximum`).
    Maximum,
    /// Elementwise minimum (Keras `Minimum`).
    Minimum,
    /// `|a - b|` (a twin head's Lambda named by `--lambda abs-diff`).
    AbsDifference,
    /// `(a - b)²` (`--lambda squared-diff`).
    SquaredDifference,
}

impl MergeKind {
    /// The kernel's combination (Average sums, then divides at the last input).
    fn combine(self) -> Combine {
        match self {
            MergeKind::Add | MergeKind::Average => Combine::Add,
            MergeKind::Subtract => Combine::Subtract,
            MergeKind::Multiply => Combine::Multiply,
            MergeKind::Divide => Combine::Divide,
            MergeKind::Maximum => Combine::Maximum,
            MergeKind::Minimum => Combine::Minimum,
            MergeKind::AbsDifference => Combine::AbsDifference,
            MergeKind::SquaredDifference => Combine::SquaredDifference,
        }
    }

    fn name(self) -> &'static str {
        match self {
            MergeKind::Add => "add",
            MergeKind::Subtract => "subtract",
            MergeKind::Multiply => "multiply",
            MergeKind::Divide => "divide",
            MergeKind::Average => "average",
            MergeKind::Maximum => "maximum",
            MergeKind::Minimum => "minimum",
            MergeKind::AbsDifference => "abs-diff",
            MergeKind::SquaredDifference => "squared-diff",
        }
    }

    /// Whether it takes exactly two inputs (else two or more).
    pub fn is_binary(self) -> bool {
        matches!(
            self,
            MergeKind::Subtract | MergeKind::Divide | MergeKind::AbsDifference | MergeKind::SquaredDifference
        )
    }
}

/// A merge of `arity` inputs whose shapes broadcast to one (batch axis included).
#[derive(Clone, Debug)]
pub struct Merge {
    /// What it computes.
    pub kind: MergeKind,
    /// How many inputs (2 for Subtract and Divide; at least 2 for the others).
    pub arity: usize,
}

impl Merge {
    /// A merge of `arity` inputs, checked against what `kind` takes.
    pub fn new(kind: MergeKind, arity: usize) -> Result<Self> {
        let ok = if kind.is_binary() { arity == 2 } else { arity >= 2 };
        if !ok {
            let wants = if kind.is_binary() { "exactly 2" } else { "2 or more" };
            return Err(Error::shape(format!("{} inputs", kind.name()), wants, arity.to_string()));
        }
        Ok(Merge { kind, arity })
    }

    /// Keras `Add` of two inputs (a residual connection).
    pub fn add() -> Self {
        Merge { kind: MergeKind::Add, arity: 2 }
    }

    /// The spaces of its steps: step `j` (1..arity) combines the running value (input 0 at
    /// step 1) with input `j`, over the output shape.
    fn steps(&self, shapes: &[&[usize]], output: &[usize]) -> Vec<(StridedSpace, f32)> {
        (1..self.arity)
            .map(|j| {
                let a = if j == 1 { broadcast_strides(shapes[0], output) } else { contiguous_strides(output) };
                let space = StridedSpace::over(output, a, broadcast_strides(shapes[j], output));
                let last = j + 1 == self.arity;
                let divisor = if last && self.kind == MergeKind::Average { self.arity as f32 } else { 1.0 };
                (space, divisor)
            })
            .collect()
    }
}

impl LayerOp for Merge {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn arity(&self) -> usize {
        self.arity
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let mut shape = inputs[0].to_vec();
        for other in &inputs[1..] {
            shape = broadcast_shape(&shape, other).ok_or_else(|| {
                Error::shape(
                    format!("{} inputs (broadcasting)", self.kind.name()),
                    format!("{shape:?}"),
                    format!("{other:?}"),
                )
            })?;
        }
        if shape.first() != inputs[0].first() || inputs.iter().any(|s| s.len() != shape.len()) {
            return Err(Error::shape(
                format!("{} inputs", self.kind.name()),
                "inputs of one rank and one batch",
                format!("{inputs:?}"),
            ));
        }
        Ok(shape)
    }

    fn settings(&self) -> String {
        // Two inputs write nothing, so a two-input Add fingerprints as it always has.
        if self.arity == 2 {
            String::new()
        } else {
            format!("{} inputs", self.arity)
        }
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let output = self.output_shape(inputs.shapes)?;
        let mut value = vec![0.0; output.iter().product()];
        for (j, (space, divisor)) in self.steps(inputs.shapes, &output).into_iter().enumerate() {
            let running = if j == 0 { inputs.values[0].to_vec() } else { value.clone() };
            space.reference(self.kind.combine(), &running, inputs.values[j + 1], divisor, &mut value);
        }
        Ok(value)
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(MergeKernel { merge: self.clone(), op: StridedOp::new(gpu, self.kind.combine())? })))
    }
}

#[derive(Debug)]
struct MergeKernel {
    merge: Merge,
    op: StridedOp,
}

const MERGE_SCRATCH: &str = "merge running value";

impl Kernel for MergeKernel {
    fn describe(&self) -> String {
        self.merge.kind.name().into()
    }

    fn scratch(&self, inputs: &[&[usize]]) -> Vec<Scratch> {
        match self.merge.output_shape(inputs) {
            Ok(shape) if self.merge.arity > 2 => {
                vec![Scratch { key: MERGE_SCRATCH, len: shape.iter().product(), ones: false }]
            }
            _ => Vec::new(),
        }
    }

    fn dispatch_count(&self, _steps: usize, _options: super::RunOptions) -> usize {
        self.merge.arity - 1
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        let steps = self.merge.steps(io.shapes, io.output_shape);
        let last = steps.len();
        let scratch = if last > 1 { Some(ctx.scratch(MERGE_SCRATCH)?) } else { None };
        // Destinations alternate so that the last step writes the output.
        let target = |j: usize| if (last - j).is_multiple_of(2) { io.output } else { scratch.unwrap_or(io.output) };
        let mut dispatches = Vec::with_capacity(last);
        for (j, (space, divisor)) in steps.iter().enumerate() {
            let step = j + 1;
            let running = if step == 1 { io.inputs[0] } else { target(step - 1) };
            dispatches.push(self.op.prepare(ctx.gpu, space, running, io.inputs[step], target(step), *divisor)?);
        }
        Ok(dispatches)
    }
}

/// A tensor combined with a constant (Keras 3's `x + 3.0`, `x * (1/6)`, `2.0 - x`).
#[derive(Clone, Debug)]
pub struct Scalar {
    /// How the two combine.
    pub combine: Combine,
    /// The constant.
    pub value: f32,
    /// The constant is the first operand (`2.0 - x`), not the second (`x - 2.0`).
    pub constant_first: bool,
}

impl Scalar {
    fn space(&self, shape: &[usize]) -> StridedSpace {
        let (own, constant) = (contiguous_strides(shape), vec![0; shape.len()]);
        if self.constant_first {
            StridedSpace::over(shape, constant, own)
        } else {
            StridedSpace::over(shape, own, constant)
        }
    }
}

impl LayerOp for Scalar {
    fn name(&self) -> &'static str {
        "scalar"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        Ok(inputs[0].to_vec())
    }

    fn settings(&self) -> String {
        let side = if self.constant_first { "constant first" } else { "constant second" };
        format!("{:?} {:08x} {side}", self.combine, self.value.to_bits())
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        Ok(inputs
            .x()
            .iter()
            .map(|&x| {
                if self.constant_first {
                    self.combine.apply(self.value, x)
                } else {
                    self.combine.apply(x, self.value)
                }
            })
            .collect())
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        let constant = crate::ops::weight_buffer(gpu, "scalar constant", &[self.value])?;
        Ok(Some(Box::new(ScalarKernel { scalar: self.clone(), op: StridedOp::new(gpu, self.combine)?, constant })))
    }
}

#[derive(Debug)]
struct ScalarKernel {
    scalar: Scalar,
    op: StridedOp,
    constant: wgpu::Buffer,
}

impl Kernel for ScalarKernel {
    fn describe(&self) -> String {
        format!("scalar {:?} {}", self.scalar.combine, self.scalar.value)
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        let space = self.scalar.space(io.shapes[0]);
        let (a, b) =
            if self.scalar.constant_first { (&self.constant, io.inputs[0]) } else { (io.inputs[0], &self.constant) };
        Ok(vec![self.op.prepare(ctx.gpu, &space, a, b, io.output, 1.0)?])
    }
}

/// Keras `Concatenate`: the inputs side by side along `axis` (of the full shape, batch axis
/// 0; at least 1), all other axes equal.
#[derive(Clone, Debug)]
pub struct Concatenate {
    /// The axis, batch axis included (1.., never the batch).
    pub axis: usize,
    /// How many inputs (at least 1).
    pub arity: usize,
}

impl Concatenate {
    /// Input `k`'s copy: its own space, written into the output's slab at its offset.
    fn slabs(&self, shapes: &[&[usize]], output: &[usize]) -> Vec<StridedSpace> {
        let out = contiguous_strides(output);
        let mut offset = 0;
        shapes
            .iter()
            .map(|shape| {
                let space = StridedSpace {
                    dims: shape.to_vec(),
                    a: contiguous_strides(shape),
                    b: vec![0; shape.len()],
                    out: out.clone(),
                    out_offset: offset * out[self.axis],
                    a_offset: 0,
                    b_offset: 0,
                };
                offset += shape[self.axis];
                space
            })
            .collect()
    }
}

impl LayerOp for Concatenate {
    fn name(&self) -> &'static str {
        "concatenate"
    }

    fn arity(&self) -> usize {
        self.arity
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let first = inputs[0];
        if self.axis == 0 || self.axis >= first.len() {
            return Err(Error::shape("concatenate axis", format!("1..{}", first.len()), self.axis.to_string()));
        }
        let mut shape = first.to_vec();
        shape[self.axis] = 0;
        for input in inputs {
            let others_match = input.len() == first.len()
                && input.iter().zip(first).enumerate().all(|(axis, (a, b))| axis == self.axis || a == b);
            if !others_match {
                return Err(Error::shape(
                    format!("concatenate inputs (axis {})", self.axis),
                    format!("{first:?} on every other axis"),
                    format!("{input:?}"),
                ));
            }
            shape[self.axis] += input[self.axis];
        }
        Ok(shape)
    }

    fn settings(&self) -> String {
        format!("axis {} inputs {}", self.axis, self.arity)
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let output = self.output_shape(inputs.shapes)?;
        let mut value = vec![0.0; output.iter().product()];
        for (space, input) in self.slabs(inputs.shapes, &output).iter().zip(inputs.values) {
            space.reference(Combine::First, input, &[], 1.0, &mut value);
        }
        Ok(value)
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(ConcatenateKernel { layer: self.clone(), op: StridedOp::new(gpu, Combine::First)? })))
    }
}

#[derive(Debug)]
struct ConcatenateKernel {
    layer: Concatenate,
    op: StridedOp,
}

impl Kernel for ConcatenateKernel {
    fn describe(&self) -> String {
        format!("concatenate (axis {})", self.layer.axis)
    }

    fn dispatch_count(&self, _steps: usize, _options: super::RunOptions) -> usize {
        self.layer.arity
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        let slabs = self.layer.slabs(io.shapes, io.output_shape);
        slabs
            .iter()
            .zip(io.inputs)
            .map(|(space, input)| self.op.prepare(ctx.gpu, space, input, input, io.output, 1.0))
            .collect()
    }
}
