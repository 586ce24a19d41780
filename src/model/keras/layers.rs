//! The Keras importer's one table of layer classes: each row names the classes (Keras'
//! aliases included) and the function that reads one layer's config and weights into a
//! layer of the graph IR. The supported list in errors and `inspect` derives from it.

use std::sync::{Arc, LazyLock};

use serde_json::Value;

use super::config::activation_name;
use super::conv::{conv1d, depthwise_conv2d, grouped_conv2d, separable_conv2d};
use super::embedding::embedding;
use super::merge::{concatenate, dot, is_op_node, merge, op_node, permute, repeat_vector, reshape};
use super::misc;
use super::recurrent::{bidirectional, recurrent};
use super::variables::{self as vars, Variables};
use super::{Entry, MAX_SETTING};
use crate::error::{Error, Result};
use crate::layers::{
    ActivationLayer, BatchNorm, Conv2d, Cropping2d, Dense, Flatten, Identity, LayerNorm, LayerOp, Masking,
    MultiHeadAttention, Normalization, Pool2d, Rescaling, ZeroPadding2d,
};
use crate::model::weights::Weights;
use crate::ops::{Activation, Conv2dConfig, Padding, Pool2dConfig, PoolKind};

/// What a row's builder reads: the layer's entry, the shapes of its inputs (batch axis
/// first, sequences of 1 step; `input` is the first's), the weights, and the file (for
/// errors).
pub(super) struct Context<'a, 'b> {
    pub entry: &'a Entry<'b>,
    pub input: &'a [usize],
    pub inputs: &'a [&'a [usize]],
    pub weights: &'a mut Weights,
    pub file: &'a str,
}

impl Context<'_, '_> {
    pub(super) fn channels(&self) -> usize {
        self.input.last().copied().unwrap_or(0)
    }
}

type Build = fn(&mut Context) -> Result<Arc<dyn LayerOp>>;

/// Where a `.keras` file keeps the layer's weights: see [`super::variables`].
type Vars = fn(&Entry) -> Variables;

/// Layer classes that pass their input through unchanged at inference (noise and dropout).
pub(crate) const IDENTITY_AT_INFERENCE: [&str; 6] =
    ["Dropout", "SpatialDropout2D", "GaussianDropout", "GaussianNoise", "AlphaDropout", "StochasticDepth"];

