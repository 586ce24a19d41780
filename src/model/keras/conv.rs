//! The Keras grouped convolutions: DepthwiseConv2D, SeparableConv2D and Conv2D with
//! `groups > 1`, read into [`DepthwiseConv2d`] / [`SeparableConv2d`]; and Conv1D (any
//! groups), read into [`Conv1d`] (kernel `(k, C / groups, filters)`, as Keras stores it). Keras layouts are the
//! engine's: depthwise kernel `(kh, kw, C, m)` (output channel `c·m + j`), pointwise kernel
//! `(1, 1, C·m, filters)`, grouped kernel `(kh, kw, C / groups, filters)`; nothing is
//! transposed. Weight names: Keras 3 calls DepthwiseConv2D's kernel `kernel`, Keras 2
//! `.h5` files `depthwise_kernel`; SeparableConv2D's are `depthwise_kernel`,
//! `pointwise_kernel`, `bias` in both.

use std::sync::Arc;

use serde_json::Value;

use super::layers::{activation, channels_last, layer, optional, padding, pair, positive, unsupported, Context};
use super::misc::size;
use super::{Entry, MAX_SETTING};
use crate::error::{Error, Result};
use crate::layers::{Conv1d, Conv1dConfig, Conv1dPadding, Conv2d, DepthwiseConv2d, LayerOp, SeparableConv2d};
use crate::ops::{Activation, Conv2dConfig, DepthwiseConv2dConfig, Padding};

/// The window settings shared by the three classes (`kernel_size`, `strides`,
/// `dilation_rate`, `padding`, `activation`), for `in_channels` → `filters`.
fn window(ctx: &Context, filters: usize) -> Result<Conv2dConfig> {
    let entry = ctx.entry;
    channels_last(entry)?;
    if ctx.input.len() != 4 {
        return Err(Error::shape(
            format!("layer {:?} ({} input)", entry.name, entry.class),
            "[batch, h, w, c]",
            format!("{:?}", ctx.input),
        ));
    }
    Ok(Conv2dConfig {
        in_channels: ctx.channels(),
        filters,
        kernel: pair(entry, "kernel_size", None)?,
        strides: pair(entry, "strides", Some((1, 1)))?,
        dilation: pair(entry, "dilation_rate", Some((1, 1)))?,
        padding: padding(entry)?,
        activation: activation(entry, "activation")?,
    })
}

/// `depth_multiplier` (default 1) and the depthwise output channels `channels · m`.
fn depth_multiplier(entry: &Entry, channels: usize) -> Result<(usize, usize)> {
    let m = match entry.config.get("depth_multiplier") {
        None | Some(Value::Null) => 1,
        Some(_) => positive(entry, "depth_multiplier")?,
    };
    match channels.checked_mul(m).filter(|&out| out > 0 && out as u64 <= MAX_SETTING) {
        Some(out) => Ok((m, out)),
        None => Err(unsupported(
            entry,
            "depth_multiplier",
            &Value::from(m),
            &format!("input channels ({channels}) · depth_multiplier at most 2^31 - 1"),
        )),
    }
}

/// The depthwise kernel `(kh, kw, C, m)`: `kernel` (Keras 3), else `depthwise_kernel`
/// (Keras 2); when neither is stored, the error names Keras 3's.
fn depthwise_kernel(ctx: &mut Context, shape: &[usize]) -> Result<Vec<f32>> {
    let name = &ctx.entry.name;
    match ctx.weights.take(name, "kernel", shape) {
        Err(missing @ Error::MissingWeight { .. }) => match ctx.weights.take(name, "depthwise_kernel", shape) {
            Err(Error::MissingWeight { .. }) => Err(missing),
            found => found,
        },
        found => found,
    }
}

pub(super) fn depthwise_conv2d(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let (entry, channels) = (ctx.entry, ctx.channels());
    let (m, filters) = depth_multiplier(entry, channels)?;
    let conv = window(ctx, filters)?;
    let kernel = depthwise_kernel(ctx, &[conv.kernel.0, conv.kernel.1, channels, m])?;
    let bias = optional(ctx, "use_bias", "bias", filters)?;
    layer(DepthwiseConv2d::depthwise(channels, m, conv, kernel, bias)?)
}

