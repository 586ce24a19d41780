//! Builders of the Keras importer's pooling, softmax, normalisation and parametrised
//! activation rows (see [`super::layers`]' table): MaxPooling1D / AveragePooling1D, the
//! global poolings with `keepdims`, Softmax and the `softmax` / `log_softmax` activation
//! names, UnitNormalization, ReLU with every setting, ELU(alpha), PReLU, ConvNeXt's
//! LayerScale, and InceptionResNetV2's CustomScaleLayer.

use std::ops::Range;
use std::sync::Arc;

use serde_json::Value;

use super::config::{activation_name, Entry};
use super::layers::{channels_last, layer, padding, unsupported, Context};
use super::MAX_SETTING;
use crate::error::{Error, Result};
use crate::layers::{
    ActivationLayer, GlobalAveragePool1d, GlobalAveragePool2d, GlobalPool, LayerOp, LayerScale, Pool1d, Prelu,
    ScaledAdd, Softmax, ThenSoftmax, UnitNorm,
};
use crate::model::weights::Weights;
use crate::ops::{Activation, PoolKind};

/// Classes whose `activation` setting applies to the layer's output, where `softmax` and
/// `log_softmax` (over the last axis, Keras' default) run as a softmax after the layer's
/// kernel. Elsewhere (a recurrent cell's activation) the names stay unsupported.
const OUTPUT_ACTIVATION_CLASSES: [&str; 9] = [
    "Activation",
    "Dense",
    "Conv2D",
    "Convolution2D",
    "Conv1D",
    "Convolution1D",
    "DepthwiseConv2D",
    "SeparableConv2D",
    "EinsumDense",
];

/// `Some(log)` when the entry's `activation` is `softmax` (false) or `log_softmax` (true).
fn softmax_activation(entry: &Entry) -> Option<bool> {
    match activation_name(entry.config.get("activation")?)? {
        "softmax" => Some(false),
        "log_softmax" => Some(true),
        _ => None,
    }
}

/// Runs a row's builder; a softmax / log_softmax output activation becomes the layer with a
/// linear activation followed by a softmax over the last axis (or the softmax alone, for an
/// `Activation` layer).
pub(super) fn build_with_softmax(
    ctx: &mut Context,
    build: fn(&mut Context) -> Result<Arc<dyn LayerOp>>,
) -> Result<Arc<dyn LayerOp>> {
    let entry = ctx.entry;
    let log = match softmax_activation(entry) {
        Some(log) if OUTPUT_ACTIVATION_CLASSES.contains(&entry.class) => log,
        _ => return build(ctx),
    };
    let mut config = entry.config.clone();
    config["activation"] = Value::String("linear".into());
    let linear = Entry { config: &config, ..entry.clone() };
    let op = build(&mut Context {
        entry: &linear,
        input: ctx.input,
        inputs: ctx.inputs,
        weights: &mut *ctx.weights,
        file: ctx.file,
    })?;
    let rank = op.output_shape(&[ctx.input])?.len();
    let softmax = Softmax::last_axis(rank, log);
    if entry.class == "Activation" {
        return layer(softmax);
    }
    layer(ThenSoftmax { op, softmax })
}

/// The axes of an `axis` setting (one number or a list; negative from the end) for an input
/// of `rank` axes, batch axis = 0: one contiguous run, the batch axis excluded.
fn axes(entry: &Entry, key: &str, rank: usize) -> Result<Range<usize>> {
    let value = entry.config.get(key).unwrap_or(&Value::Null);
    let resolve = |v: &Value| {
        let axis = v.as_i64()?;
        let axis = if axis < 0 { axis.checked_add(rank as i64)? } else { axis };
        (1..rank as i64).contains(&axis).then_some(axis as usize)
    };
    let listed: Option<Vec<usize>> = match value {
        Value::Null => resolve(&Value::from(-1)).map(|a| vec![a]),
        Value::Number(_) => resolve(value).map(|a| vec![a]),
        Value::Array(items) if !items.is_empty() => items.iter().map(resolve).collect(),
        _ => None,
    };
    let run = listed.and_then(|mut list| {
        list.sort_unstable();
        list.dedup();
        let (first, last) = (*list.first()?, *list.last()?);
        (last - first + 1 == list.len()).then_some(first..last + 1)
    });
    run.ok_or_else(|| {
        unsupported(
            entry,
            key,
            value,
            &format!("an axis, or a list of adjacent axes, of the {rank}-axis input other than the batch axis 0"),
        )
    })
}

