//! What the commands share: loading a model, the default metric, and stdout.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use siamese_wgpu::{Distance, Gpu, LoadOptions, SiameseModel};

/// Prints to stdout; a closed pipe (`siamese ... | head`) ends the output quietly.
pub fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to standard output"),
    }
}

/// The library names its settings (`setting \`precision\``); the CLI sets them with flags.
const SETTING_FLAGS: [(&str, &str); 5] = [
    ("the load option `custom_layer` ", "--custom-layer "),
    ("setting `precision`", "--precision"),
    ("setting `allow_nonfinite`", "--allow-nonfinite"),
    ("setting `head`", "--head FILE"),
    ("setting `distance`", "--distance"),
];

/// An error message with the library's setting names replaced by the flags that set them.
pub fn in_cli_words(message: &str) -> String {
    SETTING_FLAGS.iter().fold(message.to_string(), |text, (setting, flag)| text.replace(setting, flag))
}

/// One JSON object on its own line (`bench --json`).
pub fn emit_json(value: &serde_json::Value) -> Result<()> {
    emit(&format!("{value}\n"))
}

pub fn load(path: &Path, options: &LoadOptions) -> Result<SiameseModel> {
    let gpu = Arc::new(Gpu::new()?);
    let model = SiameseModel::load_with_options(gpu, path, options).map_err(|e| loading(path, e))?;
    if let Some((encoder, head)) = model.keras_twin() {
        match encoder {
            Some(name) => eprintln!("{}: Siamese model, shared encoder {name:?}; head: {head}", path.display()),
            None => eprintln!("{}: an encoder (one input)", path.display()),
        }
    }
    Ok(model)
}

/// A model-loading error, prefixed with the model's path unless it already names it (or
/// a file inside it), so that a path is never printed twice.
pub fn loading(path: &Path, error: siamese_wgpu::Error) -> anyhow::Error {
    if error.to_string().contains(&path.display().to_string()) {
        error.into()
    } else {
        anyhow::Error::from(error).context(format!("loading model {}", path.display()))
    }
}

/// The metric when none is given: a Keras twin's learned head, else Euclidean.
pub fn default_metric(model: &SiameseModel, asked: Option<Distance>, head_given: bool) -> Distance {
    use siamese_wgpu::model::keras_file::TwinHead;
    match (asked, model.keras_twin()) {
        (Some(metric), _) => metric,
        (None, Some((_, TwinHead::Learned(_)))) => Distance::Learned,
        (None, _) if head_given => Distance::Learned,
        (None, _) => Distance::Euclidean,
    }
}

pub fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    let n = times.len();
    if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    }
}

/// The PNG files directly in `dir`, sorted by name.
pub fn png_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    files.sort();
    Ok(files)
}
