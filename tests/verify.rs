//! From distances to decisions: verification metrics against answers worked out by hand
//! and a brute-force CPU computation (ties, all-equal scores), pair lists, the learned
//! metric head against its CPU reference, and the shipped digit model's held-out
//! accuracy as a regression guard (recomputed from the committed pairs, compared with
//! the value its siamese.json records).

mod common;

use std::path::PathBuf;

use common::{assert_close, gpu, random_vec, rng};
use rand::Rng;
use siamese_wgpu::io::{read_npy, read_samples};
use siamese_wgpu::ops::{LearnedHead, PairDistance};
use siamese_wgpu::tensor::{run_dispatches, Array, Tensor};
use siamese_wgpu::verify::{
    accuracy_at, contrastive_loss, evaluate, pairs_from_labels, pairs_from_labels_with, read_labels_csv,
    read_pairs_csv, ModelDecision, DEFAULT_MAX_SAME_PAIRS,
};
use siamese_wgpu::{Distance, SiameseModel};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Brute force: the best accuracy over every threshold (each score, and below all), and
/// AUC as the share of (same, different) pairs where same scores lower (ties: 1/2).
fn brute_force(scores: &[f32], labels: &[bool]) -> (f64, f64) {
    let n = scores.len() as f64;
    let mut best = labels.iter().filter(|&&l| !l).count() as f64 / n;
    for &t in scores {
        let correct = scores.iter().zip(labels).filter(|&(&s, &l)| (s <= t) == l).count();
        best = best.max(correct as f64 / n);
    }
    let (mut wins, mut total) = (0.0, 0.0);
    for (&a, &la) in scores.iter().zip(labels) {
        for (&b, &lb) in scores.iter().zip(labels) {
            if la && !lb {
                total += 1.0;
                wins += if a < b {
                    1.0
                } else if a == b {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    (best, wins / total)
}

#[test]
fn separable_scores_have_known_answers() {
    let scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
    let labels = [true, true, true, false, false, false];
    let v = evaluate(&scores, &labels, false).unwrap();
    assert_eq!((v.pairs, v.positives, v.negatives), (6, 3, 3));
    assert_eq!(v.best_accuracy, 1.0);
    assert!((v.best_threshold - 0.35).abs() < 1e-6, "{}", v.best_threshold);
    assert_eq!(v.auc, 1.0);
    assert_eq!(v.eer, 0.0);
    assert!(v.eer_threshold >= 0.3 - 1e-6 && v.eer_threshold <= 0.4 + 1e-6, "{}", v.eer_threshold);
    assert_eq!(v.roc.first(), Some(&(0.0, 0.0)));
    assert_eq!(v.roc.last(), Some(&(1.0, 1.0)));
    // Reversed (the worst possible scorer): AUC 0, best is to call everything different.
    let v = evaluate(&scores, &[false, false, false, true, true, true], false).unwrap();
    assert_eq!(v.auc, 0.0);
    assert_eq!(v.best_accuracy, 0.5);
    assert_eq!(v.eer, 1.0);
    // Probabilities: higher = closer, thresholds in probability terms.
    let v = evaluate(&[0.9, 0.8, 0.2, 0.1], &[true, true, false, false], true).unwrap();
    assert_eq!((v.best_accuracy, v.auc, v.eer), (1.0, 1.0, 0.0));
    assert!((v.best_threshold - 0.5).abs() < 1e-6, "{}", v.best_threshold);
    assert_eq!(accuracy_at(&[0.9, 0.8, 0.2, 0.1], &[true, true, false, false], 0.85, true).unwrap(), 0.75);
}

#[test]
fn one_overlap_gives_the_hand_computed_eer() {
    // Same: 0.1, 0.2, 0.5; different: 0.3, 0.6, 0.7. Best: threshold in (0.2, 0.3) or
    // (0.5, 0.6): 5/6. AUC: same 0.5 beats 2 of 3 different, others beat all: 8/9.
    let scores = [0.1, 0.2, 0.5, 0.3, 0.6, 0.7];
    let labels = [true, true, true, false, false, false];
    let v = evaluate(&scores, &labels, false).unwrap();
    assert!((v.best_accuracy - 5.0 / 6.0).abs() < 1e-12);
    assert!((v.best_threshold - 0.25).abs() < 1e-6, "smallest best threshold: {}", v.best_threshold);
    assert!((v.auc - 8.0 / 9.0).abs() < 1e-12, "{}", v.auc);
    // FAR = FRR = 1/3 holds exactly at any threshold in [0.3, 0.5).
    assert!((v.eer - 1.0 / 3.0).abs() < 1e-12, "{}", v.eer);
    assert!(v.eer_threshold >= 0.3 - 1e-9 && v.eer_threshold <= 0.5, "{}", v.eer_threshold);
}

#[test]
fn ties_and_all_equal_scores() {
    // All equal: no threshold separates anything; AUC one half, EER one half.
    let labels = [true, false, true, false, false];
    let v = evaluate(&[0.7; 5], &labels, false).unwrap();
    assert_eq!(v.auc, 0.5);
    assert_eq!(v.eer, 0.5);
    assert_eq!(v.best_accuracy, 0.6, "calling all different is right 3 times of 5");
    assert!(v.best_threshold < 0.7);
    // A tie across classes counts one half in the AUC.
    let v = evaluate(&[0.1, 0.4, 0.4, 0.9], &[true, true, false, false], false).unwrap();
    assert!((v.auc - 0.875).abs() < 1e-12, "{}", v.auc);
}

#[test]
fn random_scores_match_brute_force() {
    let mut rng = rng(41);
    for n in [2usize, 3, 10, 101] {
        for _ in 0..20 {
            // Few distinct values, so ties are common.
            let scores: Vec<f32> = (0..n).map(|_| rng.random_range(0..8) as f32 / 4.0).collect();
            let mut labels: Vec<bool> = (0..n).map(|_| rng.random_bool(0.5)).collect();
            labels[0] = true;
            labels[n - 1] = false;
            let v = evaluate(&scores, &labels, false).unwrap();
            let (best, auc) = brute_force(&scores, &labels);
            assert!((v.best_accuracy - best).abs() < 1e-12, "best accuracy {} vs {best}", v.best_accuracy);
            assert!((v.auc - auc).abs() < 1e-12, "auc {} vs {auc}", v.auc);
            let at = accuracy_at(&scores, &labels, v.best_threshold, false).unwrap();
            assert!((at - best).abs() < 1e-12, "the reported threshold reaches the best accuracy");
            assert!((0.0..=1.0).contains(&v.eer));
        }
    }
}

#[test]
fn contrastive_loss_and_bad_input() {
    // same d=0.5 → 0.25; different d=0.2 (margin 1) → 0.64; different d=1.5 → 0.
    let loss = contrastive_loss(&[0.5, 0.2, 1.5], &[true, false, false], 1.0).unwrap();
    assert!((loss - (0.25 + 0.64) / 3.0).abs() < 1e-7, "{loss}");
    assert!(evaluate(&[0.1, 0.2], &[true, true], false).unwrap_err().to_string().contains("both same and different"));
    assert!(evaluate(&[], &[], false).is_err());
    assert!(evaluate(&[0.1, f32::NAN], &[true, false], false).unwrap_err().to_string().contains("pair 1"));
    assert!(evaluate(&[0.1], &[true, false], false).unwrap_err().to_string().contains("labels"));
}

#[test]
fn pairs_from_labels_is_balanced_complete_and_seeded() {
    let labels = ["a", "b", "a", "c", "b", "a", "c"];
    let pairs = pairs_from_labels(&labels, 7).unwrap();
    let positives: Vec<_> = pairs.iter().filter(|p| p.2).collect();
    // a: 3 items → 3 pairs, b: 1, c: 1.
    assert_eq!(positives.len(), 5);
    assert_eq!(pairs.len(), 10);
    for &(i, j, same) in &pairs {
        assert!(i < j);
        assert_eq!(labels[i] == labels[j], same);
    }
    let mut unique = pairs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), pairs.len(), "no pair twice");
    assert_eq!(pairs_from_labels(&labels, 7).unwrap(), pairs, "same seed, same pairs");
    assert_ne!(pairs_from_labels(&labels, 8).unwrap(), pairs);
    assert!(pairs_from_labels(&["x", "y"], 0).is_err(), "no same pairs");
    assert!(pairs_from_labels(&["x", "x"], 0).is_err(), "no different pairs");
    // Many classes: the sparse sampler.
    let many: Vec<usize> = (0..300).map(|i| i % 40).collect();
    let pairs = pairs_from_labels(&many, 1).unwrap();
    assert_eq!(pairs.iter().filter(|p| p.2).count() * 2, pairs.len());
}

#[test]
fn pair_and_label_csv_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("pairs.csv");
    std::fs::write(&csv, "left,right,label\na.png,b.png,1\nc.png,d.png,maybe\n").unwrap();
    let err = read_pairs_csv(&csv).unwrap_err().to_string();
    assert!(err.contains("line 3") && err.contains("maybe"), "{err}");
    std::fs::write(&csv, "a.png,b.png\n").unwrap();
    assert!(read_pairs_csv(&csv).unwrap_err().to_string().contains("expected 3"));
    std::fs::write(&csv, "left,right,label\n").unwrap();
    assert!(read_pairs_csv(&csv).unwrap_err().to_string().contains("no rows"));
    std::fs::write(&csv, "a.png,b.png,same\nsub/c.png,d.png,0\n").unwrap();
    let pairs = read_pairs_csv(&csv).unwrap();
    assert_eq!(pairs.labels, [true, false]);
    assert_eq!(pairs.left[1], dir.path().join("sub/c.png"), "paths are relative to the CSV");
    assert!(read_labels_csv(dir.path().join("missing.csv")).is_err());
    // Sentence pairs: exactly one TAB per line.
    let tsv = dir.path().join("pairs.tsv");
    std::fs::write(&tsv, "a\tb\n\nno tab here\n").unwrap();
    let err = siamese_wgpu::io::read_pairs_tsv(&tsv).unwrap_err().to_string();
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn learned_head_matches_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(42);
    for (pairs, dim) in [(1, 1), (5, 7), (33, 300)] {
        for squared in [false, true] {
            let head = LearnedHead { weights: random_vec(&mut rng, dim), bias: rng.random_range(-1.0..1.0), squared };
            let embedding = random_vec(&mut rng, 2 * pairs * dim);
            let op = PairDistance::learned(&gpu, &head).unwrap();
            let input = Tensor::upload(&gpu, &Array::new(vec![2 * pairs, dim], embedding.clone()).unwrap()).unwrap();
            let out = Tensor::zeros(&gpu, &[pairs]).unwrap();
            let d = op.prepare(&gpu, pairs, dim, input.buffer(), out.buffer()).unwrap();
            run_dispatches(&gpu, &[&d]).unwrap();
            let want: Vec<f32> = (0..pairs)
                .map(|i| head.probability(&embedding[i * dim..(i + 1) * dim], &embedding[(pairs + i) * dim..][..dim]))
                .collect();
            assert_close(&format!("learned head {pairs}x{dim}"), out.download(&gpu).unwrap().data(), &want, 1e-6, 1e-5);
            // A head for another embedding size is a typed error.
            assert!(op.prepare(&gpu, pairs, dim + 1, input.buffer(), out.buffer()).is_err());
        }
    }
}

#[test]
fn shipped_digit_model_keeps_its_heldout_accuracy() {
    let Some(gpu) = gpu() else { return };
    let dir = root().join("models/digits");
    let model = SiameseModel::load_on(gpu, &dir).unwrap();
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("siamese.json")).unwrap()).unwrap();
    let decision = ModelDecision::load(&dir).unwrap().unwrap();
    let pairs = read_pairs_csv(dir.join("heldout/pairs.csv")).unwrap();
    let left = read_samples(&pairs.left, Some(1)).unwrap();
    let right = read_samples(&pairs.right, Some(1)).unwrap();
    let distances = model.distances(&left, &right, Distance::Euclidean).unwrap();
    let keras = read_npy(dir.join("heldout/keras_euclidean.npy")).unwrap();
    assert_close("digit distances vs Keras", &distances, keras.data(), 1e-5, 1e-4);
    let accuracy = accuracy_at(&distances, &pairs.labels, decision.threshold.unwrap(), false).unwrap();
    assert_eq!(accuracy, recorded["heldout"]["accuracy"].as_f64().unwrap(), "held-out accuracy changed");
    let auc = evaluate(&distances, &pairs.labels, false).unwrap().auc;
    assert!((auc - recorded["heldout"]["auc"].as_f64().unwrap()).abs() < 1e-4, "AUC {auc}");
    // The learned head from head.safetensors, fused into the reduction.
    let probabilities = model.distances(&left, &right, Distance::Learned).unwrap();
    let keras_head = read_npy(dir.join("heldout/keras_head_prob.npy")).unwrap();
    assert_close("digit head vs Keras", &probabilities, keras_head.data(), 1e-5, 1e-4);
    let head_accuracy = accuracy_at(&probabilities, &pairs.labels, 0.5, true).unwrap();
    assert_eq!(head_accuracy, recorded["head"]["accuracy"].as_f64().unwrap());
}

