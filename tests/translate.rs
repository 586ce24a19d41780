//! Portability without a device: every pipeline the crate builds (every kernel family ×
//! entry point × override constants, from `shaders::pipeline_variants`) is translated by
//! naga — the same compiler wgpu uses at run time — to SPIR-V (Vulkan), MSL (Metal), HLSL
//! (DX12) and GLSL ES 3.1 compute (GL). Validation uses NO optional capability: none of
//! today's kernels needs f16 or subgroups. Where Debian's `spirv-val` and
//! `glslangValidator` are installed they check the output too; `make test` installs them
//! and sets SIAMESE_REQUIRE_SHADER_TOOLS=1 so CI cannot skip them silently.

use std::path::Path;
use std::process::Command;

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use naga::ShaderStage;
use siamese_wgpu::shaders::{pipeline_variants, PipelineVariant};

struct Translated {
    spirv: Vec<u32>,
    glsl: String,
}

fn translate(variant: &PipelineVariant) -> Result<Translated, String> {
    let source = variant.shader.source();
    let module = naga::front::wgsl::parse_str(&source).map_err(|e| e.emit_to_string(&source))?;
    // No optional capability, except unpack2x16float's SHADER_F16_IN_F32 for the f16-weight
    // kernels (the loader checks the adapter has it before choosing them).
    let capabilities = if variant.shader.name.ends_with("_f16") {
        Capabilities::SHADER_FLOAT16_IN_FLOAT32
    } else {
        Capabilities::empty()
    };
    let info = Validator::new(ValidationFlags::all(), capabilities)
        .validate(&module)
        .map_err(|e| e.emit_to_string(&source))?;
    let constants: hashbrown::HashMap<String, f64> =
        variant.constants.iter().map(|&(name, value)| (name.to_string(), value)).collect();
    let entry = variant.entry_point;
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((ShaderStage::Compute, entry)),
        &constants,
    )
    .map_err(|e| format!("override constants: {e}"))?;

    let spirv = spv::write_vec(
        &module,
        &info,
        &spv::Options::default(),
        Some(&spv::PipelineOptions { shader_stage: ShaderStage::Compute, entry_point: entry.to_string() }),
    )
    .map_err(|e| format!("SPIR-V: {e}"))?;

    msl::write_string(
        &module,
        &info,
        &msl::Options { lang_version: (2, 0), ..Default::default() },
        &msl::PipelineOptions { entry_point: Some((ShaderStage::Compute, entry.to_string())), ..Default::default() },
    )
    .map_err(|e| format!("MSL: {e}"))?;

    let mut hlsl_source = String::new();
    let hlsl_options = hlsl::Options {
        shader_model: hlsl::ShaderModel::V5_1,
        // Where DX12 gets num_workgroups from: wgpu binds this root constant buffer.
        special_constants_binding: Some(hlsl::BindTarget { space: 0, register: 0, ..Default::default() }),
        ..Default::default()
    };
    hlsl::Writer::new(
        &mut hlsl_source,
        &hlsl_options,
        &hlsl::PipelineOptions { entry_point: Some((ShaderStage::Compute, entry.to_string())) },
    )
    .write(&module, &info, None)
    .map_err(|e| format!("HLSL: {e}"))?;

    let mut glsl_source = String::new();
    glsl::Writer::new(
        &mut glsl_source,
        &module,
        &info,
        &glsl::Options { version: glsl::Version::new_gles(310), ..Default::default() },
        &glsl::PipelineOptions { shader_stage: ShaderStage::Compute, entry_point: entry.to_string(), multiview: None },
        naga::proc::BoundsCheckPolicies::default(),
    )
    .map_err(|e| format!("GLSL: {e}"))?
    .write()
    .map_err(|e| format!("GLSL: {e}"))?;

    Ok(Translated { spirv, glsl: glsl_source })
}

fn describe(variant: &PipelineVariant) -> String {
    format!("{}::{} {:?}", variant.shader.name, variant.entry_point, variant.constants)
}

#[test]
fn every_pipeline_translates_to_spirv_msl_hlsl_and_glsl() {
    let variants = pipeline_variants();
    assert!(variants.len() >= 30, "expected every activation/metric/pool variant, got {}", variants.len());
    let failures: Vec<String> =
        variants.iter().filter_map(|v| translate(v).err().map(|e| format!("{}: {e}", describe(v)))).collect();
    assert!(failures.is_empty(), "translation failed:\n{}", failures.join("\n"));
}

fn tool(name: &str) -> bool {
    let found = Command::new(name).arg("--version").output().is_ok();
    if !found && std::env::var("SIAMESE_REQUIRE_SHADER_TOOLS").as_deref() == Ok("1") {
        panic!("{name} not found (apt-get install spirv-tools glslang-tools), and SIAMESE_REQUIRE_SHADER_TOOLS=1");
    }
    if !found {
        eprintln!("{name} not installed: checking naga's translation only");
    }
    found
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{what} rejected the output:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn platform_validators_accept_the_translations() {
    let (spirv_val, glslang) = (tool("spirv-val"), tool("glslangValidator"));
    if !spirv_val && !glslang {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (i, variant) in pipeline_variants().iter().enumerate() {
        let translated = translate(variant).unwrap_or_else(|e| panic!("{}: {e}", describe(variant)));
        if spirv_val {
            let path = dir.path().join(format!("{i}.spv"));
            std::fs::write(&path, bytemuck::cast_slice::<u32, u8>(&translated.spirv)).unwrap();
            run(
                Command::new("spirv-val").args(["--target-env", "vulkan1.1"]).arg(&path),
                &format!("spirv-val on {}", describe(variant)),
            );
        }
        if glslang {
            let path = dir.path().join(format!("{i}.comp"));
            std::fs::write(&path, &translated.glsl).unwrap();
            run(
                Command::new("glslangValidator").arg(Path::new(&path)),
                &format!("glslangValidator on {}", describe(variant)),
            );
        }
    }
}

#[test]
fn a_broken_override_is_caught() {
    // The translation path must be able to fail: an unknown override constant is an error.
    let mut variant = pipeline_variants().remove(0);
    variant.constants.push(("NO_SUCH_CONSTANT", 1.0));
    assert!(translate(&variant).is_err());
}
