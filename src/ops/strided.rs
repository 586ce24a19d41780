//! One elementwise kernel over strided views (`shaders/strided.wgsl`): broadcasting merges
//! (Add, Subtract, Multiply, Average, Maximum, Minimum, and Keras 3's `x + 3.0`-style
//! operation nodes), Concatenate (a slab of the output per input), Permute and RepeatVector
//! (a strided copy). The host describes the iteration space and each operand's strides as a
//! [`StridedSpace`]; [`StridedSpace::simplify`] merges axes so that most calls reach the
//! kernel's plain path (no coordinate arithmetic).

use super::{linear_dispatch, prepare_dispatch, Dispatch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::shaders;

/// The most axes the kernel's iteration space has (after [`StridedSpace::simplify`]).
pub const MAX_RANK: usize = 8;

/// How the two operands combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Combine {
    /// The first operand, copied (Permute, RepeatVector, Concatenate).
    First,
    /// `a + b`.
    Add,
    /// `a - b`.
    Subtract,
    /// `a · b`.
    Multiply,
    /// `a / b`.
    Divide,
    /// `max(a, b)`.
    Maximum,
    /// `min(a, b)`.
    Minimum,
    /// `|a - b|` (a twin head's `--lambda abs-diff`).
    AbsDifference,
    /// `(a - b)²` (`--lambda squared-diff`).
    SquaredDifference,
}

impl Combine {
    /// Every variant (one pipeline each).
    pub const ALL: [Combine; 9] = [
        Combine::First,
        Combine::Add,
        Combine::Subtract,
        Combine::Multiply,
        Combine::Divide,
        Combine::Maximum,
        Combine::Minimum,
        Combine::AbsDifference,
        Combine::SquaredDifference,
    ];

    /// The shader's `OP` code.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The override constants of its pipeline.
    pub fn constants(self) -> [(&'static str, f64); 1] {
        [("OP", self.code() as f64)]
    }

    /// What the kernel computes, on the CPU (WGSL's `max` / `min` as Rust's for non-NaN).
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            Combine::First => a,
            Combine::Add => a + b,
            Combine::Subtract => a - b,
            Combine::Multiply => a * b,
            Combine::Divide => a / b,
            Combine::Maximum => a.max(b),
            Combine::Minimum => a.min(b),
            Combine::AbsDifference => (a - b).abs(),
            Combine::SquaredDifference => (a - b) * (a - b),
        }
    }
}

/// Row-major strides of a contiguous tensor of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for axis in (0..shape.len().saturating_sub(1)).rev() {
        strides[axis] = strides[axis + 1] * shape[axis + 1];
    }
    strides
}

