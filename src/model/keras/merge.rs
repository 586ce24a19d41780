//! Keras layers that merge or rearrange values, and the operation nodes Keras 3 writes into
//! a Functional config for plain arithmetic on tensors:
//!
//! - merge layers (`Add`, `Subtract`, `Multiply`, `Average`, `Maximum`, `Minimum`) over
//!   their inputs, with broadcasting; `Concatenate(axis)`; `Dot(axes, normalize)` of two
//!   flat tensors (a twin head's similarity);
//! - `Reshape`, `Permute`, `RepeatVector`;
//! - operation nodes (`module` `keras.src.ops.*`): `x + 3.0`, `x * (1/6)`, `2 - x`, `x / y`,
//!   `keras.ops.maximum(x, 0.5)`, ... (a tensor and a constant become a [`Scalar`], two
//!   tensors a [`Merge`]), and the unary activations `keras.ops.relu(x)` and the like.

use std::sync::Arc;

use serde_json::Value;

use super::layers::{activation_named, layer, unsupported, Context};
use super::{Entry, MAX_SETTING};
use crate::error::{Error, Result};
use crate::layers::{
    ActivationLayer, Concatenate, Dot, LayerOp, Merge, MergeKind, Permute, RepeatVector, Reshape, Scalar,
};
use crate::ops::{Activation, Combine};

/// The operation nodes the importer runs, for error messages.
pub(crate) const SUPPORTED_OPS: &str = "the operation nodes Add, Subtract, Multiply, TrueDivide/Divide, Maximum, \
                                        Minimum (of two tensors, or a tensor and a number), Negative, and Relu, \
                                        Relu6, Sigmoid, Tanh, Silu/Swish, HardSigmoid, HardSilu/HardSwish, Gelu, \
                                        Softplus, Elu, Selu, Mish";

/// Whether a config entry is a Keras 3 operation node (`keras.ops.add(x, 3.0)`, `x + 3.0`)
/// rather than a layer: in a `.keras` file its `module` is one of `keras.src.ops`. A legacy
/// `.h5` file writes no `module` for either (MobileNetV3's `x + 3.0` reads there as class
/// `Add`, like the layer): the node's config then holds its name only, where every layer's
/// also holds `trainable`.
pub(crate) fn is_op_node(entry: &Entry) -> bool {
    match entry.value.get("module").and_then(Value::as_str) {
        Some(module) => module.starts_with("keras.src.ops") || module.starts_with("keras.ops"),
        None => {
            (is_supported_op(entry.class) || entry.class == "Gelu")
                && entry.config.get("trainable").is_none()
                && entry.config.get("name").is_some()
        }
    }
}

/// Whether the importer runs this operation node's class.
pub(crate) fn is_supported_op(class: &str) -> bool {
    binary_op(class).is_some() || unary_op(class).is_some() || class == "Negative"
}

fn merge_kind(class: &str) -> Option<MergeKind> {
    Some(match class {
        "Add" => MergeKind::Add,
        "Subtract" => MergeKind::Subtract,
        "Multiply" => MergeKind::Multiply,
        "Average" => MergeKind::Average,
        "Maximum" => MergeKind::Maximum,
        "Minimum" => MergeKind::Minimum,
        _ => return None,
    })
}

/// A merge layer over all its inputs.
pub(super) fn merge(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let kind = merge_kind(ctx.entry.class).ok_or_else(|| unknown(ctx))?;
    layer(Merge::new(kind, ctx.inputs.len())?)
}

/// `Concatenate(axis)`: any axis but the batch's, counted from the end when negative.
pub(super) fn concatenate(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let entry = ctx.entry;
    let rank = ctx.input.len() as i64;
    let value = entry.config.get("axis").unwrap_or(&Value::Null);
    let axis = match value {
        Value::Null => rank - 1,
        v => v.as_i64().map(|a| if a < 0 { a + rank } else { a }).unwrap_or(-1),
    };
    if axis < 1 || axis >= rank {
        return Err(unsupported(entry, "axis", value, &format!("an axis of the inputs' {} but the batch axis", rank)));
    }
    layer(Concatenate { axis: axis as usize, arity: ctx.inputs.len() })
}

/// Keras `Dot` of two `[batch, features]` tensors over the features (`axes` 1 or -1, or a
/// pair of them); `normalize` makes it the cosine similarity.
pub(super) fn dot(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let entry = ctx.entry;
    let value = entry.config.get("axes").unwrap_or(&Value::Null);
    let flat = ctx.inputs.len() == 2 && ctx.inputs.iter().all(|s| s.len() == 2);
    let last = |a: &Value| matches!(a.as_i64(), Some(1 | -1));
    let axes_ok = match value {
        Value::Array(pair) => pair.len() == 2 && pair.iter().all(last),
        v => last(v),
    };
    if !flat {
        return Err(unsupported(
            entry,
            "input",
            &Value::from(format!("{:?}", ctx.inputs)),
            "two [batch, features] tensors",
        ));
    }
    if !axes_ok {
        return Err(unsupported(entry, "axes", value, "1 or -1 (the features of two [batch, features] tensors)"));
    }
    layer(Dot { normalize: entry.flag("normalize", false) })
}

