//! The graph runner: an encoder's layers as GPU ops, and per-batch-size plans that record
//! the whole Siamese forward pass (both twins as one batch of 2N, then the distance
//! reduction) into ONE command encoder, submitted once and read back with one map.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::{LayerKind, ModelSpec};
use crate::ops::{
    self, Activation, ActivationOp, Conv2d, Dense, Dispatch, Distance, GlobalAveragePool2d, PairDistance, Pool2d,
};

/// A GPU op of the encoder, built once per model load (weights uploaded, pipeline compiled).
#[derive(Debug)]
enum Op {
    Conv2d(Conv2d),
    Dense(Dense),
    Pool2d(Pool2d),
    GlobalAveragePool2d(GlobalAveragePool2d),
    Activation(ActivationOp),
}

/// One op and the batch-1 shapes around it (the batch axis is replaced per plan).
#[derive(Debug)]
struct Step {
    layer: String,
    op: Op,
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
}

fn with_batch(shape: &[usize], batch: usize) -> Vec<usize> {
    std::iter::once(batch).chain(shape[1..].iter().copied()).collect()
}

/// What a plan computes after the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Head {
    /// Embeddings only (`embed`).
    Embed,
    /// Pair distances with this metric.
    Pairs(Distance),
}

/// Buffers, bind groups and dispatches for one batch size: built once, reused by every
/// call of that size, so the steady state creates no GPU objects.
#[derive(Debug)]
struct Plan {
    rows: usize,
    head: Head,
    input: wgpu::Buffer,
    dispatches: Vec<Dispatch>,
    embedding: wgpu::Buffer,
    distance: Option<(Dispatch, wgpu::Buffer)>,
    staging: wgpu::Buffer,
    /// Scratch buffers owned by the plan (bound in `dispatches`).
    _scratch: Vec<wgpu::Buffer>,
    /// Held while a call uses the plan's buffers: two threads calling with the same batch
    /// size take turns instead of overwriting each other's input and readback.
    busy: Mutex<()>,
}

/// Plans kept per graph (distinct batch sizes × heads); the oldest is dropped beyond this.
const MAX_PLANS: usize = 8;

/// Output of one batched pair run.
#[derive(Clone, Debug, Default)]
pub struct PairRun {
    /// One distance per pair.
    pub distances: Vec<f32>,
    /// `[2N, embedding...]` values (left rows then right rows) when asked for.
    pub embeddings: Option<Vec<f32>>,
}

/// An encoder resident on the GPU plus its plans.
#[derive(Debug)]
pub struct Graph {
    gpu: Arc<Gpu>,
    steps: Vec<Step>,
    input_shape: Vec<usize>,
    embedding_shape: Vec<usize>,
    flops_per_sample: u64,
    distance_ops: Mutex<Vec<Arc<PairDistance>>>,
    plans: Mutex<VecDeque<Arc<Plan>>>,
}

