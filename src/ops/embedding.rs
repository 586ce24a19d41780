//! BERT input embeddings: `LayerNorm(word[id] + position[t] + token_type[type])`, fused in
//! one dispatch. Kernel: `shaders/embedding.wgsl`.

use super::{linear_dispatch, prepare_dispatch, weight_buffer, Dispatch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::shaders;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct EmbeddingParams {
    tokens: u32,
    steps: u32,
    hidden: u32,
    vocab: u32,
    types: u32,
    positions: u32,
    eps: f32,
    _pad: u32,
}

/// The tables of a token embedding, row-major `[rows, hidden]` each.
#[derive(Clone, Debug)]
pub struct EmbeddingTables<'a> {
    /// `[vocab, hidden]`.
    pub word: &'a [f32],
    /// `[positions, hidden]`.
    pub position: &'a [f32],
    /// `[types, hidden]`.
    pub token_type: &'a [f32],
    /// LayerNorm scale `[hidden]`.
    pub gamma: &'a [f32],
    /// LayerNorm shift `[hidden]`.
    pub beta: &'a [f32],
}

/// Token + position + token-type embeddings with LayerNorm, resident on the GPU.
#[derive(Debug)]
pub struct TokenEmbedding {
    hidden: usize,
    vocab: usize,
    positions: usize,
    types: usize,
    eps: f32,
    word: wgpu::Buffer,
    extras: wgpu::Buffer,
    pipeline: wgpu::ComputePipeline,
}

impl TokenEmbedding {
    /// Uploads the tables (`hidden` values per row) and compiles the kernel.
    pub fn new(gpu: &Gpu, hidden: usize, tables: &EmbeddingTables, eps: f32) -> Result<Self> {
        let rows = |what: &str, values: &[f32]| -> Result<usize> {
            if hidden == 0 || values.is_empty() || !values.len().is_multiple_of(hidden) {
                return Err(Error::shape(
                    format!("embedding {what}"),
                    format!("[rows >= 1, {hidden}]"),
                    format!("{} values", values.len()),
                ));
            }
            Ok(values.len() / hidden)
        };
        let vocab = rows("word table", tables.word)?;
        let positions = rows("position table", tables.position)?;
        let types = rows("token type table", tables.token_type)?;
        if rows("gamma", tables.gamma)? != 1 || rows("beta", tables.beta)? != 1 {
            return Err(Error::shape("embedding LayerNorm", format!("{hidden} values"), "more"));
        }
        let extras = [tables.position, tables.token_type, tables.gamma, tables.beta].concat();
        Ok(Self {
            hidden,
            vocab,
            positions,
            types,
            eps,
            word: weight_buffer(gpu, "word embeddings", tables.word)?,
            extras: weight_buffer(gpu, "position/type embeddings", &extras)?,
            pipeline: gpu.pipeline(&shaders::EMBEDDING, "embed_tokens", &[])?,
        })
    }

    /// Vocabulary size.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Longest sequence the position table covers.
    pub fn positions(&self) -> usize {
        self.positions
    }

    /// A dispatch embedding `batch·steps` tokens: `ids` holds `[batch·steps, 2]` f32 values,
    /// each token's id then its token type id (exact integers, as the model input carries
    /// them); `output` gets `[batch·steps, hidden]`.
    pub fn prepare(
        &self,
        gpu: &Gpu,
        batch: usize,
        steps: usize,
        ids: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        if steps > self.positions {
            return Err(Error::LimitExceeded {
                what: "sequence length (position embeddings)".into(),
                needed: steps as u64,
                limit: self.positions as u64,
            });
        }
        let tokens = batch * steps;
        let params = EmbeddingParams {
            tokens: tokens as u32,
            steps: steps as u32,
            hidden: self.hidden as u32,
            vocab: self.vocab as u32,
            types: self.types as u32,
            positions: self.positions as u32,
            eps: self.eps,
            _pad: 0,
        };
        let workgroups = linear_dispatch(gpu, "embedding", tokens, 1)?;
        Ok(prepare_dispatch(
            gpu,
            "embedding",
            &self.pipeline,
            &params,
            &[ids, &self.word, &self.extras, output],
            workgroups,
        ))
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct GatherParams {
    tokens: u32,
    dim: u32,
    vocab: u32,
    _pad: u32,
}

/// A plain table lookup (Keras `Embedding`): token ids, held as exact f32 values in the
/// model input, → rows of a `[vocab, dim]` table. Kernel: `shaders/gather.wgsl`.
#[derive(Debug)]
pub struct EmbeddingLookup {
    vocab: usize,
    dim: usize,
    table: wgpu::Buffer,
    pipeline: wgpu::ComputePipeline,
}

impl EmbeddingLookup {
    /// Uploads the `[vocab, dim]` table and compiles the kernel.
    pub fn new(gpu: &Gpu, vocab: usize, dim: usize, table: &[f32]) -> Result<Self> {
        if vocab == 0 || dim == 0 || table.len() != vocab * dim {
            return Err(Error::shape(
                "embedding table",
                format!("[{vocab}, {dim}]"),
                format!("{} values", table.len()),
            ));
        }
        Ok(Self {
            vocab,
            dim,
            table: weight_buffer(gpu, "embedding table", table)?,
            pipeline: gpu.pipeline(&shaders::GATHER, "gather_rows", &[])?,
        })
    }

    /// A dispatch looking up `tokens` ids from `ids` into `output` (`[tokens, dim]`).
    pub fn prepare(&self, gpu: &Gpu, tokens: usize, ids: &wgpu::Buffer, output: &wgpu::Buffer) -> Result<Dispatch> {
        let params = GatherParams { tokens: tokens as u32, dim: self.dim as u32, vocab: self.vocab as u32, _pad: 0 };
        let workgroups = linear_dispatch(gpu, "embedding lookup", tokens * self.dim, 256)?;
        Ok(prepare_dispatch(gpu, "embedding lookup", &self.pipeline, &params, &[ids, &self.table, output], workgroups))
    }
}
