//! The one registry of WGSL sources. Every kernel file in `shaders/` is embedded here,
//! with the shared snippets (`common.wgsl`, `activation.wgsl`) it is prepended with.

/// `shaders/common.wgsl`: index helpers for one-invocation-per-element kernels.
pub const COMMON: &str = include_str!("../shaders/common.wgsl");
/// `shaders/activation.wgsl`: the fused activation functions.
pub const ACTIVATION: &str = include_str!("../shaders/activation.wgsl");

/// `shaders/metric.wgsl`: METRIC and the metrics' last step (pair distance and search).
pub const METRIC: &str = include_str!("../shaders/metric.wgsl");

/// `shaders/reduce.wgsl`: a workgroup-wide sum for one-workgroup-per-row kernels.
pub const REDUCE: &str = include_str!("../shaders/reduce.wgsl");

/// A kernel family's WGSL: its own file plus the snippets it needs, in order.
#[derive(Clone, Copy, Debug)]
pub struct ShaderSource {
    /// Name, also the file name in `shaders/` (`dense` is `shaders/dense.wgsl`).
    pub name: &'static str,
    parts: &'static [&'static str],
}

impl ShaderSource {
    /// The full WGSL text handed to the compiler.
    pub fn source(&self) -> String {
        self.parts.concat()
    }
}

/// `shaders/weights.wgsl`: reading 8 columns of a kernel row stored as f32.
pub const WEIGHTS: &str = include_str!("../shaders/weights.wgsl");
/// `shaders/weights_f16.wgsl`: the same for kernel rows stored as packed f16.
pub const WEIGHTS_F16: &str = include_str!("../shaders/weights_f16.wgsl");

/// `shaders/residual.wgsl`: binding 5, the residual a GEMM epilogue adds (`*_residual`).
pub const RESIDUAL: &str = include_str!("../shaders/residual.wgsl");
/// `shaders/no_residual.wgsl`: the same epilogue hook without the binding.
pub const NO_RESIDUAL: &str = include_str!("../shaders/no_residual.wgsl");

const DENSE_WGSL: &str = include_str!("../shaders/dense.wgsl");
const CONV2D_WGSL: &str = include_str!("../shaders/conv2d.wgsl");

/// Dense layer: fused matmul + bias + activation.
pub const DENSE: ShaderSource = ShaderSource { name: "dense", parts: &[ACTIVATION, WEIGHTS, NO_RESIDUAL, DENSE_WGSL] };
/// Conv2D: implicit GEMM + bias + activation.
pub const CONV2D: ShaderSource =
    ShaderSource { name: "conv2d", parts: &[ACTIVATION, WEIGHTS, NO_RESIDUAL, CONV2D_WGSL] };
/// Dense layer with f16 weights (`Precision::F16`).
pub const DENSE_F16: ShaderSource =
    ShaderSource { name: "dense_f16", parts: &[ACTIVATION, WEIGHTS_F16, NO_RESIDUAL, DENSE_WGSL] };
/// Conv2D with f16 weights (`Precision::F16`).
pub const CONV2D_F16: ShaderSource =
    ShaderSource { name: "conv2d_f16", parts: &[ACTIVATION, WEIGHTS_F16, NO_RESIDUAL, CONV2D_WGSL] };
/// Dense with a residual `Add` fused in: `activate(x · kernel + bias + residual)`. A module
/// of its own (not an override) so that only it declares a fifth storage buffer.
pub const DENSE_RESIDUAL: ShaderSource =
    ShaderSource { name: "dense_residual", parts: &[ACTIVATION, WEIGHTS, RESIDUAL, DENSE_WGSL] };
/// Conv2D with a residual `Add` fused in.
pub const CONV2D_RESIDUAL: ShaderSource =
    ShaderSource { name: "conv2d_residual", parts: &[ACTIVATION, WEIGHTS, RESIDUAL, CONV2D_WGSL] };
/// [`DENSE_RESIDUAL`] with f16 weights.
pub const DENSE_F16_RESIDUAL: ShaderSource =
    ShaderSource { name: "dense_residual_f16", parts: &[ACTIVATION, WEIGHTS_F16, RESIDUAL, DENSE_WGSL] };
/// [`CONV2D_RESIDUAL`] with f16 weights.
pub const CONV2D_F16_RESIDUAL: ShaderSource =
    ShaderSource { name: "conv2d_residual_f16", parts: &[ACTIVATION, WEIGHTS_F16, RESIDUAL, CONV2D_WGSL] };
/// Grouped and depthwise Conv2D + bias + activation.
pub const DEPTHWISE_CONV2D: ShaderSource = ShaderSource {
    name: "depthwise_conv2d",
    parts: &[ACTIVATION, WEIGHTS, include_str!("../shaders/depthwise_conv2d.wgsl")],
};
/// Grouped and depthwise Conv2D with f16 weights (`Precision::F16`).
pub const DEPTHWISE_CONV2D_F16: ShaderSource = ShaderSource {
    name: "depthwise_conv2d_f16",
    parts: &[ACTIVATION, WEIGHTS_F16, include_str!("../shaders/depthwise_conv2d.wgsl")],
};
/// Max / average / global average pooling.
pub const POOL2D: ShaderSource =
    ShaderSource { name: "pool2d", parts: &[COMMON, include_str!("../shaders/pool2d.wgsl")] };
