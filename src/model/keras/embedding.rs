//! The Keras Embedding layer: integer token ids → rows of its table, and with
//! `mask_zero=True` the padding mask Keras derives from the ids (id 0 = padding), which the
//! engine computes on the host from the same ids (see [`crate::passes::apply_masks`] for
//! which layers Keras hands it to).

use std::sync::Arc;

use serde_json::Value;

use super::layers::{layer, positive, unsupported, Context};
use crate::error::{Error, Result};
use crate::layers::{Embedding, LayerOp};

pub(super) fn embedding(ctx: &mut Context) -> Result<Arc<dyn LayerOp>> {
    let entry = ctx.entry;
    if ctx.input.len() != 2 {
        return Err(Error::shape(
            format!("layer {:?} (Embedding input: token ids)", entry.name),
            "[batch, steps]",
            format!("{:?}", ctx.input),
        ));
    }
    let mask_zero = match entry.config.get("mask_zero").unwrap_or(&Value::Null) {
        Value::Null => false,
        Value::Bool(flag) => *flag,
        other => return Err(unsupported(entry, "mask_zero", other, "true or false")),
    };
    if let Some(v) = entry.config.get("lora_rank").filter(|v| !v.is_null()) {
        return Err(unsupported(entry, "lora_rank", v, "merge the LoRA weights before export"));
    }
    let vocab = positive(entry, "input_dim")?;
    let dim = positive(entry, "output_dim")?;
    let table = ctx.weights.take(&entry.name, "embeddings", &[vocab, dim])?;
    layer(Embedding { vocab, dim, table, mask_zero })
}
