#!/usr/bin/env python3
"""Train the seed CNN twin as a Siamese network on scikit-learn's handwritten digits and
write a ready-to-run model directory with held-out pairs and Keras goldens.

Data: ``sklearn.datasets.load_digits`` (1,797 8x8 images, integer values 0..16, bundled
with scikit-learn, no download). Each image is scaled to [0, 1], upsampled to 28x28
(bilinear, ``jax.image.resize``) and quantised to 8 bits (round(x*255)/255), so every
split sees exactly the pixel values that the held-out PNG files hold.

Split: stratified by digit, by image, 70 / 15 / 15 into train / validation / held-out
test. The digits set has no writer ids, so images of one writer may fall into different
splits (the held-out score is therefore "unseen images", not "unseen writers").
Held-out images are never used for training, for the threshold or for the head.

Model: the encoder has the architecture of models/cnn (Input 28x28x1 -> Conv2D(32,3,relu)
-> MaxPool(2) -> Conv2D(64,3,relu) -> MaxPool(2) -> Flatten -> Dense(128,relu)), trained
as a Siamese twin with the contrastive loss

    loss = y * d^2 + (1 - y) * max(0, margin - d)^2,   margin 1.0, d = euclidean,

y = 1 for a pair of the SAME digit. Every epoch draws fresh balanced pairs from the
training images (each training image once with a same-digit partner, once with a
different-digit partner). Adam. The decision threshold (same when d <= threshold) is the
one that maximises accuracy on fixed balanced VALIDATION pairs.

Learned metric head (Koch et al. 2015): with the encoder frozen, a Dense(1, sigmoid) on
|f(a) - f(b)| (elementwise) is fitted with binary cross-entropy on training pairs; same
digit when p >= 0.5.

Writes (into --out, default models/digits/):

  model.json, model.safetensors   the encoder (tools/export_keras.export_encoder)
  head.safetensors                head/kernel [D, 1], head/bias [1] (float32)
  siamese.json                    distance, threshold, margin, held-out/validation scores
  README.md                       what the model is and how it was made
  heldout/images/NNNN_dK.png      held-out images, 8-bit grayscale 28x28; NNNN is the
                                  image's index in load_digits(), K its digit
  heldout/labels.csv              path,label (one row per held-out image, path relative)
  heldout/pairs.csv               left,right,label (label 1 = same digit, 0 = different)
  heldout/keras_euclidean.npy     float32 [n]: Keras distance per pair (pairs.csv order)
  heldout/keras_head_prob.npy     float32 [n]: the head's probability per pair
  heldout/keras_embeddings.npy    float32 [M, D]: embeddings, labels.csv order

Every golden is computed from the images as re-read from the PNG files (pixel / 255 as
float32), and the exported directory is reloaded (model.json + safetensors, as
tools/make_goldens.py does) and checked to reproduce the embeddings and distances.

Usage:
  pip install -r tools/requirements.txt      # keras, jax, scikit-learn, pillow (outside the repo)
  KERAS_BACKEND=jax python tools/train_digits.py [--seed 0] [--epochs 12] [--out models/digits]

The run is deterministic for a given --seed (default 0) on one machine / library
versions (CPU JAX); it takes one to two minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
sys.path.insert(0, str(TOOLS))

import numpy as np  # noqa: E402
import jax  # noqa: E402
import keras  # noqa: E402
from keras import layers, ops  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from export_keras import MODEL_JSON, MODEL_WEIGHTS, export_encoder  # noqa: E402
from make_goldens import distances, load_model_dir  # noqa: E402

DEFAULT_SEED = 0
MARGIN = 1.0
SIZE = 28
MAX_DIR_BYTES = 1_300_000
MAX_WEIGHTS_BYTES = 1_000_000


# --------------------------------------------------------------------------- data


def quantise(x: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> the float32 values an 8-bit PNG holds (round(x*255)/255)."""
    q = np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    return q.astype(np.float32) / np.float32(255.0)


def load_images():
    """[N, 28, 28, 1] float32 quantised images, digit labels [N], original indices [N]."""
    digits = load_digits()
    x8 = digits.images.astype(np.float32) / 16.0  # [N, 8, 8] in [0, 1]
    n = x8.shape[0]
    up = jax.image.resize(x8[..., None], (n, SIZE, SIZE, 1), method="bilinear")
    x = quantise(np.asarray(up, dtype=np.float32))
    return x, digits.target.astype(np.int64), np.arange(n)