/// Standalone activation, in place.
pub const ELEMENTWISE: ShaderSource =
    ShaderSource { name: "elementwise", parts: &[COMMON, ACTIVATION, include_str!("../shaders/elementwise.wgsl")] };
/// Pair distance reduction.
pub const DISTANCE: ShaderSource =
    ShaderSource { name: "distance", parts: &[COMMON, REDUCE, METRIC, include_str!("../shaders/distance.wgsl")] };

/// LSTM / GRU recurrences over whole sequences.
pub const RECURRENT: ShaderSource =
    ShaderSource { name: "recurrent", parts: &[ACTIVATION, include_str!("../shaders/recurrent.wgsl")] };

/// BERT input embeddings (word + position + token type) with their LayerNorm.
pub const EMBEDDING: ShaderSource =
    ShaderSource { name: "embedding", parts: &[COMMON, REDUCE, include_str!("../shaders/embedding.wgsl")] };
/// Residual add + LayerNorm.
pub const LAYER_NORM: ShaderSource =
    ShaderSource { name: "layer_norm", parts: &[COMMON, REDUCE, include_str!("../shaders/layer_norm.wgsl")] };
/// Fused multi-head self-attention (scores, masked softmax, values).
pub const ATTENTION: ShaderSource =
    ShaderSource { name: "attention", parts: &[COMMON, include_str!("../shaders/attention.wgsl")] };
/// Masked mean pooling over tokens, with L2 normalisation.
pub const SEQUENCE_POOL: ShaderSource =
    ShaderSource { name: "sequence_pool", parts: &[COMMON, REDUCE, include_str!("../shaders/sequence_pool.wgsl")] };

/// Table lookup (Keras Embedding).
pub const GATHER: ShaderSource =
    ShaderSource { name: "gather", parts: &[COMMON, include_str!("../shaders/gather.wgsl")] };

/// Peak microkernels: multiply-add rate and streaming bandwidth (`siamese bench --peak`).
pub const PEAK: ShaderSource = ShaderSource { name: "peak", parts: &[COMMON, include_str!("../shaders/peak.wgsl")] };

/// Per-channel scale and shift with an activation (inference BatchNormalization).
pub const AFFINE: ShaderSource =
    ShaderSource { name: "affine", parts: &[COMMON, ACTIVATION, include_str!("../shaders/affine.wgsl")] };

/// An image moved by whole rows and columns (ZeroPadding2D, Cropping2D).
pub const SHIFT2D: ShaderSource =
    ShaderSource { name: "shift2d", parts: &[COMMON, include_str!("../shaders/shift2d.wgsl")] };

/// Elementwise combinations and copies over strided, broadcasting views (merges,
/// Concatenate, Permute, RepeatVector).
pub const STRIDED: ShaderSource =
    ShaderSource { name: "strided", parts: &[COMMON, include_str!("../shaders/strided.wgsl")] };

/// Softmax, log-softmax and L2 normalisation along a run of axes, in place.
pub const SOFTMAX: ShaderSource =
    ShaderSource { name: "softmax", parts: &[COMMON, REDUCE, include_str!("../shaders/softmax.wgsl")] };

/// PReLU in place, a trained slope per value.
pub const PRELU: ShaderSource = ShaderSource { name: "prelu", parts: &[COMMON, include_str!("../shaders/prelu.wgsl")] };

/// Keras Dot over the last axis, one value per row (a twin head's similarity).
pub const DOT: ShaderSource = ShaderSource { name: "dot", parts: &[COMMON, include_str!("../shaders/dot.wgsl")] };

/// Nearest-neighbour search: query × gallery distance matrix and per-query top-k.
pub const SEARCH: ShaderSource =
    ShaderSource { name: "search", parts: &[COMMON, METRIC, include_str!("../shaders/search.wgsl")] };

/// Every kernel family, for validation tests.
pub const ALL: &[ShaderSource] = &[
    DENSE,
    CONV2D,
    DENSE_F16,
    CONV2D_F16,
    DENSE_RESIDUAL,
    CONV2D_RESIDUAL,
    DENSE_F16_RESIDUAL,
    CONV2D_F16_RESIDUAL,
    DEPTHWISE_CONV2D,
    DEPTHWISE_CONV2D_F16,
    POOL2D,
    ELEMENTWISE,
    DISTANCE,
    RECURRENT,
    EMBEDDING,
    LAYER_NORM,
    ATTENTION,
    SEQUENCE_POOL,
    STRIDED,
    AFFINE,
    SHIFT2D,
    GATHER,
    SEARCH,
    PEAK,
    SOFTMAX,
    PRELU,
    DOT,
];

