//! The graph runner: an encoder's layers as GPU ops, and per-batch-size plans that record
//! the whole Siamese forward pass (both twins as one batch of 2N, then the distance
//! reduction) into ONE command encoder, submitted once and read back with one map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::layers::{Io, Kernel, PlanContext, RunOptions, Scratch};
use crate::model::ModelSpec;
use crate::ops::{self, Dispatch, Distance, PairDistance, Precision};
use crate::passes;
use crate::plans::{poisoned, PlanCache};

/// The usage of every plan buffer the kernels bind (copied in and out for uploads and reads).
const STORAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

/// What a plan computes after the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Head {
    /// Embeddings only (`embed`).
    Embed,
    /// Pair distances with this metric.
    Pairs(Distance),
    /// The value after this many layers, read back as it is (for checks against a reference).
    Value(usize),
    /// The twin head's graph after the encoder: its one value per pair.
    Model,
}

/// Buffers, bind groups and dispatches for one (batch size, sequence length, head): built
/// once, reused by every such call, so the steady state creates no GPU objects.
#[derive(Debug)]
struct Plan {
    rows: usize,
    steps: usize,
    input: wgpu::Buffer,
    /// `[rows, steps]` u32 step mask, for models with a kernel that reads it.
    mask: Option<wgpu::Buffer>,
    dispatches: Vec<Dispatch>,
    embedding: wgpu::Buffer,
    embedding_len: usize,
    distance: Option<(Dispatch, wgpu::Buffer)>,
    staging: wgpu::Buffer,
    /// Scratch and intermediate buffers owned by the plan (bound in `dispatches`).
    _scratch: Vec<wgpu::Buffer>,
    /// Held while a call uses the plan's buffers: two threads calling with the same batch
    /// size take turns instead of overwriting each other's input and readback.
    busy: Mutex<()>,
}

/// The intermediate buffers of a plan being built: each is held until a given node has
/// run, then free for a later kernel's output.
#[derive(Default)]
struct BufferPool {
    buffers: Vec<(wgpu::Buffer, usize)>,
    /// Per buffer: the last node that reads a value it holds (None: never freed).
    until: Vec<Option<usize>>,
    free: Vec<usize>,
}

impl BufferPool {
    /// Adopts a buffer that is never freed (the plan's input).
    fn external(&mut self, buffer: wgpu::Buffer) -> usize {
        self.buffers.push((buffer, 0));
        self.until.push(None);
        self.buffers.len() - 1
    }

    /// The smallest free buffer holding at least `values`, or a new one.
    fn take(&mut self, gpu: &Gpu, values: usize, usage: wgpu::BufferUsages) -> usize {
        let best = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, &b)| self.buffers[b].1 >= values)
            .min_by_key(|(_, &b)| self.buffers[b].1);
        if let Some((slot, _)) = best {
            return self.free.swap_remove(slot);
        }
        self.buffers.push((gpu.create_buffer("intermediate values", values.max(1) as u64 * 4, usage), values));
        self.until.push(Some(0));
        self.buffers.len() - 1
    }

    /// Keeps buffer `id` until node `until` has run.
    fn hold(&mut self, id: usize, until: usize) {
        if let Some(current) = &mut self.until[id] {
            *current = (*current).max(until);
        }
    }

    /// Frees the buffers whose last reader is node `node`.
    fn release_after(&mut self, node: usize) {
        for (id, until) in self.until.iter().enumerate() {
            if *until == Some(node) && !self.free.contains(&id) {
                self.free.push(id);
            }
        }
    }

    fn buffer(&self, id: usize) -> &wgpu::Buffer {
        &self.buffers[id].0
    }

    fn into_buffers(self) -> impl Iterator<Item = wgpu::Buffer> {
        self.buffers.into_iter().skip(1).map(|(buffer, _)| buffer)
    }
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
    /// The model as imported.
    spec: ModelSpec,
    /// The graph the kernels run: `spec` after [`passes::for_gpu`] (same value numbers).
    exec: ModelSpec,
    /// One per node of `exec`: None for views.
    kernels: Vec<Option<Box<dyn Kernel>>>,
    distance_ops: Mutex<Vec<Arc<PairDistance>>>,
    plans: PlanCache<(usize, usize, Head), Plan>,
    options: RunOptions,
    /// A twin head of layers, recorded after the encoder (see [`crate::model::LayerHead`]).
    twin_head: Option<Box<Graph>>,
}

/// What recording a graph's nodes gave: their dispatches, and the buffer (with its length)
/// holding the last value.
struct Recorded {
    dispatches: Vec<Dispatch>,
    output: wgpu::Buffer,
    output_len: usize,
}

