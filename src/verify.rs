//! From distances to decisions: verification metrics on labelled pairs (best-accuracy and
//! equal-error-rate thresholds, ROC AUC, contrastive loss), labelled pair lists, and the
//! decision a trained model ships with (`siamese.json`). All CPU: the distances come from
//! the GPU ([`crate::SiameseModel::distances`]).
//!
//! Convention: a pair is predicted *same* when its distance is `<= threshold`; for a
//! score where higher means closer (the learned head's probability) when it is
//! `>= threshold`.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::ops::Distance;

/// What verification on a set of labelled pairs measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Verification {
    /// Pairs in total.
    pub pairs: usize,
    /// Pairs labelled same.
    pub positives: usize,
    /// Pairs labelled different.
    pub negatives: usize,
    /// The threshold with the best accuracy on these pairs (midway between the two
    /// scores it separates; ties: the smallest such threshold).
    pub best_threshold: f64,
    /// Accuracy at `best_threshold`.
    pub best_accuracy: f64,
    /// Equal error rate: where the false-accept rate meets the false-reject rate
    /// (linearly interpolated along the ROC curve).
    pub eer: f64,
    /// The score at the equal error rate (interpolated likewise).
    pub eer_threshold: f64,
    /// Area under the ROC curve: the chance that a random same pair scores closer than a
    /// random different pair, ties counting one half.
    pub auc: f64,
    /// ROC curve points (false-positive rate, true-positive rate), from (0, 0) to (1, 1).
    pub roc: Vec<(f64, f64)>,
}

/// Scores turned so that lower always means closer, sorted, with their labels.
fn ordered(scores: &[f32], labels: &[bool], higher_is_closer: bool) -> Result<Vec<(f64, bool)>> {
    if scores.len() != labels.len() {
        return Err(Error::shape("labels", format!("one per pair ({})", scores.len()), labels.len().to_string()));
    }
    if scores.is_empty() {
        return Err(Error::input("pairs", "no pairs to evaluate"));
    }
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(Error::input("distances", format!("pair {i} has a non-finite distance {}", scores[i])));
    }
    let sign = if higher_is_closer { -1.0 } else { 1.0 };
    let mut items: Vec<(f64, bool)> = scores.iter().zip(labels).map(|(&s, &l)| (sign * s as f64, l)).collect();
    items.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(items)
}

/// Counts after each group of equal scores: (score, same pairs accepted, different pairs
/// accepted) with "accepted" = score <= that score; the first entry accepts nothing.
fn cumulative(items: &[(f64, bool)]) -> Vec<(f64, usize, usize)> {
    let mut out = vec![(f64::NEG_INFINITY, 0, 0)];
    let (mut tp, mut fp) = (0, 0);
    for (i, &(score, same)) in items.iter().enumerate() {
        if same {
            tp += 1
        } else {
            fp += 1
        }
        if items.get(i + 1).is_none_or(|next| next.0 != score) {
            out.push((score, tp, fp));
        }
    }
    out
}

