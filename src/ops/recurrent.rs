//! LSTM and GRU layers over whole (ragged, masked) sequences, Keras semantics, optionally
//! bidirectional. Two dispatches per layer whatever the sequence length: one dense GEMM
//! projecting every time step of every direction (`x_t·K + b`), then one recurrence
//! dispatch (`shaders/recurrent.wgsl`) that loops over time with the state in workgroup
//! memory.

use super::{groups, prepare_dispatch, shape_str, weight_buffer, Activation, Dense, Dispatch, Precision};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::shaders;

/// The recurrent cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// LSTM, gate blocks i, f, c, o.
    Lstm,
    /// GRU, gate blocks z, r, h; `reset_after` as Keras (True is the Keras 3 default).
    Gru {
        /// Apply the reset gate after the recurrent matmul.
        reset_after: bool,
    },
}

impl Cell {
    /// The kernel's entry point in recurrent.wgsl.
    pub fn entry_point(self) -> &'static str {
        match self {
            Cell::Lstm => "lstm_sequence",
            Cell::Gru { reset_after: true } => "gru_sequence_rows",
            Cell::Gru { reset_after: false } => "gru_sequence",
        }
    }

    /// Whether the kernel runs several sequences per workgroup (`ROWS` override): LSTM and
    /// GRU with reset_after. GRU with reset_after = False needs r ⊙ h of all units before
    /// its candidate, so it keeps one sequence per workgroup.
    pub fn shares_rows(self) -> bool {
        self != Cell::Gru { reset_after: false }
    }

    /// Override constants for this cell with the given gate / cell activations.
    pub fn constants(self, gate: Activation, cell: Activation) -> [(&'static str, f64); 3] {
        let reset_after = matches!(self, Cell::Gru { reset_after: true });
        [
            ("GATE_ACTIVATION", gate.code() as f64),
            ("CELL_ACTIVATION", cell.code() as f64),
            ("RESET_AFTER", if reset_after { 1.0 } else { 0.0 }),
        ]
    }

    /// Gate blocks per unit (4 for LSTM, 3 for GRU).
    pub fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru { .. } => 3,
        }
    }
}

/// Shape and settings of a recurrent layer.
#[derive(Clone, Debug, PartialEq)]
pub struct RecurrentConfig {
    /// LSTM or GRU.
    pub cell: Cell,
    /// Features per time step.
    pub input_size: usize,
    /// State size.
    pub units: usize,
    /// 1, or 2 for Bidirectional (outputs concatenated, forward first).
    pub directions: usize,
    /// Keras `activation` (candidate and cell output), tanh by default.
    pub activation: Activation,
    /// Keras `recurrent_activation` (gates), sigmoid by default.
    pub recurrent_activation: Activation,
    /// Output every step (`[batch, steps, directions·units]`) or the last state.
    pub return_sequences: bool,
}

impl RecurrentConfig {
    /// Output shape for a `[batch, steps, input_size]` input.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        match *input {
            [batch, steps, features] if features == self.input_size && steps > 0 => {
                let width = self.directions * self.units;
                Ok(if self.return_sequences { vec![batch, steps, width] } else { vec![batch, width] })
            }
            _ => Err(Error::shape("recurrent input", format!("[batch, steps, {}]", self.input_size), shape_str(input))),
        }
    }

    /// Columns of the projection per direction (gates · units).
    pub fn gate_width(&self) -> usize {
        self.cell.gates() * self.units
    }
}

