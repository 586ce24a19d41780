//! Pictures of verification results (PNG, drawn with `plotters`, text in DejaVu Sans):
//! the ROC curve beside the distance histograms of same and different pairs, and a
//! sheet of image pairs with their distances and verdicts.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{Error, Result};
use crate::verify::Verification;

const FONT: &str = "sans-serif";
const SAME: RGBColor = RGBColor(0, 114, 178);
const DIFFERENT: RGBColor = RGBColor(213, 94, 0);

/// plotters' bitmap backend draws text with fonts registered here (no system fonts).
fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Both fonts are compiled in and valid TrueType: registration cannot fail.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

fn draw_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Decode { path: path.to_path_buf(), reason: format!("drawing the picture failed: {e}") }
}

/// What a verification picture shows besides the ROC curve.
#[derive(Clone, Copy, Debug)]
pub struct ScorePlot<'a> {
    /// One score per pair.
    pub scores: &'a [f32],
    /// True = same.
    pub labels: &'a [bool],
    /// The threshold to mark.
    pub threshold: f64,
    /// The score's name on the axis (e.g. "euclidean distance").
    pub score_name: &'a str,
}

/// Writes a PNG with the ROC curve (AUC and EER in the caption) on the left and the
/// score histograms of same and different pairs, with the threshold, on the right.
pub fn verification_png(path: impl AsRef<Path>, verification: &Verification, plot: &ScorePlot) -> Result<()> {
    let path = path.as_ref();
    register_fonts();
    let root = BitMapBackend::new(path, (1100, 480)).into_drawing_area();
    let e = |e| draw_error(path, e);
    root.fill(&WHITE).map_err(e)?;
    let (left, right) = root.split_horizontally(480);
    roc_panel(&left, verification).map_err(|m| draw_error(path, m))?;
    histogram_panel(&right, plot).map_err(|m| draw_error(path, m))?;
    root.present().map_err(e)?;
    Ok(())
}

type Panel<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

fn roc_panel(area: &Panel, v: &Verification) -> std::result::Result<(), String> {
    let mut chart = ChartBuilder::on(area)
        .caption(format!("ROC: AUC {:.4}, EER {:.2}%", v.auc, 100.0 * v.eer), (FONT, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..1.0, 0.0..1.0)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("false positive rate (different pairs accepted)")
        .y_desc("true positive rate")
        .label_style((FONT, 13))
        .draw()
        .map_err(|e| e.to_string())?;
    chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3))).map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(v.roc.iter().copied(), SAME.stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label(format!("{} pairs ({} same)", v.pairs, v.positives))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], SAME.stroke_width(2)));
    let eer = v.eer;
    chart
        .draw_series(std::iter::once(Circle::new((eer, 1.0 - eer), 5, DIFFERENT.filled())))
        .map_err(|e| e.to_string())?
        .label("equal error rate")
        .legend(|(x, y)| Circle::new((x + 9, y), 4, DIFFERENT.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| e.to_string())
}