impl Graph {
    /// Uploads the weights and compiles every pipeline of `spec`. A standalone activation
    /// right after a Conv2D/Dense with a linear activation (views such as Flatten and
    /// Dropout in between don't matter) is fused into that op's epilogue.
    pub fn new(gpu: Arc<Gpu>, spec: &ModelSpec) -> Result<Self> {
        let shapes = spec.shapes(1)?;
        // Fuse first, on the host description, so each op compiles once with its final activation.
        let mut kinds: Vec<(usize, LayerKind)> = Vec::new();
        for (index, layer) in spec.layers.iter().enumerate() {
            match (&layer.kind, kinds.last_mut()) {
                (LayerKind::Flatten | LayerKind::Identity, _) => {}
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
        let mut flops = 0;
        for (index, kind) in kinds {
            let input_shape = shapes[index].clone();
            let output_shape = shapes[index + 1].clone();
            let op = match kind {
                LayerKind::Conv2d { config, kernel, bias } => {
                    let op = Conv2d::new(&gpu, config, &kernel, bias.as_deref())?;
                    flops += op.flops(&input_shape);
                    Op::Conv2d(op)
                }
                LayerKind::Dense {
                    in_features,
                    out_features,
                    kernel,
                    bias,
                    activation,
                } => {
                    let op = Dense::new(&gpu, in_features, out_features, &kernel, bias.as_deref(), activation)?;
                    flops += op.flops(&input_shape);
                    Op::Dense(op)
                }
                LayerKind::Pool2d(config) => Op::Pool2d(Pool2d::new(&gpu, config)?),
                LayerKind::GlobalAveragePool2d { .. } => Op::GlobalAveragePool2d(GlobalAveragePool2d::new(&gpu)?),
                LayerKind::Activation(a) => Op::Activation(ActivationOp::new(&gpu, a)?),
                LayerKind::Flatten | LayerKind::Identity => continue,
            };
            steps.push(Step {
                layer: spec.layers[index].name.clone(),
                op,
                input_shape,
                output_shape,
            });
        }
        let embedding_shape = shapes.last().map(|s| s[1..].to_vec()).unwrap_or_default();
        Ok(Self {
            gpu,
            steps,
            input_shape: spec.input_shape.clone(),
            embedding_shape,
            flops_per_sample: flops,
            distance_ops: Mutex::default(),
            plans: Mutex::default(),
        })
    }

    /// Input shape of one sample.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Embedding shape of one sample.
    pub fn embedding_shape(&self) -> &[usize] {
        &self.embedding_shape
    }

    /// Floating-point operations of the encoder for one sample (2 per multiply-add).
    pub fn flops_per_sample(&self) -> u64 {
        self.flops_per_sample
    }

    /// Compute dispatches per pair call (encoder ops + the distance reduction).
    pub fn dispatches_per_call(&self) -> usize {
        self.steps.len() + 1
    }

    /// The kernels run per call, in order, with the layer each came from.
    pub fn describe(&self) -> Vec<String> {
        self.steps
            .iter()
            .map(|s| {
                let kernel = match &s.op {
                    Op::Conv2d(op) => format!("conv2d (activation {:?})", op.config().activation),
                    Op::Dense(op) => format!("dense (activation {:?})", op.activation()),
                    Op::Pool2d(_) => "pool2d".into(),
                    Op::GlobalAveragePool2d(_) => "global_average_pool2d".into(),
                    Op::Activation(op) => format!("activation {:?}", op.activation()),
                };
                format!("{:<24} {kernel} -> {:?}", s.layer, &s.output_shape[1..])
            })
            .collect()
    }

    /// The most rows (samples: 2 per pair) one submit can hold on this device: every
    /// buffer must fit one storage binding and every dispatch the workgroup-count limit.
    /// Larger batches are split into chunks of this size by [`crate::SiameseModel`].
    pub fn max_rows(&self) -> usize {
        let limits = self.gpu.limits();
        let binding = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size) as usize / 4;
        let groups = limits.max_compute_workgroups_per_dimension as usize;
        let mut max = binding / self.input_shape.iter().product::<usize>().max(1);
        for step in &self.steps {
            let out_len: usize = step.output_shape[1..].iter().product();
            max = max.min(binding / out_len.max(1));
            // conv2d and dense put (rows × pixels) / 32 workgroups on the y axis.
            let per_row = match &step.op {
                Op::Conv2d(_) => step.output_shape[1] * step.output_shape[2],
                Op::Dense(_) => step.output_shape[1..step.output_shape.len() - 1].iter().product(),
                _ => 0,
            };
            if let Some(rows) = (groups * 32).checked_div(per_row) {
                max = max.min(rows);
            }
        }
        max.max(1)
    }

    fn embedding_len(&self) -> usize {
        self.embedding_shape.iter().product()
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

    fn plan(&self, rows: usize, head: Head) -> Result<Arc<Plan>> {
        let mut plans = self.plans.lock().map_err(|_| poisoned())?;
        if let Some(plan) = plans.iter().find(|p| p.rows == rows && p.head == head) {
            return Ok(plan.clone());
        }
        let plan = Arc::new(self.gpu.checked("planning buffers", || self.build_plan(rows, head))?);
        if plans.len() >= MAX_PLANS {
            plans.pop_front();
        }
        plans.push_back(plan.clone());
        Ok(plan)
    }

    fn build_plan(&self, rows: usize, head: Head) -> Result<Plan> {
        let gpu = &*self.gpu;
        let input_len = rows * self.input_shape.iter().product::<usize>();
        ops::check_binding(gpu, "input", input_len)?;
        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let input = gpu.create_buffer("input (left twin rows, then right)", input_len as u64 * 4, storage);
        // Two scratch buffers, ping-ponged: an op never reads and writes the same buffer
        // (WebGPU forbids one buffer bound read-only and read-write in one dispatch).
        let scratch_len = self
            .steps
            .iter()
            .map(|s| rows * s.output_shape[1..].iter().product::<usize>())
            .max()
            .unwrap_or(0);
        ops::check_binding(gpu, "intermediate", scratch_len)?;
        let scratch_count = self
            .steps
            .iter()
            .filter(|s| !matches!(s.op, Op::Activation(_)))
            .count()
            .min(2);
        let scratch: Vec<wgpu::Buffer> = (0..scratch_count)
            .map(|_| gpu.create_buffer("intermediate", scratch_len as u64 * 4, storage))
            .collect();

        let mut current = &input;
        let mut next_scratch = 0;
        let mut dispatches = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let in_shape = with_batch(&step.input_shape, rows);
            let dispatch = match &step.op {
                Op::Activation(op) => {
                    dispatches.push(op.prepare(gpu, in_shape.iter().product(), current)?);
                    continue;
                }
                op => {
                    let output = &scratch[next_scratch];
                    next_scratch = 1 - next_scratch;
                    let dispatch = match op {
                        Op::Conv2d(op) => op.prepare(gpu, &in_shape, current, output)?,
                        Op::Dense(op) => op.prepare(gpu, &in_shape, current, output)?,
                        Op::Pool2d(op) => op.prepare(gpu, &in_shape, current, output)?,
                        Op::GlobalAveragePool2d(op) => op.prepare(gpu, &in_shape, current, output)?,
                        Op::Activation(_) => unreachable!("handled above"),
                    };
                    current = output;
                    dispatch
                }
            };
            dispatches.push(dispatch);
        }
        let embedding = current.clone();
        let embedding_len = rows * self.embedding_len();
        let (distance, staging_len) = match head {
            Head::Embed => (None, embedding_len),
            Head::Pairs(metric) => {
                let pairs = rows / 2;
                let out = gpu.create_buffer("distances", pairs as u64 * 4, storage);
                let dispatch = self
                    .distance_op(metric)?
                    .prepare(gpu, pairs, self.embedding_len(), &embedding, &out)?;
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
            head,
            input,
            dispatches,
            embedding,
            distance,
            staging,
            _scratch: scratch,
            busy: Mutex::new(()),
        })
    }

    /// Uploads `parts` back to back into the plan's input, records every op (and the
    /// distance) in one encoder, submits once and maps once; returns the `len` values read.
    fn execute(&self, plan: &Plan, parts: &[&[f32]], copy_embeddings: bool) -> Result<Vec<f32>> {
        let gpu = &*self.gpu;
        let _busy = plan.busy.lock().map_err(|_| poisoned())?;
        let mut offset = 0;
        for part in parts {
            gpu.queue()
                .write_buffer(&plan.input, offset, bytemuck::cast_slice(part));
            offset += part.len() as u64 * 4;
        }
        let mut encoder = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("siamese") });
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
        let embedding_bytes = (plan.rows * self.embedding_len()) as u64 * 4;
        let mut len = 0;
        if let Some((_, distances)) = &plan.distance {
            let bytes = (plan.rows / 2) as u64 * 4;
            encoder.copy_buffer_to_buffer(distances, 0, &plan.staging, 0, bytes);
            len = plan.rows / 2;
        }
        if copy_embeddings || plan.distance.is_none() {
            encoder.copy_buffer_to_buffer(&plan.embedding, 0, &plan.staging, len as u64 * 4, embedding_bytes);
            len += plan.rows * self.embedding_len();
        }
        let submission = gpu.submit(encoder.finish());
        gpu.read_f32(&plan.staging, len, submission)
    }

    /// Runs both twins as one batch: `left` and `right` each hold `pairs` samples.
    pub fn run_pairs(
        &self,
        left: &[f32],
        right: &[f32],
        pairs: usize,
        metric: Distance,
        embeddings: bool,
    ) -> Result<PairRun> {
        let plan = self.plan(2 * pairs, Head::Pairs(metric))?;
        let values = self.gpu.checked("running the Siamese batch", || {
            self.execute(&plan, &[left, right], embeddings)
        })?;
        let (distances, rest) = values.split_at(pairs.min(values.len()));
        Ok(PairRun {
            distances: distances.to_vec(),
            embeddings: embeddings.then(|| rest.to_vec()),
        })
    }

    /// Runs the encoder on `rows` samples and returns the embeddings.
    pub fn run_embed(&self, input: &[f32], rows: usize) -> Result<Vec<f32>> {
        let plan = self.plan(rows, Head::Embed)?;
        self.gpu
            .checked("running the encoder", || self.execute(&plan, &[input], true))
    }
}

fn poisoned() -> Error {
    Error::Gpu {
        context: "locking the plan cache".into(),
        message: "a previous call panicked".into(),
    }
}