pub(super) fn reshape(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let entry = ctx.entry;
    let value = entry.config.get("target_shape").unwrap_or(&Value::Null);
    let dims = value.as_array().map(|dims| {
        dims.iter()
            .map(|d| match d.as_i64() {
                Some(-1) => Some(None),
                Some(n) if n > 0 && n as u64 <= MAX_SETTING => Some(Some(n as usize)),
                _ => None,
            })
            .collect::<Option<Vec<Option<usize>>>>()
    });
    match dims.flatten() {
        Some(target) if target.iter().filter(|d| d.is_none()).count() <= 1 => layer(Reshape { target }),
        _ => Err(unsupported(entry, "target_shape", value, "positive sizes, at most one -1")),
    }
}

pub(super) fn permute(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let entry = ctx.entry;
    let value = entry.config.get("dims").unwrap_or(&Value::Null);
    let order = value.as_array().and_then(|dims| {
        dims.iter().map(|d| d.as_u64().filter(|d| (1..=MAX_SETTING).contains(d)).map(|d| d as usize - 1)).collect()
    });
    match order {
        Some(order) => layer(Permute { order }),
        None => Err(unsupported(entry, "dims", value, "a permutation of the sample axes, numbered from 1")),
    }
}

pub(super) fn repeat_vector(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    layer(RepeatVector { times: super::layers::positive(ctx.entry, "n")? })
}

fn binary_op(class: &str) -> Option<(Combine, MergeKind)> {
    Some(match class {
        "Add" => (Combine::Add, MergeKind::Add),
        "Subtract" => (Combine::Subtract, MergeKind::Subtract),
        "Multiply" => (Combine::Multiply, MergeKind::Multiply),
        "TrueDivide" | "Divide" => (Combine::Divide, MergeKind::Divide),
        "Maximum" => (Combine::Maximum, MergeKind::Maximum),
        "Minimum" => (Combine::Minimum, MergeKind::Minimum),
        _ => return None,
    })
}

fn unary_op(class: &str) -> Option<&'static str> {
    Some(match class {
        "Relu" => "relu",
        "Relu6" => "relu6",
        "Sigmoid" => "sigmoid",
        "Tanh" => "tanh",
        "Silu" | "Swish" => "silu",
        "HardSigmoid" => "hard_sigmoid",
        "HardSilu" | "HardSwish" => "hard_silu",
        "Softplus" => "softplus",
        "Elu" => "elu",
        "Selu" => "selu",
        "Mish" => "mish",
        _ => return None,
    })
}

/// An operation node: arithmetic of two tensors or of a tensor and a number, or a unary
/// activation.
pub(super) fn op_node(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let entry = ctx.entry;
    let class = entry.class;
    if class == "Negative" && ctx.inputs.len() == 1 {
        return layer(Scalar { combine: Combine::Multiply, value: -1.0, constant_first: false });
    }
    if let Some(name) = unary_op(class) {
        let activation = activation_named(name, false).ok_or_else(|| unknown(ctx))?;
        return layer(ActivationLayer(activation));
    }
    if class == "Gelu" {
        // keras.ops.gelu approximates by default (the `gelu` activation does not).
        let approximate = entry.config.get("approximate").and_then(Value::as_bool).unwrap_or(true);
        return layer(ActivationLayer(if approximate { Activation::GeluTanh } else { Activation::Gelu }));
    }
    let (combine, kind) = binary_op(class).ok_or_else(|| unknown(ctx))?;
    let args = entry.only_call_args().and_then(Value::as_array).ok_or_else(|| unknown(ctx))?;
    let constants: Vec<(usize, &Value)> = args.iter().enumerate().filter(|(_, a)| !is_tensor(a)).collect();
    match (args.len(), constants.as_slice()) {
        (2, []) => layer(Merge::new(kind, ctx.inputs.len())?),
        (2, [(position, value)]) => {
            let number = value.as_f64().filter(|v| v.is_finite() && (*v as f32).is_finite());
            let Some(number) = number else {
                return Err(unsupported(entry, "argument", value, "a tensor, or a finite number (not an array)"));
            };
            layer(Scalar { combine, value: number as f32, constant_first: *position == 0 })
        }
        _ => Err(unknown(ctx)),
    }
}

/// Whether a call argument is a tensor (Keras 3 `__keras_tensor__`), not a constant.
fn is_tensor(arg: &Value) -> bool {
    arg.get("class_name").and_then(Value::as_str) == Some("__keras_tensor__")
}

fn unknown(ctx: &Context) -> Error {
    Error::UnsupportedLayer {
        file: ctx.file.to_string(),
        layer: ctx.entry.name.clone(),
        class: format!("{} (a Keras operation node)", ctx.entry.class),
        supported: SUPPORTED_OPS,
    }
}
