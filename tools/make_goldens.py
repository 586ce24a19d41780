#!/usr/bin/env python3
"""Write the golden fixtures for siamese-wgpu, computed by Keras itself.

  models/cnn/                seed CNN encoder (Sequential) + pairs/ (8 MNIST-sized pairs)
  tests/fixtures/chain_a/    Functional chain with odd shapes/strides/padding (5 pairs)
  tests/fixtures/chain_b/    Sequential with Activation layers and no conv bias (3 pairs)

Each model directory gets model.json + model.safetensors (via export_keras.export_encoder),
left.npy / right.npy (float32 [N, H, W, C]), keras_{euclidean,sqeuclidean,cosine,manhattan}.npy
(float32 [N]) and keras_embeddings.npy (float32 [2N, D]: rows 0..N left, N..2N right).
Every written model is reloaded from model.json + safetensors and rerun to check the
format round-trips.

Usage:
  KERAS_BACKEND=jax python tools/make_goldens.py               # write fixtures into the repo
  KERAS_BACKEND=jax python tools/make_goldens.py --out-root DIR # write them under DIR instead
  KERAS_BACKEND=jax python tools/make_goldens.py --self-test    # check export_keras.py CLI; writes nothing
"""

from __future__ import annotations

import argparse
import json
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
from safetensors.numpy import load_file  # noqa: E402

from export_keras import MODEL_JSON, MODEL_WEIGHTS, ExportError, export_encoder, weight_name  # noqa: E402

METRICS = ("euclidean", "sqeuclidean", "cosine", "manhattan")


# --------------------------------------------------------------------------- helpers


def distances(emb_left, emb_right) -> dict[str, np.ndarray]:
    """Per-pair distances in float32 with keras.ops; sums over all non-batch axes."""
    a = ops.convert_to_tensor(np.asarray(emb_left, np.float32))
    b = ops.convert_to_tensor(np.asarray(emb_right, np.float32))
    axes = tuple(range(1, len(a.shape)))
    d = a - b
    sq = ops.sum(ops.square(d), axis=axes)

    def l2n(x):
        return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=axes, keepdims=True), 1e-12))

    out = {
        "euclidean": ops.sqrt(sq),  # no epsilon: identical pairs give exactly 0
        "sqeuclidean": sq,
        "cosine": ops.maximum(1.0 - ops.sum(l2n(a) * l2n(b), axis=axes), 0.0),
        "manhattan": ops.sum(ops.abs(d), axis=axes),
    }
    return {k: np.asarray(ops.convert_to_numpy(v), dtype=np.float32) for k, v in out.items()}


def embed(model, left, right) -> np.ndarray:
    """Run the encoder once on the stacked batch [left; right]."""
    x = np.concatenate([left, right], axis=0).astype(np.float32)
    return np.asarray(ops.convert_to_numpy(model(x, training=False)), dtype=np.float32)


def randomize_biases(model, rng, std=0.1):
    """Replace every bias (default init: zeros) with N(0, std) so biases are tested."""
    for layer in model.layers:
        for v in layer.weights:
            if v.name == "bias":
                v.assign(rng.normal(0.0, std, size=v.shape).astype(np.float32))


def load_model_dir(model_dir) -> keras.Model:
    """Rebuild an encoder from model.json + model.safetensors (the Rust-side format)."""
    model_dir = Path(model_dir)
    model = keras.models.model_from_json((model_dir / MODEL_JSON).read_text(encoding="utf-8"))
    tensors = load_file(str(model_dir / MODEL_WEIGHTS))
    used = set()
    for layer in model.layers:
        for v in layer.weights:
            key = weight_name(layer, v)  # {layer.name}/{v.name}; lstm/lstm_cell/kernel
            if key not in tensors:
                raise AssertionError(f"{model_dir}: safetensors lacks {key!r}")
            if tuple(tensors[key].shape) != tuple(v.shape):
                raise AssertionError(f"{model_dir}: {key} shape {tensors[key].shape} != {v.shape}")
            assert tensors[key].dtype == np.float32, (key, tensors[key].dtype)
            v.assign(tensors[key])
            used.add(key)
    extra = set(tensors) - used
    if extra:
        raise AssertionError(f"{model_dir}: unused tensors in safetensors: {sorted(extra)}")
    return model