impl Graph {
    /// Uploads the weights and compiles every pipeline of `spec`, after the passes (see
    /// [`passes::for_gpu`]: BatchNormalization folding, activation and max-pool fusion).
    pub fn new(gpu: Arc<Gpu>, spec: &ModelSpec) -> Result<Self> {
        Self::with_precision(gpu, spec, Precision::F32)
    }

    /// As [`new`](Self::new), storing the Dense/Conv2D kernels (and the input and attention
    /// projections) in `precision`.
    pub fn with_precision(gpu: Arc<Gpu>, spec: &ModelSpec, precision: Precision) -> Result<Self> {
        spec.shapes(1)?;
        let exec = passes::for_target(spec, passes::Target::from_limits(&gpu.limits()))?;
        exec.shapes(1)?;
        let kernels = exec
            .layers
            .iter()
            .map(|layer| if layer.op.is_view() { Ok(None) } else { layer.op.compile(&gpu, precision) })
            .collect::<Result<Vec<_>>>()?;
        let graph = Self {
            gpu,
            spec: spec.clone(),
            exec,
            kernels,
            distance_ops: Mutex::default(),
            plans: PlanCache::default(),
            options: RunOptions::default(),
            twin_head: None,
        };
        graph.check_in_place()?;
        Ok(graph)
    }

    /// A kernel working in place overwrites its input's buffer, which views share: no other
    /// layer may read that buffer.
    fn check_in_place(&self) -> Result<()> {
        let readers = self.exec.readers();
        for (index, kernel) in self.kernels.iter().enumerate() {
            if !kernel.as_ref().is_some_and(|k| k.in_place()) {
                continue;
            }
            let mut value = self.exec.layers[index].inputs[0];
            loop {
                if readers[value] > 1 {
                    return Err(Error::UnsupportedConfig {
                        layer: self.exec.layers[index].name.clone(),
                        key: "input".into(),
                        value: "shared with other layers".into(),
                        hint: " (a standalone activation on a branching tensor is not supported)".into(),
                    });
                }
                match value.checked_sub(1).map(|p| &self.exec.layers[p]) {
                    Some(producer) if producer.op.is_view() => value = producer.inputs[0],
                    _ => break,
                }
            }
        }
        Ok(())
    }

    /// The kernels with the index of their node.
    fn compiled(&self) -> impl Iterator<Item = (usize, &dyn Kernel)> {
        self.kernels.iter().enumerate().filter_map(|(i, k)| k.as_deref().map(|k| (i, k)))
    }

