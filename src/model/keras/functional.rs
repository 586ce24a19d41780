//! A Functional model config's layer graph for the importer: each layer with the layers
//! it reads (from the one inbound-node walker, [`super::config`]), checked to be what the
//! engine runs: one input and one output, each layer called once, and
//! Keras 3's mask nodes ([`MASK_OP_CLASSES`]) exactly a Masking layer's mask.

use std::collections::HashSet;

use serde_json::Value;

use super::config::{Entry, ModelView};
use super::MASK_OP_CLASSES;
use crate::error::{Error, Result};

/// What [`MASK_OP_CLASSES`] nodes may be, for error messages.
const MASK_OPS_SUPPORTED: &str = "Keras operation nodes only as the NotEqual(x, mask_value) -> Any(axis=-1) pair \
                                  that computes the mask of a Masking layer reading the same x, or as the \
                                  NotEqual(ids, 0) of an Embedding(mask_zero=True) reading the same ids, used only \
                                  as a layer's mask argument";

/// A layer and the names of the layers it reads as data (masks are not: see
/// [`super::config::Input::is_mask`]).
type Node<'m, 'a> = (&'m Entry<'a>, Vec<&'a str>);

/// A Functional model's layers in the order Keras writes them (topological), each with
/// the names of the layers it reads, mask nodes left out. Checks: one input and one output
/// (the last layer), every input written earlier, every layer used and called once. How
/// many inputs each layer takes is its layer's to say (checked when it is built).
pub(super) fn graph<'m, 'a>(model: &'m ModelView<'a>, file: &str) -> Result<Vec<Node<'m, 'a>>> {
    let format_error = |reason: String| Error::ModelFormat { file: file.to_string(), reason };
    let (inputs, outputs) = (&model.inputs, &model.outputs);
    let (Some(input), Some(output), 1, 1) = (inputs.first(), outputs.first(), inputs.len(), outputs.len()) else {
        return Err(format_error(format!(
            "the encoder must have exactly one input and one output, found inputs {inputs:?} and outputs {outputs:?} \
             (for a whole Siamese model, export only its shared encoder)"
        )));
    };
    let mut graph: Vec<Node> = Vec::new();
    let mut mask_ops: Vec<Node> = Vec::new();
    let mut used = HashSet::new();
    for e in &model.entries {
        let mut parents = e.inputs();
        if MASK_OP_CLASSES.contains(&e.class) {
            mask_ops.push((e, parents));
            continue;
        }
        if let Some((op, _)) = mask_ops.iter().find(|(op, _)| parents.contains(&op.name.as_str())) {
            // A mask op's value used as data, not as a mask: something else than Masking's mask.
            return Err(mask_op_error(file, op));
        }
        if e.class == "MultiHeadAttention" && parents.iter().all(|p| Some(p) == parents.first()) {
            parents.truncate(1);
        }
        let calls = e.calls().len();
        let expected = if e.class == "InputLayer" { 0 } else { 1 };
        if calls > 1 || (parents.is_empty()) != (expected == 0) {
            let reason = if calls > 1 {
                format!(
                    "layer {:?} ({}) is called {calls} times: a layer shared inside the encoder is not supported",
                    e.name, e.class
                )
            } else {
                format!("layer {:?} ({}) takes {} inputs ({})", e.name, e.class, parents.len(), parents.join(", "))
            };
            return Err(format_error(reason));
        }
        if let Some(missing) = parents.iter().find(|p| !graph.iter().any(|(g, _)| g.name == **p)) {
            return Err(format_error(format!(
                "layer {:?} reads {missing:?}, which comes later or does not exist",
                e.name
            )));
        }
        used.extend(parents.iter().copied());
        graph.push((e, parents));
    }
    check_mask_ops(&mask_ops, &graph, file)?;
    if graph.first().map(|(e, _)| &e.name) != Some(input) || graph.last().map(|(e, _)| &e.name) != Some(output) {
        return Err(format_error(format!(
            "expected the input {input:?} first and the output {output:?} last in the layer list"
        )));
    }
    if let Some((unused, _)) = graph.iter().rev().skip(1).find(|(e, _)| !used.contains(e.name.as_str())) {
        return Err(format_error(format!("layer {:?} is not on the path from input to output", unused.name)));
    }
    Ok(graph)
}

/// Checks that the [`MASK_OP_CLASSES`] nodes of a Functional config compute exactly the
/// mask the engine computes itself: a Masking layer's (NotEqual(x, v) with a
/// Masking(mask_value = v) reading the same x, and Any(axis=-1, keepdims=False) over such a
/// NotEqual), or an `Embedding(mask_zero=True)`'s (NotEqual(ids, 0) with the Embedding
/// reading the same ids; no Any: one id per step). Anything else is an error naming the
/// node (skipping it would change the numbers). Which layers the mask reaches is decided
/// by the engine's mask propagation ([`crate::passes::apply_masks`]), as Keras does it.
fn check_mask_ops(ops: &[Node], graph: &[Node], file: &str) -> Result<()> {
    let mask_of = |x: &str, value: f64| {
        graph.iter().any(|(e, parents)| {
            e.class == "Masking"
                && parents == &[x]
                && e.config.get("mask_value").and_then(Value::as_f64).unwrap_or(0.0) == value
        })
    };
    let ids_mask_of = |x: &str, value: f64| {
        value == 0.0
            && graph.iter().any(|(e, parents)| e.class == "Embedding" && parents == &[x] && e.flag("mask_zero", false))
    };
    let not_equal_ok = |op: &Entry, parents: &[&str]| -> bool {
        let value = op.only_call_args().and_then(|args| args.get(1).and_then(Value::as_f64));
        match (parents, value) {
            ([x], Some(value)) => mask_of(x, value),
            _ => false,
        }
    };
    for (op, parents) in ops {
        let ok = match op.class {
            "NotEqual" => {
                let value = op.only_call_args().and_then(|args| args.get(1).and_then(Value::as_f64));
                let ids = matches!((parents.as_slice(), value), ([x], Some(value)) if ids_mask_of(x, value));
                not_equal_ok(op, parents) || ids
            }
            _ => {
                let axis = op.config.get("axis").unwrap_or(&Value::Null);
                let last_axis = axis.as_i64() == Some(-1)
                    || axis.as_array().is_some_and(|a| a.len() == 1 && a[0].as_i64() == Some(-1));
                let reads_mask = match parents.as_slice() {
                    [source] => {
                        ops.iter().any(|(o, p)| o.name == *source && o.class == "NotEqual" && not_equal_ok(o, p))
                    }
                    _ => false,
                };
                last_axis && !op.flag("keepdims", false) && reads_mask && op.only_call_args().is_some()
            }
        };
        if !ok {
            return Err(mask_op_error(file, op));
        }
    }
    Ok(())
}

fn mask_op_error(file: &str, op: &Entry) -> Error {
    Error::UnsupportedLayer {
        file: file.to_string(),
        layer: op.name.clone(),
        class: op.class.to_string(),
        supported: MASK_OPS_SUPPORTED,
    }
}