/// Every Keras class this importer runs: the class names (first: the one errors list), and
/// how one becomes a layer, where a `.keras` file keeps its weights.
const TABLE: &[(&[&str], Build, Vars)] = &[
    (&["InputLayer"], input_layer, vars::none),
    (&["Conv2D", "Convolution2D"], conv2d, vars::kernel_bias),
    (&["MaxPooling2D", "MaxPool2D"], pool2d, vars::none),
    (&["AveragePooling2D", "AvgPool2D"], pool2d, vars::none),
    (&["GlobalAveragePooling2D", "GlobalAvgPool2D"], misc::global_average_pool2d, vars::none),
    (&["Flatten"], flatten, vars::none),
    (&["Dense"], dense, vars::kernel_bias),
    (&["Activation"], activation_layer, vars::none),
    (&["ReLU"], misc::relu, vars::none),
    (&["LeakyReLU"], leaky_relu, vars::none),
    (&IDENTITY_AT_INFERENCE, identity, vars::none),
    (&["Masking"], masking, vars::none),
    (&["LSTM"], recurrent, vars::recurrent),
    (&["GRU"], recurrent, vars::recurrent),
    (&["Bidirectional"], bidirectional, vars::bidirectional),
    (&["MultiHeadAttention"], multi_head_attention, vars::attention),
    (&["LayerNormalization"], layer_norm, vars::layer_norm),
    (&["BatchNormalization"], batch_norm, vars::batch_norm),
    (&["Add"], merge, vars::none),
    (&["Subtract"], merge, vars::none),
    (&["Multiply"], merge, vars::none),
    (&["Average"], merge, vars::none),
    (&["Maximum"], merge, vars::none),
    (&["Minimum"], merge, vars::none),
    (&["Concatenate"], concatenate, vars::none),
    (&["Dot"], dot, vars::none),
    (&["Reshape"], reshape, vars::none),
    (&["Permute"], permute, vars::none),
    (&["RepeatVector"], repeat_vector, vars::none),
    (&["GlobalAveragePooling1D", "GlobalAvgPool1D"], misc::global_average_pool1d, vars::none),
    (&["Embedding"], embedding, vars::embedding),
    (&["Rescaling"], rescaling, vars::none),
    (&["ZeroPadding2D"], zero_padding2d, vars::none),
    (&["Cropping2D"], cropping2d, vars::none),
    (&["Normalization"], normalization, vars::normalization),
    (&["GlobalMaxPooling2D", "GlobalMaxPool2D"], misc::global_max_pool2d, vars::none),
    (&["GlobalMaxPooling1D", "GlobalMaxPool1D"], misc::global_max_pool1d, vars::none),
    (&["MaxPooling1D", "MaxPool1D"], misc::pool1d, vars::none),
    (&["AveragePooling1D", "AvgPool1D"], misc::pool1d, vars::none),
    (&["Softmax"], misc::softmax, vars::none),
    (&["UnitNormalization"], misc::unit_normalization, vars::none),
    (&["ELU"], misc::elu, vars::none),
    (&["PReLU"], misc::prelu, vars::prelu),
    (&["LayerScale"], misc::layer_scale, vars::layer_scale),
    (&["CustomScaleLayer"], misc::custom_scale, vars::none),
    (&["DepthwiseConv2D"], depthwise_conv2d, vars::kernel_bias),
    (&["SeparableConv2D", "SeparableConvolution2D"], separable_conv2d, vars::separable),
    (&["Conv1D", "Convolution1D"], conv1d, vars::kernel_bias),
];

/// The classes errors list as supported: the first name of each row (the others are
/// Keras' aliases, and the noise layers that `Dropout` stands for).
pub(crate) static SUPPORTED_LAYERS: LazyLock<String> =
    LazyLock::new(|| TABLE.iter().map(|(classes, ..)| classes[0]).collect::<Vec<_>>().join(", "));

/// Whether the importer runs layers of this class (aliases included).
pub(crate) fn is_supported(class: &str) -> bool {
    TABLE.iter().any(|(classes, ..)| classes.contains(&class))
}

/// Builds the layer of a (non-input) entry from its table row (a Keras 3 operation node:
/// from [`super::merge::op_node`]).
pub(super) fn build(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    if is_op_node(ctx.entry) {
        return op_node(ctx);
    }
    match TABLE.iter().find(|(classes, ..)| classes.contains(&ctx.entry.class)) {
        Some((_, build, _)) => misc::build_with_softmax(ctx, *build),
        None if is_custom_class(ctx.entry) => Err(Error::CustomLayer {
            file: ctx.file.to_string(),
            layer: ctx.entry.name.clone(),
            class: ctx.entry.class.to_string(),
            supported: SUPPORTED_LAYERS.as_str(),
        }),
        None => Err(Error::UnsupportedLayer {
            file: ctx.file.to_string(),
            layer: ctx.entry.name.clone(),
            class: ctx.entry.class.to_string(),
            supported: SUPPORTED_LAYERS.as_str(),
        }),
    }
}

/// Whether an entry is of a class the user registered (Keras 3 writes its
/// `registered_name`, `package>Name`, and a module outside Keras; a legacy `.h5` writes
/// `package>Name` as the class), not a Keras built-in.
fn is_custom_class(entry: &Entry) -> bool {
    let text = |key: &str| entry.value.get(key).and_then(Value::as_str);
    text("registered_name").is_some()
        || text("module").is_some_and(|m| m != "keras" && !m.starts_with("keras."))
        || entry.class.contains('>')
}

/// Keras 3 dataset paths (relative to the layer's group) → the names the builders take,
/// for one layer entry (nothing for classes the importer does not run).
pub(crate) fn keras3_variables(entry: &Entry) -> Variables {
    TABLE.iter().find(|(classes, ..)| classes.contains(&entry.class)).map_or_else(Vec::new, |(_, _, vars)| vars(entry))
}

