#!/usr/bin/env python3
"""Write the transformer (MultiHeadAttention) golden fixtures for siamese-wgpu, computed by Keras.

  tests/fixtures/mha_seed/           Input((10, 64)) -> MultiHeadAttention(4 heads, key_dim 64)(x, x)
                                     embeddings [2N, 10, 64] (distances over both axes)
  tests/fixtures/transformer_block/  Input((12, 32)) -> post-LN transformer block
                                     (MHA(2, 16) + Add + LayerNorm, Dense(48, gelu) -> Dense(32)
                                     + Add + LayerNorm) -> GlobalAveragePooling1D -> Dense(8)
  tests/fixtures/token_encoder/      Input((12,), int32 token ids) -> Embedding(40, 16) ->
                                     MHA(2, 8) + Add + LayerNorm -> GlobalAveragePooling1D
                                     -> Dense(8, tanh); left/right.npy are int32 ids in [0, 40)

Same format as tests/fixtures/chain_a: model.json + model.safetensors
(export_keras.export_encoder), left.npy / right.npy (float32 [N, T, F], N(0,1), pair 0
identical), keras_{euclidean,sqeuclidean,cosine,manhattan}.npy (float32 [N],
make_goldens.distances: sums over ALL non-batch axes) and keras_embeddings.npy (float32
[2N, ...]: left rows then right rows, one Keras call on the stacked batch).
Every bias (MHA query/key/value/attention_output, Dense) and LayerNorm beta is N(0, 0.1),
LayerNorm gamma is 1 + N(0, 0.1).

Checks (the script fails if any does not hold):
  * ``numpy_forward`` -- an independent float64 NumPy interpreter of model.json +
    model.safetensors that documents the math -- matches Keras to 1e-5;
  * the MHA query is scaled by 1/sqrt(key_dim) AFTER its bias is added (equivalently the
    logits q.k are scaled); scaling before the bias is shown to give different outputs;
  * the model reloaded from model.json + model.safetensors gives bitwise equal embeddings.

MultiHeadAttention math (x [T, D]; per head n; kernels as stored):
  q = x @ Wq[:, n, :] + bq[n]            (T, key_dim)   likewise k with Wk/bk
  v = x @ Wv[:, n, :] + bv[n]            (T, value_dim)
  a = softmax_over_s((q / sqrt(key_dim)) @ k.T)   (T, T)  row t attends to all s
  o_n = a @ v                            (T, value_dim)
  out = sum_n o_n @ Wo[n] + bo           (T, D)
LayerNormalization(axis=-1): (x - mean) / sqrt(var + eps) * gamma + beta, biased var.
Dense on [T, F] acts on the last axis; gelu is exact: 0.5 x (1 + erf(x / sqrt 2)).
GlobalAveragePooling1D: mean over T.

Usage:
  KERAS_BACKEND=jax python tools/make_transformer_goldens.py                # write into the repo
  KERAS_BACKEND=jax python tools/make_transformer_goldens.py --out-root DIR # write under DIR
  KERAS_BACKEND=jax python tools/make_transformer_goldens.py --self-test    # exporter checks only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
sys.path.insert(0, str(TOOLS))

import numpy as np  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from export_keras import MODEL_JSON, MODEL_WEIGHTS, ExportError, export_encoder  # noqa: E402
from make_goldens import METRICS, distances, embed, load_model_dir, randomize_biases  # noqa: E402

TOL = 1e-5

# --------------------------------------------------------------------------- NumPy reference

_erf = np.vectorize(math.erf)


def _act(name: str):
    return {
        "linear": lambda x: x,
        "relu": lambda x: np.maximum(x, 0.0),
        "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
        "tanh": np.tanh,
        "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),  # Keras 3 'gelu': exact (erf)
        "silu": lambda x: x / (1.0 + np.exp(-x)),
        "swish": lambda x: x / (1.0 + np.exp(-x)),
        "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
        "softplus": lambda x: np.logaddexp(0.0, x),
    }[name]


def _softmax(z, axis=-1):
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def mha_forward(w: dict, prefix: str, key_dim: int, x: np.ndarray, scale_after_bias: bool = True):
    """Keras MultiHeadAttention self-attention on x [B, T, D] (float64).

    ``scale_after_bias=False`` is the WRONG variant (x@Wq / sqrt(key_dim) + bq), kept only
    to show numerically that Keras scales the biased query."""
    g = lambda n: w[f"{prefix}/{n}"].astype(np.float64)  # noqa: E731
    s = 1.0 / math.sqrt(key_dim)
    if scale_after_bias:
        q = (np.einsum("btd,dnh->btnh", x, g("query/kernel")) + g("query/bias")) * s
    else:
        q = np.einsum("btd,dnh->btnh", x, g("query/kernel")) * s + g("query/bias")
    k = np.einsum("btd,dnh->btnh", x, g("key/kernel")) + g("key/bias")
    v = np.einsum("btd,dnh->btnh", x, g("value/kernel")) + g("value/bias")
    a = _softmax(np.einsum("bsnh,btnh->bnts", k, q), axis=-1)  # softmax over key positions s
    o = np.einsum("bnts,bsnh->btnh", a, v)
    return np.einsum("btnh,nhd->btd", o, g("attention_output/kernel")) + g("attention_output/bias")


def numpy_forward(config: dict, tensors: dict, x: np.ndarray, scale_after_bias: bool = True) -> np.ndarray:
    """Interpret model.json + safetensors of a transformer encoder on a batch x (float64).

    Layers are evaluated in list order; each reads its inputs by layer name from
    inbound_nodes[0] (args; MultiHeadAttention: query, value[, key] all the same tensor)."""
    layer_list = config["config"]["layers"]
    outs = {layer_list[0]["name"]: np.asarray(x, np.float64 if x.dtype.kind == "f" else x.dtype)}
    for layer in layer_list[1:]:
        lcls, cfg, name = layer["class_name"], layer["config"], layer["name"]
        node = layer["inbound_nodes"][0]
        srcs = [a["config"]["keras_history"][0] for a in _flat(node["args"])]
        ins = [outs[s] for s in srcs]
        if lcls == "MultiHeadAttention":
            y = mha_forward(tensors, name, cfg["key_dim"], ins[0], scale_after_bias)
        elif lcls == "LayerNormalization":
            h = ins[0]
            mean = h.mean(axis=-1, keepdims=True)
            var = ((h - mean) ** 2).mean(axis=-1, keepdims=True)
            y = (h - mean) / np.sqrt(var + cfg["epsilon"])
            if cfg["scale"]:
                y = y * tensors[f"{name}/gamma"]
            if cfg["center"]:
                y = y + tensors[f"{name}/beta"]
        elif lcls == "Add":
            y = ins[0] + ins[1]
        elif lcls == "Dense":
            y = ins[0] @ tensors[f"{name}/kernel"].astype(np.float64)
            if cfg["use_bias"]:
                y = y + tensors[f"{name}/bias"]
            y = _act(cfg["activation"])(y)
        elif lcls == "Activation":
            y = _act(cfg["activation"])(ins[0])
        elif lcls == "Dropout":
            y = ins[0]
        elif lcls == "GlobalAveragePooling1D":
            y = ins[0].mean(axis=1)
        elif lcls == "Embedding":
            y = tensors[f"{name}/embeddings"].astype(np.float64)[ins[0]]
        else:
            raise NotImplementedError(lcls)
        outs[name] = y
    return outs[config["config"]["output_layers"][0]]


def _flat(args):
    if isinstance(args, dict):
        return [args] if args.get("class_name") == "__keras_tensor__" else []
    return [a for x in args for a in _flat(x)]


def numpy_forward_dir(model_dir: Path, x, **kw) -> np.ndarray:
    config = json.loads((Path(model_dir) / MODEL_JSON).read_text(encoding="utf-8"))
    tensors = load_file(str(Path(model_dir) / MODEL_WEIGHTS))
    return numpy_forward(config, tensors, x, **kw)


# --------------------------------------------------------------------------- models


def build_mha_seed():
    x = keras.Input((10, 64))
    return keras.Model(x, layers.MultiHeadAttention(num_heads=4, key_dim=64)(x, x))


def build_transformer_block():
    x = keras.Input((12, 32))
    a = layers.MultiHeadAttention(num_heads=2, key_dim=16)(x, x)
    x1 = layers.LayerNormalization(epsilon=1e-6)(layers.Add()([x, a]))
    f = layers.Dense(48, activation="gelu")(x1)
    f = layers.Dense(32)(f)
    x2 = layers.LayerNormalization(epsilon=1e-6)(layers.Add()([x1, f]))
    y = layers.Dense(8)(layers.GlobalAveragePooling1D()(x2))
    return keras.Model(x, y)


def randomize_params(model, rng, std=0.1):
    """Biases and LayerNorm beta ~ N(0, std), LayerNorm gamma ~ 1 + N(0, std)."""
    randomize_biases(model, rng, std)
    for layer in model.layers:
        for v in layer.weights:
            if v.name == "beta":
                v.assign(rng.normal(0.0, std, size=v.shape).astype(np.float32))
            elif v.name == "gamma":
                v.assign((1.0 + rng.normal(0.0, std, size=v.shape)).astype(np.float32))


VOCAB = 40


def build_token_encoder():
    ids = keras.Input((12,), dtype="int32")
    e = layers.Embedding(VOCAB, 16)(ids)
    a = layers.MultiHeadAttention(num_heads=2, key_dim=8)(e, e)
    h = layers.LayerNormalization(epsilon=1e-6)(layers.Add()([e, a]))
    return keras.Model(ids, layers.Dense(8, activation="tanh")(layers.GlobalAveragePooling1D()(h)))


# name, builder, input shape, N pairs, seed, vocabulary (None: float inputs)
FIXTURES = [
    ("mha_seed", build_mha_seed, (10, 64), 4, 20, None),
    ("transformer_block", build_transformer_block, (12, 32), 4, 21, None),
    ("token_encoder", build_token_encoder, (12,), 5, 22, VOCAB),
]


def write_fixture(name, build, shape, n, seed, vocab, out_root: Path):
    keras.backend.clear_session()  # default layer names: multi_head_attention, add, dense, ...
    keras.utils.set_random_seed(seed)
    np.random.seed(seed)
    model = build()
    randomize_params(model, np.random.default_rng([seed, 1]))
    rng = np.random.default_rng([seed, 2])
    if vocab is None:
        left = rng.standard_normal((n, *shape)).astype(np.float32)
        right = rng.standard_normal((n, *shape)).astype(np.float32)
    else:  # token ids, every id of the vocabulary used at least once when n*T allows
        left = rng.integers(0, vocab, (n, *shape)).astype(np.int32)
        right = rng.integers(0, vocab, (n, *shape)).astype(np.int32)
        left.flat[:vocab] = np.arange(vocab)
    right[0] = left[0]

    emb = embed(model, left, right)
    dist = distances(emb[:n], emb[n:])

    out = out_root / "tests" / "fixtures" / name
    shapes = export_encoder(model, out)
    np.save(out / "left.npy", left)
    np.save(out / "right.npy", right)
    np.save(out / "keras_embeddings.npy", emb)
    for m in METRICS:
        np.save(out / f"keras_{m}.npy", dist[m])

    x = np.concatenate([left, right])
    ref = numpy_forward_dir(out, x)
    err_ref = float(np.max(np.abs(ref - emb)))
    assert err_ref <= TOL, f"{name}: NumPy reference differs from Keras (max abs err {err_ref:g})"
    wrong = numpy_forward_dir(out, x, scale_after_bias=False)
    err_wrong = float(np.max(np.abs(wrong - emb)))
    assert err_wrong > 100 * TOL, f"{name}: scaling before the query bias is indistinguishable ({err_wrong:g})"

    reloaded = load_model_dir(out)
    emb2 = embed(reloaded, np.load(out / "left.npy"), np.load(out / "right.npy"))
    if not np.array_equal(emb2, emb):
        raise AssertionError(f"{name}: reloaded embeddings differ (max abs err {np.max(np.abs(emb2 - emb)):g})")
    assert (out / MODEL_JSON).read_text(encoding="utf-8") == model.to_json()
    assert export_encoder(reloaded, Path(tempfile.mkdtemp(prefix="tf_again_"))) == shapes

    pair0_bitwise = bool(np.array_equal(emb[0], emb[n]))
    assert np.max(np.abs(emb[0] - emb[n])) <= TOL, f"{name}: pair 0 embeddings differ"
    for m in METRICS:
        assert dist[m].shape == (n,) and np.all(np.isfinite(dist[m])), (name, m)

    print(f"== {name}: {model.__class__.__name__} -> {out}")
    print(f"   inputs {list(left.shape)} x2, embeddings {list(emb.shape)}")
    print(
        f"   max|numpy-keras| {err_ref:.2g}, max|scale-before-bias - keras| {err_wrong:.2g}, "
        f"round-trip bitwise, pair 0 bitwise equal: {pair0_bitwise}"
    )
    for k, s in shapes.items():
        print(f"   {k:48s} {list(s)}")
    for m in METRICS:
        print(f"   {m:12s} " + " ".join(f"{v:.6g}" for v in dist[m]))
    return shapes


# --------------------------------------------------------------------------- self-test


def _expect_reject(model, needle):
    with tempfile.TemporaryDirectory(prefix="siamese_tf_selftest_") as tmp:
        try:
            export_encoder(model, tmp)
        except ExportError as e:
            assert needle in str(e), (needle, str(e))
            print(f"OK  rejects ({needle}):", str(e).splitlines()[1].strip())
            return
    raise AssertionError(f"model was not rejected; expected {needle!r}")


def self_test():
    """Exporter checks for transformer encoders; writes only to /tmp."""
    L = layers
    keras.backend.clear_session()
    x = keras.Input((6, 8))
    y = keras.Input((6, 8))
    cases = [
        (keras.Model(x, L.MultiHeadAttention(2, 4)(x, L.Dense(8)(x))), "only self-attention"),
        (keras.Model(x, L.MultiHeadAttention(2, 4)(x, x, use_causal_mask=True)), "use_causal_mask=True"),
        (keras.Model(x, L.MultiHeadAttention(2, 4, use_gate=True)(x, x)), "use_gate=True"),
        (keras.Model(x, L.MultiHeadAttention(2, 4, value_dim=3)(x, x)), "value_dim != key_dim"),
        (keras.Model(x, L.LayerNormalization(axis=1)(x)), "axis [1]"),
        (keras.Model(x, L.Add()([x, L.Dense(8)(x), x])), "exactly 2 tensor input"),
        (keras.Model(x, L.Add()([x, L.Conv1D(8, 1)(x)])), "'Conv1D' is not supported"),
        (keras.Model([x, y], L.Add()([x, y])), "exactly one input"),
    ]
    for model, needle in cases:
        _expect_reject(model, needle)
    inp = keras.Input((4,))  # [batch, features] residual: still rejected as before
    _expect_reject(keras.Model(inp, L.Add()([inp, L.Dense(4)(inp)])), "'Add' is not supported")

    # Accepted: Embedding -> MHA(x, x, x) -> Dropout -> Activation -> GAP1D -> Dense.
    keras.backend.clear_session()
    keras.utils.set_random_seed(5)
    ids = keras.Input((7,), dtype="int32")
    e = L.Embedding(11, 8)(ids)
    h = L.Add()([e, L.MultiHeadAttention(2, 3)(e, e, e)])
    h = L.Activation("tanh")(L.Dropout(0.1)(h))
    model = keras.Model(ids, L.Dense(3)(L.GlobalAveragePooling1D()(h)))
    randomize_params(model, np.random.default_rng(5))
    tok = np.random.default_rng(6).integers(0, 11, (3, 7)).astype(np.int32)
    with tempfile.TemporaryDirectory(prefix="siamese_tf_selftest_") as tmp:
        shapes = export_encoder(model, tmp)
        assert shapes["embedding/embeddings"] == (11, 8), shapes
        assert shapes["multi_head_attention/value/kernel"] == (8, 2, 3), shapes
        assert shapes["multi_head_attention/attention_output/kernel"] == (2, 3, 8), shapes
        ref = np.asarray(model(tok, training=False))
        assert np.array_equal(ref, np.asarray(load_model_dir(tmp)(tok, training=False)))
        np.testing.assert_allclose(numpy_forward_dir(Path(tmp), tok), ref, atol=TOL)
        print("OK  Embedding + mha(x, x, x) + Dropout/Activation round-trips; numpy ref matches:", sorted(shapes))
    print("self-test passed")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-root", type=Path, default=REPO, help="root to write fixtures under (default: repo root)")
    ap.add_argument("--self-test", action="store_true", help="check the transformer export rules; write no fixtures")
    ap.add_argument("--only", nargs="*", help="fixture names to write (default: all)")
    args = ap.parse_args()
    if keras.backend.backend() != "jax":
        sys.exit(f"error: goldens are defined with the JAX backend; got KERAS_BACKEND={keras.backend.backend()}")
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, numpy {np.__version__}")
    if args.self_test:
        self_test()
        return
    for fx in FIXTURES:
        if args.only and fx[0] not in args.only:
            continue
        write_fixture(*fx, out_root=args.out_root)


if __name__ == "__main__":
    main()
