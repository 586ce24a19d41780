//! GPU ops, one file per kernel family (the WGSL of `ops/dense.rs` is `shaders/dense.wgsl`).
//!
//! Every op answers the same questions in the same order: check shapes (typed error,
//! never a panic), compute the output shape, get its cached pipeline at construction, and
//! `prepare` a [`Dispatch`] (params uniform + bind group + workgroup counts checked against
//! the device limits) that the graph runner records as often as it likes.

pub mod affine;
pub mod attention;
pub mod conv2d;
pub mod dense;
pub mod depthwise_conv2d;
pub mod distance;
pub mod dot;
pub mod elementwise;
pub mod embedding;
pub mod layer_norm;
pub mod peak;
pub mod pool2d;
pub mod prelu;
pub mod recurrent;
pub mod search;
pub mod sequence_pool;
pub mod shift2d;
pub mod softmax;
pub mod strided;

pub use affine::ChannelAffine;
pub use attention::{MultiHeadAttention, MultiHeadAttentionWeights, SelfAttention};
pub use conv2d::{Conv2d, Conv2dConfig};
pub use dense::Dense;
pub use depthwise_conv2d::{DepthwiseConv2d, DepthwiseConv2dConfig};
pub use distance::{Distance, LearnedHead, PairDistance};
pub use dot::{dot_reference, DotOp};
pub use elementwise::ActivationOp;
pub use embedding::{EmbeddingLookup, EmbeddingTables, TokenEmbedding};
pub use layer_norm::LayerNorm;
pub use pool2d::{GlobalAveragePool2d, GlobalPool, Pool2d, Pool2dConfig, PoolKind};
pub use prelu::PreluOp;
pub use recurrent::{Cell, DirectionWeights, Recurrent, RecurrentConfig};
pub use search::{DistanceMatrix, MatrixShape, TopK, TopKShape};
pub use sequence_pool::SequencePool;
pub use shift2d::Shift2d;
pub use softmax::{AxisMode, AxisOp};
pub use strided::{Combine, StridedOp, StridedSpace};

use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// Activation functions fused into an op's epilogue (codes of `shaders/activation.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// Identity.
    Linear,
    /// max(x, 0).
    Relu,
    /// Logistic 1 / (1 + e^-x).
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// Exact GELU, x·Φ(x) (Keras' default `gelu`).
    Gelu,
    /// x·sigmoid(x) (Keras `silu` / `swish`).
    Silu,
    /// ELU with alpha 1.
    Elu,
    /// log(1 + e^x).
    Softplus,
    /// SELU.
    Selu,
    /// Hard sigmoid, relu6(x + 3) / 6 (Keras 3's `hard_sigmoid`).
    HardSigmoid,
    /// Hard sigmoid, clip(0.2·x + 0.5, 0, 1) (what `hard_sigmoid` means to Keras 2).
    HardSigmoidClip,
    /// GELU, tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, Keras `approximate=True`).
    GeluTanh,
    /// min(max(x, 0), 6) (Keras `relu6`, `ReLU(max_value=6)`).
    Relu6,
    /// x · relu6(x + 3) / 6 (Keras `hard_silu` / `hard_swish`).
    HardSilu,
    /// x · tanh(softplus(x)) (Keras `mish`).
    Mish,
    /// x for x >= 0, else slope · x (Keras `leaky_relu`, `LeakyReLU`, `ReLU(negative_slope)`);
    /// the slope's f32 bits, so that activations stay `Eq` and `Hash`.
    LeakyRelu(u32),
    /// ELU with this alpha (f32 bits): x for x > 0, else alpha · (e^x − 1) (Keras `ELU(alpha)`).
    EluAlpha(u32),
    /// Keras 3's ReLU with all its settings (f32 bits each):
    /// `min(x > threshold ? x : 0, max_value) − negative_slope · max(threshold − x, 0)`, no
    /// cap when `max_value` is +inf ([`Activation::relu_with`] picks the plainer variants).
    ReluWith {
        /// Slope below the threshold.
        negative_slope: u32,
        /// Cap (+inf: none).
        max_value: u32,
        /// Values at or below it are damped.
        threshold: u32,
    },
}