pub(super) fn layer(op: impl LayerOp) -> Result<Arc<dyn LayerOp>> {
    Ok(Arc::new(op))
}

fn input_layer(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    // The walker takes the model's input apart; any other InputLayer is its error.
    Err(Error::ModelFormat {
        file: ctx.file.to_string(),
        reason: format!("InputLayer {:?} is not the model's input", ctx.entry.name),
    })
}

fn conv2d(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let (entry, channels) = (ctx.entry, ctx.channels());
    channels_last(entry)?;
    let filters = positive(entry, "filters")?;
    let config = Conv2dConfig {
        in_channels: channels,
        filters,
        kernel: pair(entry, "kernel_size", None)?,
        strides: pair(entry, "strides", Some((1, 1)))?,
        dilation: pair(entry, "dilation_rate", Some((1, 1)))?,
        padding: padding(entry)?,
        activation: activation(entry, "activation")?,
    };
    if ctx.input.len() != 4 {
        return Err(Error::shape(
            format!("layer {:?} (Conv2D input)", entry.name),
            "[batch, h, w, c]",
            format!("{:?}", ctx.input),
        ));
    }
    if entry.config.get("groups").is_some_and(|g| g.as_u64() != Some(1)) {
        return grouped_conv2d(ctx, config);
    }
    let kernel = ctx.weights.take(&entry.name, "kernel", &[config.kernel.0, config.kernel.1, channels, filters])?;
    let bias = optional(ctx, "use_bias", "bias", filters)?;
    layer(Conv2d::new(config, kernel, bias))
}

/// A weight that exists when the boolean setting `flag` (default true) is set.
pub(super) fn optional(ctx: &mut Context, flag_key: &str, name: &str, len: usize) -> Result<Option<Vec<f32>>> {
    if ctx.entry.flag(flag_key, true) {
        Ok(Some(ctx.weights.take(&ctx.entry.name, name, &[len])?))
    } else {
        Ok(None)
    }
}

fn dense(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let (entry, channels) = (ctx.entry, ctx.channels());
    let units = positive(entry, "units")?;
    let activation = activation(entry, "activation")?;
    let kernel = ctx.weights.take(&entry.name, "kernel", &[channels, units])?;
    let bias = optional(ctx, "use_bias", "bias", units)?;
    layer(Dense { in_features: channels, out_features: units, kernel, bias, activation, residual: false })
}

fn pool2d(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let entry = ctx.entry;
    channels_last(entry)?;
    let pool = pair(entry, "pool_size", Some((2, 2)))?;
    let kind = if entry.class.starts_with("Max") { PoolKind::Max } else { PoolKind::Average };
    let strides = pair(entry, "strides", Some(pool))?;
    layer(Pool2d(Pool2dConfig { kind, pool, strides, padding: padding(entry)? }))
}

fn flatten(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    channels_last(ctx.entry)?;
    layer(Flatten)
}

fn activation_layer(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    layer(ActivationLayer(activation(ctx.entry, "activation")?))
}

/// LeakyReLU: `negative_slope` (Keras 3) or `alpha` (Keras 2), default 0.3.
fn leaky_relu(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let entry = ctx.entry;
    let key = if entry.config.get("alpha").is_some() { "alpha" } else { "negative_slope" };
    let value = entry.config.get(key).unwrap_or(&Value::Null);
    let slope = match value {
        Value::Null => 0.3,
        v => v.as_f64().filter(|s| s.is_finite()).ok_or_else(|| unsupported(entry, key, v, "a finite number"))?,
    };
    layer(ActivationLayer(Activation::leaky_relu(slope as f32)))
}

fn identity(_ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    layer(Identity)
}

fn masking(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    layer(Masking { mask_value: ctx.entry.config.get("mask_value").and_then(Value::as_f64).unwrap_or(0.0) as f32 })
}

