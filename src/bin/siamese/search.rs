//! `siamese search`: nearest matches in a gallery, on the GPU.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use siamese_wgpu::io::{read_npy, read_samples_for};
use siamese_wgpu::{Array, Distance, Gallery, GpuSearch, LoadOptions};

use crate::common::{emit, load, png_files};

#[derive(clap::Args)]
pub struct SearchArgs {
    /// Model directory: the encoder that embeds gallery and queries.
    #[arg(long)]
    model: PathBuf,
    /// The gallery: a folder of PNG images (ids = file names), an .npy [G, ...] (ids = row
    /// numbers), or a gallery saved with --save (.safetensors: embeddings + ids).
    #[arg(long)]
    gallery: PathBuf,
    /// Query inputs: PNG files, or one .npy [Q, ...].
    #[arg(long, num_args = 1.., required = true)]
    query: Vec<PathBuf>,
    /// Matches per query.
    #[arg(short, long, default_value_t = 5)]
    k: usize,
    /// euclidean, sqeuclidean, cosine or manhattan. Default: the metric a saved gallery
    /// records, else euclidean (another metric than the saved one is a warning: the
    /// embeddings serve any metric).
    #[arg(long)]
    distance: Option<Distance>,
    /// Save the gallery's embeddings and ids here (.safetensors) for later searches, with
    /// the model's fingerprint and the metric: a later search with another model is refused.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Search a saved gallery with a model other than the one that embedded it (refused
    /// otherwise: its neighbours are meaningless unless both models embed alike).
    #[arg(long)]
    allow_model_mismatch: bool,
}

pub fn search(args: &SearchArgs, options: &LoadOptions) -> Result<()> {
    let model = load(&args.model, options)?;
    let is = |p: &Path, ext: &str| p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext));
    let started = Instant::now();
    let saved_gallery = !args.gallery.is_dir() && is(&args.gallery, "safetensors");
    let mut gallery = if args.gallery.is_dir() {
        let files = png_files(&args.gallery)?;
        if files.is_empty() {
            bail!("{}: no .png files in the gallery folder", args.gallery.display());
        }
        let ids = files.iter().map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
        let inputs = read_samples_for(&files, model.input_shape()).context("reading the gallery images")?;
        Gallery::embed(&model, ids, &inputs, true)?
    } else if saved_gallery {
        Gallery::load(&args.gallery)?
    } else {
        let inputs = read_npy(&args.gallery).context("reading --gallery")?;
        let ids = (0..inputs.batch()).map(|i| i.to_string()).collect();
        Gallery::embed(&model, ids, &inputs, true)?
    };
    let gallery_ms = started.elapsed().as_secs_f64() * 1e3;
    let (gallery_name, model_name) = (args.gallery.display(), args.model.display());
    if saved_gallery {
        use siamese_wgpu::search::ModelCheck;
        match gallery.check_model(&model) {
            Ok(ModelCheck::Same) => {}
            Ok(ModelCheck::NotRecorded) => eprintln!(
                "warning: {gallery_name}: saved by an older version: model not recorded, so it cannot be checked \
                 against {model_name}"
            ),
            Err(error) if args.allow_model_mismatch => {
                eprintln!("warning: {gallery_name}: {error} (searching anyway: --allow-model-mismatch)")
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("searching {gallery_name} with {model_name} (--allow-model-mismatch searches anyway)")
                })
            }
        }
    } else {
        gallery.model = Some(model_name.to_string());
    }
    let metric = match (args.distance, gallery.metric) {
        (Some(asked), Some(saved)) if asked != saved => {
            eprintln!(
                "warning: {gallery_name} was saved for {saved} distance; ranking by {asked} as --distance asks \
                 (the embeddings serve any metric)"
            );
            asked
        }
        (Some(metric), _) | (None, Some(metric)) => metric,
        (None, None) => Distance::Euclidean,
    };
    gallery.metric = Some(metric);
    if let Some(path) = &args.save {
        gallery.save(path)?;
        eprintln!("saved {} gallery embeddings to {}", gallery.len(), path.display());
    }
    let (queries, names): (Array, Vec<String>) = match args.query.as_slice() {
        [one] if !is(one, "png") => {
            let q = read_npy(one).context("reading --query")?;
            let names = (0..q.batch()).map(|i| format!("{}[{i}]", one.display())).collect();
            (q, names)
        }
        many => (read_samples_for(many, model.input_shape())?, many.iter().map(|p| p.display().to_string()).collect()),
    };
    let embedded = model.embed(&queries)?;
    let rows = embedded.batch();
    let flat = Array::new(vec![rows, embedded.row_len()], embedded.data().to_vec())?;
    let index = GpuSearch::new(model.gpu().clone(), &gallery)?;
    let started = Instant::now();
    let results = index.search(&flat, args.k, metric)?;
    let search_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut out = String::new();
    for (name, matches) in names.iter().zip(&results) {
        writeln!(out, "{name}")?;
        for (rank, (i, d)) in matches.iter().enumerate() {
            writeln!(out, "  {:>3}  {:<32} {d:.6}", rank + 1, gallery.ids.get(*i).map_or("?", String::as_str))?;
        }
    }
    emit(&out)?;
    eprintln!(
        "{} queries against {} gallery items ({}-d, {}): gallery ready in {gallery_ms:.0} ms, search {search_ms:.1} ms",
        names.len(),
        gallery.len(),
        gallery.dim(),
        metric
    );
    Ok(())
}
