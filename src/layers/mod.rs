//! Layers, one unit each: a layer's settings and weights, its shape rule, parameter count,
//! FLOPs, plain-Rust CPU reference and how it becomes GPU dispatches live together in one
//! file here, behind two traits:
//!
//! - [`LayerOp`], the host side: what the graph IR ([`crate::model::ModelSpec`]) holds for a
//!   node. The runner, `inspect`, `bench`, FLOP counting, the gallery fingerprint and the
//!   CPU reference ask it; nothing elsewhere matches on layer kinds.
//! - [`Kernel`], the GPU side: what [`LayerOp::compile`] returns once per model load
//!   (weights uploaded, pipelines compiled). The runner asks it for its scratch buffers and
//!   its dispatches per plan, never what it is.
//!
//! A new layer is one file here (its struct, `impl LayerOp`, `impl Kernel`, reusing a kernel
//! family of [`crate::ops`] or adding one) plus one line in each importer's table.

mod activation;
mod attention;
mod batch_norm;
mod conv1d;
mod conv2d;
mod dense;
mod depthwise_conv2d;
mod dot;
mod embedding;
mod layer_norm;
mod layer_scale;
mod merge;
mod pad;
mod pool;
mod prelu;
mod recurrent;
mod rescale;
mod reshape;
mod scaled_add;
mod sequence_pool;
mod softmax;
mod twin_distance;
mod twin_side;
mod unit_norm;
mod view;

pub use activation::{ActivationLayer, CopyingActivation};
pub use attention::MultiHeadAttention;
pub use batch_norm::BatchNorm;
pub use conv1d::{Conv1d, Conv1dConfig, Conv1dPadding};
pub use conv2d::Conv2d;
pub use dense::Dense;
pub use depthwise_conv2d::{grouped_conv2d_reference, DepthwiseConv2d, SeparableConv2d};
pub use dot::Dot;
pub use embedding::{BertEmbeddings, Embedding};
pub use layer_norm::LayerNorm;
pub use layer_scale::LayerScale;
pub use merge::{Concatenate, Merge, MergeKind, Scalar};
pub use pad::{Cropping2d, ZeroPadding2d};
pub use pool::{GlobalAveragePool2d, GlobalPool, Pool1d, Pool2d};
pub use prelu::Prelu;
pub use recurrent::Recurrent;
pub use rescale::{Normalization, Rescaling, NORMALIZATION_EPSILON};
pub use reshape::{Permute, RepeatVector, Reshape, SliceAxis};
pub use scaled_add::ScaledAdd;
pub use sequence_pool::GlobalAveragePool1d;
pub use softmax::{Softmax, ThenSoftmax};
pub use twin_distance::TwinDistance;
pub use twin_side::TwinSide;
pub use unit_norm::UnitNorm;
pub use view::{Flatten, Identity, Masking};

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{Activation, Dispatch, Precision};

/// Any layer as [`Any`], for passes that rewrite particular layers (downcast with
/// `downcast_ref`, or [`crate::model::Layer::downcast`]); implemented for every type.
pub trait AsAny: Any {
    /// `self` as `&dyn Any`.
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A layer as the graph IR holds it: settings and weights in the engine's layouts (NHWC
/// activations, HWIO / `[in, out]` kernels), on the host.
pub trait LayerOp: fmt::Debug + Send + Sync + AsAny {
    /// The layer family, as `describe` and the gallery fingerprint name it (`"conv2d"`).
    fn name(&self) -> &'static str;

    /// How many values the node reads (the graph validates this once).
    fn arity(&self) -> usize {
        1
    }

    /// Output shape (batch axis included) for inputs of these shapes.
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>>;

    /// The settings that decide what it computes, weights aside (for fingerprints).
    fn settings(&self) -> String;

    /// Its weights, in a fixed order (for fingerprints).
    fn weights(&self) -> Vec<&[f32]> {
        Vec::new()
    }

    /// Number of trained values, as the source framework counts them.
    fn parameter_count(&self) -> usize {
        self.weights().iter().map(|w| w.len()).sum()
    }