/// Whether the `axis` setting names the last axis of an input of `rank` axes.
fn is_last_axis(axis: &Value, rank: usize) -> bool {
    let last = |v: &Value| v.as_i64() == Some(-1) || v.as_u64() == Some(rank as u64 - 1);
    match axis {
        Value::Number(_) => last(axis),
        Value::Array(items) if items.len() == 1 => last(&items[0]),
        _ => false,
    }
}

fn epsilon(entry: &Entry) -> f32 {
    entry.config.get("epsilon").and_then(Value::as_f64).unwrap_or(1e-3) as f32
}

fn layer_norm(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let (entry, channels) = (ctx.entry, ctx.channels());
    let axis = entry.config.get("axis").unwrap_or(&Value::Null);
    if !is_last_axis(axis, ctx.input.len()) {
        return Err(unsupported(entry, "axis", axis, "only the last axis"));
    }
    if entry.flag("rms_scaling", false) {
        return Err(unsupported(entry, "rms_scaling", &Value::Bool(true), "plain LayerNormalization only"));
    }
    let gamma = optional(ctx, "scale", "gamma", channels)?.unwrap_or_else(|| vec![1.0; channels]);
    let beta = optional(ctx, "center", "beta", channels)?.unwrap_or_else(|| vec![0.0; channels]);
    layer(LayerNorm { gamma, beta, eps: epsilon(entry), residual: false })
}

fn batch_norm(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let (entry, channels) = (ctx.entry, ctx.channels());
    let axis = entry.config.get("axis").unwrap_or(&Value::Null);
    if !is_last_axis(axis, ctx.input.len()) {
        return Err(unsupported(entry, "axis", axis, "only the last (channels) axis"));
    }
    let gamma = optional(ctx, "scale", "gamma", channels)?;
    let beta = optional(ctx, "center", "beta", channels)?;
    let mean = ctx.weights.take(&entry.name, "moving_mean", &[channels])?;
    let variance = ctx.weights.take(&entry.name, "moving_variance", &[channels])?;
    layer(BatchNorm { gamma, beta, mean, variance, eps: epsilon(entry), activation: Activation::Linear })
}

/// A setting that is one number or a list of numbers (`default` when absent).
fn numbers(entry: &Entry, key: &str, default: Option<f32>) -> Result<Vec<f32>> {
    let value = entry.config.get(key).unwrap_or(&Value::Null);
    let list = match value {
        Value::Null => default.map(|d| vec![d]),
        Value::Number(n) => n.as_f64().map(|v| vec![v as f32]),
        Value::Array(items) => items.iter().map(|v| v.as_f64().map(|v| v as f32)).collect(),
        _ => None,
    };
    list.filter(|l| !l.is_empty() && l.iter().all(|v| v.is_finite()))
        .ok_or_else(|| unsupported(entry, key, value, "a finite number or a list of them"))
}

/// A 2-D border setting as Keras writes it: `n`, `(rows, cols)` or `((top, bottom), (left,
/// right))`, as (top, bottom, left, right).
fn borders(entry: &Entry, key: &str) -> Result<(usize, usize, usize, usize)> {
    let value = entry.config.get(key).unwrap_or(&Value::Null);
    let size = |v: &Value| v.as_u64().filter(|&n| n <= MAX_SETTING).map(|n| n as usize);
    let side = |v: &Value| match v {
        Value::Array(pair) if pair.len() == 2 => Some((size(&pair[0])?, size(&pair[1])?)),
        v => size(v).map(|n| (n, n)),
    };
    let parsed = match value {
        Value::Array(axes) if axes.len() == 2 => side(&axes[0]).zip(side(&axes[1])),
        v => size(v).map(|n| ((n, n), (n, n))),
    };
    parsed
        .map(|((top, bottom), (left, right))| (top, bottom, left, right))
        .ok_or_else(|| unsupported(entry, key, value, "n, (rows, columns) or ((top, bottom), (left, right))"))
}

fn zero_padding2d(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    channels_last(ctx.entry)?;
    let (top, bottom, left, right) = borders(ctx.entry, "padding")?;
    layer(ZeroPadding2d { top, bottom, left, right })
}