#[test]
fn learned_distance_without_a_head_is_a_typed_error() {
    let Some(gpu) = gpu() else { return };
    let model = SiameseModel::load_on(gpu, root().join("models/cnn")).unwrap();
    let left = read_npy(root().join("models/cnn/pairs/left.npy")).unwrap();
    let err = model.distances(&left, &left, Distance::Learned).unwrap_err().to_string();
    assert!(err.contains("head"), "{err}");
    let head = LearnedHead { weights: vec![0.5; 3], bias: 0.0, squared: false };
    assert!(model.set_learned_head(&head).unwrap_err().to_string().contains("learned head"));
}

/// FNV-1a 64 of the pairs, to pin a seed's output without pasting thousands of pairs.
fn pairs_digest(pairs: &[(usize, usize, bool)]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for &(i, j, same) in pairs {
        for byte in (i as u64).to_le_bytes().into_iter().chain((j as u64).to_le_bytes()).chain([same as u8]) {
            hash = (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[test]
fn pairs_from_labels_under_the_cap_is_unchanged() {
    // Digests of what pairs_from_labels gave before the same pairs were capped: a dense
    // case (different pairs listed), a sparse one (different pairs drawn) and the
    // labelled digits.
    let dense: Vec<usize> = (0..30).map(|i| i % 2).collect();
    let sparse: Vec<usize> = (0..300).map(|i| i % 40).collect();
    let digits: Vec<String> = read_labels_csv(root().join("models/digits/heldout/labels.csv"))
        .unwrap()
        .into_iter()
        .map(|(_, label)| label)
        .collect();
    let got = [
        pairs_digest(&pairs_from_labels(&dense, 3).unwrap()),
        pairs_digest(&pairs_from_labels(&sparse, 1).unwrap()),
        pairs_digest(&pairs_from_labels(&digits, 5).unwrap()),
    ];
    assert_eq!(got, [0xebdc3afba276e341, 0x3e7ff146a0b6fa75, 0x743c0e45add4fc89], "{got:#x?}");
}

#[test]
fn pairs_from_labels_is_bounded_on_large_classes() {
    // 40,000 items in 2 classes have 399,980,000 same pairs: listing them took 6.4 GB.
    // Capped, the default draws 50,000 of them at random and as many different pairs.
    let labels: Vec<u8> = (0..40_000).map(|i| (i % 2) as u8).collect();
    let started = std::time::Instant::now();
    let pairs = pairs_from_labels(&labels, 0).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(pairs.len(), 2 * DEFAULT_MAX_SAME_PAIRS);
    assert_eq!(pairs.iter().filter(|p| p.2).count(), DEFAULT_MAX_SAME_PAIRS);
    let mut unique: Vec<(usize, usize)> = pairs.iter().map(|p| (p.0, p.1)).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), pairs.len(), "no pair twice");
    for &(i, j, same) in &pairs {
        assert!(i < j && j < labels.len());
        assert_eq!(labels[i] == labels[j], same);
    }
    // Not a timed assertion of speed, a guard against the quadratic walk (minutes).
    assert!(elapsed.as_secs() < 20, "took {elapsed:?}");

    // The counts and the cap, and the same seed gives the same draw.
    let drawn = pairs_from_labels_with(&labels, 0, 1000).unwrap();
    assert_eq!((drawn.same_available, drawn.different_available), (399_980_000, 400_000_000));
    assert_eq!(drawn.pairs.len(), 2000);
    assert!(drawn.capped());
    assert_eq!(pairs_from_labels_with(&labels, 0, 1000).unwrap(), drawn);
    assert_ne!(pairs_from_labels_with(&labels, 1, 1000).unwrap().pairs, drawn.pairs);
    // Under the cap nothing is capped, and the pairs are pairs_from_labels'.
    let small = ["a", "b", "a", "c", "b", "a", "c"];
    let all = pairs_from_labels_with(&small, 7, 5).unwrap();
    assert!(!all.capped());
    assert_eq!(all.pairs, pairs_from_labels(&small, 7).unwrap());
    assert_eq!((all.same_available, all.different_available), (5, 16));
    // Just over the cap (every same pair but one) and one class far larger than the
    // other (different pairs are rare among all pairs): still distinct, balanced pairs.
    for (labels, cap) in [(small.to_vec(), 4), ([vec!["big"; 3000], vec!["small"; 3]].concat(), 2000)] {
        let drawn = pairs_from_labels_with(&labels, 3, cap).unwrap();
        assert!(drawn.capped());
        assert_eq!(drawn.pairs.iter().filter(|p| p.2).count(), cap);
        assert_eq!(drawn.pairs.len(), 2 * cap);
        let mut unique: Vec<(usize, usize)> = drawn.pairs.iter().map(|p| (p.0, p.1)).collect();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), drawn.pairs.len(), "no pair twice");
        assert!(drawn.pairs.iter().all(|&(i, j, same)| i < j && (labels[i] == labels[j]) == same));
    }
    assert!(pairs_from_labels_with(&small, 7, 0).is_err(), "a cap of 0 leaves no same pairs");
}

