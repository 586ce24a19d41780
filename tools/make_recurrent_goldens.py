#!/usr/bin/env python3
"""Write the recurrent (LSTM/GRU) golden fixtures for siamese-wgpu, computed by Keras.

  tests/fixtures/lstm_seed/     Masking -> LSTM(64) over 100-d features (the seed's LSTM twin)
  tests/fixtures/gru_after/     Masking -> GRU(65, reset_after=True) -> Dense(5, tanh)
  tests/fixtures/gru_before/    Masking -> GRU(7, reset_after=False, recurrent_activation=hard_sigmoid), F=1
  tests/fixtures/bilstm_stack/  Masking -> Bidirectional(LSTM(16, return_sequences=True)) -> LSTM(8) -> Dense(4)
  tests/fixtures/lstm_hidden1/  Masking -> LSTM(1)

Every encoder is a Sequential with input [batch, None, F]. Each directory gets
model.json + model.safetensors (export_keras.export_encoder), left.npy / right.npy
(float32 [N, T_left, F] / [N, T_right, F], T_left != T_right: N(0,1) for valid steps,
exactly 0.0 after each row's length), left_lengths.npy / right_lengths.npy (int32 [N]),
keras_embeddings.npy (float32 [2N, D]: rows 0..N left, N..2N right; left and right are
run as two padded batches because their T differ) and
keras_{euclidean,sqeuclidean,cosine,manhattan}.npy (float32 [N], make_goldens.distances).
Pair 0 is the same sequence on both sides (zero-padded to each side's T).

Checks (the script fails if any does not hold):
  * each padded+masked embedding equals the embedding of the sequence run alone,
    unpadded (masking == "the output of the sequence's own last step"), to 1e-5;
  * an independent NumPy interpreter of model.json + model.safetensors (``reference_embed``,
    which documents the gate math) reproduces the Keras embeddings to 1e-5;
  * the model reloaded from model.json + model.safetensors gives bitwise equal embeddings.

Usage:
  KERAS_BACKEND=jax python tools/make_recurrent_goldens.py                # write into the repo
  KERAS_BACKEND=jax python tools/make_recurrent_goldens.py --out-root DIR # write under DIR
  KERAS_BACKEND=jax python tools/make_recurrent_goldens.py --self-test    # exporter checks only
"""

from __future__ import annotations

import argparse
import json
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
from keras import layers, ops  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from export_keras import MODEL_JSON, MODEL_WEIGHTS, ExportError, export_encoder  # noqa: E402
from make_goldens import METRICS, distances, load_model_dir, randomize_biases  # noqa: E402

TOL = 1e-5

# --------------------------------------------------------------------------- NumPy reference


def _act(name: str):
    return {
        "tanh": np.tanh,
        "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
        # Keras 3 (all backends): relu6(x + 3) / 6, i.e. clip(x/6 + 0.5, 0, 1) -- NOT the
        # Keras 2 / TF1 clip(0.2x + 0.5, 0, 1).
        "hard_sigmoid": lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0),
        "relu": lambda x: np.maximum(x, 0.0),
        "linear": lambda x: x,
    }[name]


def _lstm_seq(cfg, w, x):
    """Keras LSTM over one unpadded sequence x [L, F]; returns all outputs [L, u]."""
    u = cfg["units"]
    act, ract = _act(cfg["activation"]), _act(cfg["recurrent_activation"])
    k, rk = w["kernel"].astype(np.float64), w["recurrent_kernel"].astype(np.float64)
    b = w["bias"].astype(np.float64) if cfg["use_bias"] else np.zeros(4 * u)
    h, c = np.zeros(u), np.zeros(u)
    out = []
    for t in range(x.shape[0]):
        z = x[t] @ k + h @ rk + b  # gate blocks along the last axis: i, f, c, o
        i, f, g, o = z[:u], z[u : 2 * u], z[2 * u : 3 * u], z[3 * u :]
        c = ract(f) * c + ract(i) * act(g)
        h = ract(o) * act(c)
        out.append(h)
    return np.stack(out) if out else np.zeros((0, u))