impl Activation {
    /// Every activation, for tests (LeakyReLU with Keras' layer default, 0.3).
    pub const ALL: [Activation; 18] = [
        Activation::Linear,
        Activation::Relu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Gelu,
        Activation::Silu,
        Activation::Elu,
        Activation::Softplus,
        Activation::Selu,
        Activation::HardSigmoid,
        Activation::HardSigmoidClip,
        Activation::GeluTanh,
        Activation::Relu6,
        Activation::HardSilu,
        Activation::Mish,
        Activation::LeakyRelu(0.3f32.to_bits()),
        Activation::EluAlpha(0.7f32.to_bits()),
        Activation::ReluWith {
            negative_slope: 0.1f32.to_bits(),
            max_value: 4.0f32.to_bits(),
            threshold: 0.5f32.to_bits(),
        },
    ];

    /// LeakyReLU with this negative slope.
    pub fn leaky_relu(slope: f32) -> Self {
        Activation::LeakyRelu(slope.to_bits())
    }

    /// ELU with this alpha (alpha 1 is [`Activation::Elu`]).
    pub fn elu(alpha: f32) -> Self {
        if alpha == 1.0 {
            Activation::Elu
        } else {
            Activation::EluAlpha(alpha.to_bits())
        }
    }

    /// Keras 3's `relu(x, negative_slope, max_value, threshold)`: the plainest variant that
    /// computes it (Relu, Relu6, LeakyRelu), else [`Activation::ReluWith`].
    pub fn relu_with(negative_slope: f32, max_value: Option<f32>, threshold: f32) -> Self {
        match max_value {
            _ if threshold != 0.0 => {}
            None if negative_slope == 0.0 => return Activation::Relu,
            None => return Activation::leaky_relu(negative_slope),
            Some(cap) if cap == 6.0 && negative_slope == 0.0 => return Activation::Relu6,
            Some(_) => {}
        }
        Activation::ReluWith {
            negative_slope: negative_slope.to_bits(),
            max_value: max_value.unwrap_or(f32::INFINITY).to_bits(),
            threshold: threshold.to_bits(),
        }
    }

    /// The code `shaders/activation.wgsl` switches on.
    pub fn code(self) -> u32 {
        match self {
            Activation::Linear => 0,
            Activation::Relu => 1,
            Activation::Sigmoid => 2,
            Activation::Tanh => 3,
            Activation::Gelu => 4,
            Activation::Silu => 5,
            Activation::Elu => 6,
            Activation::Softplus => 7,
            Activation::Selu => 8,
            Activation::HardSigmoid => 9,
            Activation::HardSigmoidClip => 10,
            Activation::GeluTanh => 11,
            Activation::Relu6 => 12,
            Activation::HardSilu => 13,
            Activation::Mish => 14,
            Activation::LeakyRelu(_) => 15,
            Activation::EluAlpha(_) => 16,
            Activation::ReluWith { .. } => 17,
        }
    }

    /// The pipeline override constants selecting this activation (`ACTIVATION`; and
    /// `ACTIVATION_SLOPE` for LeakyReLU and ELU's alpha; `ACTIVATION_SLOPE`,
    /// `ACTIVATION_MAX` (−1: none) and `ACTIVATION_THRESHOLD` for [`Activation::ReluWith`]).
    pub fn constants(self) -> Vec<(&'static str, f64)> {
        let mut constants = vec![("ACTIVATION", self.code() as f64)];
        let value = |bits: u32| f32::from_bits(bits) as f64;
        match self {
            Activation::LeakyRelu(bits) | Activation::EluAlpha(bits) => {
                constants.push(("ACTIVATION_SLOPE", value(bits)))
            }
            Activation::ReluWith { negative_slope, max_value, threshold } => {
                let max = if f32::from_bits(max_value).is_finite() { value(max_value) } else { -1.0 };
                constants.extend([
                    ("ACTIVATION_SLOPE", value(negative_slope)),
                    ("ACTIVATION_MAX", max),
                    ("ACTIVATION_THRESHOLD", value(threshold)),
                ]);
            }
            _ => {}
        }
        constants
    }
}

/// Padding of convolution and pooling windows: Keras' two modes, and explicit zeros (a
/// ZeroPadding2D folded into the convolution after it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// No padding: windows stay inside the input.
    Valid,
    /// Output size `ceil(input / stride)`, padding split with the extra cell at the end.
    Same,
    /// These many zero rows / columns around the image, then `valid` windows.
    Explicit {
        /// Rows above.
        top: usize,
        /// Rows below.
        bottom: usize,
        /// Columns on the left.
        left: usize,
        /// Columns on the right.
        right: usize,
    },
}