/// The numpy broadcast of two shapes (right-aligned; a size 1 stretches), None when they do
/// not broadcast.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let at = |s: &[usize], axis: usize| if axis + s.len() >= rank { s[axis + s.len() - rank] } else { 1 };
    (0..rank)
        .map(|axis| match (at(a, axis), at(b, axis)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// The strides that read a contiguous tensor of `shape` over the iteration space `space`
/// it broadcasts to (right-aligned; 0 along stretched axes).
pub fn broadcast_strides(shape: &[usize], space: &[usize]) -> Vec<usize> {
    let own = contiguous_strides(shape);
    let skip = space.len() - shape.len();
    (0..space.len())
        .map(|axis| match axis.checked_sub(skip) {
            Some(k) if shape[k] == space[axis] => own[k],
            _ => 0,
        })
        .collect()
}

/// An iteration space (row-major over `dims`) and each operand's strides over it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StridedSpace {
    /// Sizes of the iteration axes.
    pub dims: Vec<usize>,
    /// Strides of the first operand.
    pub a: Vec<usize>,
    /// Strides of the second operand (ignored by [`Combine::First`]).
    pub b: Vec<usize>,
    /// Strides of the output.
    pub out: Vec<usize>,
    /// Where the output's index 0 is.
    pub out_offset: usize,
    /// Where the first operand's index 0 is (a twin head reads the right twin's rows of the
    /// stacked `[2N, ...]` embeddings from row N).
    pub a_offset: usize,
    /// Where the second operand's index 0 is.
    pub b_offset: usize,
}

impl StridedSpace {
    /// A contiguous output of `dims`, reading `a` and `b` with the given strides.
    pub fn over(dims: &[usize], a: Vec<usize>, b: Vec<usize>) -> Self {
        StridedSpace {
            out: contiguous_strides(dims),
            dims: dims.to_vec(),
            a,
            b,
            out_offset: 0,
            a_offset: 0,
            b_offset: 0,
        }
    }

    /// Number of indices.
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// Whether the space is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same space with size-1 axes dropped and neighbouring axes merged wherever every
    /// operand steps through them as one (same values, fewer axes).
    pub fn simplify(&self) -> Self {
        let mut dims: Vec<usize> = Vec::new();
        let mut strides: [Vec<usize>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for axis in 0..self.dims.len() {
            let size = self.dims[axis];
            if size == 1 {
                continue;
            }
            let own = [self.a[axis], self.b[axis], self.out[axis]];
            let merges = dims.last().is_some() && (0..3).all(|o| *strides[o].last().unwrap_or(&0) == own[o] * size);
            if merges {
                *dims.last_mut().unwrap_or(&mut 0) *= size;
                for o in 0..3 {
                    if let Some(s) = strides[o].last_mut() {
                        *s = own[o];
                    }
                }
            } else {
                dims.push(size);
                for o in 0..3 {
                    strides[o].push(own[o]);
                }
            }
        }
        let [a, b, out] = strides;
        StridedSpace { dims, a, b, out, ..*self }
    }

    /// Index `i`'s offsets into a, b and the output (the base offsets included).
    fn offsets(&self, mut i: usize) -> [usize; 3] {
        let mut offsets = [self.a_offset, self.b_offset, self.out_offset];
        for axis in (0..self.dims.len()).rev() {
            let c = i % self.dims[axis];
            i /= self.dims[axis];
            offsets[0] += c * self.a[axis];
            offsets[1] += c * self.b[axis];
            offsets[2] += c * self.out[axis];
        }
        offsets
    }

    /// The kernel on the CPU: writes `combine(a, b) / divisor` into `output` over the space.
    pub fn reference(&self, combine: Combine, a: &[f32], b: &[f32], divisor: f32, output: &mut [f32]) {
        for i in 0..self.len() {
            let [ia, ib, io] = self.offsets(i);
            let y = if combine == Combine::First { 0.0 } else { b[ib] };
            output[io] = combine.apply(a[ia], y) / divisor;
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct StridedParams {
    len: u32,
    rank: u32,
    plain: u32,
    divisor: f32,
    out_offset: u32,
    a_offset: u32,
    b_offset: u32,
    _pad: u32,
    dims: [u32; MAX_RANK],
    a_strides: [u32; MAX_RANK],
    b_strides: [u32; MAX_RANK],
    out_strides: [u32; MAX_RANK],
}

/// The strided elementwise kernel for one [`Combine`].
#[derive(Debug)]
pub struct StridedOp {
    combine: Combine,
    pipeline: wgpu::ComputePipeline,
}

impl StridedOp {
    /// Compiles the kernel for `combine`.
    pub fn new(gpu: &Gpu, combine: Combine) -> Result<Self> {
        Ok(Self { combine, pipeline: gpu.pipeline(&shaders::STRIDED, "strided", &combine.constants())? })
    }

    /// How it combines.
    pub fn combine(&self) -> Combine {
        self.combine
    }

    /// A dispatch computing `combine(a, b) / divisor` over `space` into `output` (`b` is
    /// bound but not read for [`Combine::First`]).
    pub fn prepare(
        &self,
        gpu: &Gpu,
        space: &StridedSpace,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        output: &wgpu::Buffer,
        divisor: f32,
    ) -> Result<Dispatch> {
        let space = space.simplify();
        let rank = space.dims.len();
        if rank > MAX_RANK {
            return Err(Error::LimitExceeded {
                what: "axes of a strided elementwise op (after merging)".into(),
                needed: rank as u64,
                limit: MAX_RANK as u64,
            });
        }
        let limit = u32::MAX as usize;
        let len = space.len();
        let reach = |strides: &[usize]| space.dims.iter().zip(strides).map(|(d, s)| (d - 1) * s).sum::<usize>();
        let largest = [
            len,
            space.a_offset + reach(&space.a),
            space.b_offset + reach(&space.b),
            space.out_offset + reach(&space.out),
        ];
        if let Some(&needed) = largest.iter().find(|&&n| n > limit) {
            return Err(Error::LimitExceeded {
                what: "values a strided elementwise op indexes".into(),
                needed: needed as u64,
                limit: limit as u64,
            });
        }
        let pack = |values: &[usize]| {
            let mut packed = [0u32; MAX_RANK];
            for (p, &v) in packed.iter_mut().zip(values) {
                *p = v as u32;
            }
            packed
        };
        let contiguous = |strides: &[usize]| rank <= 1 && strides.iter().all(|&s| s == 1);
        let plain =
            contiguous(&space.a) && (self.combine == Combine::First || contiguous(&space.b)) && contiguous(&space.out);
        let params = StridedParams {
            len: len as u32,
            rank: rank as u32,
            plain: plain as u32,
            divisor,
            out_offset: space.out_offset as u32,
            a_offset: space.a_offset as u32,
            b_offset: space.b_offset as u32,
            _pad: 0,
            dims: pack(&space.dims),
            a_strides: pack(&space.a),
            b_strides: pack(&space.b),
            out_strides: pack(&space.out),
        };
        let workgroups = linear_dispatch(gpu, "strided", len, 256)?;
        Ok(prepare_dispatch(gpu, "strided", &self.pipeline, &params, &[a, b, output], workgroups))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shape(&[2, 5, 5, 4], &[2, 1, 1, 4]), Some(vec![2, 5, 5, 4]));
        assert_eq!(broadcast_shape(&[3], &[2, 1]), Some(vec![2, 3]));
        assert_eq!(broadcast_shape(&[2, 3], &[2, 4]), None);
        assert_eq!(broadcast_strides(&[2, 1, 1, 4], &[2, 5, 5, 4]), vec![4, 0, 0, 1]);
        assert_eq!(broadcast_strides(&[1], &[2, 3]), vec![0, 0]);
    }

    #[test]
    fn simplify_merges_what_steps_as_one_and_keeps_the_values() {
        let dims = [2, 5, 5, 4];
        let space = StridedSpace::over(&dims, contiguous_strides(&dims), broadcast_strides(&[2, 1, 1, 4], &dims));
        let simple = space.simplify();
        assert_eq!(simple.dims, vec![2, 25, 4], "{simple:?}");
        let a: Vec<f32> = (0..200).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..8).map(|i| 1000.0 * i as f32).collect();
        let (mut want, mut got) = (vec![0.0; 200], vec![0.0; 200]);
        space.reference(Combine::Add, &a, &b, 1.0, &mut want);
        simple.reference(Combine::Add, &a, &b, 1.0, &mut got);
        assert_eq!(want, got);
        assert_eq!(want[101], 101.0 + 5000.0, "sample 1, channel 1 reads b[1 * 4 + 1]");
        let same = StridedSpace::over(&dims, contiguous_strides(&dims), contiguous_strides(&dims)).simplify();
        assert_eq!(same.dims, vec![200]);
    }
}