    /// Floating-point operations (2 per multiply-add) for inputs of these shapes; the
    /// multiply-add layers count, elementwise ones report 0.
    fn flops(&self, _inputs: &[&[usize]]) -> u64 {
        0
    }

    /// A view (Flatten, Dropout, Masking): the output is the input's values, no kernel.
    fn is_view(&self) -> bool {
        false
    }

    /// This layer with `activation` applied to its output in its own epilogue, when it can
    /// take one (the fusion pass asks; None: it cannot).
    fn with_activation(&self, _activation: Activation) -> Option<Arc<dyn LayerOp>> {
        None
    }

    /// This layer reading its input with these many zero rows / columns around it (a
    /// ZeroPadding2D before it, folded into its padding), when it can (a `valid` window
    /// op; the ZeroPadding2D folding pass asks).
    fn with_padding(&self, _padding: crate::ops::Padding) -> Option<Arc<dyn LayerOp>> {
        None
    }

    /// This layer followed by `x · scale[c] + shift[c]` over its output channels, folded
    /// into its weights, when it can be (the BatchNormalization folding pass asks).
    fn with_channel_affine(&self, _scale: &[f32], _shift: &[f32]) -> Option<Arc<dyn LayerOp>> {
        None
    }

    /// This layer with a second input, of its output's shape, added to its output before
    /// its activation (a residual `Add` after it, fused in), when it can take one (the
    /// residual fusion pass asks; None: it cannot).
    fn with_residual(&self) -> Option<Arc<dyn LayerOp>> {
        None
    }
    /// The plain-Rust reference: the output's values for these inputs.
    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>>;

    /// Uploads the weights and compiles the pipelines (None for views).
    fn compile(&self, gpu: &Gpu, precision: Precision) -> Result<Option<Box<dyn Kernel>>>;
}

/// What a reference computation reads: the node's input values and shapes, and the
/// `[batch, steps]` step mask (true: a real step).
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// One slice per input value.
    pub values: &'a [&'a [f32]],
    /// One shape per input value, batch axis first.
    pub shapes: &'a [&'a [usize]],
    /// Real steps of every sample, `batch · steps` values.
    pub mask: &'a [bool],
}

impl<'a> Inputs<'a> {
    /// The first input's values.
    pub fn x(&self) -> &'a [f32] {
        self.values[0]
    }

    /// The first input's shape.
    pub fn shape(&self) -> &'a [usize] {
        self.shapes[0]
    }
}

/// Run-time choices a plan is built with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Benchmark baseline: LSTM layers run one dispatch per time step.
    pub recurrent_per_step: bool,
}

/// A scratch buffer a kernel needs in a plan: kernels asking for the same `key` share one
/// buffer (the largest asked for), since dispatches run one after another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scratch {
    /// Shared name (also the buffer label).
    pub key: &'static str,
    /// Values (32-bit).
    pub len: usize,
    /// Filled with u32 ones when the plan is built (an all-ones token mask); else left as is.
    pub ones: bool,
}

/// What a kernel's `prepare` may use besides its inputs and output.
#[derive(Debug)]
pub struct PlanContext<'a> {
    /// The device.
    pub gpu: &'a Gpu,
    /// The `[rows, steps]` u32 step mask, when a kernel of the graph reads it.
    pub mask: Option<&'a wgpu::Buffer>,
    /// Shared scratch buffers by key.
    pub scratch: &'a HashMap<&'static str, wgpu::Buffer>,
    /// The plan's options.
    pub options: RunOptions,
}

impl PlanContext<'_> {
    /// The scratch buffer shared under `key` (asked for in [`Kernel::scratch`]).
    pub fn scratch(&self, key: &str) -> Result<&wgpu::Buffer> {
        self.scratch.get(key).ok_or_else(|| Error::input("plan", format!("no scratch buffer {key:?} was planned")))
    }

    /// The step mask buffer.
    pub fn mask(&self) -> Result<&wgpu::Buffer> {
        self.mask.ok_or_else(|| Error::input("plan", "no step mask was planned"))
    }
}

/// A layer resident on the GPU: what the runner asks when it builds a plan.
pub trait Kernel: fmt::Debug + Send + Sync {
    /// The kernels it runs, for `describe` (e.g. `conv2d (activation Relu)`).
    fn describe(&self) -> String;

