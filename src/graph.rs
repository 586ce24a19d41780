//! The graph runner: an encoder's layers as GPU ops, and per-batch-size plans that record
//! the whole Siamese forward pass (both twins as one batch of 2N, then the distance
//! reduction) into ONE command encoder, submitted once and read back with one map.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::{LayerKind, ModelSpec};
use crate::ops::{
    self, Activation, ActivationOp, AddOp, Conv2d, Dense, Dispatch, Distance, EmbeddingLookup, GlobalAveragePool2d,
    LayerNorm, MultiHeadAttention, PairDistance, Pool2d, Precision, Recurrent, SequencePool,
};
use crate::plans::{poisoned, PlanCache};

/// A GPU op of the encoder, built once per model load (weights uploaded, pipeline compiled).
#[derive(Debug)]
enum Op {
    Conv2d(Conv2d),
    Dense(Dense),
    Pool2d(Pool2d),
    GlobalAveragePool2d(GlobalAveragePool2d),
    Activation(ActivationOp),
    Recurrent(Recurrent),
    Add(AddOp),
    LayerNorm(LayerNorm),
    Attention(MultiHeadAttention),
    /// GlobalAveragePooling1D (a mean over all steps: masked pooling is not supported).
    MeanOverSteps(SequencePool),
    Embedding(EmbeddingLookup),
}

/// One op and the index of the model layer it came from (its input shape is the shape
/// before that layer, its output the shape after: fused activations change neither). A
/// Conv2D with a fused MaxPooling2D writes the pooling layer's output: `output_layer`.
#[derive(Debug)]
struct Step {
    layer: usize,
    output_layer: usize,
    op: Op,
}

/// What a plan computes after the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Head {
    /// Embeddings only (`embed`).
    Embed,
    /// Pair distances with this metric.
    Pairs(Distance),
}

/// Buffers, bind groups and dispatches for one (batch size, sequence length, head): built
/// once, reused by every such call, so the steady state creates no GPU objects.
#[derive(Debug)]
struct Plan {
    rows: usize,
    steps: usize,
    input: wgpu::Buffer,
    /// `[rows, steps]` u32 step mask, for models with recurrent layers.
    mask: Option<wgpu::Buffer>,
    dispatches: Vec<Dispatch>,
    embedding: wgpu::Buffer,
    embedding_len: usize,
    distance: Option<(Dispatch, wgpu::Buffer)>,
    staging: wgpu::Buffer,
    /// Scratch buffers owned by the plan (bound in `dispatches`).
    _scratch: Vec<wgpu::Buffer>,
    /// Held while a call uses the plan's buffers: two threads calling with the same batch
    /// size take turns instead of overwriting each other's input and readback.
    busy: Mutex<()>,
}

/// Output of one batched pair run.
#[derive(Clone, Debug, Default)]
pub struct PairRun {
    /// One distance per pair.
    pub distances: Vec<f32>,
    /// `[2N, embedding...]` values (left rows then right rows) when asked for.
    pub embeddings: Option<Vec<f32>>,
}

/// One batch handed to the runner: values `[rows, ...sample shape with steps]` in one or
/// two parts (left twin, right twin) and, for recurrent models, a `[rows, steps]` mask.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    /// The values, uploaded back to back (left rows, then right rows).
    pub parts: &'a [&'a [f32]],
    /// Samples in total.
    pub rows: usize,
    /// Time steps per sample (1 for models without a time axis).
    pub steps: usize,
    /// 1 for real steps, 0 for padding: `rows · steps` values (empty when no recurrent layer).
    pub mask: &'a [u32],
}

/// An encoder resident on the GPU plus its plans.
#[derive(Debug)]
pub struct Graph {
    gpu: Arc<Gpu>,
    spec: ModelSpec,
    steps: Vec<Step>,
    distance_ops: Mutex<Vec<Arc<PairDistance>>>,
    plans: PlanCache<(usize, usize, Head), Plan>,
    /// Benchmark baseline: run LSTM layers with one dispatch per time step.
    recurrent_per_step: bool,
}

