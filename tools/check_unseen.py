#!/usr/bin/env python3
"""End-to-end check on a model the tests have never seen: build a Siamese network in Keras
with fresh random weights (a new seed), save the WHOLE Siamese model as .keras and as a
legacy .h5 (two inputs, the shared encoder, a Lambda Euclidean head), export its encoder
with tools/export_keras.py, run `siamese pairs` on fresh inputs with each of the three
(model directory, .keras, .h5 read directly), and compare with the distances Keras's own
model computes. Prints the worst error and exits non-zero when any
pair is outside 1e-4 + 1e-3·|ref|.

  --kind cnn   the seed CNN twin on 28×28×1 images
  --kind lstm  Masking → LSTM(64) over 100-d features, ragged batches (--left-lengths /
               --right-lengths), left and right with different numbers of steps
  --kind gru   Masking → GRU(32) → Dense(8, tanh) over 12-d features, ragged likewise
  --kind mha   the seed transformer twin: MultiHeadAttention(4 heads, key_dim 64) on (10, 64)
               inputs, Euclidean distance over the whole (10, 64) output
  --kind contrastive  the keras.io "Siamese network with a contrastive loss" embedding
               network: BatchNormalization on the 28×28×1 input, Conv2D(4, 5, tanh) →
               AveragePooling2D → Conv2D(16, 5, tanh) → AveragePooling2D → Flatten →
               BatchNormalization → Dense(10, tanh)
  --kind resnet  a ResNet basic block as keras.applications writes one (Conv2D without bias
               → BatchNormalization → ReLU, twice; a 1×1 Conv2D + BatchNormalization
               shortcut; Add → ReLU) on 24×24×3, GlobalAveragePooling2D → Dense(8)
  --kind tokens  int32 token ids (16 per sample, vocabulary 100) → Embedding(100, 32) →
               MultiHeadAttention(4, 8) + Add → LayerNormalization → GlobalAveragePooling1D
               → Dense(16, gelu)

  --head distance  (default) a Lambda Euclidean head, replaced by --distance; also checked
               through the exported model directory
  --head contrastive  the keras.io contrastive tutorial's head: Lambda Euclidean distance →
               BatchNormalization (random statistics) → Dense(1, sigmoid)
  --head koch  Koch et al.: Lambda |a − b| → Dense(1, sigmoid), run with --lambda abs-diff
  --head dot   Dot(axes=1, normalize=True): cosine similarity
  --head mlp   Concatenate([Subtract, Multiply]) → Dense(16, relu) → Dense(1, sigmoid)
  (heads other than distance need a flat embedding: --kind cnn, contrastive, resnet, tokens)

  KERAS_BACKEND=jax python tools/check_unseen.py [--kind cnn|lstm|gru|mha|tokens] [--seed 1234] [--pairs 32]
      [--head distance|contrastive|koch|dot|mlp] [--siamese target/release/siamese]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
sys.path.insert(0, str(TOOLS))

import numpy as np  # noqa: E402
import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

from make_goldens import build_cnn, randomize_biases  # noqa: E402
from make_keras_files import randomize_batch_norm  # noqa: E402


def build_encoder(kind: str):
    if kind == "cnn":
        return build_cnn(), (28, 28, 1)
    if kind == "mha":
        x = keras.Input((10, 64))
        return keras.Model(x, layers.MultiHeadAttention(num_heads=4, key_dim=64)(x, x)), (10, 64)
    if kind == "tokens":
        ids = keras.Input((16,), dtype="int32")
        e = layers.Embedding(100, 32)(ids)
        h = layers.LayerNormalization()(layers.Add()([e, layers.MultiHeadAttention(num_heads=4, key_dim=8)(e, e)]))
        return keras.Model(ids, layers.Dense(16, activation="gelu")(layers.GlobalAveragePooling1D()(h))), (16,)
    if kind == "contrastive":
        x = keras.Input((28, 28, 1))
        h = layers.BatchNormalization()(x)
        h = layers.AveragePooling2D((2, 2))(layers.Conv2D(4, (5, 5), activation="tanh")(h))
        h = layers.AveragePooling2D((2, 2))(layers.Conv2D(16, (5, 5), activation="tanh")(h))
        h = layers.BatchNormalization()(layers.Flatten()(h))
        return keras.Model(x, layers.Dense(10, activation="tanh")(h)), (28, 28, 1)
    if kind == "resnet":
        x = keras.Input((24, 24, 3))
        stem = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(16, 3, padding="same", use_bias=False)(x)))
        h = layers.Conv2D(32, 3, padding="same", use_bias=False)(stem)
        h = layers.ReLU()(layers.BatchNormalization(epsilon=1.001e-5)(h))
        h = layers.BatchNormalization(epsilon=1.001e-5)(layers.Conv2D(32, 3, padding="same", use_bias=False)(h))
        shortcut = layers.BatchNormalization(epsilon=1.001e-5)(layers.Conv2D(32, 1, use_bias=False)(stem))
        h = layers.ReLU()(layers.Add()([shortcut, h]))
        return keras.Model(x, layers.Dense(8)(layers.GlobalAveragePooling2D()(h))), (24, 24, 3)
    if kind == "lstm":
        features = 100
        encoder = keras.Sequential([keras.Input((None, features)), layers.Masking(0.0), layers.LSTM(64)])
    else:
        features = 12
        encoder = keras.Sequential(
            [keras.Input((None, features)), layers.Masking(0.0), layers.GRU(32), layers.Dense(8, activation="tanh")]
        )
    return encoder, (None, features)


def build_head(kind: str, dim: int, seed: int):
    """The twin head `kind` over two flat embeddings of `dim` values: (a function of the two
    embeddings, the extra `siamese pairs` flags it needs)."""
    euclidean = layers.Lambda(
        lambda t: ops.sqrt(ops.sum(ops.square(t[0] - t[1]), axis=tuple(range(1, len(t[0].shape)))))[:, None],
        output_shape=(1,),
        name="euclidean",
    )
    if kind == "distance":
        return euclidean, []
    if kind == "contrastive":
        normal = layers.BatchNormalization(name="head_bn")
        dense = layers.Dense(1, activation="sigmoid", name="head_dense")

        def contrastive(pair):
            out = dense(normal(euclidean(pair)))
            rng = np.random.default_rng(seed)
            normal.set_weights([rng.uniform(0.5, 1.5, 1), rng.normal(0, 0.3, 1), rng.uniform(0.5, 2, 1), rng.uniform(0.3, 2, 1)])
            return out

        return contrastive, []
    if kind == "koch":
        l1 = layers.Lambda(lambda t: ops.abs(t[0] - t[1]), output_shape=(dim,), name="l1_distance")
        dense = layers.Dense(1, activation="sigmoid", name="score")
        return (lambda pair: dense(l1(pair))), ["--lambda", "abs-diff"]
    if kind == "dot":
        return layers.Dot(axes=1, normalize=True, name="cosine"), []
    if kind == "mlp":
        hidden = layers.Dense(16, activation="relu", name="hidden")
        score = layers.Dense(1, activation="sigmoid", name="score")

        def mlp(pair):
            both = layers.Concatenate(name="both")([layers.Subtract(name="diff")(pair), layers.Multiply(name="prod")(pair)])
            return score(hidden(both))

        return mlp, []
    raise SystemExit(f"unknown head {kind}")


def ragged(rng, n: int, steps: int, features: int):
    """Zero-padded sequences [n, steps, features] with random lengths in 1..steps."""
    lengths = rng.integers(1, steps + 1, size=n).astype(np.int32)
    lengths[0] = steps
    x = rng.normal(size=(n, steps, features)).astype(np.float32)
    for i, length in enumerate(lengths):
        x[i, length:] = 0.0
    return x, lengths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["cnn", "contrastive", "resnet", "lstm", "gru", "mha", "tokens"], default="cnn")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--head", choices=["distance", "contrastive", "koch", "dot", "mlp"], default="distance")
    parser.add_argument("--siamese", default=str(REPO / "target/release/siamese"))
    args = parser.parse_args()

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    encoder, shape = build_encoder(args.kind)
    encoder.name = "encoder"
    randomize_biases(encoder, rng)
    if args.kind in ("contrastive", "resnet"):
        randomize_batch_norm(encoder, args.seed)
    dtype = "int32" if args.kind == "tokens" else "float32"
    left_in = keras.Input(shape, name="left", dtype=dtype)
    right_in = keras.Input(shape, name="right", dtype=dtype)
    embedding = encoder.outputs[0].shape[1:]
    if args.head != "distance" and (len(embedding) != 1 or args.kind in ("lstm", "gru")):
        raise SystemExit(f"--head {args.head} needs a flat embedding and equal step counts: not --kind {args.kind}")
    head, head_flags = build_head(args.head, int(embedding[0]) if len(embedding) == 1 else 0, args.seed)
    siamese = keras.Model([left_in, right_in], head([encoder(left_in), encoder(right_in)]))

    extra = []
    if args.kind == "mha":
        left = rng.normal(size=(args.pairs, 10, 64)).astype(np.float32)
        right = (left + rng.normal(0, 0.3, left.shape)).astype(np.float32)
        right[args.pairs // 2 :] = rng.normal(size=(args.pairs - args.pairs // 2, 10, 64)).astype(np.float32)
        keras_d = np.asarray(siamese.predict([left, right], verbose=0), dtype=np.float32).reshape(-1)
    elif args.kind == "tokens":
        left = rng.integers(0, 100, (args.pairs, 16)).astype(np.int32)
        right = left.copy()
        right[:, ::3] = rng.integers(0, 100, right[:, ::3].shape)  # overlapping pairs
        right[args.pairs // 2 :] = rng.integers(0, 100, (args.pairs - args.pairs // 2, 16))
        keras_d = np.asarray(siamese.predict([left, right], verbose=0), dtype=np.float32).reshape(-1)
    elif args.kind in ("cnn", "contrastive", "resnet"):
        left = rng.random((args.pairs, *shape), dtype=np.float32)
        right = np.clip(left + rng.normal(0, 0.2, left.shape), 0, 1).astype(np.float32)
        right[args.pairs // 2 :] = rng.random((args.pairs - args.pairs // 2, *shape), dtype=np.float32)
        keras_d = np.asarray(siamese.predict([left, right], verbose=0), dtype=np.float32).reshape(-1)
    else:
        # Left and right with different step counts: Keras runs each twin on its own array.
        left, left_lengths = ragged(rng, args.pairs, 17, shape[1])
        right, right_lengths = ragged(rng, args.pairs, 23, shape[1])
        left_emb = np.asarray(encoder(left, training=False))
        right_emb = np.asarray(encoder(right, training=False))
        keras_d = np.sqrt(np.sum(np.square(left_emb - right_emb), axis=1)).astype(np.float32)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        siamese.save(tmp / "siamese.keras")
        siamese.save(tmp / "siamese.h5")  # legacy HDF5 full-model file
        if args.head == "distance":
            subprocess.run(
                [sys.executable, str(TOOLS / "export_keras.py"), str(tmp / "siamese.keras"), str(tmp / "model"),
                 "--encoder", "encoder", "--unsafe", "--no-check"],
                check=True, stdout=subprocess.DEVNULL,
            )
        np.save(tmp / "left.npy", left)
        np.save(tmp / "right.npy", right)
        if args.kind in ("lstm", "gru"):
            np.save(tmp / "left_lengths.npy", left_lengths)
            np.save(tmp / "right_lengths.npy", right_lengths)
            extra = ["--left-lengths", str(tmp / "left_lengths.npy"), "--right-lengths", str(tmp / "right_lengths.npy")]
        outputs = {}
        # The exported model directory, and the files Keras saved, read directly.
        # (The model directory holds the encoder alone: only the distance head is its.)
        sources = ("model", "siamese.keras", "siamese.h5") if args.head == "distance" else ("siamese.keras", "siamese.h5")
        for source in sources:
            outputs[source] = subprocess.run(
                [args.siamese, "pairs", "--model", str(tmp / source), "--left", str(tmp / "left.npy"),
                 "--right", str(tmp / "right.npy"), *extra, *head_flags],
                check=True, capture_output=True, text=True,
            ).stdout
    failed = 0
    for source, out in outputs.items():
        ours = np.array([float(line) for line in out.split()], dtype=np.float32)
        error = np.abs(ours - keras_d)
        allowed = 1e-4 + 1e-3 * np.abs(keras_d)
        worst = int(np.argmax(error - allowed))
        print(f"{args.kind}, head {args.head} ({source}): {args.pairs} unseen pairs, seed {args.seed}: max |error| {error.max():.3e}, "
              f"max relative {np.max(error / np.maximum(np.abs(keras_d), 1e-12)):.3e}; "
              f"distances {keras_d.min():.4f}..{keras_d.max():.4f}")
        if np.any(error > allowed):
            print(f"FAIL: pair {worst}: ours {ours[worst]} vs Keras {keras_d[worst]}")
            failed = 1
    if not failed:
        print(f"OK: every pair within 1e-4 + 1e-3*|ref| of Keras, from {', '.join(outputs)}")
    return failed


if __name__ == "__main__":
    sys.exit(main())