pub(super) fn separable_conv2d(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let (entry, channels) = (ctx.entry, ctx.channels());
    let filters = positive(entry, "filters")?;
    let (m, middle) = depth_multiplier(entry, channels)?;
    let outer = window(ctx, filters)?;
    let depthwise_conv = Conv2dConfig { activation: Activation::Linear, ..outer.clone() };
    let shape = [outer.kernel.0, outer.kernel.1, channels, m];
    let depthwise_kernel = ctx.weights.take(&entry.name, "depthwise_kernel", &shape)?;
    let pointwise_kernel = ctx.weights.take(&entry.name, "pointwise_kernel", &[1, 1, middle, filters])?;
    let bias = optional(ctx, "use_bias", "bias", filters)?;
    let depthwise = DepthwiseConv2d::depthwise(channels, m, depthwise_conv, depthwise_kernel, None)?;
    let pointwise = Conv2dConfig {
        in_channels: middle,
        filters,
        kernel: (1, 1),
        strides: (1, 1),
        dilation: (1, 1),
        padding: Padding::Valid,
        activation: outer.activation,
    };
    layer(SeparableConv2d::new(depthwise, Conv2d::new(pointwise, pointwise_kernel, bias))?)
}

/// Conv2D with `groups > 1` (the Conv2D builder hands it over with its parsed `config`):
/// kernel `(kh, kw, C / groups, filters)`.
pub(super) fn grouped_conv2d(ctx: &mut Context, config: Conv2dConfig) -> Result<Arc<dyn LayerOp>> {
    let entry = ctx.entry;
    let groups = positive(entry, "groups")?;
    let (channels, filters) = (config.in_channels, config.filters);
    if !channels.is_multiple_of(groups) || !filters.is_multiple_of(groups) {
        return Err(unsupported(
            entry,
            "groups",
            &Value::from(groups),
            &format!("groups dividing the input channels ({channels}) and filters ({filters})"),
        ));
    }
    let kernel =
        ctx.weights.take(&entry.name, "kernel", &[config.kernel.0, config.kernel.1, channels / groups, filters])?;
    let bias = optional(ctx, "use_bias", "bias", filters)?;
    layer(DepthwiseConv2d::grouped(DepthwiseConv2dConfig { conv: config, groups }, kernel, bias)?)
}

/// Conv1D on `[batch, steps, channels]`: `kernel_size`, `strides`, `dilation_rate` (`n` or
/// `[n]`), `padding` valid / same / causal, `groups` dividing the input channels and the
/// filters, `use_bias`, `activation`; kernel `(k, C / groups, filters)`.
pub(super) fn conv1d(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let (entry, channels) = (ctx.entry, ctx.channels());
    channels_last(entry)?;
    if ctx.input.len() != 3 {
        return Err(Error::shape(
            format!("layer {:?} ({} input)", entry.name, entry.class),
            "[batch, steps, channels]",
            format!("{:?}", ctx.input),
        ));
    }
    let value = entry.config.get("padding").unwrap_or(&Value::Null);
    let padding = match value.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("valid") | None => Conv1dPadding::Valid,
        Some("same") => Conv1dPadding::Same,
        Some("causal") => Conv1dPadding::Causal,
        _ => return Err(unsupported(entry, "padding", value, "valid, same or causal")),
    };
    let groups = match entry.config.get("groups") {
        None | Some(Value::Null) => 1,
        Some(_) => positive(entry, "groups")?,
    };
    let filters = positive(entry, "filters")?;
    if !channels.is_multiple_of(groups) || !filters.is_multiple_of(groups) {
        return Err(unsupported(
            entry,
            "groups",
            &Value::from(groups),
            &format!("groups dividing the input channels ({channels}) and filters ({filters})"),
        ));
    }
    let config = Conv1dConfig {
        in_channels: channels,
        filters,
        kernel: size(entry, "kernel_size", None)?,
        stride: size(entry, "strides", Some(1))?,
        dilation: size(entry, "dilation_rate", Some(1))?,
        padding,
        groups,
        activation: activation(entry, "activation")?,
    };
    let kernel = ctx.weights.take(&entry.name, "kernel", &config.kernel_shape())?;
    let bias = optional(ctx, "use_bias", "bias", filters)?;
    layer(Conv1d::new(config, kernel, bias)?)
}