/// Verification metrics for `scores` (distances, or probabilities when
/// `higher_is_closer`) against `labels` (true = same). Both classes must be present.
pub fn evaluate(scores: &[f32], labels: &[bool], higher_is_closer: bool) -> Result<Verification> {
    let items = ordered(scores, labels, higher_is_closer)?;
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(Error::input(
            "labels",
            format!("need both same and different pairs (got {positives} same, {negatives} different)"),
        ));
    }
    let steps = cumulative(&items);
    let n = items.len() as f64;
    let (p, q) = (positives as f64, negatives as f64);
    // Best accuracy: accept every score up to a group, reject the rest.
    let mut best = (f64::NEG_INFINITY, 0usize);
    for (k, &(_, tp, fp)) in steps.iter().enumerate() {
        let accuracy = (tp + negatives - fp) as f64 / n;
        if accuracy > best.0 {
            best = (accuracy, k);
        }
    }
    let boundary = |k: usize| -> f64 {
        // Between group k's score and the next one's; below everything for k = 0.
        let next = steps.get(k + 1).map(|s| s.0);
        match (k, next) {
            (0, Some(first)) => first - 1.0_f64.max(first.abs() * 1e-3),
            (_, Some(next)) => (steps[k].0 + next) / 2.0,
            (_, None) => steps[k].0,
        }
    };
    let best_threshold = boundary(best.1);
    // ROC (fpr, tpr) and the equal error rate where FAR = fp/q meets FRR = 1 - tp/p.
    let roc: Vec<(f64, f64)> = steps.iter().map(|&(_, tp, fp)| (fp as f64 / q, tp as f64 / p)).collect();
    let gap = |k: usize| roc[k].0 - (1.0 - roc[k].1);
    let k = (0..roc.len()).find(|&k| gap(k) >= 0.0).unwrap_or(roc.len() - 1);
    let (eer, eer_threshold) = if k == 0 {
        (roc[0].0, steps.get(1).map_or(0.0, |s| s.0))
    } else {
        let alpha = -gap(k - 1) / (gap(k) - gap(k - 1));
        let far = roc[k - 1].0 + alpha * (roc[k].0 - roc[k - 1].0);
        // The score moves from the last one accepted to the next group's.
        let from = if k - 1 == 0 { steps[1].0 } else { steps[k - 1].0 };
        (far, from + alpha * (steps[k].0 - from))
    };
    // AUC by the trapezoid rule over the ROC steps (a tie group is a diagonal segment,
    // which counts its same/different pairs one half).
    let auc = roc.windows(2).map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0).sum();
    let sign = if higher_is_closer { -1.0 } else { 1.0 };
    Ok(Verification {
        pairs: items.len(),
        positives,
        negatives,
        best_threshold: sign * best_threshold,
        best_accuracy: best.0,
        eer,
        eer_threshold: sign * eer_threshold,
        auc,
        roc,
    })
}

/// Accuracy of a fixed threshold: same when `score <= threshold` (`>=` when
/// `higher_is_closer`).
pub fn accuracy_at(scores: &[f32], labels: &[bool], threshold: f64, higher_is_closer: bool) -> Result<f64> {
    let items = ordered(scores, labels, higher_is_closer)?;
    let t = if higher_is_closer { -threshold } else { threshold };
    let correct = items.iter().filter(|&&(s, same)| (s <= t) == same).count();
    Ok(correct as f64 / items.len() as f64)
}

/// The mean contrastive loss `y·d² + (1 − y)·max(0, margin − d)²` (y = 1 for same), as
/// the twin was trained with (Hadsell et al., 2006).
pub fn contrastive_loss(distances: &[f32], labels: &[bool], margin: f64) -> Result<f64> {
    ordered(distances, labels, false)?;
    let total: f64 = distances
        .iter()
        .zip(labels)
        .map(|(&d, &same)| {
            let d = d as f64;
            if same {
                d * d
            } else {
                (margin - d).max(0.0).powi(2)
            }
        })
        .sum();
    Ok(total / distances.len() as f64)
}

/// Labelled pairs of input files.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelledPairs {
    /// Left inputs (PNG or single-sample `.npy`).
    pub left: Vec<PathBuf>,
    /// Right inputs.
    pub right: Vec<PathBuf>,
    /// True = same.
    pub labels: Vec<bool>,
}

fn parse_label(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "1.0" | "true" | "same" | "yes" | "match" => Some(true),
        "0" | "0.0" | "false" | "different" | "no" | "nonmatch" => Some(false),
        _ => None,
    }
}

fn csv_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Decode { path: path.to_path_buf(), reason: reason.into() }
}

/// Reads CSV records with the `csv` crate: an optional header whose first field is
/// `first_header` (case-insensitive), then rows of exactly `fields` fields.
fn read_csv(path: &Path, fields: usize, first_header: &str) -> Result<Vec<(usize, Vec<String>)>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    parse_csv(file, path, fields, first_header)
}

