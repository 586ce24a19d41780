//! The GPU context: adapter choice, device, queue, pipeline cache and counters.
//!
//! Device setup lives here and nowhere else, so tests and embedders can build one [`Gpu`]
//! and hand it to every model (as wgpu's own examples separate `execute_gpu` from the work).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::shaders::ShaderSource;

/// How to pick an adapter. [`GpuOptions::from_env`] reads `SIAMESE_BACKEND` and
/// `SIAMESE_ADAPTER`; the default is the best adapter of any backend.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Only consider adapters of these backends (None: all).
    pub backends: Option<wgpu::Backends>,
    /// Only consider adapters whose name contains this (case-insensitive).
    pub adapter_name: Option<String>,
    /// Limits to request (None: the adapter's own). `wgpu::Limits::downlevel_defaults()`
    /// proves the crate runs on the smallest WebGPU-class device.
    pub limits: Option<wgpu::Limits>,
}

impl GpuOptions {
    /// Reads `SIAMESE_BACKEND` (vulkan|metal|dx12|gl) and `SIAMESE_ADAPTER` (name substring).
    /// A value that is not valid Unicode is [`Error::InvalidEnv`], never ignored.
    pub fn from_env() -> Result<Self> {
        Self::from_os(std::env::var_os("SIAMESE_BACKEND").as_deref(), std::env::var_os("SIAMESE_ADAPTER").as_deref())
    }

    /// [`from_env`](Self::from_env) on values given rather than read from the process
    /// environment (which tests share between threads).
    pub fn from_os(backend: Option<&OsStr>, adapter: Option<&OsStr>) -> Result<Self> {
        Self::parse(unicode("SIAMESE_BACKEND", backend)?, unicode("SIAMESE_ADAPTER", adapter)?)
    }

    /// Builds options from the values `SIAMESE_BACKEND` and `SIAMESE_ADAPTER` would hold
    /// (empty strings mean unset).
    pub fn parse(backend: Option<&str>, adapter: Option<&str>) -> Result<Self> {
        let backends = match backend {
            Some(value) if !value.trim().is_empty() => Some(parse_backend(value)?),
            _ => None,
        };
        let adapter_name = adapter.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
        Ok(Self { backends, adapter_name, limits: None })
    }
}

/// An environment variable's value as text: one that is not valid Unicode is an error
/// naming the variable, not a value silently treated as unset.
fn unicode<'a>(var: &'static str, value: Option<&'a OsStr>) -> Result<Option<&'a str>> {
    value
        .map(|v| {
            v.to_str().ok_or_else(|| Error::InvalidEnv {
                var,
                value: v.to_string_lossy().into_owned(),
                expected: "valid Unicode (UTF-8) text",
            })
        })
        .transpose()
}

fn parse_backend(value: &str) -> Result<wgpu::Backends> {
    let mut backends = wgpu::Backends::empty();
    for part in value.split(',') {
        backends |= match part.trim().to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "metal" | "mtl" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "gl" | "gles" | "opengl" => wgpu::Backends::GL,
            _ => {
                return Err(Error::InvalidEnv {
                    var: "SIAMESE_BACKEND",
                    value: value.to_string(),
                    expected: "vulkan, metal, dx12 or gl (comma separated)",
                })
            }
        };
    }
    Ok(backends)
}

/// Identifies one compiled pipeline: shader, entry point and override constants.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PipelineKey {
    shader: &'static str,
    entry_point: &'static str,
    /// Override constants as (name, f64 bits), in the order given.
    constants: Vec<(&'static str, u64)>,
}

/// A GPU device with its queue, a pipeline cache and counters of submits and buffers.
pub struct Gpu {
    adapter: wgpu::Adapter,
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    submits: AtomicU64,
    buffers_created: AtomicU64,
    pipelines_created: AtomicU64,
    uncaptured: Arc<Mutex<Vec<String>>>,
    /// Set by wgpu's device-lost callback: why the device is gone.
    lost: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu").field("adapter", &self.info.name).field("backend", &self.info.backend).finish()
    }
}

/// Preference order when several adapters are found: real GPUs first, software last.
fn adapter_rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let device = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    // GL last: no f16, fewer storage buffers, slow shader compiles.
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (device, backend)
}

/// Describes an adapter in one line, as `siamese info` prints it.
pub fn describe_adapter(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {:?}, driver {} {})", info.name, info.backend, info.device_type, info.driver, info.driver_info)
}

fn new_instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
    descriptor.backends = backends;
    wgpu::Instance::new(descriptor)
}