fn cropping2d(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    channels_last(ctx.entry)?;
    let (top, bottom, left, right) = borders(ctx.entry, "cropping")?;
    layer(Cropping2d { top, bottom, left, right })
}

fn rescaling(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let (scale, offset) = (numbers(ctx.entry, "scale", None)?, numbers(ctx.entry, "offset", Some(0.0))?);
    layer(Rescaling { scale, offset })
}

/// Normalization over the last axis, with the mean and variance of the config or, when
/// the model was adapted, of its weights (`count` is read and left: inference needs none).
fn normalization(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let (entry, channels) = (ctx.entry, ctx.channels());
    let axis = entry.config.get("axis").unwrap_or(&Value::Null);
    if !is_last_axis(axis, ctx.input.len()) {
        return Err(unsupported(entry, "axis", axis, "only the last (channels) axis"));
    }
    let invert = entry.flag("invert", false);
    let given = |key: &str| entry.config.get(key).is_some_and(|v| !v.is_null());
    let (mean, variance) = if given("mean") || given("variance") {
        (numbers(entry, "mean", None)?, numbers(entry, "variance", None)?)
    } else {
        let mean = ctx.weights.take(&entry.name, "mean", &[channels])?;
        let variance = ctx.weights.take(&entry.name, "variance", &[channels])?;
        ctx.weights.take(&entry.name, "count", &[])?;
        (mean, variance)
    };
    if variance.iter().any(|&v| v < 0.0) {
        return Err(unsupported(entry, "variance", &Value::String("a negative value".into()), "variances >= 0"));
    }
    layer(Normalization { mean, variance, invert })
}

fn multi_head_attention(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let (entry, channels) = (ctx.entry, ctx.channels());
    for key in ["use_causal_mask", "use_gate"] {
        if let Some(v) = entry.config.get(key).filter(|v| v.as_bool() == Some(true)) {
            return Err(unsupported(entry, key, v, "plain self-attention only"));
        }
    }
    for key in ["output_shape", "sliding_window"] {
        if let Some(v) = entry.config.get(key).filter(|v| !v.is_null()) {
            return Err(unsupported(entry, key, v, "plain self-attention only"));
        }
    }
    if let Some(v) = entry
        .config
        .get("attention_axes")
        .filter(|v| !v.is_null() && v.as_array().is_none_or(|a| a.len() != 1 || a[0].as_i64() != Some(1)))
    {
        return Err(unsupported(entry, "attention_axes", v, "attention over the time axis only"));
    }
    if ctx.input.len() != 3 {
        return Err(Error::shape(
            format!("layer {:?} (MultiHeadAttention input)", entry.name),
            "[batch, steps, features]",
            format!("{:?}", ctx.input),
        ));
    }
    let heads = positive(entry, "num_heads")?;
    let key_dim = positive(entry, "key_dim")?;
    if let Some(v) = entry.config.get("value_dim").filter(|v| !v.is_null() && v.as_u64() != Some(key_dim as u64)) {
        return Err(unsupported(entry, "value_dim", v, "value_dim equal to key_dim"));
    }
    let width = heads * key_dim;
    let use_bias = entry.flag("use_bias", true);
    let weights = &mut *ctx.weights;
    let mut projection = |part: &str| -> Result<(Vec<f32>, Vec<f32>)> {
        let path = format!("{}/{part}", entry.name);
        let kernel = weights.take(&path, "kernel", &[channels, heads, key_dim])?;
        let bias = if use_bias { weights.take(&path, "bias", &[heads, key_dim])? } else { vec![0.0; width] };
        Ok((kernel, bias))
    };
    let (q, qb) = projection("query")?;
    let (k, kb) = projection("key")?;
    let (v, vb) = projection("value")?;
    let path = format!("{}/attention_output", entry.name);
    let output_kernel = weights.take(&path, "kernel", &[heads, key_dim, channels])?;
    let output_bias = if use_bias { weights.take(&path, "bias", &[channels])? } else { vec![0.0; channels] };
    let weights =
        crate::ops::MultiHeadAttentionWeights { kernels: [q, k, v], biases: [qb, kb, vb], output_kernel, output_bias };
    layer(MultiHeadAttention { heads, key_dim, weights, masked: false })
}