def blob_images(rng, n, h=28, w=28) -> np.ndarray:
    """MNIST-like [n,h,w,1] float32 images in [0,1]: blurred blobs plus soft strokes."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    imgs = np.zeros((n, h, w, 1), np.float32)
    for i in range(n):
        img = np.zeros((h, w))
        for _ in range(rng.integers(1, 4)):  # gaussian blobs
            cy, cx = rng.uniform(5, h - 5), rng.uniform(5, w - 5)
            s = rng.uniform(1.5, 4.0)
            img += rng.uniform(0.4, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        for _ in range(rng.integers(1, 3)):  # soft line strokes
            p0 = rng.uniform(3, [h - 3, w - 3])
            p1 = rng.uniform(3, [h - 3, w - 3])
            d = p1 - p0
            t = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / max(d @ d, 1e-9), 0, 1)
            dist2 = (yy - p0[0] - t * d[0]) ** 2 + (xx - p0[1] - t * d[1]) ** 2
            s = rng.uniform(0.8, 1.5)
            img += rng.uniform(0.6, 1.0) * np.exp(-dist2 / (2 * s * s))
        img = img / max(img.max(), 1e-9)
        imgs[i, :, :, 0] = np.clip(img, 0.0, 1.0)
    return imgs


# --------------------------------------------------------------------------- models


def build_cnn():
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
        ]
    )


def build_chain_a():
    inp = keras.Input((17, 15, 3))
    x = layers.Conv2D(8, (3, 2), strides=(2, 1), padding="same", activation="tanh")(inp)
    x = layers.AveragePooling2D(pool_size=(2, 2), strides=(1, 2), padding="same")(x)
    x = layers.Conv2D(5, 3, dilation_rate=2, padding="valid")(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D(pool_size=3, strides=2, padding="same")(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Conv2D(6, 1, activation="gelu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(7, activation="sigmoid")(x)
    x = layers.Dense(5, activation="elu")(x)
    return keras.Model(inp, x)


def build_chain_b():
    return keras.Sequential(
        [
            keras.Input((9, 11, 2)),
            layers.Conv2D(4, (2, 3), activation="relu", use_bias=False),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dense(6, activation="tanh"),
            layers.Activation("silu"),
            layers.Dense(3),
            layers.Activation("softplus"),
        ]
    )


def cnn_inputs(rng, n=8):
    left = blob_images(rng, n)
    right = blob_images(rng, n)
    right[0] = left[0]
    for i in (1, 2, 3):
        right[i] = np.clip(left[i] + rng.normal(0.0, 0.05, left[i].shape), 0.0, 1.0)
    return left.astype(np.float32), right.astype(np.float32)


def normal_inputs(shape, n):
    def make(rng):
        left = rng.standard_normal((n, *shape)).astype(np.float32)
        right = rng.standard_normal((n, *shape)).astype(np.float32)
        right[0] = left[0]
        return left, right

    return make


# name, builder, inputs(rng), model_dir (relative), pairs_dir (relative), seed
FIXTURES = [
    ("cnn", build_cnn, cnn_inputs, "models/cnn", "models/cnn/pairs", 0),
    ("chain_a", build_chain_a, normal_inputs((17, 15, 3), 5), "tests/fixtures/chain_a", "tests/fixtures/chain_a", 1),
    ("chain_b", build_chain_b, normal_inputs((9, 11, 2), 3), "tests/fixtures/chain_b", "tests/fixtures/chain_b", 2),
]


def write_fixture(name, build, make_inputs, model_rel, pairs_rel, seed, out_root: Path):
    keras.backend.clear_session()  # reset default layer names (conv2d, dense, ...)
    keras.utils.set_random_seed(0)
    np.random.seed(0)
    model = build()
    randomize_biases(model, np.random.default_rng([seed, 1]))
    left, right = make_inputs(np.random.default_rng([seed, 2]))

    emb = embed(model, left, right)
    n = left.shape[0]
    dist = distances(emb[:n], emb[n:])

    model_dir, pairs_dir = out_root / model_rel, out_root / pairs_rel
    shapes = export_encoder(model, model_dir)
    pairs_dir.mkdir(parents=True, exist_ok=True)
    np.save(pairs_dir / "left.npy", left)
    np.save(pairs_dir / "right.npy", right)
    np.save(pairs_dir / "keras_embeddings.npy", emb)
    for m in METRICS:
        np.save(pairs_dir / f"keras_{m}.npy", dist[m])

    # Round trip: model.json + safetensors -> Keras -> same embeddings / distances.
    reloaded = load_model_dir(model_dir)
    emb2 = embed(reloaded, np.load(pairs_dir / "left.npy"), np.load(pairs_dir / "right.npy"))
    assert emb2.shape == emb.shape, (name, emb2.shape, emb.shape)
    if not np.array_equal(emb2, emb):
        err = float(np.max(np.abs(emb2 - emb)))
        raise AssertionError(f"{name}: reloaded embeddings differ (max abs err {err:g})")
    assert np.array_equal(emb[0], emb[n]), f"{name}: pair 0 embeddings not bitwise identical"
    assert dist["euclidean"][0] == 0.0 and dist["sqeuclidean"][0] == 0.0 and dist["manhattan"][0] == 0.0
    for m in METRICS:
        assert np.load(pairs_dir / f"keras_{m}.npy").shape == (n,)
        assert np.all(np.isfinite(dist[m])), (name, m)

    print(f"== {name}: {model.__class__.__name__} {model.name!r} -> {model_dir}")
    print(f"   inputs {list(left.shape)} x2, embeddings {list(emb.shape)}, round-trip OK (bitwise)")
    for k, s in shapes.items():
        print(f"   {k:32s} {list(s)}")
    for m in METRICS:
        print(f"   {m:12s} " + " ".join(f"{x:.6g}" for x in dist[m]))
    return shapes


# --------------------------------------------------------------------------- self-test


def _run_cli(*args):
    cmd = [sys.executable, str(TOOLS / "export_keras.py"), *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "KERAS_BACKEND": "jax"})
    return p.returncode, p.stdout, p.stderr


def self_test():
    """Save a whole Siamese model (shared Sequential encoder + Lambda distance) to a
    .keras file, export its encoder with the CLI, and check the result. Writes only to /tmp."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(123)

    encoder = keras.Sequential(
        [
            keras.Input((12, 10, 1)),
            layers.Conv2D(4, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(6, activation="selu"),
        ],
        name="encoder",
    )
    randomize_biases(encoder, rng)
    a, b = keras.Input((12, 10, 1), name="left"), keras.Input((12, 10, 1), name="right")
    ea, eb = encoder(a), encoder(b)
    dist = layers.Lambda(
        lambda t: keras.ops.sqrt(keras.ops.sum(keras.ops.square(t[0] - t[1]), axis=-1, keepdims=True)),
        output_shape=(1,),
        name="distance",
    )([ea, eb])
    siamese = keras.Model([a, b], dist, name="siamese")

    print("v.path (Sequential encoder nested in Siamese):", [v.path for v in encoder.weights])

    with tempfile.TemporaryDirectory(prefix="siamese_selftest_") as tmp:
        tmp = Path(tmp)
        path = tmp / "siamese.keras"
        siamese.save(path)

        rc, out, err = _run_cli(path, tmp / "safe", "--encoder", "encoder")
        assert rc != 0 and "--unsafe" in err, ("safe-mode load should fail and mention --unsafe", rc, err)
        print("OK  safe-mode refusal:", err.strip().splitlines()[0])

        rc, out, err = _run_cli(path, tmp / "noenc", "--unsafe")
        assert rc != 0 and "--encoder" in err and "encoder (Sequential)" in err, (rc, err)
        print("OK  missing --encoder:", err.strip().splitlines()[0])

        rc, out, err = _run_cli(path, tmp / "bad", "--unsafe", "--encoder", "nope")
        assert rc != 0 and "no layer named 'nope'" in err, (rc, err)
        print("OK  unknown --encoder:", err.strip().splitlines()[0])

        rc, out, err = _run_cli(tmp / "missing.keras", tmp / "x")
        assert rc != 0 and "no such file" in err, (rc, err)
        print("OK  missing file:", err.strip().splitlines()[0])

        out_dir = tmp / "exported"
        rc, out, err = _run_cli(path, out_dir, "--encoder", "encoder", "--unsafe")
        assert rc == 0, f"export failed (rc={rc}):\n{out}\n{err}"
        print(out.rstrip())

        cfg = json.loads((out_dir / MODEL_JSON).read_text())
        assert cfg["class_name"] == "Sequential" and cfg["config"]["name"] == "encoder"
        assert (out_dir / MODEL_JSON).read_text() == encoder.to_json(), "model.json is not encoder.to_json()"
        names = sorted(load_file(str(out_dir / MODEL_WEIGHTS)))
        assert names == ["conv2d/bias", "conv2d/kernel", "dense/bias", "dense/kernel"], names

        reloaded = load_model_dir(out_dir)
        left = rng.uniform(0, 1, (4, 12, 10, 1)).astype(np.float32)
        right = rng.uniform(0, 1, (4, 12, 10, 1)).astype(np.float32)
        right[0] = left[0]
        emb_ref, emb_new = embed(encoder, left, right), embed(reloaded, left, right)
        assert np.array_equal(emb_ref, emb_new), float(np.max(np.abs(emb_ref - emb_new)))
        lam = np.asarray(siamese([left, right], training=False))[:, 0]
        ours = distances(emb_new[:4], emb_new[4:])["euclidean"]
        np.testing.assert_allclose(ours, lam, rtol=1e-5, atol=1e-6)
        print("OK  exported encoder reproduces embeddings bitwise; euclidean matches Lambda head:", ours)

    # Functional encoder through the importable API; v.path differs from Sequential.
    keras.backend.clear_session()
    inp = keras.Input((8, 8, 2))
    x = layers.Conv2D(3, 3, activation="gelu")(inp)
    x = layers.GlobalAveragePooling2D()(x)
    func = keras.Model(inp, layers.Dense(2)(x))
    print("v.path (top-level Functional):", [v.path for v in func.weights])
    with tempfile.TemporaryDirectory(prefix="siamese_selftest_") as tmp:
        shapes = export_encoder(func, tmp)
        assert sorted(shapes) == ["conv2d/bias", "conv2d/kernel", "dense/bias", "dense/kernel"], shapes
        y = np.random.default_rng(1).standard_normal((3, 8, 8, 2)).astype(np.float32)
        assert np.array_equal(np.asarray(func(y)), np.asarray(load_model_dir(tmp)(y)))
        print("OK  Functional encoder round-trips")

        # Non-chain Functional (residual add) and unsupported layers are rejected.
        inp = keras.Input((4,))
        h = layers.Dense(4)(inp)
        res = keras.Model(inp, layers.Add()([inp, h]))
        try:
            export_encoder(res, Path(tmp) / "res")
        except ExportError as e:
            assert "'Add' is not supported" in str(e), e
            print("OK  rejects non-chain model:", str(e).splitlines()[1].strip())
        else:
            raise AssertionError("residual model was not rejected")
        inp = keras.Input((4,))
        d1 = layers.Dense(3, name="d1")
        twice = keras.Model(inp, d1(layers.Dense(3)(d1(layers.Dense(3)(inp)))))
        try:
            export_encoder(twice, Path(tmp) / "twice")
        except ExportError as e:
            assert "shared layers" in str(e) or "single chain" in str(e), e
            print("OK  rejects shared-layer graph:", str(e).splitlines()[1].strip())
        else:
            raise AssertionError("shared-layer model was not rejected")
    print("self-test passed")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-root", type=Path, default=REPO, help="root to write fixtures under (default: repo root)")
    ap.add_argument("--self-test", action="store_true", help="check tools/export_keras.py; write no fixtures")
    args = ap.parse_args()
    if keras.backend.backend() != "jax":
        sys.exit(f"error: goldens are defined with the JAX backend; got KERAS_BACKEND={keras.backend.backend()}")
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, numpy {np.__version__}")
    if args.self_test:
        self_test()
        return
    for fx in FIXTURES:
        write_fixture(*fx, out_root=args.out_root)


if __name__ == "__main__":
    main()
