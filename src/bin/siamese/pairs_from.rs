//! `siamese pairs-from`: labelled pairs from a labelled set.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use siamese_wgpu::verify::{pairs_from_labels_with, read_labels_csv};

use crate::common::{emit, png_files};

#[derive(clap::Args)]
pub struct PairsFromArgs {
    /// CSV of `path,label` rows (header optional; paths relative to the CSV; no empty
    /// labels, no path twice), or a folder with one subfolder of PNG images per class
    /// (the subfolder name is the label).
    #[arg(long)]
    labels: PathBuf,
    /// Seed for drawing the pairs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The most same pairs written: when the set has more, this many distinct ones are
    /// drawn at random (said on stderr). As many different pairs as same pairs. At most
    /// 10,000,000 (about 500 MB of pairs in memory).
    #[arg(long, default_value_t = siamese_wgpu::verify::DEFAULT_MAX_SAME_PAIRS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    max_pairs: usize,
    /// Write the pairs here instead of printing them (paths are written relative to
    /// this file's folder when it is the labels' folder, else absolute).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A folder with one subfolder of PNG images per class: (image, subfolder name), sorted.
fn labelled_folder(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut items = Vec::new();
    for class in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let class = class?.path();
        if !class.is_dir() {
            continue;
        }
        let label = class.file_name().unwrap_or_default().to_string_lossy().into_owned();
        items.extend(png_files(&class)?.into_iter().map(|file| (file, label.clone())));
    }
    if items.is_empty() {
        bail!("{}: no class subfolders with .png images", dir.display());
    }
    items.sort();
    Ok(items)
}

/// `siamese pairs-from`.
pub fn pairs_from(args: PairsFromArgs) -> Result<()> {
    let PairsFromArgs { labels, seed, max_pairs, out } = args;
    pairs_from_csv_or_folder(&labels, seed, max_pairs, out.as_deref())
}

fn pairs_from_csv_or_folder(labels_csv: &Path, seed: u64, max_same: usize, out: Option<&Path>) -> Result<()> {
    let (items, base) = if labels_csv.is_dir() {
        (labelled_folder(labels_csv)?, labels_csv)
    } else {
        (read_labels_csv(labels_csv)?, labels_csv.parent().unwrap_or(Path::new(".")))
    };
    let classes: Vec<&str> = items.iter().map(|(_, label)| label.as_str()).collect();
    let drawn = pairs_from_labels_with(&classes, seed, max_same)?;
    if drawn.capped() {
        eprintln!(
            "{} items have {} same pairs; wrote {} of them at random (--max-pairs)",
            items.len(),
            drawn.same_available,
            drawn.same()
        );
    }
    let pairs = drawn.pairs;
    let same_folder = out.is_none_or(|o| {
        let parent = o.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        parent.canonicalize().ok() == base.canonicalize().ok().or_else(|| Path::new(".").canonicalize().ok())
    });
    let shown = |path: &Path| -> String {
        match path.strip_prefix(base) {
            Ok(relative) if same_folder => relative.display().to_string(),
            _ => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string(),
        }
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(["left", "right", "label"])?;
    for &(i, j, same) in &pairs {
        writer.write_record([shown(&items[i].0), shown(&items[j].0), u8::from(same).to_string()])?;
    }
    let text = writer.into_inner().map_err(|e| anyhow::anyhow!("writing CSV: {e}"))?;
    let positives = pairs.iter().filter(|p| p.2).count();
    match out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote {} pairs ({positives} same, {} different) to {}",
                pairs.len(),
                pairs.len() - positives,
                path.display()
            );
        }
        None => emit(&String::from_utf8_lossy(&text))?,
    }
    Ok(())
}