impl Graph {
    /// Uploads the weights and compiles every pipeline of `spec`. A standalone activation
    /// right after a Conv2D/Dense with a linear activation (views such as Flatten and
    /// Dropout in between don't matter) is fused into that op's epilogue.
    pub fn new(gpu: Arc<Gpu>, spec: &ModelSpec) -> Result<Self> {
        Self::with_precision(gpu, spec, Precision::F32)
    }

    /// As [`new`](Self::new), storing the Dense/Conv2D kernels (and the input and attention
    /// projections) in `precision`.
    pub fn with_precision(gpu: Arc<Gpu>, spec: &ModelSpec, precision: Precision) -> Result<Self> {
        spec.shapes(1)?;
        if let Some(position) = spec.layers.iter().position(|l| matches!(l.kind, LayerKind::Masking { .. })) {
            if position != 0 {
                return Err(Error::UnsupportedConfig {
                    layer: spec.layers[position].name.clone(),
                    key: "position".into(),
                    value: position.to_string(),
                    hint: " (Masking must directly follow the input)".into(),
                });
            }
        }
        let has = |f: fn(&LayerKind) -> bool| spec.layers.iter().any(|l| f(&l.kind));
        if has(|k| matches!(k, LayerKind::Masking { .. }))
            && has(|k| matches!(k, LayerKind::MultiHeadAttention { .. } | LayerKind::GlobalAveragePool1d))
        {
            return Err(Error::UnsupportedConfig {
                layer: spec.name.clone(),
                key: "Masking".into(),
                value: "with MultiHeadAttention or GlobalAveragePooling1D".into(),
                hint: " (masked attention and pooling in Keras models are not supported yet)".into(),
            });
        }
        // A standalone activation works in place: in a graph with branches its input must
        // have no other reader.
        for (index, layer) in spec.layers.iter().enumerate() {
            if matches!(layer.kind, LayerKind::Activation(a) if a != Activation::Linear) {
                let readers = spec.layers.iter().filter(|l| l.inputs.contains(&layer.inputs[0])).count();
                if readers > 1 {
                    return Err(Error::UnsupportedConfig {
                        layer: spec.layers[index].name.clone(),
                        key: "input".into(),
                        value: "shared with other layers".into(),
                        hint: " (a standalone activation on a branching tensor is not supported)".into(),
                    });
                }
            }
        }
        // Fuse first, on the host description, so each op compiles once with its final
        // activation (chains only: in a graph the op's output may have other readers).
        // A 2×2 MaxPooling2D right after a Conv2D is fused into it (conv index → pool index);
        // no activation after the pool is then fused into the conv (max and a non-monotonic
        // activation such as GELU do not commute).
        let chain = spec.is_chain();
        let mut kinds: Vec<(usize, LayerKind)> = Vec::new();
        let mut fused_pools: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
        for (index, layer) in spec.layers.iter().enumerate() {
            let previous = if chain { kinds.last_mut() } else { None };
            match (&layer.kind, previous) {
                (LayerKind::Flatten | LayerKind::Identity | LayerKind::Masking { .. }, _) => {}
                (LayerKind::Pool2d(pool), Some((conv, LayerKind::Conv2d { .. })))
                    if Conv2d::fuses_max_pool(pool) && !fused_pools.contains_key(conv) =>
                {
                    fused_pools.insert(*conv, index);
                }
                (LayerKind::Activation(a), Some((conv, LayerKind::Conv2d { config, .. })))
                    if config.activation == Activation::Linear && !fused_pools.contains_key(conv) =>
                {
                    config.activation = *a
                }
                (LayerKind::Activation(a), Some((_, LayerKind::Dense { activation, .. })))
                    if *activation == Activation::Linear =>
                {
                    *activation = *a
                }
                (LayerKind::Activation(Activation::Linear), _) => {}
                (kind, _) => kinds.push((index, kind.clone())),
            }
        }
        let mut steps = Vec::new();
        for (layer, kind) in kinds {
            let op = match kind {
                LayerKind::Conv2d { config, kernel, bias } => Op::Conv2d(if fused_pools.contains_key(&layer) {
                    Conv2d::with_max_pool(&gpu, config, &kernel, bias.as_deref(), precision)?
                } else {
                    Conv2d::with_precision(&gpu, config, &kernel, bias.as_deref(), precision)?
                }),
                LayerKind::Dense { in_features, out_features, kernel, bias, activation } => {
                    Op::Dense(Dense::with_precision(
                        &gpu,
                        in_features,
                        out_features,
                        &kernel,
                        bias.as_deref(),
                        activation,
                        precision,
                    )?)
                }
                LayerKind::Pool2d(config) => Op::Pool2d(Pool2d::new(&gpu, config)?),
                LayerKind::GlobalAveragePool2d { .. } => Op::GlobalAveragePool2d(GlobalAveragePool2d::new(&gpu)?),
                LayerKind::Activation(a) => Op::Activation(ActivationOp::new(&gpu, a)?),
                LayerKind::Recurrent { config, weights } => {
                    Op::Recurrent(Recurrent::with_precision(&gpu, config, &weights, precision)?)
                }
                LayerKind::Add => Op::Add(AddOp::new(&gpu)?),
                LayerKind::LayerNorm { gamma, beta, eps } => Op::LayerNorm(LayerNorm::new(&gpu, &gamma, &beta, eps)?),
                LayerKind::MultiHeadAttention { heads, key_dim, weights } => {
                    let dim = weights.output_bias.len();
                    Op::Attention(MultiHeadAttention::with_precision(&gpu, dim, heads, key_dim, &weights, precision)?)
                }
                LayerKind::GlobalAveragePool1d => Op::MeanOverSteps(SequencePool::new(&gpu, false)?),
                LayerKind::Embedding { vocab, dim, table } => {
                    Op::Embedding(EmbeddingLookup::new(&gpu, vocab, dim, &table)?)
                }
                LayerKind::Flatten | LayerKind::Identity | LayerKind::Masking { .. } => continue,
            };
            steps.push(Step { layer, output_layer: fused_pools.get(&layer).copied().unwrap_or(layer), op });
        }
        Ok(Self {
            gpu,
            spec: spec.clone(),
            steps,
            distance_ops: Mutex::default(),
            plans: PlanCache::default(),
            recurrent_per_step: false,
        })
    }