def split(labels, seed):
    """Stratified 70/15/15 split of image indices: train, validation, held-out."""
    idx = np.arange(len(labels))
    rest, test = train_test_split(idx, test_size=0.15, stratify=labels, random_state=seed)
    train, val = train_test_split(
        rest, test_size=0.15 / 0.85, stratify=labels[rest], random_state=seed + 1
    )
    return np.sort(train), np.sort(val), np.sort(test)


def epoch_pairs(labels, rng):
    """Balanced pairs over positions 0..len(labels)-1: each image once with a random
    same-digit partner (another image) and once with a random different-digit partner."""
    n = len(labels)
    by_digit = {d: np.flatnonzero(labels == d) for d in np.unique(labels)}
    left, right, y = [], [], []
    for i in rng.permutation(n):
        same = by_digit[labels[i]]
        j = i
        while j == i:
            j = same[rng.integers(len(same))]
        left.append(i), right.append(j), y.append(1.0)
        k = i
        while labels[k] == labels[i]:
            k = rng.integers(n)
        left.append(i), right.append(k), y.append(0.0)
    order = rng.permutation(len(y))
    return (np.asarray(left)[order], np.asarray(right)[order], np.asarray(y, np.float32)[order])


def fixed_pairs(labels, n_pairs, rng):
    """n_pairs balanced, distinct unordered pairs (no image with itself): n_pairs//2 of the
    same digit (digit drawn uniformly), the rest of different digits; shuffled."""
    by_digit = {d: np.flatnonzero(labels == d) for d in np.unique(labels)}
    digits = sorted(by_digit)
    n_same = n_pairs // 2
    seen, out = set(), []
    while len(out) < n_same:
        members = by_digit[digits[rng.integers(len(digits))]]
        i, j = rng.choice(members, size=2, replace=False)
        key = (min(i, j), max(i, j))
        if key not in seen:
            seen.add(key), out.append((int(i), int(j), 1))
    while len(out) < n_pairs:
        i, j = rng.choice(len(labels), size=2, replace=False)
        key = (min(i, j), max(i, j))
        if labels[i] != labels[j] and key not in seen:
            seen.add(key), out.append((int(i), int(j), 0))
    out = [out[k] for k in rng.permutation(len(out))]
    a = np.array(out, dtype=np.int64)
    return a[:, 0], a[:, 1], a[:, 2].astype(np.float32)


# --------------------------------------------------------------------------- model


def build_encoder():
    """The seed CNN twin of models/cnn (same layer classes, sizes and names)."""
    return keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 1)),
            layers.Conv2D(32, 3, activation="relu", name="conv2d"),
            layers.MaxPooling2D(2, name="max_pooling2d"),
            layers.Conv2D(64, 3, activation="relu", name="conv2d_1"),
            layers.MaxPooling2D(2, name="max_pooling2d_1"),
            layers.Flatten(name="flatten"),
            layers.Dense(128, activation="relu", name="dense"),
        ],
        name="encoder",
    )


class EuclideanDistance(layers.Layer):
    """Training-time distance; the tiny epsilon keeps the gradient of sqrt finite at 0."""

    def call(self, a, b):
        return ops.sqrt(ops.sum(ops.square(a - b), axis=-1) + 1e-12)


def contrastive_loss(y_true, d):
    y = ops.cast(ops.reshape(y_true, ops.shape(d)), d.dtype)
    return y * ops.square(d) + (1.0 - y) * ops.square(ops.maximum(MARGIN - d, 0.0))


def build_siamese(encoder):
    a = keras.Input((SIZE, SIZE, 1), name="left")
    b = keras.Input((SIZE, SIZE, 1), name="right")
    d = EuclideanDistance(name="distance")(encoder(a), encoder(b))
    return keras.Model([a, b], d, name="siamese")


def embed_all(encoder, x, batch=512) -> np.ndarray:
    """Embeddings of x, float32, in one call per chunk (training=False)."""
    parts = [np.asarray(encoder(x[s : s + batch], training=False), np.float32) for s in range(0, len(x), batch)]
    return np.concatenate(parts, axis=0)


def pair_distance(emb, left, right) -> np.ndarray:
    return distances(emb[left], emb[right])["euclidean"]


# --------------------------------------------------------------------------- metrics