def _gru_seq(cfg, w, x):
    """Keras GRU over one unpadded sequence x [L, F]; returns all outputs [L, u]."""
    u = cfg["units"]
    act, ract = _act(cfg["activation"]), _act(cfg["recurrent_activation"])
    k, rk = w["kernel"].astype(np.float64), w["recurrent_kernel"].astype(np.float64)
    reset_after = cfg.get("reset_after", True)
    if cfg["use_bias"]:
        b = w["bias"].astype(np.float64)
        # reset_after=True: bias (2, 3u) = [input bias; recurrent bias]; False: (3u,) input only.
        b_in, b_rec = (b[0], b[1]) if reset_after else (b, np.zeros(3 * u))
    else:
        b_in, b_rec = np.zeros(3 * u), np.zeros(3 * u)
    h = np.zeros(u)
    out = []
    for t in range(x.shape[0]):
        xi = x[t] @ k + b_in  # gate blocks along the last axis: z (update), r (reset), h (candidate)
        xz, xr, xh = xi[:u], xi[u : 2 * u], xi[2 * u :]
        if reset_after:
            rec = h @ rk + b_rec
            z = ract(xz + rec[:u])
            r = ract(xr + rec[u : 2 * u])
            hh = act(xh + r * rec[2 * u :])
        else:
            z = ract(xz + h @ rk[:, :u])
            r = ract(xr + h @ rk[:, u : 2 * u])
            hh = act(xh + (r * h) @ rk[:, 2 * u :])
        h = z * h + (1.0 - z) * hh
        out.append(h)
    return np.stack(out) if out else np.zeros((0, u))


def _rnn_seq(lcls, cfg, w, x):
    return (_lstm_seq if lcls == "LSTM" else _gru_seq)(cfg, w, x)


def _sub(tensors, prefix):
    """{tail: array} for tensor names 'prefix/<cell>/tail' (e.g. lstm/lstm_cell/kernel)."""
    out = {}
    for name, arr in tensors.items():
        parts = name.split("/")
        if name.startswith(prefix + "/") and len(parts) == len(prefix.split("/")) + 2:
            out[parts[-1]] = arr
    return out


def reference_embed(config: dict, tensors: dict, seq: np.ndarray) -> np.ndarray:
    """Embed ONE unpadded sequence seq [L, F] (L >= 1) by interpreting model.json + safetensors
    in float64 NumPy. Masking is implicit: only the sequence's own L steps are run."""
    x = np.asarray(seq, np.float64)
    for layer in config["config"]["layers"][1:]:
        lcls, cfg = layer["class_name"], layer["config"]
        name = cfg["name"]
        if lcls in ("Masking", "Dropout"):
            continue
        if lcls in ("LSTM", "GRU"):
            y = _rnn_seq(lcls, cfg, _sub(tensors, name), x)
            x = y if cfg["return_sequences"] else y[-1]
        elif lcls == "Bidirectional":
            fl, bl = cfg["layer"], cfg["backward_layer"]
            fcfg, bcfg = fl["config"], bl["config"]
            yf = _rnn_seq(fl["class_name"], fcfg, _sub(tensors, f"{name}/{fcfg['name']}"), x)
            # backward: run over the reversed valid steps; its sequence output is reversed back
            yb = _rnn_seq(bl["class_name"], bcfg, _sub(tensors, f"{name}/{bcfg['name']}"), x[::-1])[::-1]
            if fcfg["return_sequences"]:
                x = np.concatenate([yf, yb], axis=-1)  # concat: forward units first
            else:
                # last forward step; the backward layer's final state (= its output at t=0)
                x = np.concatenate([yf[-1], yb[0]], axis=-1)
        elif lcls == "Dense":
            x = x @ tensors[f"{name}/kernel"].astype(np.float64)
            if cfg["use_bias"]:
                x = x + tensors[f"{name}/bias"]
            x = _act(cfg["activation"])(x)
        elif lcls == "Activation":
            x = _act(cfg["activation"])(x)
        else:
            raise NotImplementedError(lcls)
    return x


def reference_embed_dir(model_dir: Path, seqs) -> np.ndarray:
    config = json.loads((Path(model_dir) / MODEL_JSON).read_text(encoding="utf-8"))
    tensors = load_file(str(Path(model_dir) / MODEL_WEIGHTS))
    return np.stack([reference_embed(config, tensors, s) for s in seqs]).astype(np.float32)


# --------------------------------------------------------------------------- inputs / running


def ragged(rng, t, f, lengths) -> np.ndarray:
    """[N, t, f] float32: N(0,1) for steps < length, exactly 0.0 after."""
    x = np.zeros((len(lengths), t, f), np.float32)
    for i, n in enumerate(lengths):
        x[i, :n] = rng.standard_normal((n, f)).astype(np.float32)
    return x