/// One pipeline the crate can build: a kernel family, an entry point and the override
/// constants it is specialised with.
#[derive(Clone, Debug)]
pub struct PipelineVariant {
    /// The kernel family.
    pub shader: ShaderSource,
    /// The entry point.
    pub entry_point: &'static str,
    /// Override constants, as the ops pass them to [`crate::Gpu::pipeline`].
    pub constants: Vec<(&'static str, f64)>,
}

/// Every (shader, entry point, constants) combination the ops build, from the same
/// constant tables the ops use: what the offline translation test covers.
pub fn pipeline_variants() -> Vec<PipelineVariant> {
    use crate::ops::conv2d::{conv2d_constants, conv2d_shader};
    use crate::ops::dense::{dense_constants, dense_shader};
    use crate::ops::recurrent::{
        row_sharing_constants, RECURRENT_CELL_ACTIVATIONS, RECURRENT_GATE_ACTIVATIONS, ROW_GROUPS,
    };
    use crate::ops::{Activation, AxisMode, Cell, Distance, PoolKind, Precision};
    let variant = |shader, entry_point, constants: &[(&'static str, f64)]| PipelineVariant {
        shader,
        entry_point,
        constants: constants.to_vec(),
    };
    let mut variants = Vec::new();
    for activation in Activation::ALL {
        for precision in [Precision::F32, Precision::F16] {
            for residual in [false, true] {
                variants.push(variant(*dense_shader(precision, residual), "dense", &dense_constants(activation)));
            }
            for (pooled, residual) in [(false, false), (true, false), (false, true)] {
                let constants = conv2d_constants(activation, pooled);
                variants.push(variant(*conv2d_shader(precision, residual), "conv2d", &constants));
            }
        }
        for depthwise in [DEPTHWISE_CONV2D, DEPTHWISE_CONV2D_F16] {
            variants.push(variant(depthwise, "depthwise_conv2d", &activation.constants()));
        }
        variants.push(variant(ELEMENTWISE, "activate_in_place", &activation.constants()));
        variants.push(variant(AFFINE, "channel_affine", &activation.constants()));
    }
    for kind in [PoolKind::Max, PoolKind::Average] {
        variants.push(variant(POOL2D, "pool2d", &kind.constants()));
    }
    variants.push(variant(POOL2D, "global_average_pool2d", &[]));
    for metric in Distance::ALL {
        variants.push(variant(DISTANCE, "pair_distance", &metric.constants()));
    }
    for squared in [0.0, 1.0] {
        variants.push(variant(DISTANCE, "pair_match_probability", &[("SQUARED", squared)]));
    }
    for cell in [Cell::Lstm, Cell::Gru { reset_after: true }, Cell::Gru { reset_after: false }] {
        for gate in RECURRENT_GATE_ACTIVATIONS {
            for activation in RECURRENT_CELL_ACTIVATIONS {
                if cell.shares_rows() {
                    for rows in ROW_GROUPS {
                        let constants = row_sharing_constants(cell, gate, activation, rows);
                        variants.push(variant(RECURRENT, cell.entry_point(), &constants));
                    }
                } else {
                    variants.push(variant(RECURRENT, cell.entry_point(), &cell.constants(gate, activation)));
                }
                if cell == Cell::Lstm {
                    variants.push(variant(RECURRENT, "lstm_step", &cell.constants(gate, activation)));
                }
            }
        }
    }
    variants.push(variant(EMBEDDING, "embed_tokens", &[]));
    variants.push(variant(LAYER_NORM, "add_layer_norm", &[]));
    variants.push(variant(ATTENTION, "self_attention", &[]));
    variants.push(variant(SEQUENCE_POOL, "masked_mean_pool", &[]));
    for combine in crate::ops::Combine::ALL {
        variants.push(variant(STRIDED, "strided", &combine.constants()));
    }
    variants.push(variant(SHIFT2D, "shift2d", &[]));
    variants.push(variant(GATHER, "gather_rows", &[]));
    variants.push(variant(PEAK, "fma_rate", &[]));
    variants.push(variant(PEAK, "copy_bandwidth", &[]));
    for metric in Distance::ALL {
        variants.push(variant(SEARCH, "distance_matrix", &metric.constants()));
    }
    variants.push(variant(SEARCH, "top_k", &[]));
    for mode in AxisMode::ALL {
        variants.push(variant(SOFTMAX, "softmax", &mode.constants()));
    }
    variants.push(variant(PRELU, "prelu", &[]));
    for normalize in [0.0, 1.0] {
        variants.push(variant(DOT, "dot_rows", &[("NORMALIZE", normalize)]));
    }
    variants
}

/// Parses and validates a WGSL source with naga, no device needed. Returns naga's
/// message (with the source location) on failure.
pub fn validate(source: &str) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::SHADER_FLOAT16 | naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32,
    )
    .validate(&module)
    .map_err(|e| e.emit_to_string(source))?;
    Ok(())
}
