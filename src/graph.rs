//! The graph runner: an encoder's layers as GPU ops, and per-batch-size plans that record
//! the whole Siamese forward pass (both twins as one batch of 2N, then the distance
//! reduction) into ONE command encoder, submitted once and read back with one map.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::{LayerKind, ModelSpec};
use crate::ops::{
    self, Activation, ActivationOp, Conv2d, Dense, Dispatch, Distance, GlobalAveragePool2d, PairDistance, Pool2d,
    Recurrent,
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
}

/// One op and the index of the model layer it came from (its input shape is the shape
/// before that layer, its output the shape after: fused activations change neither).
#[derive(Debug)]
struct Step {
    layer: usize,
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
        // Fuse first, on the host description, so each op compiles once with its final activation.
        let mut kinds: Vec<(usize, LayerKind)> = Vec::new();
        for (index, layer) in spec.layers.iter().enumerate() {
            match (&layer.kind, kinds.last_mut()) {
                (LayerKind::Flatten | LayerKind::Identity | LayerKind::Masking { .. }, _) => {}
                (LayerKind::Activation(a), Some((_, LayerKind::Conv2d { config, .. })))
                    if config.activation == Activation::Linear =>
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
                LayerKind::Conv2d { config, kernel, bias } => {
                    Op::Conv2d(Conv2d::new(&gpu, config, &kernel, bias.as_deref())?)
                }
                LayerKind::Dense { in_features, out_features, kernel, bias, activation } => {
                    Op::Dense(Dense::new(&gpu, in_features, out_features, &kernel, bias.as_deref(), activation)?)
                }
                LayerKind::Pool2d(config) => Op::Pool2d(Pool2d::new(&gpu, config)?),
                LayerKind::GlobalAveragePool2d { .. } => Op::GlobalAveragePool2d(GlobalAveragePool2d::new(&gpu)?),
                LayerKind::Activation(a) => Op::Activation(ActivationOp::new(&gpu, a)?),
                LayerKind::Recurrent { config, weights } => Op::Recurrent(Recurrent::new(&gpu, config, &weights)?),
                LayerKind::Flatten | LayerKind::Identity | LayerKind::Masking { .. } => continue,
            };
            steps.push(Step { layer, op });
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
                let input = &shapes[s.layer];
                match &s.op {
                    Op::Conv2d(op) => op.flops(input),
                    Op::Dense(op) => op.flops(input),
                    Op::Recurrent(op) => op.flops(input),
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
        let per_step_extra = if self.recurrent_per_step { recurrent * (steps.max(1) - 1) } else { 0 };
        self.steps.len() + recurrent + per_step_extra + 1
    }

    /// The kernels run per call, in order, with the layer each came from.
    pub fn describe(&self) -> Vec<String> {
        let shapes = self.spec.shapes(1).unwrap_or_default();
        self.steps
            .iter()
            .map(|s| {
                let kernel = match &s.op {
                    Op::Conv2d(op) => format!("conv2d (activation {:?})", op.config().activation),
                    Op::Dense(op) => format!("dense (activation {:?})", op.activation()),
                    Op::Pool2d(_) => "pool2d".into(),
                    Op::GlobalAveragePool2d(_) => "global_average_pool2d".into(),
                    Op::Activation(op) => format!("activation {:?}", op.activation()),
                    Op::Recurrent(op) => format!("{:?} ×{} directions", op.config().cell, op.config().directions),
                };
                let out = shapes.get(s.layer + 1).map(|o| format!("{:?}", &o[1..])).unwrap_or_default();
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
            let output = &shapes[step.layer + 1];
            max = max.min(binding / output.iter().product::<usize>().max(1));
            // conv2d and dense put (rows × pixels) / 32 workgroups on the y axis; the
            // recurrence one workgroup per row.
            let per_row = match &step.op {
                Op::Conv2d(_) => output[1] * output[2],
                Op::Dense(_) => output[1..output.len() - 1].iter().product(),
                Op::Recurrent(op) => {
                    let input = &shapes[step.layer];
                    max = max.min(binding / op.projection_len(input).max(1));
                    max = max.min(groups);
                    input[1]
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
        // Two scratch buffers, ping-ponged: an op never reads and writes the same buffer
        // (WebGPU forbids one buffer bound read-only and read-write in one dispatch).
        // The per-step baseline keeps the LSTM cell state after h in its output buffer.
        let state_factor = |s: &Step| if self.recurrent_per_step && matches!(s.op, Op::Recurrent(_)) { 2 } else { 1 };
        let scratch_len = self.steps.iter().map(|s| state_factor(s) * len(&shapes[s.layer + 1])).max().unwrap_or(0);
        ops::check_binding(gpu, "intermediate", scratch_len)?;
        let scratch_count = self.steps.iter().filter(|s| !matches!(s.op, Op::Activation(_))).count().min(2);
        let mut scratch: Vec<wgpu::Buffer> =
            (0..scratch_count).map(|_| gpu.create_buffer("intermediate", scratch_len as u64 * 4, storage)).collect();
        // Recurrent layers project every step first into a third scratch buffer.
        let projection_len = self
            .steps
            .iter()
            .filter_map(|s| match &s.op {
                Op::Recurrent(op) => Some(op.projection_len(&shapes[s.layer])),
                _ => None,
            })
            .max();
        if let Some(projection_len) = projection_len {
            ops::check_binding(gpu, "recurrent projection", projection_len)?;
            scratch.push(gpu.create_buffer("recurrent projection", projection_len as u64 * 4, storage));
        }

        let mut current = &input;
        let mut next_scratch = 0;
        let mut dispatches = Vec::with_capacity(self.steps.len() + 2);
        for step in &self.steps {
            let in_shape = &shapes[step.layer];
            if let Op::Activation(op) = &step.op {
                dispatches.push(op.prepare(gpu, len(in_shape), current)?);
                continue;
            }
            let output = &scratch[next_scratch];
            next_scratch = 1 - next_scratch;
            match &step.op {
                Op::Conv2d(op) => dispatches.push(op.prepare(gpu, in_shape, current, output)?),
                Op::Dense(op) => dispatches.push(op.prepare(gpu, in_shape, current, output)?),
                Op::Pool2d(op) => dispatches.push(op.prepare(gpu, in_shape, current, output)?),
                Op::GlobalAveragePool2d(op) => dispatches.push(op.prepare(gpu, in_shape, current, output)?),
                Op::Recurrent(op) => {
                    let (Some(mask), Some(projected)) = (&mask, scratch.last()) else {
                        unreachable!("recurrent models always get a mask and a projection buffer")
                    };
                    if self.recurrent_per_step {
                        dispatches.extend(op.prepare_per_step(gpu, in_shape, current, mask, projected, output)?);
                    } else {
                        dispatches.extend(op.prepare(gpu, in_shape, current, mask, projected, output)?);
                    }
                }
                Op::Activation(_) => unreachable!("handled above"),
            }
            current = output;
        }
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
            _scratch: scratch,
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
        let mut encoder =
            gpu.device().create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("siamese") });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("encoder + distance"),
                timestamp_writes: None,
            });
            for dispatch in &plan.dispatches {
                dispatch.record(&mut pass);
            }
            if let Some((dispatch, _)) = &plan.distance {
                dispatch.record(&mut pass);
            }
        }
        let mut len = 0;
        if let Some((_, distances)) = &plan.distance {
            encoder.copy_buffer_to_buffer(distances, 0, &plan.staging, 0, (plan.rows / 2) as u64 * 4);
            len = plan.rows / 2;
        }
        if copy_embeddings || plan.distance.is_none() {
            encoder.copy_buffer_to_buffer(
                &plan.embedding,
                0,
                &plan.staging,
                len as u64 * 4,
                plan.embedding_len as u64 * 4,
            );
            len += plan.embedding_len;
        }
        let submission = gpu.submit(encoder.finish());
        gpu.read_f32(&plan.staging, len, submission)
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