    /// Index (into `spec.shapes_for`) of the value a step reads first.
    fn input_value(&self, step: &Step) -> usize {
        self.spec.layers[step.layer].inputs[0]
    }

    /// The model description.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Input shape of one sample (0 marks a variable time axis).
    pub fn input_shape(&self) -> &[usize] {
        &self.spec.input_shape
    }

    /// Whether any layer is recurrent (the runner then needs a step mask).
    pub fn has_recurrent(&self) -> bool {
        self.steps.iter().any(|s| matches!(s.op, Op::Recurrent(_)))
    }

    /// Embedding shape of one sample for inputs of `steps` time steps.
    pub fn embedding_shape(&self, steps: usize) -> Result<Vec<usize>> {
        self.spec.embedding_shape(steps)
    }

    /// Floating-point operations of the encoder for one sample of `steps` time steps
    /// (2 per multiply-add).
    pub fn flops_per_sample(&self, steps: usize) -> u64 {
        let Ok(shapes) = self.spec.shapes_for(1, steps) else { return 0 };
        self.steps
            .iter()
            .map(|s| {
                let input = &shapes[self.input_value(s)];
                match &s.op {
                    Op::Conv2d(op) => op.flops(input),
                    Op::Dense(op) => op.flops(input),
                    Op::Recurrent(op) => op.flops(input),
                    Op::Attention(_) => {
                        // Projections (4 × steps × dim²-ish) and scores + weighted values.
                        let (t, d) = (input[1] as u64, input[2] as u64);
                        let LayerKind::MultiHeadAttention { heads, key_dim, .. } = &self.spec.layers[s.layer].kind
                        else {
                            return 0;
                        };
                        let width = (heads * key_dim) as u64;
                        2 * t * d * 4 * width + 4 * t * t * width
                    }
                    _ => 0,
                }
            })
            .sum()
    }