/// Output length and padding before, along `axis` (0: height, 1: width), for a window of
/// `window` cells (already dilated) moved by `stride`, Keras/TensorFlow rules. None when
/// the window does not fit (`valid` with input shorter than the window).
pub fn window_output(
    input: usize,
    window: usize,
    stride: usize,
    padding: Padding,
    axis: usize,
) -> Option<(usize, usize)> {
    if stride == 0 || window == 0 || input == 0 {
        return None;
    }
    match padding {
        Padding::Valid => (input >= window).then(|| ((input - window) / stride + 1, 0)),
        Padding::Explicit { top, bottom, left, right } => {
            let (before, after) = if axis == 0 { (top, bottom) } else { (left, right) };
            let padded = input.checked_add(before)?.checked_add(after)?;
            (padded >= window).then(|| ((padded - window) / stride + 1, before))
        }
        Padding::Same => {
            let out = input.div_ceil(stride);
            let needed = ((out - 1) * stride + window).saturating_sub(input);
            Some((out, needed / 2))
        }
    }
}

/// One recorded compute dispatch: everything bound, ready to go into a pass.
#[derive(Debug)]
pub struct Dispatch {
    pub(crate) label: &'static str,
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) bind_group: wgpu::BindGroup,
    pub(crate) workgroups: [u32; 3],
    /// Kept alive with the bind group; written once when the dispatch is prepared.
    pub(crate) _params: wgpu::Buffer,
}

impl Dispatch {
    /// Records this dispatch into a compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }

    /// What kernel this runs.
    pub fn label(&self) -> &'static str {
        self.label
    }
}

/// Records `dispatches` into one compute pass, then copies each `(source, values)` into
/// `staging` back to back, submits once, maps once and returns the values copied: the one
/// submit + one readback every runner call ends with.
pub(crate) fn submit_and_read<'a>(
    gpu: &Gpu,
    label: &str,
    dispatches: impl IntoIterator<Item = &'a Dispatch>,
    copies: &[(&wgpu::Buffer, usize)],
    staging: &wgpu::Buffer,
) -> Result<Vec<f32>> {
    let mut encoder = gpu.device().create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
    {
        let mut pass =
            encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(label), timestamp_writes: None });
        for dispatch in dispatches {
            dispatch.record(&mut pass);
        }
    }
    let mut len = 0;
    for (source, values) in copies {
        encoder.copy_buffer_to_buffer(source, 0, staging, len as u64 * 4, *values as u64 * 4);
        len += values;
    }
    let submission = gpu.submit(encoder.finish());
    gpu.read_f32(staging, len, submission)
}

/// Builds a dispatch: params uniform (bytes of a `#[repr(C)]` Pod struct), then binding 0
/// = params and bindings 1.. = `buffers` in order.
pub(crate) fn prepare_dispatch<P: bytemuck::Pod>(
    gpu: &Gpu,
    label: &'static str,
    pipeline: &wgpu::ComputePipeline,
    params: &P,
    buffers: &[&wgpu::Buffer],
    workgroups: [u32; 3],
) -> Dispatch {
    let params = gpu.create_buffer_init(label, bytemuck::bytes_of(params), wgpu::BufferUsages::UNIFORM);
    let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() }];
    entries.extend(
        buffers
            .iter()
            .enumerate()
            .map(|(i, buffer)| wgpu::BindGroupEntry { binding: i as u32 + 1, resource: buffer.as_entire_binding() }),
    );
    let bind_group = gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    Dispatch { label, pipeline: pipeline.clone(), bind_group, workgroups, _params: params }
}

/// Workgroup count for `items` split into groups of `per_group`, checked against the
/// device's per-dimension limit.
pub(crate) fn groups(gpu: &Gpu, what: &str, items: usize, per_group: usize) -> Result<u32> {
    let count = items.div_ceil(per_group) as u64;
    let limit = gpu.limits().max_compute_workgroups_per_dimension as u64;
    if count > limit {
        return Err(Error::LimitExceeded { what: format!("{what} workgroups"), needed: count, limit });
    }
    Ok(count.max(1) as u32)
}

