//! The Keras recurrent layers: LSTM and GRU, alone or in a Bidirectional wrapper, read
//! into [`Recurrent`] (Keras layouts are the engine's: kernel `[in, gates·units]`,
//! recurrent kernel `[units, gates·units]`, gate blocks i,f,c,o / z,r,h).

use std::sync::Arc;

use serde_json::Value;

use super::config::bidirectional_directions;
use super::layers::{activation, layer, positive, unsupported, Context};
use super::Entry;
use crate::error::Result;
use crate::layers::{LayerOp, Recurrent};
use crate::model::weights::Weights;
use crate::ops::{Cell, DirectionWeights, RecurrentConfig};

pub(super) fn recurrent(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let (config, weights) = recurrent_layer(ctx.entry, &ctx.entry.name, ctx.channels(), ctx.weights)?;
    layer(Recurrent { config, weights: vec![weights] })
}

pub(super) fn bidirectional(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let (entry, file, channels) = (ctx.entry, ctx.file, ctx.channels());
    let merge = entry.config.get("merge_mode").unwrap_or(&Value::Null);
    if merge.as_str() != Some("concat") {
        return Err(unsupported(entry, "merge_mode", merge, "only concat"));
    }
    let (forward, backward) = bidirectional_directions(entry, file)?;
    if forward.class != backward.class || !["LSTM", "GRU"].contains(&forward.class) {
        let class = Value::String(forward.class.to_string());
        return Err(unsupported(entry, "layer", &class, "LSTM or GRU in both directions"));
    }
    let forward_path = format!("{}/{}", entry.name, forward.name);
    let backward_path = format!("{}/{}", entry.name, backward.name);
    let forward_backwards = forward.flag("go_backwards", false);
    let backward_backwards = backward.flag("go_backwards", true);
    if forward_backwards || !backward_backwards {
        let value = Value::Bool(forward_backwards);
        return Err(unsupported(entry, "go_backwards", &value, "forward layer forward, backward layer backward"));
    }
    let (mut config, forward_weights) = recurrent_layer_inner(&forward, &forward_path, channels, ctx.weights)?;
    let (backward_config, backward_weights) = recurrent_layer_inner(&backward, &backward_path, channels, ctx.weights)?;
    if backward_config != config {
        let value = Value::String("different settings".into());
        return Err(unsupported(entry, "backward_layer", &value, "both directions configured alike"));
    }
    config.directions = 2;
    layer(Recurrent { config, weights: vec![forward_weights, backward_weights] })
}

/// A top-level LSTM/GRU layer (not wrapped): rejects go_backwards, which only makes sense
/// inside Bidirectional here.
fn recurrent_layer(
    entry: &Entry,
    path: &str,
    input: usize,
    weights: &mut Weights,
) -> Result<(RecurrentConfig, DirectionWeights)> {
    if entry.flag("go_backwards", false) {
        return Err(unsupported(entry, "go_backwards", &Value::Bool(true), "only inside Bidirectional"));
    }
    recurrent_layer_inner(entry, path, input, weights)
}

/// Reads an LSTM/GRU config and its weights (`{path}/{lstm_cell|gru_cell}/{kernel,
/// recurrent_kernel, bias}`) in Keras layouts: kernel `[in, gates·units]`, recurrent kernel
/// `[units, gates·units]`, gate blocks i,f,c,o (LSTM) / z,r,h (GRU); bias `[gates·units]`,
/// or `[2, 3·units]` (input, recurrent) for GRU reset_after=True.
fn recurrent_layer_inner(
    entry: &Entry,
    path: &str,
    input: usize,
    weights: &mut Weights,
) -> Result<(RecurrentConfig, DirectionWeights)> {
    for key in ["stateful", "return_state", "time_major"] {
        if let Some(v) = entry.config.get(key).filter(|v| v.as_bool() == Some(true)) {
            return Err(unsupported(entry, key, v, "not supported for inference here"));
        }
    }
    let units = positive(entry, "units")?;
    let (cell, cell_name) = match entry.class {
        "LSTM" => (Cell::Lstm, "lstm_cell"),
        _ => (Cell::Gru { reset_after: entry.flag("reset_after", true) }, "gru_cell"),
    };
    let config = RecurrentConfig {
        cell,
        input_size: input,
        units,
        directions: 1,
        activation: activation(entry, "activation")?,
        recurrent_activation: activation(entry, "recurrent_activation")?,
        return_sequences: entry.flag("return_sequences", false),
    };
    use crate::ops::recurrent::{RECURRENT_CELL_ACTIVATIONS, RECURRENT_GATE_ACTIVATIONS};
    if !RECURRENT_CELL_ACTIVATIONS.contains(&config.activation) {
        return Err(unsupported(
            entry,
            "activation",
            &Value::String(format!("{:?}", config.activation)),
            "tanh, relu, linear or sigmoid",
        ));
    }
    if !RECURRENT_GATE_ACTIVATIONS.contains(&config.recurrent_activation) {
        let value = Value::String(format!("{:?}", config.recurrent_activation));
        return Err(unsupported(entry, "recurrent_activation", &value, "sigmoid or hard_sigmoid"));
    }
    let g = config.gate_width();
    let cell_path = format!("{path}/{cell_name}");
    let kernel = weights.take(&cell_path, "kernel", &[input, g])?;
    let recurrent_kernel = weights.take(&cell_path, "recurrent_kernel", &[units, g])?;
    let (input_bias, recurrent_bias) = if !entry.flag("use_bias", true) {
        (vec![0.0; g], vec![0.0; g])
    } else if cell == (Cell::Gru { reset_after: true }) {
        let both = weights.take(&cell_path, "bias", &[2, g])?;
        (both[..g].to_vec(), both[g..].to_vec())
    } else {
        (weights.take(&cell_path, "bias", &[g])?, vec![0.0; g])
    };
    Ok((config, DirectionWeights { kernel, recurrent_kernel, input_bias, recurrent_bias }))
}