/// Lists every adapter wgpu finds on the given backends (all when None).
pub fn list_adapters(backends: Option<wgpu::Backends>) -> Vec<wgpu::AdapterInfo> {
    let backends = backends.unwrap_or(wgpu::Backends::all());
    let instance = new_instance(backends);
    pollster::block_on(instance.enumerate_adapters(backends)).iter().map(|a| a.get_info()).collect()
}

impl Gpu {
    /// Opens the adapter chosen by `SIAMESE_BACKEND` / `SIAMESE_ADAPTER`, else the best one.
    pub fn new() -> Result<Self> {
        Self::with_options(&GpuOptions::from_env()?)
    }

    /// Opens the best adapter allowed by `options`.
    pub fn with_options(options: &GpuOptions) -> Result<Self> {
        let backends = options.backends.unwrap_or(wgpu::Backends::all());
        let instance = new_instance(backends);
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        if adapters.is_empty() {
            let detail = match options.backends {
                Some(b) => format!(" for backends {b:?} (SIAMESE_BACKEND)"),
                None => String::new(),
            };
            return Err(Error::NoAdapter { detail });
        }
        let available = adapters.iter().map(|a| a.get_info().name).collect::<Vec<_>>().join(", ");
        let wanted = options.adapter_name.as_deref().map(str::to_lowercase);
        let adapter = adapters
            .into_iter()
            .filter(|a| wanted.as_ref().is_none_or(|w| a.get_info().name.to_lowercase().contains(w)))
            .min_by_key(|a| adapter_rank(&a.get_info()))
            .ok_or_else(|| Error::AdapterNotFound {
                requested: format!("SIAMESE_ADAPTER={:?}", options.adapter_name.clone().unwrap_or_default()),
                available,
            })?;
        Self::from_adapter(adapter, options.limits.clone())
    }

    /// Opens a device on a given adapter, asking only for features the adapter has, with
    /// `limits` (None: the adapter's own limits, since batches of hundreds of pairs need
    /// bigger storage buffers than WebGPU's defaults).
    pub fn from_adapter(adapter: wgpu::Adapter, limits: Option<wgpu::Limits>) -> Result<Self> {
        let info = adapter.get_info();
        let required_features = adapter.features() & wgpu::Features::SHADER_F16;
        let required_limits = limits.unwrap_or_else(|| adapter.limits());
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("siamese-wgpu"),
            required_features,
            required_limits,
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::RequestDevice { adapter: info.name.clone(), message: e.to_string() })?;