/// Workgroups for `count` elements at 256 per group, spread over x and y so that counts
/// beyond one dimension's limit still fit (folded back by `linear_index` in common.wgsl).
pub(crate) fn linear_dispatch(gpu: &Gpu, what: &str, count: usize, per_group: usize) -> Result<[u32; 3]> {
    let total = count.div_ceil(per_group).max(1) as u64;
    let limit = gpu.limits().max_compute_workgroups_per_dimension as u64;
    let x = total.min(limit);
    let y = total.div_ceil(x);
    if y > limit {
        return Err(Error::LimitExceeded { what: format!("{what} workgroups"), needed: total, limit: limit * limit });
    }
    Ok([x as u32, y as u32, 1])
}

/// Checks that a buffer of `elements` f32 values fits one storage binding.
pub(crate) fn check_binding(gpu: &Gpu, what: &str, elements: usize) -> Result<()> {
    let bytes = elements as u64 * 4;
    let limit = gpu.limits().max_storage_buffer_binding_size;
    if bytes > limit {
        return Err(Error::LimitExceeded { what: format!("{what} buffer (bytes)"), needed: bytes, limit });
    }
    Ok(())
}

/// A storage buffer holding `data` (weights), created once per model load.
pub(crate) fn weight_buffer(gpu: &Gpu, label: &str, data: &[f32]) -> Result<wgpu::Buffer> {
    check_binding(gpu, label, data.len())?;
    Ok(gpu.create_buffer_init(label, bytemuck::cast_slice(data), wgpu::BufferUsages::STORAGE))
}

/// How the big weight matrices (Dense and Conv2D kernels, which includes the projections
/// of recurrent and attention layers) are stored on the GPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 weights and arithmetic: the reference path, and the default.
    #[default]
    F32,
    /// Weights rounded to f16 on upload (half the memory and upload), unpacked to f32 in
    /// the kernels; arithmetic and accumulation stay f32. Runs on every backend.
    F16,
}

impl Precision {
    /// Parses `f32` / `f16`.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            other => Err(Error::input("setting `precision`", format!("'{other}': expected f32 or f16"))),
        }
    }

    /// The kernel family for this format: `f32` or `f16` (weights.wgsl / weights_f16.wgsl).
    pub fn pick<'a, T>(self, f32: &'a T, f16: &'a T) -> &'a T {
        match self {
            Self::F32 => f32,
            Self::F16 => f16,
        }
    }
}

/// Uploads a `[rows, cols]` row-major kernel in `precision`'s format (weights.wgsl) and
/// returns the buffer with its row stride in 32-bit words: `cols` for f32; for f16, rows
/// padded with zeros to a multiple of 8 columns, two halves per word.
pub(crate) fn kernel_buffer(
    gpu: &Gpu,
    label: &str,
    kernel: &[f32],
    cols: usize,
    precision: Precision,
) -> Result<(wgpu::Buffer, u32)> {
    match precision {
        Precision::F32 => Ok((weight_buffer(gpu, label, kernel)?, cols as u32)),
        Precision::F16 => {
            if !gpu.adapter().get_downlevel_capabilities().flags.contains(wgpu::DownlevelFlags::SHADER_F16_IN_F32) {
                return Err(Error::input(
                    "setting `precision` = f16",
                    format!("adapter {} cannot unpack f16 (no SHADER_F16_IN_F32): use f32", gpu.adapter_info().name),
                ));
            }
            let padded = cols.div_ceil(8) * 8;
            let rows = kernel.len() / cols.max(1);
            let mut words = vec![0u32; rows * padded / 2];
            for (r, row) in kernel.chunks(cols).enumerate() {
                for (j, &value) in row.iter().enumerate() {
                    let h = half::f16::from_f32(value);
                    if h.is_infinite() && value.is_finite() {
                        return Err(Error::input(
                            label,
                            format!("weight {value} at [{r}, {j}] is beyond f16's range (±65504): use setting `precision` = f32"),
                        ));
                    }
                    let bits = h.to_bits() as u32;
                    words[(r * padded + j) / 2] |= bits << (16 * (j % 2));
                }
            }
            check_binding(gpu, label, words.len())?;
            let buffer = gpu.create_buffer_init(label, bytemuck::cast_slice(&words), wgpu::BufferUsages::STORAGE);
            Ok((buffer, (padded / 2) as u32))
        }
    }
}

/// Formats a shape as `[2, 3, 4]` for error messages.
pub(crate) fn shape_str(shape: &[usize]) -> String {
    format!("{shape:?}")
}