/// The weights of one direction, Keras layout.
#[derive(Clone, Debug)]
pub struct DirectionWeights {
    /// `[input_size, gates·units]`.
    pub kernel: Vec<f32>,
    /// `[units, gates·units]`.
    pub recurrent_kernel: Vec<f32>,
    /// `[gates·units]`, added to the input projection.
    pub input_bias: Vec<f32>,
    /// `[gates·units]`, added to the recurrent projection (GRU reset_after; zeros otherwise).
    pub recurrent_bias: Vec<f32>,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct RecurrentParams {
    rows: u32,
    steps: u32,
    units: u32,
    directions: u32,
    return_sequences: u32,
    step: u32,
    _pad: [u32; 2],
}

/// Gate activations (`recurrent_activation`) the recurrent kernels are built for.
pub const RECURRENT_GATE_ACTIVATIONS: [Activation; 3] =
    [Activation::Sigmoid, Activation::HardSigmoid, Activation::HardSigmoidClip];
/// Cell activations (`activation`) the recurrent kernels are built for.
pub const RECURRENT_CELL_ACTIVATIONS: [Activation; 4] =
    [Activation::Tanh, Activation::Relu, Activation::Linear, Activation::Sigmoid];

/// The largest state recurrent.wgsl holds in workgroup memory.
pub const MAX_UNITS: usize = 512;

/// Sequences per workgroup in the row-sharing kernels (`ROWS`, at most `MAX_ROWS` in
/// recurrent.wgsl): LSTM and GRU with reset_after.
const ROWS_PER_GROUP: usize = 4;

/// The sequences-per-workgroup values the row-sharing kernels are built with: shared
/// groups, and one row per group for batches too small to share.
pub const ROW_GROUPS: [usize; 2] = [ROWS_PER_GROUP, 1];

/// Override constants of a row-sharing kernel ([`Cell::shares_rows`]) with `rows`
/// sequences per workgroup.
pub fn row_sharing_constants(
    cell: Cell,
    gate: Activation,
    activation: Activation,
    rows: usize,
) -> Vec<(&'static str, f64)> {
    let mut constants = cell.constants(gate, activation).to_vec();
    constants.push(("ROWS", rows as f64));
    constants
}

/// A recurrent layer resident on the GPU.
#[derive(Debug)]
pub struct Recurrent {
    config: RecurrentConfig,
    projection: Dense,
    recurrent: wgpu::Buffer,
    pipeline: wgpu::ComputePipeline,
    /// Row-sharing cells: the same kernel with one row per workgroup, for batches too small
    /// to share.
    narrow: Option<wgpu::ComputePipeline>,
    /// The one-dispatch-per-step baseline (`lstm_step`), LSTM last-state layers only.
    per_step: Option<wgpu::ComputePipeline>,
}

impl Recurrent {
    /// Uploads the weights (one [`DirectionWeights`] per direction) and compiles the kernels.
    pub fn new(gpu: &Gpu, config: RecurrentConfig, weights: &[DirectionWeights]) -> Result<Self> {
        Self::with_precision(gpu, config, weights, Precision::F32)
    }

    /// As [`new`](Self::new), with the input projection's kernel stored in `precision`
    /// (the recurrent kernel stays f32).
    pub fn with_precision(
        gpu: &Gpu,
        config: RecurrentConfig,
        weights: &[DirectionWeights],
        precision: Precision,
    ) -> Result<Self> {
        let (f, u, g) = (config.input_size, config.units, config.gate_width());
        if f == 0 || u == 0 || !(1..=2).contains(&config.directions) || weights.len() != config.directions {
            return Err(Error::shape(
                "recurrent config",
                "input size and units >= 1, one set of weights per direction (1 or 2)",
                format!("{config:?} with {} weight sets", weights.len()),
            ));
        }
        if !RECURRENT_GATE_ACTIVATIONS.contains(&config.recurrent_activation)
            || !RECURRENT_CELL_ACTIVATIONS.contains(&config.activation)
        {
            return Err(Error::input(
                "recurrent activations",
                format!(
                    "recurrent_activation {:?} / activation {:?}: supported are {RECURRENT_GATE_ACTIVATIONS:?} / {RECURRENT_CELL_ACTIVATIONS:?}",
                    config.recurrent_activation, config.activation
                ),
            ));
        }
        if u > MAX_UNITS {
            return Err(Error::LimitExceeded {
                what: "recurrent layer units (state kept in workgroup memory)".into(),
                needed: u as u64,
                limit: MAX_UNITS as u64,
            });
        }
        for (name, got, want) in weights.iter().flat_map(|w| {
            [
                ("kernel", w.kernel.len(), f * g),
                ("recurrent kernel", w.recurrent_kernel.len(), u * g),
                ("input bias", w.input_bias.len(), g),
                ("recurrent bias", w.recurrent_bias.len(), g),
            ]
        }) {
            if got != want {
                return Err(Error::shape(
                    format!("recurrent {name}"),
                    format!("{want} values"),
                    format!("{got} values"),
                ));
            }
        }
        // One projection GEMM for all directions: columns [direction 0 gates | direction 1 gates].
        let width = config.directions * g;
        let mut kernel = vec![0.0; f * width];
        let mut input_bias = Vec::with_capacity(width);
        for (d, w) in weights.iter().enumerate() {
            for row in 0..f {
                kernel[row * width + d * g..row * width + (d + 1) * g]
                    .copy_from_slice(&w.kernel[row * g..(row + 1) * g]);
            }
            input_bias.extend_from_slice(&w.input_bias);
        }
        let projection =
            Dense::with_precision(gpu, f, width, &kernel, Some(&input_bias), Activation::Linear, precision)?;
        let mut recurrent: Vec<f32> = weights.iter().flat_map(|w| w.recurrent_kernel.iter().copied()).collect();
        recurrent.extend(weights.iter().flat_map(|w| w.recurrent_bias.iter().copied()));
        let constants = config.cell.constants(config.recurrent_activation, config.activation);
        let per_step = if config.cell == Cell::Lstm && !config.return_sequences {
            Some(gpu.pipeline(&shaders::RECURRENT, "lstm_step", &constants)?)
        } else {
            None
        };
        // ROWS_PER_GROUP sequences per workgroup, or one for tiny batches.
        let (pipeline, narrow) = if config.cell.shares_rows() {
            let with_rows = |rows: usize| {
                let c = row_sharing_constants(config.cell, config.recurrent_activation, config.activation, rows);
                gpu.pipeline(&shaders::RECURRENT, config.cell.entry_point(), &c)
            };
            let [shared, single] = ROW_GROUPS;
            (with_rows(shared)?, Some(with_rows(single)?))
        } else {
            (gpu.pipeline(&shaders::RECURRENT, config.cell.entry_point(), &constants)?, None)
        };
        Ok(Self {
            per_step,
            projection,
            recurrent: weight_buffer(gpu, "recurrent kernel", &recurrent)?,
            pipeline,
            narrow,
            config,
        })
    }