    /// Works in place: writes its only input's buffer (its input must have no other reader).
    fn in_place(&self) -> bool {
        false
    }

    /// Reads the plan's `[rows, steps]` step mask.
    fn reads_mask(&self) -> bool {
        false
    }

    /// Shared scratch buffers for inputs of these shapes.
    fn scratch(&self, _inputs: &[&[usize]]) -> Vec<Scratch> {
        Vec::new()
    }

    /// Values of its output buffer for this output shape.
    fn output_len(&self, output: &[usize], _options: RunOptions) -> usize {
        output.iter().product()
    }

    /// Dispatches per call for inputs of `steps` time steps.
    fn dispatch_count(&self, _steps: usize, _options: RunOptions) -> usize {
        1
    }

    /// Whether it can run with `options` (an error naming why not).
    fn check_options(&self, _options: RunOptions) -> Result<()> {
        Ok(())
    }

    /// The most rows (samples) one dispatch of it can take, given one row's input and
    /// output shapes, the largest storage binding (values) and the workgroups per dimension:
    /// its scratch must fit one binding and its dispatch the workgroup limit.
    fn max_rows(&self, _inputs: &[&[usize]], _output: &[usize], _binding: usize, _groups: usize) -> usize {
        usize::MAX
    }

    /// Its dispatches over `io` (shapes with the batch axis = the plan's rows).
    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>>;
}

/// What one node's dispatches bind: its input buffers with their shapes, and its output.
#[derive(Clone, Copy, Debug)]
pub struct Io<'a> {
    /// One buffer per input value.
    pub inputs: &'a [&'a wgpu::Buffer],
    /// One shape per input value, batch axis first.
    pub shapes: &'a [&'a [usize]],
    /// The output buffer (the input's own for an in-place kernel).
    pub output: &'a wgpu::Buffer,
    /// The node's output shape, batch axis first.
    pub output_shape: &'a [usize],
}

/// `weights · scale[c]` and `bias · scale[c] + shift[c]` for weights whose last axis is the
/// output channel (HWIO conv kernels, `[in, out]` dense kernels): a per-channel affine map
/// after the op, folded into it.
pub(crate) fn fold_channel_affine(
    kernel: &[f32],
    bias: Option<&[f32]>,
    scale: &[f32],
    shift: &[f32],
) -> Option<(Vec<f32>, Vec<f32>)> {
    let channels = scale.len();
    if channels == 0 || shift.len() != channels || !kernel.len().is_multiple_of(channels) {
        return None;
    }
    let kernel = kernel.iter().enumerate().map(|(i, w)| w * scale[i % channels]).collect();
    let bias = (0..channels).map(|c| bias.map_or(0.0, |b| b[c]) * scale[c] + shift[c]).collect();
    Some((kernel, bias))
}

/// Workgroup bound shared by the kernels that put (rows × items) / 128 workgroups on one
/// axis (conv2d, dense), bounded here by / 32.
pub(crate) fn rows_for_items(per_row: usize, groups: usize) -> usize {
    (groups * 32).checked_div(per_row).unwrap_or(usize::MAX)
}

/// `[batch, ..., features]` → (rows, features).
pub(crate) fn rows_and_features(shape: &[usize]) -> (usize, usize) {
    let features = shape.last().copied().unwrap_or(1).max(1);
    (shape.iter().product::<usize>() / features, features)
}

/// The `[b, h, w, c]` of an NHWC shape (checked by the layer's shape rule first).
pub(crate) fn nhwc(shape: &[usize]) -> Result<[usize; 4]> {
    match *shape {
        [b, h, w, c] => Ok([b, h, w, c]),
        _ => Err(Error::shape("image input", "[batch, height, width, channels]", format!("{shape:?}"))),
    }
}

/// `[b, t, f]` of a sequence shape.
pub(crate) fn btf(shape: &[usize]) -> Result<[usize; 3]> {
    match *shape {
        [b, t, f] => Ok([b, t, f]),
        _ => Err(Error::shape("sequence input", "[batch, steps, features]", format!("{shape:?}"))),
    }
}