    /// Switches LSTM layers to the one-dispatch-per-time-step baseline (for benchmarks;
    /// errors when a recurrent layer has no such variant). Drops the cached plans.
    pub fn set_recurrent_per_step(&mut self, per_step: bool) -> Result<()> {
        if per_step {
            if let Some(step) = self.steps.iter().find(|s| matches!(&s.op, Op::Recurrent(op) if !op.has_per_step())) {
                return Err(Error::input(
                    "recurrent mode",
                    format!(
                        "layer {:?}: the per-step variant exists for LSTM layers returning the last state only",
                        self.spec.layers[step.layer].name
                    ),
                ));
            }
        }
        self.recurrent_per_step = per_step;
        self.plans.clear()?;
        Ok(())
    }

    /// Compute dispatches per pair call for inputs of `steps` time steps (encoder ops,
    /// recurrent projections, the distance reduction).
    pub fn dispatches_per_call(&self, steps: usize) -> usize {
        let recurrent = self.steps.iter().filter(|s| matches!(s.op, Op::Recurrent(_))).count();
        let attention = self.steps.iter().filter(|s| matches!(s.op, Op::Attention(_))).count();
        let per_step_extra = if self.recurrent_per_step { recurrent * (steps.max(1) - 1) } else { 0 };
        self.steps.len() + recurrent + 2 * attention + per_step_extra + 1
    }

    /// The kernels run per call, in order, with the layer each came from.
    pub fn describe(&self) -> Vec<String> {
        let shapes = self.spec.shapes(1).unwrap_or_default();
        self.steps
            .iter()
            .map(|s| {
                let kernel = match &s.op {
                    Op::Conv2d(op) if op.pooled() => {
                        format!("conv2d (activation {:?}) + max_pool 2×2", op.config().activation)
                    }
                    Op::Conv2d(op) => format!("conv2d (activation {:?})", op.config().activation),
                    Op::Dense(op) => format!("dense (activation {:?})", op.activation()),
                    Op::Pool2d(_) => "pool2d".into(),
                    Op::GlobalAveragePool2d(_) => "global_average_pool2d".into(),
                    Op::Activation(op) => format!("activation {:?}", op.activation()),
                    Op::Recurrent(op) => format!("{:?} ×{} directions", op.config().cell, op.config().directions),
                    Op::Add(_) => "add".into(),
                    Op::LayerNorm(_) => "layer_norm".into(),
                    Op::Attention(_) => "dense q|k|v, attention, dense".into(),
                    Op::MeanOverSteps(_) => "mean over steps".into(),
                    Op::Embedding(_) => "embedding lookup".into(),
                };
                let out = shapes.get(s.output_layer + 1).map(|o| format!("{:?}", &o[1..])).unwrap_or_default();
                format!("{:<24} {kernel} -> {out}", self.spec.layers[s.layer].name)
            })
            .collect()
    }