        // Errors outside our error scopes must not abort the process: keep them and
        // report them from the next checked call.
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            if let Ok(mut errors) = sink.lock() {
                errors.push(error.to_string());
            }
        }));
        let lost = Arc::new(Mutex::new(None));
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut lost) = lost_sink.lock() {
                *lost = Some(format!("{reason:?}: {message}"));
            }
        });
        Ok(Self {
            adapter,
            device,
            queue,
            info,
            modules: Mutex::default(),
            pipelines: Mutex::default(),
            submits: AtomicU64::new(0),
            buffers_created: AtomicU64::new(0),
            pipelines_created: AtomicU64::new(0),
            uncaptured,
            lost,
        })
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// The adapter's description.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The wgpu adapter.
    pub fn adapter(&self) -> &wgpu::Adapter {
        &self.adapter
    }

    /// The device limits in force.
    pub fn limits(&self) -> wgpu::Limits {
        self.device.limits()
    }

    /// Whether the device runs f16 arithmetic in shaders.
    pub fn has_f16(&self) -> bool {
        self.device.features().contains(wgpu::Features::SHADER_F16)
    }

    /// Number of `queue.submit` calls made through this context.
    pub fn submit_count(&self) -> u64 {
        self.submits.load(Ordering::Relaxed)
    }

    /// Number of GPU buffers created through this context.
    pub fn buffer_count(&self) -> u64 {
        self.buffers_created.load(Ordering::Relaxed)
    }

    /// Number of compute pipelines compiled (cache misses).
    pub fn pipeline_count(&self) -> u64 {
        self.pipelines_created.load(Ordering::Relaxed)
    }

    /// Submits one command buffer and counts it.
    pub fn submit(&self, commands: wgpu::CommandBuffer) -> wgpu::SubmissionIndex {
        self.submits.fetch_add(1, Ordering::Relaxed);
        self.queue.submit(std::iter::once(commands))
    }

    /// Creates a buffer and counts it.
    pub fn create_buffer(&self, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.buffers_created.fetch_add(1, Ordering::Relaxed);
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            // wgpu rejects zero-sized bindings; 4 bytes stands in for an empty tensor.
            size: size.max(4).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT),
            usage,
            mapped_at_creation: false,
        })
    }

    /// Creates a buffer holding `contents` and counts it.
    pub fn create_buffer_init(&self, label: &str, contents: &[u8], usage: wgpu::BufferUsages) -> wgpu::Buffer {
        let buffer = self.create_buffer(label, contents.len() as u64, usage | wgpu::BufferUsages::COPY_DST);
        if !contents.is_empty() {
            self.queue.write_buffer(&buffer, 0, contents);
        }
        buffer
    }

    /// Runs `f` inside validation and out-of-memory error scopes; any error wgpu reports
    /// comes back as [`Error::Gpu`] naming `context` instead of a panic.
    pub fn checked<T>(&self, context: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.check_lost()?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let result = f();
        let validation = pollster::block_on(validation.pop());
        let oom = pollster::block_on(oom.pop());
        self.check_lost()?;
        if let Some(error) = validation.or(oom) {
            return Err(Error::Gpu { context: context.to_string(), message: error.to_string() });
        }
        self.take_uncaptured(context)?;
        result
    }

    /// Why the device was lost, if it was.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|lost| lost.clone())
    }

    fn check_lost(&self) -> Result<()> {
        match self.lost() {
            Some(message) => Err(Error::DeviceLost { adapter: self.info.name.clone(), message }),
            None => Ok(()),
        }
    }

    fn take_uncaptured(&self, context: &str) -> Result<()> {
        let mut errors = self
            .uncaptured
            .lock()
            .map_err(|_| Error::Gpu { context: context.to_string(), message: "error log poisoned".into() })?;
        if errors.is_empty() {
            return Ok(());
        }
        let message = errors.drain(..).collect::<Vec<_>>().join("; ");
        Err(Error::Gpu { context: context.to_string(), message })
    }

    /// Returns the compute pipeline for (shader, entry point, override constants),
    /// compiling it on first use.
    pub fn pipeline(
        &self,
        shader: &ShaderSource,
        entry_point: &'static str,
        constants: &[(&'static str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        let key = PipelineKey {
            shader: shader.name,
            entry_point,
            constants: constants.iter().map(|&(name, value)| (name, value.to_bits())).collect(),
        };
        if let Some(pipeline) = self.pipelines.lock().ok().and_then(|cache| cache.get(&key).cloned()) {
            return Ok(pipeline);
        }
        let pipeline = self.checked(&format!("compiling shader {}::{entry_point}", shader.name), || {
            let module = self.module(shader);
            Ok(self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry_point),
                layout: None,
                module: &module,
                entry_point: Some(entry_point),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            }))
        })?;
        self.pipelines_created.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut cache) = self.pipelines.lock() {
            cache.insert(key, pipeline.clone());
        }
        Ok(pipeline)
    }

    fn module(&self, shader: &ShaderSource) -> wgpu::ShaderModule {
        let mut modules = match self.modules.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        modules
            .entry(shader.name)
            .or_insert_with(|| {
                self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(shader.name),
                    source: wgpu::ShaderSource::Wgsl(shader.source().into()),
                })
            })
            .clone()
    }

    /// Waits for `submission` and copies the first `len` f32 values out of the mappable
    /// `staging` buffer (one map, one unmap).
    pub fn read_f32(&self, staging: &wgpu::Buffer, len: usize, submission: wgpu::SubmissionIndex) -> Result<Vec<f32>> {
        let bytes = (len * 4) as u64;
        if len == 0 {
            return Ok(Vec::new());
        }
        let slice = staging.slice(..bytes);
        let (sender, receiver) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |result| {
            let _ = sender.send(result);
        });
        let waited = self.device.poll(wgpu::PollType::Wait { submission_index: Some(submission), timeout: None });
        if waited.is_err() {
            // A lost device fails the wait; its callback fires on the next maintenance.
            let _ = self.device.poll(wgpu::PollType::Poll);
        }
        self.check_lost()?;
        waited.map_err(|e| Error::Gpu { context: "waiting for the GPU".into(), message: e.to_string() })?;
        let mapped = receiver.recv().map_err(|e| {
            self.check_lost().err().unwrap_or(Error::Gpu { context: "reading results".into(), message: e.to_string() })
        })?;
        mapped.map_err(|e| Error::Gpu { context: "mapping the result buffer".into(), message: e.to_string() })?;
        let values = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Gpu { context: "reading results".into(), message: e.to_string() })?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        staging.unmap();
        Ok(values)
    }
}