def make_pairs(rng, f, t_left, t_right, left_lengths, right_lengths):
    left_lengths = np.asarray(left_lengths, np.int32)
    right_lengths = np.asarray(right_lengths, np.int32)
    assert left_lengths[0] == right_lengths[0] <= min(t_left, t_right)
    left = ragged(rng, t_left, f, left_lengths)
    right = ragged(rng, t_right, f, right_lengths)
    right[0] = 0.0
    right[0, : right_lengths[0]] = left[0, : left_lengths[0]]  # pair 0: same sequence
    for x, lens in ((left, left_lengths), (right, right_lengths)):
        for i, n in enumerate(lens):
            # a valid step that is all mask_value (0.0) would be masked too
            assert np.all(np.any(x[i, :n] != 0.0, axis=-1)), "valid step equals the mask value"
            assert np.all(x[i, n:] == 0.0)
    return left, right, left_lengths, right_lengths


def run(model, x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(model(np.asarray(x, np.float32), training=False)), np.float32)


def unpadded(x, lengths):
    return [x[i, :n] for i, n in enumerate(lengths)]


# --------------------------------------------------------------------------- models


def build_lstm_seed():
    return keras.Sequential([keras.Input((None, 100)), layers.Masking(0.0), layers.LSTM(64)])


def build_gru_after():
    return keras.Sequential(
        [
            keras.Input((None, 7)),
            layers.Masking(0.0),
            layers.GRU(65, reset_after=True),
            layers.Dense(5, activation="tanh"),
        ]
    )


def build_gru_before():
    return keras.Sequential(
        [
            keras.Input((None, 1)),
            layers.Masking(0.0),
            layers.GRU(7, reset_after=False, recurrent_activation="hard_sigmoid"),
        ]
    )


def build_bilstm_stack():
    return keras.Sequential(
        [
            keras.Input((None, 5)),
            layers.Masking(0.0),
            layers.Bidirectional(layers.LSTM(16, return_sequences=True)),
            layers.LSTM(8),
            layers.Dense(4),
        ]
    )


def build_lstm_hidden1():
    return keras.Sequential([keras.Input((None, 3)), layers.Masking(0.0), layers.LSTM(1)])


# name, builder, feature size, T_left, T_right, left lengths, right lengths, seed.
# Lengths: pair 0 equal; each side has 1, primes, its full T and mixed values.
FIXTURES = [
    ("lstm_seed", build_lstm_seed, 100, 29, 23, [17, 1, 29, 5, 20], [17, 23, 2, 1, 12], 10),
    ("gru_after", build_gru_after, 7, 13, 11, [7, 1, 13, 5, 10], [7, 11, 3, 1, 8], 11),
    ("gru_before", build_gru_before, 1, 6, 9, [4, 1, 6, 3, 5], [4, 9, 2, 1, 7], 12),
    ("bilstm_stack", build_bilstm_stack, 5, 13, 11, [7, 1, 13, 5, 10], [7, 11, 3, 1, 8], 13),
    ("lstm_hidden1", build_lstm_hidden1, 3, 13, 11, [7, 1, 13, 5, 10], [7, 11, 3, 1, 8], 14),
]