pub(super) fn softmax(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    layer(Softmax { axes: axes(ctx.entry, "axis", ctx.input.len())?, log: false })
}

pub(super) fn unit_normalization(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    layer(UnitNorm { axes: axes(ctx.entry, "axis", ctx.input.len())? })
}

/// A number setting: None when absent or null, an error when not a finite number.
fn number(entry: &Entry, key: &str) -> Result<Option<f32>> {
    match entry.config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .map(|x| Some(x as f32))
            .ok_or_else(|| unsupported(entry, key, v, "a finite number")),
    }
}

/// A number setting that must be >= 0 (Keras' ReLU refuses negative ones).
fn non_negative(entry: &Entry, key: &str) -> Result<Option<f32>> {
    match number(entry, key)? {
        Some(x) if x < 0.0 => Err(unsupported(entry, key, &entry.config[key], "a number >= 0")),
        x => Ok(x),
    }
}

/// ReLU with all of Keras 3's settings: `max_value` (any cap >= 0), `negative_slope`,
/// `threshold` (see [`Activation::relu_with`]).
pub(super) fn relu(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let entry = ctx.entry;
    let slope = non_negative(entry, "negative_slope")?.unwrap_or(0.0);
    let threshold = non_negative(entry, "threshold")?.unwrap_or(0.0);
    let max_value = non_negative(entry, "max_value")?;
    layer(ActivationLayer(Activation::relu_with(slope, max_value, threshold)))
}

/// ELU with its `alpha` (default 1).
pub(super) fn elu(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let alpha = number(ctx.entry, "alpha")?.unwrap_or(1.0);
    layer(ActivationLayer(Activation::elu(alpha)))
}

/// PReLU: a trained `alpha` of the sample's shape with the `shared_axes` (1-based, batch
/// axis excluded) of size 1.
pub(super) fn prelu(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let entry = ctx.entry;
    let sample = ctx.input.get(1..).unwrap_or(&[]).to_vec();
    let mut param = sample.clone();
    let shared = entry.config.get("shared_axes").unwrap_or(&Value::Null);
    let listed: Option<Vec<u64>> = match shared {
        Value::Null => Some(Vec::new()),
        Value::Number(n) => n.as_u64().map(|a| vec![a]),
        Value::Array(items) => items.iter().map(Value::as_u64).collect(),
        _ => None,
    };
    let listed = listed
        .filter(|axes| axes.iter().all(|&a| a >= 1 && a as usize <= sample.len()))
        .ok_or_else(|| unsupported(entry, "shared_axes", shared, "axes 1 .. rank - 1 of the input"))?;
    for axis in listed {
        param[axis as usize - 1] = 1;
    }
    let alpha = ctx.weights.take(&entry.name, "alpha", &param)?;
    let op = Prelu::from_keras(&param, &alpha, &sample).ok_or_else(|| {
        Error::shape(format!("layer {:?} (PReLU alpha)", entry.name), "the input's shape", format!("{param:?}"))
    })?;
    layer(op)
}

/// ConvNeXt's LayerScale: `gamma` of `projection_dim` values (legacy `.h5` files name it
/// `variable`: Keras' add_weight without a name).
pub(super) fn layer_scale(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let (entry, channels) = (ctx.entry, ctx.channels());
    let dim = entry.config.get("projection_dim").unwrap_or(&Value::Null);
    if dim.as_u64() != Some(channels as u64) {
        return Err(unsupported(entry, "projection_dim", dim, &format!("the input's {channels} channels")));
    }
    let gamma = match ctx.weights.take(&entry.name, "gamma", &[channels]) {
        Err(Error::MissingWeight { .. }) => match ctx.weights.take(&entry.name, "variable", &[channels]) {
            // A legacy .h5 numbers its unnamed variables across the whole model: the second
            // LayerScale's is `variable_1`, and so on (ConvNeXt has 18).
            Err(missing @ Error::MissingWeight { .. }) => match numbered_variable(ctx.weights, &entry.name) {
                Some(name) => ctx.weights.take_named(&name, &entry.name, &[channels])?,
                None => return Err(missing),
            },
            taken => taken?,
        },
        taken => taken?,
    };
    layer(LayerScale { gamma, activation: Activation::Linear })
}