/// [`read_csv`] on any reader; `path` only names it in errors.
fn parse_csv(
    source: impl std::io::Read,
    path: &Path,
    fields: usize,
    first_header: &str,
) -> Result<Vec<(usize, Vec<String>)>> {
    // No comment lines: a row starting with '#' is data (a file may be named `#1.png`).
    let mut reader = csv::ReaderBuilder::new().has_headers(false).trim(csv::Trim::All).from_reader(source);
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let record = record.map_err(|e| csv_error(path, format!("line {}: {e}", index + 1)))?;
        let line = record.position().map_or(index + 1, |p| p.line() as usize);
        if index == 0 && record.get(0).is_some_and(|f| f.eq_ignore_ascii_case(first_header)) {
            continue;
        }
        if record.len() != fields {
            return Err(csv_error(
                path,
                format!("line {line}: expected {fields} comma-separated fields, got {}", record.len()),
            ));
        }
        rows.push((line, record.iter().map(str::to_string).collect()));
    }
    if rows.is_empty() {
        return Err(csv_error(path, "no rows"));
    }
    Ok(rows)
}

/// Reads `left,right,label` rows (a header line is optional; paths relative to the CSV's
/// folder; labels 1/0, true/false or same/different). There are no comment lines: a row
/// whose first path starts with `#` is a pair like any other.
pub fn read_pairs_csv(path: impl AsRef<Path>) -> Result<LabelledPairs> {
    let path = path.as_ref();
    pairs_from_rows(read_csv(path, 3, "left")?, path)
}

/// [`read_pairs_csv`] on a file already in memory; `path` names it in errors, and paths
/// in it are relative to its folder.
pub fn parse_pairs_csv(bytes: &[u8], path: &Path) -> Result<LabelledPairs> {
    pairs_from_rows(parse_csv(bytes, path, 3, "left")?, path)
}

fn pairs_from_rows(rows: Vec<(usize, Vec<String>)>, path: &Path) -> Result<LabelledPairs> {
    let base = path.parent().unwrap_or(Path::new("."));
    let mut pairs = LabelledPairs::default();
    for (line, row) in rows {
        let label = parse_label(&row[2]).ok_or_else(|| {
            csv_error(path, format!("line {line}: label {:?} is not 1/0, true/false or same/different", row[2]))
        })?;
        pairs.left.push(base.join(&row[0]));
        pairs.right.push(base.join(&row[1]));
        pairs.labels.push(label);
    }
    Ok(pairs)
}

/// Reads `path,label` rows (a header line is optional; paths relative to the CSV's
/// folder; the label is any class name, not empty). A path listed twice is an error
/// naming both lines (it would pair an image with itself). There are no comment lines: a
/// row starting with `#` is an item like any other.
pub fn read_labels_csv(path: impl AsRef<Path>) -> Result<Vec<(PathBuf, String)>> {
    let path = path.as_ref();
    labels_from_rows(read_csv(path, 2, "path")?, path)
}

/// [`read_labels_csv`] on a file already in memory; `path` names it in errors, and paths
/// in it are relative to its folder.
pub fn parse_labels_csv(bytes: &[u8], path: &Path) -> Result<Vec<(PathBuf, String)>> {
    labels_from_rows(parse_csv(bytes, path, 2, "path")?, path)
}

fn labels_from_rows(rows: Vec<(usize, Vec<String>)>, path: &Path) -> Result<Vec<(PathBuf, String)>> {
    let base = path.parent().unwrap_or(Path::new("."));
    // Paths compare by components, so `a.png` and `./a.png` are one file.
    let mut first_line: HashMap<PathBuf, usize> = HashMap::with_capacity(rows.len());
    let mut items = Vec::with_capacity(rows.len());
    for (line, mut row) in rows {
        if row[0].is_empty() {
            return Err(csv_error(path, format!("line {line}: empty path")));
        }
        if row[1].is_empty() {
            return Err(csv_error(path, format!("line {line}: empty label for {:?}", row[0])));
        }
        let item = base.join(&row[0]);
        if let Some(first) = first_line.insert(item.clone(), line) {
            return Err(csv_error(
                path,
                format!("line {line}: {:?} was already listed on line {first}: it would pair with itself", row[0]),
            ));
        }
        items.push((item, row.swap_remove(1)));
    }
    Ok(items)
}