def write_fixture(name, build, f, t_left, t_right, left_lengths, right_lengths, seed, out_root: Path):
    keras.backend.clear_session()  # default layer names: lstm, gru, dense, bidirectional
    keras.utils.set_random_seed(seed)
    np.random.seed(seed)
    model = build()
    randomize_biases(model, np.random.default_rng([seed, 1]))  # every v.name == "bias", RNN cells too
    left, right, ll, rl = make_pairs(np.random.default_rng([seed, 2]), f, t_left, t_right, left_lengths, right_lengths)
    n = left.shape[0]

    emb_l, emb_r = run(model, left), run(model, right)  # different T: two batches
    emb = np.concatenate([emb_l, emb_r], axis=0)
    dist = distances(emb_l, emb_r)

    # Masking == own last step: every row run alone, unpadded, batch of 1.
    alone = np.concatenate([run(model, s[None]) for s in unpadded(left, ll) + unpadded(right, rl)])
    err_alone = float(np.max(np.abs(alone - emb)))
    assert err_alone <= TOL, f"{name}: padded+masked != unpadded (max abs err {err_alone:g})"

    out = out_root / "tests" / "fixtures" / name
    shapes = export_encoder(model, out)
    np.save(out / "left.npy", left)
    np.save(out / "right.npy", right)
    np.save(out / "left_lengths.npy", ll)
    np.save(out / "right_lengths.npy", rl)
    np.save(out / "keras_embeddings.npy", emb)
    for m in METRICS:
        np.save(out / f"keras_{m}.npy", dist[m])

    # Independent NumPy interpreter of the written model directory.
    ref = reference_embed_dir(out, unpadded(left, ll) + unpadded(right, rl))
    err_ref = float(np.max(np.abs(ref - emb)))
    assert err_ref <= TOL, f"{name}: NumPy reference differs from Keras (max abs err {err_ref:g})"

    # Round trip: model.json + safetensors -> Keras -> same embeddings.
    reloaded = load_model_dir(out)
    emb2 = np.concatenate([run(reloaded, np.load(out / "left.npy")), run(reloaded, np.load(out / "right.npy"))])
    if not np.array_equal(emb2, emb):
        raise AssertionError(f"{name}: reloaded embeddings differ (max abs err {np.max(np.abs(emb2 - emb)):g})")
    assert (out / MODEL_JSON).read_text(encoding="utf-8") == model.to_json()

    pair0_bitwise = bool(np.array_equal(emb[0], emb[n]))
    assert np.max(np.abs(emb[0] - emb[n])) <= TOL, f"{name}: pair 0 embeddings differ"
    for m in METRICS:
        assert dist[m].shape == (n,) and np.all(np.isfinite(dist[m])), (name, m)

    print(f"== {name}: {model.__class__.__name__} -> {out}")
    print(
        f"   left {list(left.shape)} lengths {ll.tolist()}, right {list(right.shape)} lengths {rl.tolist()}, "
        f"embeddings {list(emb.shape)}"
    )
    print(
        f"   max|padded-alone| {err_alone:.2g}, max|numpy-keras| {err_ref:.2g}, round-trip bitwise, "
        f"pair 0 bitwise equal: {pair0_bitwise}"
    )
    for k, s in shapes.items():
        print(f"   {k:48s} {list(s)}")
    for m in METRICS:
        print(f"   {m:12s} " + " ".join(f"{x:.6g}" for x in dist[m]))
    return shapes


# --------------------------------------------------------------------------- self-test


def _expect_reject(model, needle):
    with tempfile.TemporaryDirectory(prefix="siamese_rnn_selftest_") as tmp:
        try:
            export_encoder(model, tmp)
        except ExportError as e:
            assert needle in str(e), (needle, str(e))
            print(f"OK  rejects ({needle}):", [l.strip() for l in str(e).splitlines()[1:2]][0])
            return
    raise AssertionError(f"model was not rejected; expected {needle!r}")