    /// The shapes a node reads, out of all values' shapes.
    fn input_shapes<'a>(&self, shapes: &'a [Vec<usize>], node: usize) -> Vec<&'a [usize]> {
        self.exec.layers[node].inputs.iter().map(|&v| shapes[v].as_slice()).collect()
    }

    /// The model description.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Input shape of one sample (0 marks a variable time axis).
    pub fn input_shape(&self) -> &[usize] {
        &self.spec.input_shape
    }

    /// Whether a kernel reads the `[rows, steps]` step mask (recurrent layers, masked
    /// attention and pooling): batches must then carry one.
    pub fn reads_mask(&self) -> bool {
        self.compiled().any(|(_, k)| k.reads_mask())
    }

    /// Embedding shape of one sample for inputs of `steps` time steps.
    pub fn embedding_shape(&self, steps: usize) -> Result<Vec<usize>> {
        self.spec.embedding_shape(steps)
    }

    /// Floating-point operations of the encoder for one sample of `steps` time steps
    /// (2 per multiply-add).
    pub fn flops_per_sample(&self, steps: usize) -> u64 {
        let Ok(shapes) = self.exec.shapes_for(1, steps) else { return 0 };
        self.compiled().map(|(i, _)| self.exec.layers[i].op.flops(&self.input_shapes(&shapes, i))).sum()
    }

    /// Switches LSTM layers to the one-dispatch-per-time-step baseline (for benchmarks;
    /// errors when a recurrent layer has no such variant). Drops the cached plans.
    pub fn set_recurrent_per_step(&mut self, per_step: bool) -> Result<()> {
        let options = RunOptions { recurrent_per_step: per_step };
        for (index, kernel) in self.compiled() {
            kernel.check_options(options).map_err(|e| match e {
                Error::InvalidInput { what, reason } => {
                    Error::InvalidInput { what, reason: format!("layer {:?}: {reason}", self.exec.layers[index].name) }
                }
                other => other,
            })?;
        }
        self.options = options;
        self.plans.clear()?;
        Ok(())
    }

    /// Compute dispatches per pair call for inputs of `steps` time steps (encoder kernels
    /// and the distance reduction, or the twin head's kernels).
    pub fn dispatches_per_call(&self, steps: usize) -> usize {
        let encoder = self.compiled().map(|(_, k)| k.dispatch_count(steps, self.options)).sum::<usize>();
        encoder + self.twin_head.as_ref().map_or(1, |head| head.dispatches_per_call(1) - 1)
    }

    /// The kernels run per call, in order, with the layer each came from.
    pub fn describe(&self) -> Vec<String> {
        let shapes = self.exec.shapes(1).unwrap_or_default();
        self.compiled()
            .map(|(i, kernel)| {
                let out = shapes.get(i + 1).map(|o| format!("{:?}", &o[1..])).unwrap_or_default();
                format!("{:<24} {} -> {out}", self.exec.layers[i].name, kernel.describe())
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
        let Ok(shapes) = self.exec.shapes_for(1, steps) else { return 1 };
        let len = |shape: &[usize]| shape.iter().product::<usize>().max(1);
        let mut max = binding / len(&shapes[0]);
        for (i, kernel) in self.compiled() {
            let output = &shapes[i + 1];
            max = max.min(binding / len(output));
            max = max.min(kernel.max_rows(&self.input_shapes(&shapes, i), output, binding, groups));
        }
        if let Some(head) = &self.twin_head {
            // The head runs on one row per pair.
            max = max.min(head.max_rows(1).saturating_mul(2));
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

    /// Installs a twin head of layers (its input `[pairs, 2, ...embedding]`): recorded after
    /// the encoder in the same submit by [`run_model`](Self::run_model). Drops the plans.
    pub fn set_twin_head(&mut self, head: Graph) -> Result<()> {
        let embedding = self.spec.embedding_shape(1)?;
        let want: Vec<usize> = std::iter::once(2).chain(embedding).collect();
        if head.spec.input_shape != want {
            return Err(Error::shape("twin head input", format!("{want:?}"), format!("{:?}", head.spec.input_shape)));
        }
        if head.reads_mask() {
            return Err(Error::input("twin head", "a head's layers cannot read a step mask"));
        }
        self.twin_head = Some(Box::new(head));
        self.plans.clear()
    }

    /// Whether a twin head of layers is installed.
    pub fn has_twin_head(&self) -> bool {
        self.twin_head.is_some()
    }

    fn plan(&self, rows: usize, steps: usize, head: Head) -> Result<Arc<Plan>> {
        self.plans.get_or_build((rows, steps, head), || {
            self.gpu.checked("planning buffers", || self.build_plan(rows, steps, head))
        })
    }

    fn build_plan(&self, rows: usize, steps: usize, head: Head) -> Result<Plan> {
        let gpu = &*self.gpu;
        let shapes = self.exec.shapes_for(rows, steps)?;
        // Nodes recorded: all of them, or those before the value read back.
        let nodes = match head {
            Head::Value(value) => value.min(self.exec.layers.len()),
            _ => self.exec.layers.len(),
        };
        let len = |shape: &[usize]| shape.iter().product::<usize>();
        ops::check_binding(gpu, "input", len(&shapes[0]))?;
        let input = gpu.create_buffer("input (left twin rows, then right)", len(&shapes[0]) as u64 * 4, STORAGE);
        let reads_mask = self.compiled().any(|(i, k)| i < nodes && k.reads_mask());
        let mask = reads_mask.then(|| gpu.create_buffer("step mask", (rows * steps) as u64 * 4, STORAGE));
        let mut owned: Vec<wgpu::Buffer> = Vec::new();
        let Recorded { mut dispatches, output: mut embedding, output_len: mut embedding_len } =
            self.record(&shapes, nodes, &input, mask.as_ref(), &mut owned)?;
        let (distance, staging_len) = match head {
            Head::Embed | Head::Value(_) => (None, embedding_len),
            Head::Model => {
                let twin = self.twin_head.as_deref().ok_or_else(|| Error::input("pairs", "the model has no head"))?;
                let head_shapes = twin.exec.shapes_for(rows / 2, 1)?;
                let nodes = twin.exec.layers.len();
                let recorded = twin.record(&head_shapes, nodes, &embedding, None, &mut owned)?;
                dispatches.extend(recorded.dispatches);
                (embedding, embedding_len) = (recorded.output, recorded.output_len);
                (None, embedding_len)
            }
            Head::Pairs(metric) => {
                let pairs = rows / 2;
                let out = gpu.create_buffer("distances", pairs as u64 * 4, STORAGE);
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

    /// Records the first `nodes` nodes over values of `shapes` (value 0 in `input`): their
    /// dispatches and the buffer of value `nodes`. Buffers it makes go to `owned`.
    fn record(
        &self,
        shapes: &[Vec<usize>],
        nodes: usize,
        input: &wgpu::Buffer,
        mask: Option<&wgpu::Buffer>,
        owned: &mut Vec<wgpu::Buffer>,
    ) -> Result<Recorded> {
        let gpu = &*self.gpu;
        let scratch = self.plan_scratch(shapes, nodes, owned)?;
        let ctx = PlanContext { gpu, mask, scratch: &scratch, options: self.options };
        // Intermediate values: every kernel writes a buffer it does not read (WebGPU forbids
        // binding one buffer read-only and read-write in one dispatch); views and in-place
        // kernels share their input's buffer. A buffer goes back to the pool after the last
        // reader of every value it holds, and is handed to a later kernel whose output fits.
        // A value nothing reads is freed right after the node that makes it.
        let mut last_use: Vec<usize> = (0..shapes.len()).map(|v| v.saturating_sub(1)).collect();
        for (i, layer) in self.exec.layers.iter().enumerate().take(nodes) {
            layer.inputs.iter().for_each(|&v| last_use[v] = i);
        }
        last_use[nodes] = usize::MAX;
        let mut pool = BufferPool::default();
        let mut held: Vec<usize> = vec![pool.external(input.clone())];
        let mut dispatches = Vec::with_capacity(nodes + 2);
        for i in 0..nodes {
            let layer = &self.exec.layers[i];
            let in_buffers: Vec<usize> = layer.inputs.iter().map(|&v| held[v]).collect();
            let buffer = match &self.kernels[i] {
                None => in_buffers[0],
                Some(kernel) => {
                    let id = if kernel.in_place() {
                        in_buffers[0]
                    } else {
                        let values = kernel.output_len(&shapes[i + 1], self.options);
                        ops::check_binding(gpu, &format!("output of {}", layer.name), values)?;
                        pool.take(gpu, values, STORAGE)
                    };
                    let inputs: Vec<&wgpu::Buffer> = in_buffers.iter().map(|&b| pool.buffer(b)).collect();
                    let output = pool.buffer(id);
                    let (input_shapes, output_shape) = (self.input_shapes(shapes, i), &shapes[i + 1]);
                    let io = Io { inputs: &inputs, shapes: &input_shapes, output, output_shape };
                    dispatches.extend(kernel.prepare(&ctx, &io)?);
                    id
                }
            };
            pool.hold(buffer, last_use[i + 1]);
            held.push(buffer);
            pool.release_after(i);
        }
        let output = pool.buffer(held[nodes]).clone();
        owned.extend(pool.into_buffers());
        let output_len = shapes[nodes].iter().product();
        Ok(Recorded { dispatches, output, output_len })
    }

    /// The shared scratch buffers of the first `nodes` kernels: one per key, as large as the
    /// largest asked for (all-ones masks filled here).
    fn plan_scratch(
        &self,
        shapes: &[Vec<usize>],
        nodes: usize,
        owned: &mut Vec<wgpu::Buffer>,
    ) -> Result<HashMap<&'static str, wgpu::Buffer>> {
        let mut needs: Vec<Scratch> = Vec::new();
        for (i, kernel) in self.compiled().filter(|(i, _)| *i < nodes) {
            for need in kernel.scratch(&self.input_shapes(shapes, i)) {
                match needs.iter_mut().find(|n| n.key == need.key) {
                    Some(known) => known.len = known.len.max(need.len),
                    None => needs.push(need),
                }
            }
        }
        let mut scratch = HashMap::new();
        for need in needs {
            ops::check_binding(&self.gpu, need.key, need.len)?;
            let buffer = self.gpu.create_buffer(need.key, need.len as u64 * 4, STORAGE);
            if need.ones {
                self.gpu.queue().write_buffer(&buffer, 0, bytemuck::cast_slice(&vec![1u32; need.len]));
            }
            owned.push(buffer.clone());
            scratch.insert(need.key, buffer);
        }
        Ok(scratch)
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

    /// Runs both twins as one batch, then the twin head's layers (see
    /// [`set_twin_head`](Self::set_twin_head)): one value per pair, one submit.
    pub fn run_model(&self, batch: &Batch) -> Result<Vec<f32>> {
        let plan = self.plan(batch.rows, batch.steps, Head::Model)?;
        self.gpu.checked("running the Siamese batch and its head", || self.execute(&plan, batch, true))
    }

    /// Runs the encoder alone and returns the embeddings.
    pub fn run_embed(&self, batch: &Batch) -> Result<Vec<f32>> {
        let plan = self.plan(batch.rows, batch.steps, Head::Embed)?;
        self.gpu.checked("running the encoder", || self.execute(&plan, batch, true))
    }

    /// Runs the first `layers` layers alone and returns the value after them, `[rows, ...]`
    /// (the input itself for 0): for checking a model part by part against a reference.
    pub fn run_value(&self, batch: &Batch, layers: usize) -> Result<Vec<f32>> {
        let plan = self.plan(batch.rows, batch.steps, Head::Value(layers.min(self.exec.layers.len())))?;
        self.gpu.checked("running the encoder", || self.execute(&plan, batch, true))
    }
}
