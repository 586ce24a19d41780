//! `siamese info`: adapters, the one chosen, features and limits.

use std::fmt::Write as _;

use anyhow::Result;
use siamese_wgpu::gpu::{describe_adapter, list_adapters};
use siamese_wgpu::{Gpu, GpuOptions};

use crate::common::emit;

/// `siamese info`.
pub fn info() -> Result<()> {
    let options = GpuOptions::from_env()?;
    let adapters = list_adapters(None);
    let mut out = String::from("adapters found:\n");
    if adapters.is_empty() {
        out.push_str("  (none)\n");
    }
    for adapter in &adapters {
        writeln!(out, "  {}", describe_adapter(adapter))?;
    }
    // Printed before opening the device, so that a failure there still shows the list.
    emit(&out)?;
    out.clear();
    let gpu = Gpu::with_options(&options)?;
    let limits = gpu.limits();
    let yes = |b: bool| if b { "yes" } else { "no" };
    writeln!(out, "chosen: {}", describe_adapter(gpu.adapter_info()))?;
    writeln!(out, "backend: {:?}", gpu.adapter_info().backend)?;
    writeln!(out, "shader f16: {}", yes(gpu.has_f16()))?;
    writeln!(out, "subgroups: {}", yes(gpu.adapter().features().contains(wgpu::Features::SUBGROUP)))?;
    writeln!(out, "max storage buffer binding: {} MiB", limits.max_storage_buffer_binding_size >> 20)?;
    writeln!(out, "max buffer size: {} MiB", limits.max_buffer_size >> 20)?;
    writeln!(out, "max storage buffers per stage: {}", limits.max_storage_buffers_per_shader_stage)?;
    writeln!(out, "max workgroups per dimension: {}", limits.max_compute_workgroups_per_dimension)?;
    writeln!(out, "max invocations per workgroup: {}", limits.max_compute_invocations_per_workgroup)?;
    writeln!(out, "workgroup memory: {} KiB", limits.max_compute_workgroup_storage_size >> 10)?;
    emit(&out)
}