fn histogram_panel(area: &Panel, plot: &ScorePlot) -> std::result::Result<(), String> {
    let lo = plot.scores.iter().copied().fold(f32::INFINITY, f32::min).min(plot.threshold as f32) as f64;
    let hi = plot.scores.iter().copied().fold(f32::NEG_INFINITY, f32::max).max(plot.threshold as f32) as f64;
    let span = (hi - lo).max(1e-6);
    let bins = 30usize;
    let width = span / bins as f64;
    let mut counts = [vec![0u32; bins], vec![0u32; bins]];
    for (&s, &same) in plot.scores.iter().zip(plot.labels) {
        let bin = (((s as f64 - lo) / width) as usize).min(bins - 1);
        counts[usize::from(!same)][bin] += 1;
    }
    let top = counts.iter().flatten().copied().max().unwrap_or(1).max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{} by pair kind", plot.score_name), (FONT, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(lo..lo + span * 1.0001, 0u32..top + top / 8 + 1)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(plot.score_name)
        .y_desc("pairs")
        .label_style((FONT, 13))
        .draw()
        .map_err(|e| e.to_string())?;
    for (kind, (color, name)) in [(SAME, "same"), (DIFFERENT, "different")].into_iter().enumerate() {
        let bars = counts[kind].iter().enumerate().filter(|(_, &c)| c > 0).map(move |(b, &c)| {
            let x0 = lo + b as f64 * width;
            Rectangle::new([(x0, 0), (x0 + width, c)], color.mix(0.55).filled())
        });
        chart
            .draw_series(bars)
            .map_err(|e| e.to_string())?
            .label(format!("{name} ({})", counts[kind].iter().sum::<u32>()))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], color.mix(0.55).filled()));
    }
    let t = plot.threshold;
    chart
        .draw_series(LineSeries::new([(t, 0), (t, top + top / 8 + 1)], BLACK.stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label(format!("threshold {t:.4}"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| e.to_string())
}

/// One tile of a pair sheet: two grayscale images (values in [0, 1], row-major) and what
/// was decided.
#[derive(Clone, Copy, Debug)]
pub struct PairTile<'a> {
    /// Left image `[height · width]`.
    pub left: &'a [f32],
    /// Right image.
    pub right: &'a [f32],
    /// The pair's score.
    pub score: f32,
    /// The verdict.
    pub predicted_same: bool,
    /// The truth, when known.
    pub truth: Option<bool>,
}

/// Writes a sheet of pairs, `columns` per row: each tile shows both images, the score and
/// the verdict (green when it matches the truth, red when not).
pub fn pair_sheet_png(
    path: impl AsRef<Path>,
    tiles: &[PairTile],
    height: usize,
    width: usize,
    columns: usize,
) -> Result<()> {
    let path = path.as_ref();
    if tiles.is_empty() || columns == 0 {
        return Err(Error::input("pair sheet", "no pairs to draw"));
    }
    if let Some(i) = tiles.iter().position(|t| t.left.len() != height * width || t.right.len() != height * width) {
        return Err(Error::shape(format!("pair sheet tile {i}"), format!("{height}x{width} images"), "other sizes"));
    }
    register_fonts();
    let scale = (84 / height.max(1)).max(1) as i32;
    let (image_w, image_h) = (width as i32 * scale, height as i32 * scale);
    let tile_w = 2 * image_w + 30;
    let tile_h = image_h + 46;
    let rows = tiles.len().div_ceil(columns);
    let size = ((tile_w * columns as i32) as u32, (tile_h * rows as i32 + 10) as u32);
    let root = BitMapBackend::new(path, size).into_drawing_area();
    let e = |e| draw_error(path, e);
    root.fill(&WHITE).map_err(e)?;
    for (index, tile) in tiles.iter().enumerate() {
        let (x0, y0) = ((index % columns) as i32 * tile_w + 10, (index / columns) as i32 * tile_h + 8);
        for (offset, image) in [(0, tile.left), (image_w + 8, tile.right)] {
            for y in 0..height {
                for x in 0..width {
                    let v = (image[y * width + x].clamp(0.0, 1.0) * 255.0) as u8;
                    let (px, py) = (x0 + offset + x as i32 * scale, y0 + y as i32 * scale);
                    root.draw(&Rectangle::new([(px, py), (px + scale, py + scale)], RGBColor(v, v, v).filled()))
                        .map_err(e)?;
                }
            }
        }
        let verdict = if tile.predicted_same { "same" } else { "different" };
        let color = match tile.truth {
            Some(truth) if truth == tile.predicted_same => RGBColor(0, 130, 60),
            Some(_) => RGBColor(200, 0, 0),
            None => BLACK,
        };
        let text = format!("{:.3} {verdict}", tile.score);
        root.draw(&Text::new(text, (x0, y0 + image_h + 6), (FONT, 16).into_font().color(&color))).map_err(e)?;
    }
    root.present().map_err(e)?;
    Ok(())
}