def best_threshold(d, y):
    """Threshold t (same when d <= t) maximising accuracy on (d, y); midpoints between
    consecutive distinct sorted distances. Returns (t as float32, accuracy)."""
    order = np.argsort(d, kind="stable")
    ds, ys = d[order].astype(np.float64), y[order]
    n, n_pos = len(ds), ys.sum()
    n_neg = n - n_pos
    cum_pos = np.concatenate([[0.0], np.cumsum(ys)])  # same pairs among the k smallest
    cum_neg = np.arange(n + 1) - cum_pos
    acc = (cum_pos + (n_neg - cum_neg)) / n  # k smallest predicted same
    valid = np.ones(n + 1, bool)
    valid[1:n] = ds[1:] > ds[:-1]  # a cut only between distinct distances
    acc = np.where(valid, acc, -1.0)
    k = int(np.argmax(acc))
    if k == 0:
        t = ds[0] / 2.0
    elif k == n:
        t = ds[-1] + 1.0
    else:
        t = (ds[k - 1] + ds[k]) / 2.0
    t32 = np.float32(t)
    return t32, float(np.mean((d <= t32) == (y == 1)))


def accuracy_at(d, y, t) -> float:
    return float(np.mean((d <= np.float32(t)) == (y == 1)))


# --------------------------------------------------------------------------- files


def write_png(path: Path, img: np.ndarray):
    q = np.round(np.clip(img[:, :, 0], 0.0, 1.0) * 255.0).astype(np.uint8)
    Image.fromarray(q, mode="L").save(path, optimize=True)


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "L" and im.size == (SIZE, SIZE), (path, im.mode, im.size)
        a = np.asarray(im, dtype=np.uint8)
    return (a.astype(np.float32) / np.float32(255.0))[:, :, None]


def dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed for everything (default {DEFAULT_SEED})")
    ap.add_argument("--epochs", type=int, default=12, help="contrastive training epochs (default 12)")
    ap.add_argument("--head-epochs", type=int, default=40, help="head training epochs (default 40)")
    ap.add_argument("--batch", type=int, default=64, help="pairs per batch (default 64)")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    ap.add_argument("--val-pairs", type=int, default=2000, help="balanced validation pairs (default 2000)")
    ap.add_argument("--heldout-pairs", type=int, default=200, help="balanced held-out pairs (default 200)")
    ap.add_argument("--out", type=Path, default=REPO / "models" / "digits", help="output model directory")
    args = ap.parse_args()
    if keras.backend.backend() != "jax":
        sys.exit(f"error: run with KERAS_BACKEND=jax (got {keras.backend.backend()})")
    t_start = time.time()
    seed = args.seed
    print(f"keras {keras.__version__}, jax {jax.__version__}, numpy {np.__version__}, seed {seed}")

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    x, labels, orig_idx = load_images()
    tr, va, te = split(labels, seed)
    assert not (set(tr) & set(va)) and not (set(tr) & set(te)) and not (set(va) & set(te))
    print(f"images {len(x)}: train {len(tr)}, validation {len(va)}, held-out {len(te)}")

    # ---- contrastive training of the encoder
    encoder = build_encoder()
    siamese = build_siamese(encoder)
    siamese.compile(optimizer=keras.optimizers.Adam(args.lr), loss=contrastive_loss)
    x_tr, y_tr = x[tr], labels[tr]
    x_va, y_va = x[va], labels[va]
    v_l, v_r, v_y = fixed_pairs(y_va, args.val_pairs, np.random.default_rng([seed, 2]))
    pair_rng = np.random.default_rng([seed, 1])
    for epoch in range(1, args.epochs + 1):
        l, r, y = epoch_pairs(y_tr, pair_rng)
        hist = siamese.fit([x_tr[l], x_tr[r]], y, batch_size=args.batch, epochs=1, shuffle=False, verbose=0)
        d_va = pair_distance(embed_all(encoder, x_va), v_l, v_r)
        _, acc = best_threshold(d_va, v_y)
        print(
            f"epoch {epoch:2d}: {len(y)} pairs, loss {hist.history['loss'][-1]:.4f}, "
            f"validation accuracy (best threshold) {acc:.4f}  [{time.time() - t_start:.0f}s]"
        )

    # ---- threshold on validation pairs
    emb_va = embed_all(encoder, x_va)
    d_va = pair_distance(emb_va, v_l, v_r)
    threshold, val_acc = best_threshold(d_va, v_y)
    val_auc = float(roc_auc_score(v_y, -d_va))
    print(f"threshold {float(threshold):.6f}: validation accuracy {val_acc:.4f}, AUC {val_auc:.4f}")

    # ---- learned metric head on |f(a) - f(b)|, encoder frozen
    encoder.trainable = False
    emb_tr = embed_all(encoder, x_tr)
    dim = emb_tr.shape[1]
    head_rng = np.random.default_rng([seed, 4])
    hl, hr, hy = [], [], []
    for _ in range(4):  # four resampled epochs of balanced training pairs
        l, r, y = epoch_pairs(y_tr, head_rng)
        hl.append(l), hr.append(r), hy.append(y)
    hl, hr, hy = np.concatenate(hl), np.concatenate(hr), np.concatenate(hy)
    feats = np.abs(emb_tr[hl] - emb_tr[hr])
    head = keras.Sequential([keras.Input((dim,)), layers.Dense(1, activation="sigmoid", name="head")], name="head_model")
    head.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", metrics=["accuracy"])
    head.fit(feats, hy, batch_size=256, epochs=args.head_epochs, shuffle=False, verbose=0)

    def head_prob(emb, left, right):
        return np.asarray(head(np.abs(emb[left] - emb[right]), training=False), np.float32)[:, 0]

    p_va = head_prob(emb_va, v_l, v_r)
    head_val_acc = float(np.mean((p_va >= 0.5) == (v_y == 1)))
    print(f"head: {len(hy)} training pairs, validation accuracy {head_val_acc:.4f}")

    # ---- write held-out images, labels.csv, pairs.csv
    out: Path = args.out
    held = out / "heldout"
    img_dir = held / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    for stale in img_dir.glob("*.png"):  # files of an earlier run (another seed)
        stale.unlink()
    names = [f"images/{orig_idx[i]:04d}_d{labels[i]}.png" for i in te]
    for name, i in zip(names, te):
        write_png(held / name, x[i])
    with open(held / "labels.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["path", "label"])
        for name, i in zip(names, te):
            w.writerow([name, int(labels[i])])
    y_te = labels[te]
    h_l, h_r, h_y = fixed_pairs(y_te, args.heldout_pairs, np.random.default_rng([seed, 3]))
    with open(held / "pairs.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["left", "right", "label"])
        for a, b, y in zip(h_l, h_r, h_y):
            w.writerow([names[a], names[b], int(y)])

    # ---- re-read everything from disk: goldens come from the PNG files
    with open(held / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    pos = {row["path"]: k for k, row in enumerate(rows)}
    x_te = np.stack([read_png(held / row["path"]) for row in rows]).astype(np.float32)
    assert np.array_equal(x_te, x[te]), "PNG round trip changed pixel values"
    y_te = np.array([int(row["label"]) for row in rows])
    with open(held / "pairs.csv", newline="") as f:
        prow = list(csv.DictReader(f))
    h_l = np.array([pos[p["left"]] for p in prow])
    h_r = np.array([pos[p["right"]] for p in prow])
    h_y = np.array([float(p["label"]) for p in prow], np.float32)
    assert np.array_equal(h_y == 1, y_te[h_l] == y_te[h_r])

    emb_te = np.asarray(encoder(x_te, training=False), np.float32)  # one batch, labels.csv order
    d_te = pair_distance(emb_te, h_l, h_r)
    p_te = head_prob(emb_te, h_l, h_r)
    te_acc = accuracy_at(d_te, h_y, threshold)
    te_auc = float(roc_auc_score(h_y, -d_te))
    head_te_acc = float(np.mean((p_te >= 0.5) == (h_y == 1)))
    head_te_auc = float(roc_auc_score(h_y, p_te))
    d_margin = float(np.min(np.abs(d_te.astype(np.float64) - float(threshold))))
    p_margin = float(np.min(np.abs(p_te.astype(np.float64) - 0.5)))
    print(
        f"held-out: {len(h_y)} pairs ({int(h_y.sum())} same), accuracy {te_acc:.4f}, AUC {te_auc:.4f}; "
        f"head accuracy {head_te_acc:.4f}, AUC {head_te_auc:.4f}"
    )
    print(f"closest held-out distance to the threshold: {d_margin:.4g}; closest head p to 0.5: {p_margin:.4g}")

    np.save(held / "keras_euclidean.npy", d_te)
    np.save(held / "keras_head_prob.npy", p_te)
    np.save(held / "keras_embeddings.npy", emb_te)

    # ---- export encoder + head
    shapes = export_encoder(encoder, out)
    kernel, bias = (np.asarray(v.numpy(), np.float32) for v in head.get_layer("head").weights)
    assert kernel.shape == (dim, 1) and bias.shape == (1,)
    save_file({"head/kernel": np.ascontiguousarray(kernel), "head/bias": np.ascontiguousarray(bias)}, str(out / "head.safetensors"))

    # ---- self-check: reload the exported directory, recompute from the PNG-read images
    reloaded = load_model_dir(out)
    emb2 = np.asarray(reloaded(x_te, training=False), np.float32)
    d2 = pair_distance(emb2, h_l, h_r)
    if not np.array_equal(emb2, emb_te):
        raise AssertionError(f"reloaded embeddings differ (max abs err {np.max(np.abs(emb2 - emb_te)):g})")
    assert np.array_equal(d2, np.load(held / "keras_euclidean.npy")), "reloaded distances differ"
    ht = load_file(str(out / "head.safetensors"))
    assert sorted(ht) == ["head/bias", "head/kernel"] and ht["head/kernel"].dtype == np.float32
    z = np.abs(emb2[h_l] - emb2[h_r]).astype(np.float64) @ ht["head/kernel"][:, 0].astype(np.float64) + float(ht["head/bias"][0])
    np.testing.assert_allclose(1.0 / (1.0 + np.exp(-z)), np.load(held / "keras_head_prob.npy"), rtol=1e-5, atol=1e-6)
    assert accuracy_at(d2, h_y, threshold) == te_acc
    print("self-check OK: reloaded model.json + safetensors reproduce embeddings and distances bitwise; head reproduced")

    cmd = "tools/train_digits.py --seed %d" % seed
    defaults = {"epochs": 12, "head_epochs": 40, "batch": 64, "lr": 1e-3, "val_pairs": 2000, "heldout_pairs": 200}
    for k, dflt in defaults.items():
        if getattr(args, k) != dflt:
            cmd += f" --{k.replace('_', '-')} {getattr(args, k)}"
    meta = {
        "distance": "euclidean",
        "threshold": float(threshold),
        "decision": "same digit when distance <= threshold",
        "margin": MARGIN,
        "heldout": {
            "pairs": int(len(h_y)),
            "same_pairs": int(h_y.sum()),
            "images": int(len(te)),
            "accuracy": te_acc,
            "auc": round(te_auc, 6),
            "min_abs_distance_minus_threshold": d_margin,
        },
        "validation_accuracy": val_acc,
        "validation_auc": round(val_auc, 6),
        "validation_pairs": int(len(v_y)),
        "head": {
            "file": "head.safetensors",
            "tensors": {"head/kernel": [dim, 1], "head/bias": [1]},
            "input": "abs(f(a) - f(b)), elementwise",
            "activation": "sigmoid",
            "decision": "same digit when p >= 0.5",
            "accuracy": head_te_acc,
            "auc": round(head_te_auc, 6),
            "validation_accuracy": head_val_acc,
            "training_pairs": int(len(hy)),
            "min_abs_p_minus_half": p_margin,
        },
        "embedding_dim": int(dim),
        "input_shape": [SIZE, SIZE, 1],
        "dataset": {
            "name": "sklearn.datasets.load_digits",
            "images": int(len(x)),
            "preprocessing": "x/16, bilinear resize 8x8 -> 28x28 (jax.image.resize), round(x*255)/255",
            "split": "stratified by digit, by image (no writer ids): 70/15/15",
            "train": int(len(tr)),
            "validation": int(len(va)),
            "heldout": int(len(te)),
        },
        "training": {
            "loss": "contrastive: y*d^2 + (1-y)*max(0, margin-d)^2, y=1 same digit",
            "optimizer": f"Adam(lr={args.lr})",
            "epochs": args.epochs,
            "batch_pairs": args.batch,
            "pairs_per_epoch": 2 * len(tr),
            "seed": seed,
        },
        "trained_by": cmd,
        "versions": {"keras": keras.__version__, "jax": jax.__version__, "numpy": np.__version__},
    }
    (out / "siamese.json").write_text(json.dumps(meta, indent=2) + "\n")
    write_readme(out, meta, shapes)

    sizes = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file() and p.parent != img_dir}
    png_bytes = sum(p.stat().st_size for p in img_dir.glob("*.png"))
    for k, s in sizes.items():
        print(f"   {k:32s} {s:9d} bytes")
    print(f"   {'heldout/images/*.png':32s} {png_bytes:9d} bytes ({len(te)} files)")
    total = dir_bytes(out)
    print(f"   total {total} bytes; done in {time.time() - t_start:.0f}s")
    assert (out / MODEL_WEIGHTS).stat().st_size < MAX_WEIGHTS_BYTES, "encoder weights over 1 MB"
    assert total < MAX_DIR_BYTES, f"{out} is {total} bytes (limit {MAX_DIR_BYTES})"


def write_readme(out: Path, m: dict, shapes: dict):
    h, ds, hd = m["heldout"], m["dataset"], m["head"]
    tensors = "\n".join(f"  - `{k}` {list(s)}" for k, s in shapes.items())
    text = f"""# Digits Siamese CNN (trained)

The seed CNN twin of `models/cnn` — `Input(28,28,1) → Conv2D(32,3,relu) → MaxPool(2) →
Conv2D(64,3,relu) → MaxPool(2) → Flatten → Dense({m["embedding_dim"]},relu)` — trained as a Siamese
network on scikit-learn's handwritten digits (`load_digits`: {ds["images"]} 8×8 images, upsampled
bilinearly to 28×28 and quantised to 8 bits). Two images show the same digit when the Euclidean
distance of their embeddings is at most **{m["threshold"]:.6g}** (`siamese.json` holds the exact value).

Training: contrastive loss (margin {m["margin"]}, y = 1 for the same digit), balanced pairs resampled
every epoch from the training images, Adam, {m["training"]["epochs"]} epochs. The threshold maximises
accuracy on {m["validation_pairs"]} balanced validation pairs. Split by image, stratified by digit,
70/15/15: {ds["train"]} train / {ds["validation"]} validation / {ds["heldout"]} held-out images
(the digits set has no writer ids, so a writer may appear in several splits). Held-out images were
used for nothing but the scores below.

| | accuracy | AUC |
|---|---|---|
| validation, distance ≤ threshold | {m["validation_accuracy"]:.4f} | {m["validation_auc"]:.4f} |
| held-out ({h["pairs"]} pairs, {h["same_pairs"]} same), distance ≤ threshold | {h["accuracy"]:.4f} | {h["auc"]:.4f} |
| held-out, learned head p ≥ 0.5 | {hd["accuracy"]:.4f} | {hd["auc"]:.4f} |

The learned head (Koch et al. 2015) is `sigmoid(|f(a) − f(b)| · kernel + bias)`, fitted with binary
cross-entropy on training pairs with the encoder frozen.

Regenerate (one to two minutes on two CPU cores; deterministic for a seed):

```
KERAS_BACKEND=jax python {m["trained_by"]}
```

## Files

- `model.json`, `model.safetensors` — the encoder in the siamese-wgpu format:
{tensors}
- `head.safetensors` — `head/kernel` [{m["embedding_dim"]}, 1], `head/bias` [1] (float32)
- `siamese.json` — distance, threshold, margin, scores, data and training facts
- `heldout/images/NNNN_dK.png` — the {ds["heldout"]} held-out images, 8-bit grayscale 28×28
  (NNNN: index in `load_digits()`, K: the digit); read them as pixel / 255
- `heldout/labels.csv` — `path,label` per held-out image (paths relative to the csv)
- `heldout/pairs.csv` — `left,right,label`, {h["pairs"]} pairs, label 1 = same digit
- `heldout/keras_euclidean.npy` — float32 [{h["pairs"]}], Keras distance per pair (pairs.csv order)
- `heldout/keras_head_prob.npy` — float32 [{h["pairs"]}], the head's probability per pair
- `heldout/keras_embeddings.npy` — float32 [{ds["heldout"]}, {m["embedding_dim"]}], embeddings in labels.csv order

All goldens were computed by Keras ({m["versions"]["keras"]}, JAX backend) from the PNG files as
re-read from disk. The closest held-out distance lies {h["min_abs_distance_minus_threshold"]:.3g} from
the threshold and the closest head probability {hd["min_abs_p_minus_half"]:.3g} from 0.5.
"""
    (out / "README.md").write_text(text)


if __name__ == "__main__":
    main()