/// The one stored `{layer}/variable_N` of `layer` (N digits), if there is exactly one.
fn numbered_variable(weights: &Weights, layer: &str) -> Option<String> {
    let numbered = |name: &String| {
        let (owner, var) = name.rsplit_once('/')?;
        let digits = var.strip_prefix("variable_")?;
        let owner = owner.rsplit('/').next()?;
        (owner == layer && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(())
    };
    let mut found = weights.names().into_iter().filter(|name| numbered(name).is_some());
    match (found.next(), found.next()) {
        (Some(name), None) => Some(name),
        _ => None,
    }
}

fn keepdims(entry: &Entry) -> bool {
    entry.flag("keepdims", false)
}

pub(super) fn global_average_pool2d(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    channels_last(ctx.entry)?;
    layer(GlobalAveragePool2d { keepdims: keepdims(ctx.entry) })
}

pub(super) fn global_max_pool2d(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    channels_last(ctx.entry)?;
    layer(GlobalPool { kind: PoolKind::Max, spatial: 2, keepdims: keepdims(ctx.entry) })
}

/// GlobalAveragePooling1D: the sequence-pool kernel (which a step mask can drive), or with
/// `keepdims` the global pool.
pub(super) fn global_average_pool1d(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    channels_last(ctx.entry)?;
    if keepdims(ctx.entry) {
        return layer(GlobalPool { kind: PoolKind::Average, spatial: 1, keepdims: true });
    }
    layer(GlobalAveragePool1d::default())
}

pub(super) fn global_max_pool1d(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    channels_last(ctx.entry)?;
    layer(GlobalPool { kind: PoolKind::Max, spatial: 1, keepdims: keepdims(ctx.entry) })
}

/// A 1-D size setting: `n` or `[n]` (`default` when absent or null), 1 ..= 2^31 − 1.
pub(super) fn size(entry: &Entry, key: &str, default: Option<usize>) -> Result<usize> {
    let value = entry.config.get(key).unwrap_or(&Value::Null);
    let parsed = match value {
        Value::Null => default.map(|d| d as u64),
        Value::Number(n) => n.as_u64(),
        Value::Array(items) if items.len() == 1 => items[0].as_u64(),
        _ => None,
    };
    parsed
        .filter(|&n| n > 0 && n <= MAX_SETTING)
        .map(|n| n as usize)
        .ok_or_else(|| unsupported(entry, key, value, "a positive int or a list of one, at most 2^31 - 1"))
}

/// MaxPooling1D / AveragePooling1D on `[batch, steps, channels]`.
pub(super) fn pool1d(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let entry = ctx.entry;
    channels_last(entry)?;
    let pool = size(entry, "pool_size", Some(2))?;
    let stride = size(entry, "strides", Some(pool))?;
    let kind = if entry.class.starts_with("Max") { PoolKind::Max } else { PoolKind::Average };
    layer(Pool1d::new(kind, pool, stride, padding(entry)?))
}

/// keras.applications' InceptionResNetV2 `CustomScaleLayer(scale)` (registered as
/// `Custom>CustomScaleLayer`): `inputs[0] + inputs[1] · scale`.
pub(super) fn custom_scale(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let entry = ctx.entry;
    let value = entry.config.get("scale").unwrap_or(&Value::Null);
    let scale = value
        .as_f64()
        .filter(|s| s.is_finite() && (*s as f32).is_finite())
        .ok_or_else(|| unsupported(entry, "scale", value, "a finite number"))?;
    layer(ScaledAdd { scale: scale as f32 })
}