pub(super) fn unsupported(entry: &Entry, key: &str, value: &Value, hint: &str) -> Error {
    Error::UnsupportedConfig {
        layer: entry.name.clone(),
        key: key.to_string(),
        value: value.to_string(),
        hint: if hint.is_empty() { String::new() } else { format!(" ({hint})") },
    }
}

/// Reads an int-or-pair setting (`kernel_size: 3` or `[3, 3]`).
pub(super) fn pair(entry: &Entry, key: &str, default: Option<(usize, usize)>) -> Result<(usize, usize)> {
    let value = entry.config.get(key).unwrap_or(&Value::Null);
    let parsed = match value {
        Value::Number(n) => n.as_u64().map(|v| (v as usize, v as usize)),
        Value::Array(items) if items.len() == 2 => {
            items[0].as_u64().zip(items[1].as_u64()).map(|(a, b)| (a as usize, b as usize))
        }
        Value::Null => default,
        _ => None,
    };
    let in_range = |v: usize| v > 0 && v as u64 <= MAX_SETTING;
    match parsed {
        Some((a, b)) if in_range(a) && in_range(b) => Ok((a, b)),
        _ => Err(unsupported(entry, key, value, "expected a positive int or a pair of them, at most 2^31 - 1")),
    }
}

pub(super) fn padding(entry: &Entry) -> Result<Padding> {
    let value = entry.config.get("padding").unwrap_or(&Value::Null);
    match value.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("valid") | None => Ok(Padding::Valid),
        Some("same") => Ok(Padding::Same),
        _ => Err(unsupported(entry, "padding", value, "valid or same")),
    }
}

pub(super) fn channels_last(entry: &Entry) -> Result<()> {
    match entry.config.get("data_format") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s == "channels_last" => Ok(()),
        Some(other) => Err(unsupported(entry, "data_format", other, "only channels_last is supported")),
    }
}

/// The activation a Keras name means (`hard_sigmoid` meant another function to Keras 2).
pub(super) fn activation_named(name: &str, keras2: bool) -> Option<Activation> {
    Some(match name {
        "linear" | "None" | "" => Activation::Linear,
        "relu" => Activation::Relu,
        "sigmoid" => Activation::Sigmoid,
        "tanh" => Activation::Tanh,
        "gelu" => Activation::Gelu,
        "silu" | "swish" => Activation::Silu,
        "elu" => Activation::Elu,
        "softplus" => Activation::Softplus,
        "selu" => Activation::Selu,
        "hard_sigmoid" if keras2 => Activation::HardSigmoidClip,
        "hard_sigmoid" => Activation::HardSigmoid,
        "relu6" => Activation::Relu6,
        "hard_silu" | "hard_swish" => Activation::HardSilu,
        "mish" => Activation::Mish,
        "leaky_relu" => Activation::leaky_relu(0.2),
        _ => return None,
    })
}

/// Keras serialises an activation as a name, or (Keras 3, custom objects) an object.
pub(super) fn activation(entry: &Entry, key: &str) -> Result<Activation> {
    let value = entry.config.get(key).unwrap_or(&Value::Null);
    let parsed = activation_name(value).and_then(|name| activation_named(name, entry.keras2));
    parsed.ok_or_else(|| {
        unsupported(
            entry,
            key,
            value,
            "supported: linear, relu, relu6, leaky_relu, sigmoid, tanh, gelu, silu/swish, hard_silu/hard_swish, \
             mish, elu, softplus, selu, hard_sigmoid; softmax, log_softmax on Dense, Conv and Activation layers",
        )
    })
}

/// A required positive integer setting (`units`, `filters`).
pub(super) fn positive(entry: &Entry, key: &str) -> Result<usize> {
    let value = entry.config.get(key).unwrap_or(&Value::Null);
    value
        .as_u64()
        .filter(|&v| v > 0 && v <= MAX_SETTING)
        .map(|v| v as usize)
        .ok_or_else(|| unsupported(entry, key, value, "a positive integer, at most 2^31 - 1"))
}
