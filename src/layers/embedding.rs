//! Token embeddings: Keras `Embedding` (ids → rows of a table) and BERT's input embeddings
//! (word + position + token type, then LayerNorm, fused). Token ids travel in the model
//! input as exact f32 values. Kernel family: `ops::embedding` (`shaders/gather.wgsl`,
//! `shaders/embedding.wgsl`).

use super::{Inputs, Io, Kernel, LayerOp, PlanContext};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{Dispatch, EmbeddingLookup, EmbeddingTables, Precision, TokenEmbedding};
use crate::reference;

/// Keras Embedding: integer token ids `[batch, steps]` → `[batch, steps, dim]`. Must read
/// the model input. With `mask_zero`, id 0 is padding: the step mask (computed on the host
/// from the ids, where the batch is prepared) marks those steps, as Keras' mask does.
#[derive(Clone, Debug)]
pub struct Embedding {
    /// Rows of the table (Keras `input_dim`).
    pub vocab: usize,
    /// Values per row (Keras `output_dim`).
    pub dim: usize,
    /// `[vocab, dim]`, row-major.
    pub table: Vec<f32>,
    /// Keras `mask_zero`: steps whose id is 0 are masked for the layers after it.
    pub mask_zero: bool,
}

impl LayerOp for Embedding {
    fn name(&self) -> &'static str {
        "embedding"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        match *inputs[0] {
            [batch, steps] => Ok(vec![batch, steps, self.dim]),
            _ => Err(Error::shape("embedding input (token ids)", "[batch, steps]", format!("{:?}", inputs[0]))),
        }
    }

    fn settings(&self) -> String {
        format!("{} {}{}", self.vocab, self.dim, if self.mask_zero { " mask_zero" } else { "" })
    }

    fn weights(&self) -> Vec<&[f32]> {
        vec![&self.table]
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        Ok(reference::gather_rows(inputs.x(), &self.table, self.vocab, self.dim))
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(EmbeddingLookup::new(gpu, self.vocab, self.dim, &self.table)?)))
    }
}

impl Kernel for EmbeddingLookup {
    fn describe(&self) -> String {
        "embedding lookup".into()
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        Ok(vec![EmbeddingLookup::prepare(self, ctx.gpu, io.shapes[0].iter().product(), io.inputs[0], io.output)?])
    }
}

/// BERT input embeddings: `[batch, steps, 2]` (token id, token type id) →
/// `LayerNorm(word[id] + position[t] + token_type[type])`, `[batch, steps, hidden]`.
#[derive(Clone, Debug)]
pub struct BertEmbeddings {
    /// `[vocab, hidden]`.
    pub word: Vec<f32>,
    /// `[positions, hidden]`: the longest input.
    pub position: Vec<f32>,
    /// `[types, hidden]`.
    pub token_type: Vec<f32>,
    /// LayerNorm scale `[hidden]`.
    pub gamma: Vec<f32>,
    /// LayerNorm shift `[hidden]`.
    pub beta: Vec<f32>,
    /// LayerNorm epsilon.
    pub eps: f32,
}

impl BertEmbeddings {
    fn hidden(&self) -> usize {
        self.gamma.len()
    }

    fn tables(&self) -> EmbeddingTables<'_> {
        EmbeddingTables {
            word: &self.word,
            position: &self.position,
            token_type: &self.token_type,
            gamma: &self.gamma,
            beta: &self.beta,
        }
    }

    /// Rows of the word table.
    pub fn vocab(&self) -> usize {
        self.word.len() / self.hidden().max(1)
    }

    /// Rows of the position table: the longest input.
    pub fn positions(&self) -> usize {
        self.position.len() / self.hidden().max(1)
    }
}

impl LayerOp for BertEmbeddings {
    fn name(&self) -> &'static str {
        "bert_embeddings"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        match *inputs[0] {
            [batch, steps, 2] if steps <= self.positions() => Ok(vec![batch, steps, self.hidden()]),
            [_, steps, 2] => Err(Error::LimitExceeded {
                what: "sequence length (position embeddings)".into(),
                needed: steps as u64,
                limit: self.positions() as u64,
            }),
            _ => Err(Error::shape("BERT embeddings input", "[batch, steps, 2] (id, type)", format!("{:?}", inputs[0]))),
        }
    }

    fn settings(&self) -> String {
        format!("{} {:08x}", self.hidden(), self.eps.to_bits())
    }

    fn weights(&self) -> Vec<&[f32]> {
        vec![&self.word, &self.position, &self.token_type, &self.gamma, &self.beta]
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let steps = inputs.shape()[1];
        let id = |i: usize| inputs.x().iter().skip(i).step_by(2).map(|&v| v as u32).collect::<Vec<_>>();
        Ok(reference::token_embedding(&id(0), &id(1), steps, &self.tables(), self.eps))
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(TokenEmbedding::new(gpu, self.hidden(), &self.tables(), self.eps)?)))
    }
}

impl Kernel for TokenEmbedding {
    fn describe(&self) -> String {
        "embeddings + layer_norm".into()
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        Ok(vec![TokenEmbedding::prepare(self, ctx.gpu, io.shapes[0][0], io.shapes[0][1], io.inputs[0], io.output)?])
    }
}
