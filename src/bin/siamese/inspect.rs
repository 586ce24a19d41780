//! `siamese inspect`: what a model file holds.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;

use siamese_wgpu::LoadOptions;

use crate::common::{emit, loading};

#[derive(clap::Args)]
pub struct InspectArgs {
    /// A .keras / .h5 / .onnx file or a model directory.
    #[arg(long)]
    model: PathBuf,
}

/// `siamese inspect`.
pub fn run(args: InspectArgs, options: &LoadOptions) -> Result<()> {
    inspect(&args.model, options)
}

fn inspect(path: &Path, options: &LoadOptions) -> Result<()> {
    use siamese_wgpu::model::keras_file;
    if path.is_file() && keras_file::is_keras_file(path) {
        let inspection = keras_file::inspect(path)?;
        let mut text = inspection.to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        if !options.custom_layers.is_empty() {
            // The listing reads the file's own classes; say what loading with the mapping gives.
            let mapped: Vec<String> = options.custom_layers.iter().map(|(n, b)| format!("{n}={b}")).collect();
            let spec = siamese_wgpu::model::load_with(path, options).map_err(|e| loading(path, e))?;
            writeln!(
                text,
                "with --custom-layer {}: the encoder loads ({} layers, {} parameters)",
                mapped.join(" --custom-layer "),
                spec.layers.len(),
                spec.parameter_count()
            )?;
        }
        return emit(&text);
    }
    if path.is_file() && siamese_wgpu::model::onnx::is_onnx_file(path) {
        let mut out = siamese_wgpu::model::onnx::inspect(path)?.to_string();
        match siamese_wgpu::model::load_with(path, options) {
            Ok(spec) => {
                writeln!(out, "imported: input {:?} (the model's own layout, batch excluded)", spec.input_shape)?;
                layer_table(&mut out, &spec)?;
            }
            Err(e) => writeln!(out, "does not load: {e}")?,
        }
        return emit(&out);
    }
    let spec = siamese_wgpu::model::load_with(path, options).map_err(|e| loading(path, e))?;
    let mut out = String::new();
    writeln!(
        out,
        "{}: model directory, encoder {:?}, input {:?} (0 = any length)",
        path.display(),
        spec.name,
        spec.input_shape
    )?;
    layer_table(&mut out, &spec)?;
    emit(&out)
}

/// The layers of `spec` with their output shapes (batch 1) and parameters.
fn layer_table(out: &mut String, spec: &siamese_wgpu::model::ModelSpec) -> Result<()> {
    let shapes = spec.shapes(1)?;
    writeln!(out, "{:<28} {:<24} {:>12}", "layer", "output shape", "parameters")?;
    for (i, layer) in spec.layers.iter().enumerate() {
        let shape = shapes.get(i + 1).map(|s| format!("{:?}", &s[1..])).unwrap_or_default();
        writeln!(out, "{:<28} {:<24} {:>12}", layer.name, shape, layer.op.parameter_count())?;
    }
    writeln!(out, "{} parameters; every layer runs on the GPU", spec.parameter_count())?;
    Ok(())
}