#[test]
fn labels_csv_refuses_empty_labels_and_repeated_paths() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("labels.csv");
    std::fs::write(&csv, "path,label\na.png,cat\nb.png,\nc.png,dog\n").unwrap();
    let err = read_labels_csv(&csv).unwrap_err().to_string();
    assert!(err.contains("line 3") && err.contains("empty label"), "{err}");
    std::fs::write(&csv, "a.png,cat\nb.png,dog\nc.png,cat\n./b.png,dog\n").unwrap();
    let err = read_labels_csv(&csv).unwrap_err().to_string();
    assert!(err.contains("line 2") && err.contains("line 4") && err.contains("b.png"), "{err}");
    std::fs::write(&csv, "a.png,cat\nb.png,dog\n").unwrap();
    assert_eq!(read_labels_csv(&csv).unwrap().len(), 2);
}

#[test]
fn a_leading_hash_is_a_file_name_not_a_comment() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.csv");
    std::fs::write(&pairs, "left,right,label\n#1.png,a.png,1\nb.png,#2.png,0\nc.png,d.png,1\n").unwrap();
    let read = read_pairs_csv(&pairs).unwrap();
    assert_eq!(read.labels, [true, false, true]);
    assert_eq!(read.left[0], dir.path().join("#1.png"));
    let labels = dir.path().join("labels.csv");
    std::fs::write(&labels, "#1.png,cat\nb.png,cat\n").unwrap();
    let read = read_labels_csv(&labels).unwrap();
    assert_eq!(read, [(dir.path().join("#1.png"), "cat".to_string()), (dir.path().join("b.png"), "cat".into())]);
}