    /// The most rows (samples: 2 per pair) one submit can hold for inputs of `steps` time
    /// steps: every buffer must fit one storage binding and every dispatch the
    /// workgroup-count limit. Larger batches are split by [`crate::SiameseModel`].
    pub fn max_rows(&self, steps: usize) -> usize {
        let limits = self.gpu.limits();
        let binding = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size) as usize / 4;
        let groups = limits.max_compute_workgroups_per_dimension as usize;
        let Ok(shapes) = self.spec.shapes_for(1, steps) else { return 1 };
        let mut max = binding / shapes[0].iter().product::<usize>().max(1);
        for step in &self.steps {
            let output = &shapes[step.output_layer + 1];
            max = max.min(binding / output.iter().product::<usize>().max(1));
            // conv2d and dense put (rows × pixels) / 128 workgroups on the y axis (a fused
            // max-pool: 4 work items per pooled pixel), bounded here by / 32; the recurrence
            // at most one workgroup per row.
            let per_row = match &step.op {
                Op::Conv2d(_) => output[1] * output[2],
                Op::Dense(_) => output[1..output.len() - 1].iter().product(),
                Op::Recurrent(op) => {
                    let input = &shapes[self.input_value(step)];
                    max = max.min(binding / op.projection_len(input).max(1));
                    max = max.min(groups);
                    input[1]
                }
                Op::Attention(op) => {
                    let steps = output[1];
                    max = max.min(binding / op.scratch_len(steps).0.max(1));
                    steps
                }
                _ => 0,
            };
            if let Some(rows) = (groups * 32).checked_div(per_row) {
                max = max.min(rows);
            }
        }
        max.max(1)
    }

    fn distance_op(&self, metric: Distance) -> Result<Arc<PairDistance>> {
        let mut ops = self.distance_ops.lock().map_err(|_| poisoned())?;
        if let Some(op) = ops.iter().find(|op| op.metric() == metric) {
            return Ok(op.clone());
        }
        let op = Arc::new(PairDistance::new(&self.gpu, metric)?);
        ops.push(op.clone());
        Ok(op)
    }

    /// Installs (or replaces) the learned metric head used by [`Distance::Learned`].
    pub fn set_learned_head(&self, head: &ops::LearnedHead) -> Result<()> {
        let op = Arc::new(PairDistance::learned(&self.gpu, head)?);
        let dim: usize = self.spec.embedding_shape(1)?.iter().product();
        if head.weights.len() != dim && !self.spec.is_sequence() {
            return Err(Error::shape(
                "learned head",
                format!("{dim} weights (one per embedding value)"),
                head.weights.len().to_string(),
            ));
        }
        let mut ops = self.distance_ops.lock().map_err(|_| poisoned())?;
        ops.retain(|op| op.metric() != Distance::Learned);
        ops.push(op);
        drop(ops);
        self.plans.clear()
    }

    /// Compiles the distance pipeline for `metric` now (model load), not on first use.
    pub fn prepare_metric(&self, metric: Distance) -> Result<()> {
        self.distance_op(metric).map(|_| ())
    }

    fn plan(&self, rows: usize, steps: usize, head: Head) -> Result<Arc<Plan>> {
        self.plans.get_or_build((rows, steps, head), || {
            self.gpu.checked("planning buffers", || self.build_plan(rows, steps, head))
        })
    }

    fn build_plan(&self, rows: usize, steps: usize, head: Head) -> Result<Plan> {
        let gpu = &*self.gpu;
        let shapes = self.spec.shapes_for(rows, steps)?;
        let len = |shape: &[usize]| shape.iter().product::<usize>();
        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        ops::check_binding(gpu, "input", len(&shapes[0]))?;
        let input = gpu.create_buffer("input (left twin rows, then right)", len(&shapes[0]) as u64 * 4, storage);
        let mask = self.has_recurrent().then(|| gpu.create_buffer("step mask", (rows * steps) as u64 * 4, storage));
        // Every op writes its own buffer (never one it reads: WebGPU forbids binding a buffer
        // read-only and read-write in one dispatch); views, fused and in-place layers alias
        // their input's buffer. Shared scratch: recurrent projections, attention q|k|v and
        // context, and an all-ones token mask for attention and step means.
        let mut owned: Vec<wgpu::Buffer> = Vec::new();
        let mut scratch = |label: &str, len: usize| -> Result<wgpu::Buffer> {
            ops::check_binding(gpu, label, len)?;
            let buffer = gpu.create_buffer(label, len as u64 * 4, storage);
            owned.push(buffer.clone());
            Ok(buffer)
        };
        let max_of = |f: &dyn Fn(&Step) -> Option<usize>| self.steps.iter().filter_map(f).max();
        let projection = match max_of(&|s| match &s.op {
            Op::Recurrent(op) => Some(op.projection_len(&shapes[self.input_value(s)])),
            _ => None,
        }) {
            Some(len) => Some(scratch("recurrent projection", len)?),
            None => None,
        };
        // Tokens (rows × steps of its [rows, steps, features] input) of a step.
        let tokens = |s: &Step| -> usize { shapes[self.input_value(s)].iter().take(2).product() };
        let attention_scratch = match max_of(&|s| match &s.op {
            Op::Attention(op) => Some(op.scratch_len(tokens(s)).0),
            _ => None,
        }) {
            Some(len) => Some((scratch("attention q|k|v", len)?, scratch("attention context", len / 3)?)),
            None => None,
        };
        let ones = match max_of(&|s| matches!(s.op, Op::Attention(_) | Op::MeanOverSteps(_)).then(|| tokens(s))) {
            Some(len) => {
                let buffer = scratch("all-ones token mask", len)?;
                gpu.queue().write_buffer(&buffer, 0, bytemuck::cast_slice(&vec![1u32; len]));
                Some(buffer)
            }
            None => None,
        };

        let mut values: Vec<wgpu::Buffer> = vec![input.clone()];
        let mut dispatches = Vec::with_capacity(self.steps.len() + 2);
        for (index, layer) in self.spec.layers.iter().enumerate() {
            let in_value = layer.inputs[0];
            let in_shape = &shapes[in_value];
            let current = values[in_value].clone();
            let Some(step) = self.steps.iter().find(|s| s.layer == index) else {
                values.push(current);
                continue;
            };
            if let Op::Activation(op) = &step.op {
                dispatches.push(op.prepare(gpu, len(in_shape), &current)?);
                values.push(current);
                continue;
            }
            let state_factor = if self.recurrent_per_step && matches!(step.op, Op::Recurrent(_)) { 2 } else { 1 };
            let output =
                scratch(&format!("output of {}", layer.name), state_factor * len(&shapes[step.output_layer + 1]))?;
            match &step.op {
                Op::Conv2d(op) => dispatches.push(op.prepare(gpu, in_shape, &current, &output)?),
                Op::Dense(op) => dispatches.push(op.prepare(gpu, in_shape, &current, &output)?),
                Op::Pool2d(op) => dispatches.push(op.prepare(gpu, in_shape, &current, &output)?),
                Op::GlobalAveragePool2d(op) => dispatches.push(op.prepare(gpu, in_shape, &current, &output)?),
                Op::Recurrent(op) => {
                    let (Some(mask), Some(projected)) = (&mask, &projection) else {
                        unreachable!("recurrent models always get a mask and a projection buffer")
                    };
                    if self.recurrent_per_step {
                        dispatches.extend(op.prepare_per_step(gpu, in_shape, &current, mask, projected, &output)?);
                    } else {
                        dispatches.extend(op.prepare(gpu, in_shape, &current, mask, projected, &output)?);
                    }
                }
                Op::Add(op) => {
                    dispatches.push(op.prepare(gpu, len(in_shape), &current, &values[layer.inputs[1]], &output)?)
                }
                Op::LayerNorm(op) => {
                    let rows = len(in_shape) / in_shape.last().copied().unwrap_or(1).max(1);
                    dispatches.push(op.prepare(gpu, rows, &current, None, &output)?)
                }
                Op::Attention(op) => {
                    let (Some((qkv, context)), Some(ones)) = (&attention_scratch, &ones) else {
                        unreachable!("attention models always get their scratch buffers")
                    };
                    dispatches.extend(op.prepare(
                        gpu,
                        in_shape[0],
                        in_shape[1],
                        &current,
                        qkv,
                        context,
                        ones,
                        &output,
                    )?);
                }
                Op::MeanOverSteps(op) => {
                    let Some(ones) = &ones else { unreachable!("step means always get the ones mask") };
                    dispatches.push(op.prepare(gpu, in_shape[0], in_shape[1], in_shape[2], &current, ones, &output)?);
                }
                Op::Embedding(op) => dispatches.push(op.prepare(gpu, len(in_shape), &current, &output)?),
                Op::Activation(_) => unreachable!("handled above"),
            }
            values.push(output);
        }
        let current = values.last().unwrap_or(&input);
        let embedding = current.clone();
        let embedding_len = shapes.last().map_or(0, |s| len(s));
        let (distance, staging_len) = match head {
            Head::Embed => (None, embedding_len),
            Head::Pairs(metric) => {
                let pairs = rows / 2;
                let out = gpu.create_buffer("distances", pairs as u64 * 4, storage);
                let dim = embedding_len / rows.max(1);
                let dispatch = self.distance_op(metric)?.prepare(gpu, pairs, dim, &embedding, &out)?;
                (Some((dispatch, out)), pairs + embedding_len)
            }
        };
        let staging = gpu.create_buffer(
            "readback",
            staging_len as u64 * 4,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        Ok(Plan {
            rows,
            steps,
            input,
            mask,
            dispatches,
            embedding,
            embedding_len,
            distance,
            staging,
            _scratch: owned,
            busy: Mutex::new(()),
        })
    }

    /// Uploads the batch into the plan's input (and mask), records every op (and the
    /// distance) in one encoder, submits once and maps once; returns the values read.
    fn execute(&self, plan: &Plan, batch: &Batch, copy_embeddings: bool) -> Result<Vec<f32>> {
        let gpu = &*self.gpu;
        let _busy = plan.busy.lock().map_err(|_| poisoned())?;
        let mut offset = 0;
        for part in batch.parts {
            gpu.queue().write_buffer(&plan.input, offset, bytemuck::cast_slice(part));
            offset += part.len() as u64 * 4;
        }
        if let Some(mask) = &plan.mask {
            if batch.mask.len() != plan.rows * plan.steps {
                return Err(Error::shape(
                    "step mask",
                    (plan.rows * plan.steps).to_string(),
                    batch.mask.len().to_string(),
                ));
            }
            gpu.queue().write_buffer(mask, 0, bytemuck::cast_slice(batch.mask));
        }
        let mut copies = Vec::with_capacity(2);
        if let Some((_, distances)) = &plan.distance {
            copies.push((distances, plan.rows / 2));
        }
        if copy_embeddings || plan.distance.is_none() {
            copies.push((&plan.embedding, plan.embedding_len));
        }
        let dispatches = plan.dispatches.iter().chain(plan.distance.as_ref().map(|(dispatch, _)| dispatch));
        ops::submit_and_read(gpu, "encoder + distance", dispatches, &copies, &plan.staging)
    }

    /// Runs both twins as one batch (`batch.parts` = [left, right], `batch.rows` = 2N).
    pub fn run_pairs(&self, batch: &Batch, metric: Distance, embeddings: bool) -> Result<PairRun> {
        let pairs = batch.rows / 2;
        let plan = self.plan(batch.rows, batch.steps, Head::Pairs(metric))?;
        let values = self.gpu.checked("running the Siamese batch", || self.execute(&plan, batch, embeddings))?;
        let (distances, rest) = values.split_at(pairs.min(values.len()));
        Ok(PairRun { distances: distances.to_vec(), embeddings: embeddings.then(|| rest.to_vec()) })
    }

    /// Runs the encoder alone and returns the embeddings.
    pub fn run_embed(&self, batch: &Batch) -> Result<Vec<f32>> {
        let plan = self.plan(batch.rows, batch.steps, Head::Embed)?;
        self.gpu.checked("running the encoder", || self.execute(&plan, batch, true))
    }
}