/// The most same pairs [`pairs_from_labels`] returns (and `siamese pairs-from` writes
/// unless `--max-pairs` says otherwise); beyond it they are drawn at random.
pub const DEFAULT_MAX_SAME_PAIRS: usize = 50_000;

/// Pairs drawn from a labelled set ([`pairs_from_labels_with`]), and how many there were
/// to draw from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrawnPairs {
    /// `(i, j, same)` with `i < j`, shuffled.
    pub pairs: Vec<(usize, usize, bool)>,
    /// Same-class pairs in the set: the sum of `c(c - 1)/2` over the class sizes `c`.
    pub same_available: u64,
    /// Different-class pairs in the set.
    pub different_available: u64,
}

impl DrawnPairs {
    /// Same pairs drawn.
    pub fn same(&self) -> usize {
        self.pairs.iter().filter(|p| p.2).count()
    }

    /// Whether the cap left same pairs out (they were then drawn at random).
    pub fn capped(&self) -> bool {
        (self.same() as u64) < self.same_available
    }
}

/// [`pairs_from_labels_with`] at most [`DEFAULT_MAX_SAME_PAIRS`] same pairs, returning
/// only the pairs.
pub fn pairs_from_labels<L: Eq + Hash>(labels: &[L], seed: u64) -> Result<Vec<(usize, usize, bool)>> {
    Ok(pairs_from_labels_with(labels, seed, DEFAULT_MAX_SAME_PAIRS)?.pairs)
}