def self_test():
    """Exporter checks for recurrent encoders; writes only to /tmp."""
    k = keras
    L = layers
    seq = lambda *ls, shape=(None, 3): k.Sequential([k.Input(shape), *ls])  # noqa: E731
    cases = [
        (seq(L.Masking(), L.LSTM(4, go_backwards=True)), "only supported inside Bidirectional"),
        (seq(L.Masking(), L.GRU(4, activation="gelu")), "activation 'gelu'"),
        (seq(L.Masking(), L.LSTM(4, recurrent_activation="softplus")), "recurrent_activation 'softplus'"),
        (seq(L.Masking(), L.Bidirectional(L.LSTM(4), merge_mode="sum")), "merge_mode 'sum'"),
        (seq(L.Masking(), L.LSTM(4, return_sequences=True)), "return_sequences=False"),
        (seq(L.Dense(4), L.LSTM(4)), "Dense on a sequence"),
        (seq(L.LSTM(4), L.Masking()), "Masking is only supported directly after"),
        (seq(L.Masking(), L.Flatten(), L.Dense(2), shape=(4, 3)), "without a recurrent layer"),
    ]
    for model, needle in cases:
        _expect_reject(model, needle)
    # stateful / return_state cannot be built as a Sequential encoder; check the config path.
    from export_keras import check_encoder_config

    cfg = json.loads(seq(L.Masking(), L.LSTM(4)).to_json())
    cfg["config"]["layers"][2]["config"].update(stateful=True, return_state=True, time_major=True)
    cfg["config"]["layers"][0]["config"]["batch_shape"] = [None, None, None]
    probs = check_encoder_config(cfg)
    for needle in ("stateful=True", "return_state=True", "time_major=True", "fixed feature size"):
        assert any(needle in p for p in probs), (needle, probs)
    print("OK  rejects stateful / return_state / time_major / unknown feature size configs")

    # Accepted: dropout, unroll, use_bias=False, Dropout between recurrent layers, GRU in Bidirectional.
    keras.backend.clear_session()
    keras.utils.set_random_seed(3)
    ok = seq(
        L.Masking(),
        L.Bidirectional(L.GRU(3, return_sequences=True, reset_after=False, use_bias=False, dropout=0.2)),
        L.Dropout(0.1),
        L.LSTM(2, recurrent_dropout=0.3, unroll=False, use_bias=False),
        L.Dense(2, activation="relu"),
        shape=(None, 4),
    )
    randomize_biases(ok, np.random.default_rng(3))
    rng = np.random.default_rng(4)
    x, _, lens, _ = make_pairs(rng, 4, 6, 5, [3, 1, 6], [3, 5, 2])
    with tempfile.TemporaryDirectory(prefix="siamese_rnn_selftest_") as tmp:
        shapes = export_encoder(ok, tmp)
        assert sorted(shapes) == [
            "bidirectional/backward_gru/gru_cell/kernel",
            "bidirectional/backward_gru/gru_cell/recurrent_kernel",
            "bidirectional/forward_gru/gru_cell/kernel",
            "bidirectional/forward_gru/gru_cell/recurrent_kernel",
            "dense/bias",
            "dense/kernel",
            "lstm/lstm_cell/kernel",
            "lstm/lstm_cell/recurrent_kernel",
        ], shapes
        emb = run(ok, x)
        reloaded = load_model_dir(tmp)
        assert np.array_equal(emb, run(reloaded, x))
        # A deserialized model has other v.path values (no model prefix; Bidirectional
        # sub-layers lose the wrapper name) but must export under the same names.
        print("v.path (after model_from_json):", [v.path for v in reloaded.layers[1].weights][:2])
        assert export_encoder(reloaded, Path(tmp) / "again") == shapes
        ref = reference_embed_dir(Path(tmp), unpadded(x, lens))
        np.testing.assert_allclose(ref, emb, atol=TOL)
        print("OK  accepts BiGRU(reset_after=False, no bias, dropout) + Dropout + LSTM(no bias); numpy ref matches")

    # Nested encoder inside a whole Siamese model: names are relative to the encoder.
    keras.backend.clear_session()
    enc = k.Sequential([k.Input((None, 3)), L.Masking(), L.LSTM(2)], name="encoder")
    a, b = k.Input((None, 3)), k.Input((None, 3))
    _ = k.Model([a, b], L.Subtract()([enc(a), enc(b)]))
    print("v.path (nested Sequential encoder):", [v.path for v in enc.weights])
    with tempfile.TemporaryDirectory(prefix="siamese_rnn_selftest_") as tmp:
        shapes = export_encoder(enc, tmp)
        assert sorted(shapes) == ["lstm/lstm_cell/bias", "lstm/lstm_cell/kernel", "lstm/lstm_cell/recurrent_kernel"]
        print("OK  nested encoder tensor names:", sorted(shapes))

    # Functional LSTM without Masking is a plain chain; with Masking it is rejected with a hint.
    keras.backend.clear_session()
    inp = k.Input((None, 3))
    func = k.Model(inp, L.Dense(2)(L.GRU(3)(inp)))
    print("v.path (top-level Functional):", [v.path for v in func.weights])
    with tempfile.TemporaryDirectory(prefix="siamese_rnn_selftest_") as tmp:
        shapes = export_encoder(func, tmp)
        assert "gru/gru_cell/kernel" in shapes, shapes
        print("OK  Functional GRU (no Masking) exports:", sorted(shapes))
    inp = k.Input((None, 3))
    _expect_reject(k.Model(inp, L.LSTM(2)(L.Masking()(inp))), "build the recurrent encoder as keras.Sequential")
    print("self-test passed")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-root", type=Path, default=REPO, help="root to write fixtures under (default: repo root)")
    ap.add_argument("--self-test", action="store_true", help="check the recurrent export rules; write no fixtures")
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