    fn params(&self, rows: usize, steps: usize, return_sequences: bool, step: usize) -> RecurrentParams {
        RecurrentParams {
            rows: rows as u32,
            steps: steps as u32,
            units: self.config.units as u32,
            directions: self.config.directions as u32,
            return_sequences: return_sequences as u32,
            step: step as u32,
            _pad: [0; 2],
        }
    }

    /// The layer's settings.
    pub fn config(&self) -> &RecurrentConfig {
        &self.config
    }

    /// Output shape for a `[batch, steps, input_size]` input.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.config.output_shape(input)
    }

    /// Values of the projection scratch buffer for a `[batch, steps, input_size]` input.
    pub fn projection_len(&self, input: &[usize]) -> usize {
        input.iter().take(2).product::<usize>() * self.config.directions * self.config.gate_width()
    }

    /// Multiply-adds ×2 for one batch of `input` shape (projection + recurrence).
    pub fn flops(&self, input: &[usize]) -> u64 {
        let (u, g) = (self.config.units, self.config.gate_width());
        let row_steps: usize = input.iter().take(2).product();
        2 * (row_steps * self.config.directions * g * (self.config.input_size + u)) as u64
    }

    /// The two dispatches: projection of `input` into `projected` (holding
    /// [`projection_len`](Self::projection_len) values), then the recurrence writing
    /// `output`. `mask` holds one u32 per (row, step), 1 for real steps.
    pub fn prepare(
        &self,
        gpu: &Gpu,
        input_shape: &[usize],
        input: &wgpu::Buffer,
        mask: &wgpu::Buffer,
        projected: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<[Dispatch; 2]> {
        self.output_shape(input_shape)?;
        let (rows, steps) = (input_shape[0], input_shape[1]);
        let projection = self.projection.prepare(gpu, &[rows * steps, self.config.input_size], input, projected)?;
        let params = self.params(rows, steps, self.config.return_sequences, 0);
        // Groups of ROWS_PER_GROUP rows once there are enough of them to keep every CPU
        // thread of a software adapter (and every GPU core) busy.
        let (pipeline, per_group) = match &self.narrow {
            Some(narrow) if rows * self.config.directions < 4 * ROWS_PER_GROUP => (narrow, 1),
            Some(_) => (&self.pipeline, ROWS_PER_GROUP),
            None => (&self.pipeline, 1),
        };
        let workgroups = [groups(gpu, "recurrent", rows, per_group)?, self.config.directions as u32, 1];
        let recurrence = prepare_dispatch(
            gpu,
            "recurrent",
            pipeline,
            &params,
            &[projected, &self.recurrent, mask, output],
            workgroups,
        );
        Ok([projection, recurrence])
    }
}

impl Recurrent {
    /// Whether this layer has the one-dispatch-per-step baseline (LSTM, last state only).
    pub fn has_per_step(&self) -> bool {
        self.per_step.is_some()
    }

    /// The benchmark baseline: the projection, then ONE dispatch PER TIME STEP with the
    /// state in global memory. `output` must hold twice the normal output (h, then c).
    pub fn prepare_per_step(
        &self,
        gpu: &Gpu,
        input_shape: &[usize],
        input: &wgpu::Buffer,
        mask: &wgpu::Buffer,
        projected: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<Vec<Dispatch>> {
        let pipeline = self.per_step.as_ref().ok_or_else(|| {
            Error::input("recurrent mode", "the per-step variant exists for LSTM layers returning the last state only")
        })?;
        self.output_shape(input_shape)?;
        let (rows, steps) = (input_shape[0], input_shape[1]);
        let mut dispatches =
            vec![self.projection.prepare(gpu, &[rows * steps, self.config.input_size], input, projected)?];
        let workgroups = [groups(gpu, "recurrent", rows, 1)?, self.config.directions as u32, 1];
        for step in 0..steps {
            let params = self.params(rows, steps, false, step);
            dispatches.push(prepare_dispatch(
                gpu,
                "recurrent step",
                pipeline,
                &params,
                &[projected, &self.recurrent, mask, output],
                workgroups,
            ));
        }
        Ok(dispatches)
    }
}