/// Pairs from a labelled set: every same-class pair `(i, j)`, `i < j` (when there are more
/// than `max_same`, `max_same` distinct ones drawn at random), and as many different-class
/// pairs drawn at random without repetition (fewer when fewer exist), in a shuffled
/// order; deterministic for a `seed`. Time and memory grow with the pairs returned, not
/// with the pairs that exist (counted per class, never listed beyond twice the pairs
/// wanted).
pub fn pairs_from_labels_with<L: Eq + Hash>(labels: &[L], seed: u64, max_same: usize) -> Result<DrawnPairs> {
    let classes = Classes::new(labels)?;
    let (same_available, different_available) = (classes.same_total(), classes.different_total());
    if same_available == 0 {
        return Err(Error::input("labels", "no two items share a label: there are no same pairs"));
    }
    if different_available == 0 {
        return Err(Error::input("labels", "every item has the same label: there are no different pairs"));
    }
    if max_same == 0 {
        return Err(Error::input("max_same", "the most same pairs must be at least 1"));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let capped = same_available > max_same as u64;
    let positives = if capped {
        draw_distinct(
            &mut rng,
            same_available,
            max_same,
            || classes.same_pairs(),
            |rng| Some(classes.random_same(rng)),
        )?
    } else {
        classes.same_pairs()?
    };
    let wanted = (positives.len() as u64).min(different_available) as usize;
    let negatives: Vec<(usize, usize)> = if capped {
        draw_distinct(
            &mut rng,
            different_available,
            wanted,
            || classes.different_pairs(),
            |rng| Some(classes.random_different(rng)),
        )?
    } else {
        // Uniform pairs of items, kept when different: the draw pairs_from_labels always
        // made, so that a seed gives the pairs it gave (different pairs are then at least
        // two thirds of all pairs, so few draws miss).
        let n = labels.len();
        draw_distinct(
            &mut rng,
            different_available,
            wanted,
            || classes.different_pairs(),
            |rng| {
                let (i, j) = (rng.random_range(0..n), rng.random_range(0..n));
                let (i, j) = (i.min(j), i.max(j));
                (i != j && labels[i] != labels[j]).then_some((i, j))
            },
        )?
    };
    let mut pairs: Vec<(usize, usize, bool)> = positives.into_iter().map(|(i, j)| (i, j, true)).collect();
    pairs.extend(negatives.into_iter().map(|(i, j)| (i, j, false)));
    pairs.shuffle(&mut rng);
    Ok(DrawnPairs { pairs, same_available, different_available })
}

/// `wanted` distinct pairs of the `total` that exist: when they are at least half of them,
/// all listed (`all`, in `(i, j)` order) and a random subset kept; else drawn one at a
/// time (`draw`, None: not one of them) until `wanted` distinct ones came.
fn draw_distinct(
    rng: &mut StdRng,
    total: u64,
    wanted: usize,
    all: impl FnOnce() -> Result<Vec<(usize, usize)>>,
    mut draw: impl FnMut(&mut StdRng) -> Option<(usize, usize)>,
) -> Result<Vec<(usize, usize)>> {
    if wanted as u64 * 2 >= total {
        let mut all = all()?;
        all.shuffle(rng);
        all.truncate(wanted);
        return Ok(all);
    }
    let mut seen = HashSet::new();
    seen.try_reserve(wanted).map_err(|_| too_many_pairs(wanted as u64))?;
    let mut drawn = pair_list(wanted as u64)?;
    while drawn.len() < wanted {
        if let Some(pair) = draw(rng).filter(|&pair| seen.insert(pair)) {
            drawn.push(pair);
        }
    }
    Ok(drawn)
}

/// An empty list with room for `len` pairs, or an error saying they do not fit in memory
/// (a cap set far above what the set needs).
fn pair_list(len: u64) -> Result<Vec<(usize, usize)>> {
    let mut list = Vec::new();
    usize::try_from(len).ok().and_then(|len| list.try_reserve_exact(len).ok()).ok_or_else(|| too_many_pairs(len))?;
    Ok(list)
}

fn too_many_pairs(len: u64) -> Error {
    Error::input("max_same", format!("{len} pairs do not fit in memory: ask for fewer same pairs"))
}

/// A labelled set grouped by class: `members` holds the item indices class by class
/// (classes in order of first appearance, items ascending), class `k` at
/// `starts[k]..starts[k + 1]`.
struct Classes {
    members: Vec<usize>,
    starts: Vec<usize>,
    /// Running totals over the classes of `c(c - 1)/2` (same pairs in the class) and of
    /// `c(n - c)` (ordered different pairs starting in it): the weights of a random pick.
    same_cumulative: Vec<u64>,
    different_cumulative: Vec<u64>,
}

impl Classes {
    fn new<L: Eq + Hash>(labels: &[L]) -> Result<Self> {
        let mut ids: HashMap<&L, usize> = HashMap::new();
        let class_of: Vec<usize> = labels
            .iter()
            .map(|label| {
                let next = ids.len();
                *ids.entry(label).or_insert(next)
            })
            .collect();
        let mut starts = vec![0; ids.len() + 1];
        for &k in &class_of {
            starts[k + 1] += 1;
        }
        for k in 0..ids.len() {
            starts[k + 1] += starts[k];
        }
        let mut members = vec![0; labels.len()];
        let mut next = starts.clone();
        for (i, &k) in class_of.iter().enumerate() {
            members[next[k]] = i;
            next[k] += 1;
        }
        let too_many = || Error::input("labels", format!("{} items: too many to count their pairs", labels.len()));
        let n = labels.len() as u64;
        let (mut same, mut different) = (0u64, 0u64);
        let (mut same_cumulative, mut different_cumulative) = (Vec::new(), Vec::new());
        for k in 0..ids.len() {
            let c = (starts[k + 1] - starts[k]) as u64;
            same = c.checked_mul(c - 1).map(|p| p / 2).and_then(|p| same.checked_add(p)).ok_or_else(too_many)?;
            different = c.checked_mul(n - c).and_then(|p| different.checked_add(p)).ok_or_else(too_many)?;
            same_cumulative.push(same);
            different_cumulative.push(different);
        }
        Ok(Self { members, starts, same_cumulative, different_cumulative })
    }

    fn class(&self, k: usize) -> &[usize] {
        &self.members[self.starts[k]..self.starts[k + 1]]
    }

    fn same_total(&self) -> u64 {
        self.same_cumulative.last().copied().unwrap_or(0)
    }

    fn different_total(&self) -> u64 {
        // Each different pair starts in either of its two classes.
        self.different_cumulative.last().copied().unwrap_or(0) / 2
    }

    /// Every same pair, in `(i, j)` order.
    fn same_pairs(&self) -> Result<Vec<(usize, usize)>> {
        let mut pairs = pair_list(self.same_total())?;
        for k in 0..self.same_cumulative.len() {
            let class = self.class(k);
            for (a, &i) in class.iter().enumerate() {
                pairs.extend(class[a + 1..].iter().map(|&j| (i, j)));
            }
        }
        pairs.sort_unstable();
        Ok(pairs)
    }

    /// Every different pair, in `(i, j)` order.
    fn different_pairs(&self) -> Result<Vec<(usize, usize)>> {
        let mut pairs = pair_list(self.different_total())?;
        let classes = self.same_cumulative.len();
        for k in 0..classes {
            for l in k + 1..classes {
                for &i in self.class(k) {
                    pairs.extend(self.class(l).iter().map(|&j| (i.min(j), i.max(j))));
                }
            }
        }
        pairs.sort_unstable();
        Ok(pairs)
    }

    /// The class a uniform draw below the last of `cumulative` falls in.
    fn pick(cumulative: &[u64], rng: &mut StdRng) -> usize {
        let last = cumulative.last().copied().unwrap_or(0);
        let r = rng.random_range(0..last);
        cumulative.partition_point(|&total| total <= r)
    }

    /// A same pair, each one equally likely: a class by its number of pairs, then two
    /// distinct members.
    fn random_same(&self, rng: &mut StdRng) -> (usize, usize) {
        let class = self.class(Self::pick(&self.same_cumulative, rng));
        let a = rng.random_range(0..class.len());
        let b = rng.random_range(0..class.len() - 1);
        let (i, j) = (class[a], class[if b >= a { b + 1 } else { b }]);
        (i.min(j), i.max(j))
    }

    /// A different pair, each one equally likely: an item by its number of different
    /// partners (its class by `c(n - c)`, then a member), then any item of another class
    /// (the classes are contiguous in `members`, so that is one draw skipping its own).
    fn random_different(&self, rng: &mut StdRng) -> (usize, usize) {
        let k = Self::pick(&self.different_cumulative, rng);
        let class = self.class(k);
        let i = class[rng.random_range(0..class.len())];
        let other = rng.random_range(0..self.members.len() - class.len());
        let j = self.members[if other < self.starts[k] { other } else { other + class.len() }];
        (i.min(j), i.max(j))
    }
}

/// The decision a trained model ships with: `siamese.json` in its directory.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ModelDecision {
    /// The metric it was trained for.
    #[serde(default)]
    pub distance: Option<String>,
    /// Same when the distance is `<=` this.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// The contrastive-loss margin it was trained with.
    #[serde(default)]
    pub margin: Option<f64>,
}

/// The decision file's name in a model directory.
pub const DECISION_FILE: &str = "siamese.json";

impl ModelDecision {
    /// Reads `DIR/siamese.json`; `Ok(None)` when the model has none.
    pub fn load(model_dir: impl AsRef<Path>) -> Result<Option<Self>> {
        let path = model_dir.as_ref().join(DECISION_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let decision: Self = serde_json::from_str(&text).map_err(|e| Error::ModelFormat {
            file: path.display().to_string(),
            reason: format!("not a valid siamese.json: {e}"),
        })?;
        if let Some(t) = decision.threshold.filter(|t| !t.is_finite()) {
            return Err(Error::ModelFormat { file: path.display().to_string(), reason: format!("threshold {t}") });
        }
        Ok(Some(decision))
    }

    /// The metric, parsed (None when the file names none).
    pub fn metric(&self) -> Result<Option<Distance>> {
        self.distance.as_deref().map(str::parse).transpose()
    }
}
