//! Tensors: [`Array`] on the host (shape + f32 data), [`Tensor`] on the GPU (buffer + shape).

use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// A host array: row-major f32 values with a shape, like a float32 numpy array.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Array {
    /// Wraps `data` as `shape`; errors when the sizes disagree.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        // Checked: an unchecked product of `[2^60, 28, 28, 1]` wraps to 0 and would accept
        // an empty vector.
        let Some(expected) = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) else {
            return Err(Error::shape("array", "a shape whose size fits in memory", format!("{shape:?}")));
        };
        if expected != data.len() {
            return Err(Error::shape(
                "array",
                format!("{expected} values for shape {shape:?}"),
                format!("{} values", data.len()),
            ));
        }
        Ok(Self { shape, data })
    }

    /// The shape, batch axis first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values, row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Takes the values out.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Size of the first axis (0 for a scalar).
    pub fn batch(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    /// Values per batch row.
    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// Row `i` of the batch.
    pub fn row(&self, i: usize) -> &[f32] {
        let n = self.row_len();
        &self.data[i * n..(i + 1) * n]
    }

    /// Errors naming `what` and the first bad index when a value is NaN or infinite.
    pub fn check_finite(&self, what: &str) -> Result<()> {
        match self.data.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(i) => Err(Error::input(
                what,
                format!(
                    "value {} at flat index {i} is not finite (NaN/Inf inputs are refused unless allowed: \
                     setting `allow_nonfinite`)",
                    self.data[i]
                ),
            )),
        }
    }
}

/// A GPU tensor: a storage buffer and the shape of the f32 values in it.
#[derive(Debug)]
pub struct Tensor {
    buffer: wgpu::Buffer,
    shape: Vec<usize>,
}

impl Tensor {
    /// Uploads a host array.
    pub fn upload(gpu: &Gpu, array: &Array) -> Result<Self> {
        crate::ops::check_binding(gpu, "tensor", array.data.len())?;
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
        let buffer = gpu.create_buffer_init("tensor", bytemuck::cast_slice(&array.data), usage);
        Ok(Self { buffer, shape: array.shape.clone() })
    }

    /// An uninitialised (zeroed) tensor of `shape`.
    pub fn zeros(gpu: &Gpu, shape: &[usize]) -> Result<Self> {
        let len = shape.iter().product::<usize>();
        crate::ops::check_binding(gpu, "tensor", len)?;
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        Ok(Self { buffer: gpu.create_buffer("tensor", len as u64 * 4, usage), shape: shape.to_vec() })
    }

    /// The buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the values back (its own submit and map: for tests and tools, not the
    /// batched runner).
    pub fn download(&self, gpu: &Gpu) -> Result<Array> {
        let len = self.len();
        gpu.checked("downloading a tensor", || {
            let staging = gpu.create_buffer(
                "tensor staging",
                len as u64 * 4,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            );
            let data = crate::ops::submit_and_read(gpu, "download", [], &[(&self.buffer, len)], &staging)?;
            Array::new(self.shape.clone(), data)
        })
    }
}

/// Records `dispatches` into one compute pass of a new encoder, submits, waits. For
/// running single ops in tests and tools.
pub fn run_dispatches(gpu: &Gpu, dispatches: &[&crate::ops::Dispatch]) -> Result<()> {
    gpu.checked("running kernels", || {
        let mut encoder = gpu.device().create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for dispatch in dispatches {
                dispatch.record(&mut pass);
            }
        }
        let submission = gpu.submit(encoder.finish());
        gpu.device()
            .poll(wgpu::PollType::Wait { submission_index: Some(submission), timeout: None })
            .map_err(|e| Error::Gpu { context: "waiting for the GPU".into(), message: e.to_string() })?;
        Ok(())
    })
}
