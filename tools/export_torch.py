#!/usr/bin/env python3
"""Export a PyTorch recurrent encoder to a siamese-wgpu model directory (Keras format).

    from export_torch import export_torch_rnn
    export_torch_rnn(lstm, head, "out_dir", input_size=6)

``module`` is an ``nn.LSTM`` or ``nn.GRU`` with num_layers=1, proj_size=0 (LSTM),
optionally bidirectional (batch_first does not change the weights; the encoder is
meant to be run batch_first on right-padded sequences). ``head`` is an optional
``nn.Linear`` applied to the final hidden state (for a bidirectional module: the
concatenation [forward h_n, backward h_n]).

The directory is the same as tools/export_keras.py writes for a Keras encoder:

  model.json         a synthesized Keras 3 Sequential config (identical in form to what
                     Keras 3.15 ``to_json()`` writes, and loadable with
                     ``keras.models.model_from_json``): InputLayer batch_shape
                     [null, null, F] -> Masking(0.0) -> LSTM/GRU (units, activation tanh,
                     recurrent_activation sigmoid, return_sequences false, GRU reset_after
                     true), or Bidirectional(merge_mode concat) wrapping it -> optional Dense.
  model.safetensors  float32 tensors in Keras layout and naming (see ``convert_weights``).

The embedding of a sequence is the hidden state after its own last valid step, i.e.
what PyTorch gives as ``h_n`` for a ``pack_padded_sequence`` input and what Keras gives
with Masking on a zero-padded batch (valid steps must not be all-zero vectors).

Run as a script (needs torch AND keras/jax, see tools/requirements-torch.txt):

  KERAS_BACKEND=jax python tools/export_torch.py               # write tests/fixtures/torch_lstm
  KERAS_BACKEND=jax python tools/export_torch.py --out-root DIR
  KERAS_BACKEND=jax python tools/export_torch.py --self-test    # GRU / bidirectional / no-bias; /tmp only
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
MODEL_JSON = "model.json"
MODEL_WEIGHTS = "model.safetensors"
METRICS = ("euclidean", "sqeuclidean", "cosine", "manhattan")


class ExportError(Exception):
    pass


# --------------------------------------------------------------------------- weights


def _np(t) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))


def convert_weights(module, head=None) -> dict[str, np.ndarray]:
    """THE PyTorch -> Keras weight conversion (the only place where layouts are mapped).

    LSTM: PyTorch stacks gate rows in order i, f, g, o; Keras stacks gate columns in
      order i, f, c, o -- the same order (g == c, the cell candidate), so no reordering:
        kernel           (in, 4u) = weight_ih_l0.T
        recurrent_kernel (u, 4u)  = weight_hh_l0.T
        bias             (4u,)    = bias_ih_l0 + bias_hh_l0   (Keras has one bias)
    GRU: PyTorch gate order r, z, n; Keras gate order z, r, h, so blocks are reordered
      [r, z, n] -> [z, r, n]. PyTorch's GRU applies the reset gate after the recurrent
      matmul: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), which is Keras reset_after=True:
        kernel           (in, 3u) = reorder(weight_ih_l0).T
        recurrent_kernel (u, 3u)  = reorder(weight_hh_l0).T
        bias             (2, 3u)  = [reorder(bias_ih_l0); reorder(bias_hh_l0)]  (input; recurrent)
      h' = (1 - z) * n + z * h in both.
    Bidirectional: the ``*_reverse`` tensors go to the backward layer.
    Linear: weight (out, in) -> Dense kernel (in, out) = weight.T; bias (out,).
    Tensor names: ``{rnn}/{rnn}_cell/{var}`` or
    ``bidirectional/{forward,backward}_{rnn}/{rnn}_cell/{var}``, ``dense/kernel``, ``dense/bias``.
    Without bias (``bias=False``) no bias tensors are written (use_bias false).
    """
    kind = _kind(module)
    cell = f"{kind}_cell"
    u = module.hidden_size
    out: dict[str, np.ndarray] = {}

    def reorder(t):  # GRU [r, z, n] -> [z, r, n] along dim 0
        return t if kind == "lstm" else np.concatenate([t[u : 2 * u], t[:u], t[2 * u :]], axis=0)

    suffixes = [("", f"{kind}")] if not module.bidirectional else [("", f"forward_{kind}"), ("_reverse", f"backward_{kind}")]
    for sfx, lname in suffixes:
        prefix = f"{lname}/{cell}" if not module.bidirectional else f"bidirectional/{lname}/{cell}"
        w_ih, w_hh = _np(getattr(module, f"weight_ih_l0{sfx}")), _np(getattr(module, f"weight_hh_l0{sfx}"))
        out[f"{prefix}/kernel"] = np.ascontiguousarray(reorder(w_ih).T)
        out[f"{prefix}/recurrent_kernel"] = np.ascontiguousarray(reorder(w_hh).T)
        if module.bias:
            b_ih, b_hh = _np(getattr(module, f"bias_ih_l0{sfx}")), _np(getattr(module, f"bias_hh_l0{sfx}"))
            if kind == "lstm":
                out[f"{prefix}/bias"] = (b_ih + b_hh).astype(np.float32)
            else:
                out[f"{prefix}/bias"] = np.ascontiguousarray(np.stack([reorder(b_ih), reorder(b_hh)]))
    if head is not None:
        out["dense/kernel"] = np.ascontiguousarray(_np(head.weight).T)
        if head.bias is not None:
            out["dense/bias"] = _np(head.bias)
    return out


def _kind(module) -> str:
    import torch.nn as nn

    if isinstance(module, nn.LSTM):
        if getattr(module, "proj_size", 0):
            raise ExportError("nn.LSTM with proj_size > 0 has no Keras equivalent")
        return "lstm"
    if isinstance(module, nn.GRU):
        return "gru"
    raise ExportError(f"expected nn.LSTM or nn.GRU, got {type(module).__name__}")


# --------------------------------------------------------------------------- model.json


def _dtype():
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}


def _init(cls, config):
    return {"module": "keras.initializers", "class_name": cls, "config": config, "registered_name": None}


def _rnn_layer(kind, name, units, use_bias, go_backwards, in_features):
    """One LSTM/GRU entry, field for field as Keras 3.15 to_json() writes it."""
    cfg = {
        "name": name,
        "trainable": True,
        "dtype": _dtype(),
        "return_sequences": False,
        "return_state": False,
        "go_backwards": go_backwards,
        "stateful": False,
        "unroll": False,
        "zero_output_for_mask": False,
        "units": units,
        "activation": "tanh",
        "recurrent_activation": "sigmoid",
        "use_bias": use_bias,
        "kernel_initializer": _init("GlorotUniform", {"seed": None, "input_axes": None, "output_axes": None}),
        "recurrent_initializer": _init("Orthogonal", {"seed": None, "gain": 1.0}),
        "bias_initializer": _init("Zeros", {}),
    }
    if kind == "lstm":
        cfg["unit_forget_bias"] = True
    cfg.update(
        {
            "kernel_regularizer": None,
            "recurrent_regularizer": None,
            "bias_regularizer": None,
            "activity_regularizer": None,
            "kernel_constraint": None,
            "recurrent_constraint": None,
            "bias_constraint": None,
            "dropout": 0.0,
            "recurrent_dropout": 0.0,
        }
    )
    if kind == "gru":
        cfg["reset_after"] = True
    cfg["seed"] = None
    return {
        "module": "keras.layers",
        "class_name": kind.upper(),
        "config": cfg,
        "registered_name": None,
        "build_config": {"input_shape": [None, None, in_features]},
    }


def keras_model_config(module, head=None, input_size=None, name="sequential") -> dict:
    """A Keras 3 Sequential config (``json.loads(model.to_json())`` form) for module + head."""
    kind = _kind(module)
    f = int(input_size if input_size is not None else module.input_size)
    if f != module.input_size:
        raise ExportError(f"input_size {f} != module.input_size {module.input_size}")
    if module.num_layers != 1:
        raise ExportError(f"num_layers={module.num_layers}; only single-layer modules (stack one module per layer)")
    u = module.hidden_size
    layers = [
        {
            "module": "keras.layers",
            "class_name": "InputLayer",
            "config": {
                "batch_shape": [None, None, f],
                "dtype": "float32",
                "sparse": False,
                "ragged": False,
                "name": "input_layer",
                "optional": False,
            },
            "registered_name": None,
        },
        {
            "module": "keras.layers",
            "class_name": "Masking",
            "config": {"name": "masking", "trainable": True, "dtype": _dtype(), "mask_value": 0.0},
            "registered_name": None,
        },
    ]
    if module.bidirectional:
        fwd = _rnn_layer(kind, f"forward_{kind}", u, bool(module.bias), False, f)
        bwd = _rnn_layer(kind, f"backward_{kind}", u, bool(module.bias), True, f)
        layers.append(
            {
                "module": "keras.layers",
                "class_name": "Bidirectional",
                "config": {
                    "name": "bidirectional",
                    "trainable": True,
                    "dtype": _dtype(),
                    "merge_mode": "concat",
                    "layer": fwd,
                    "backward_layer": bwd,
                },
                "registered_name": None,
                "build_config": {"input_shape": [None, None, f]},
            }
        )
        out_dim = 2 * u
    else:
        layers.append(_rnn_layer(kind, kind, u, bool(module.bias), False, f))
        out_dim = u
    if head is not None:
        if head.in_features != out_dim:
            raise ExportError(f"head.in_features={head.in_features}, but the recurrent output has {out_dim}")
        layers.append(
            {
                "module": "keras.layers",
                "class_name": "Dense",
                "config": {
                    "name": "dense",
                    "trainable": True,
                    "dtype": _dtype(),
                    "units": head.out_features,
                    "activation": "linear",
                    "use_bias": head.bias is not None,
                    "kernel_initializer": _init("GlorotUniform", {"seed": None, "input_axes": None, "output_axes": None}),
                    "bias_initializer": _init("Zeros", {}),
                    "kernel_regularizer": None,
                    "bias_regularizer": None,
                    "kernel_constraint": None,
                    "bias_constraint": None,
                    "quantization_config": None,
                },
                "registered_name": None,
                "build_config": {"input_shape": [None, out_dim]},
            }
        )
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {
            "name": name,
            "trainable": True,
            "dtype": _dtype(),
            "layers": layers,
            "build_input_shape": [None, None, f],
        },
        "registered_name": None,
        "build_config": {"input_shape": [None, None, f]},
        "compile_config": {},
    }


def export_torch_rnn(module, head=None, out_dir=".", input_size=None) -> dict[str, tuple]:
    """Write out_dir/model.json + out_dir/model.safetensors; returns {tensor name: shape}."""
    from safetensors.numpy import save_file

    config = keras_model_config(module, head, input_size)
    tensors = convert_weights(module, head)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # json.dumps defaults (", " / ": " separators) match Keras' to_json() output.
    (out / MODEL_JSON).write_text(json.dumps(config), encoding="utf-8")
    save_file(tensors, str(out / MODEL_WEIGHTS))
    return {k: tuple(v.shape) for k, v in tensors.items()}


# --------------------------------------------------------------------------- PyTorch side


def torch_embed(module, head, x: np.ndarray, lengths) -> np.ndarray:
    """Embeddings [N, D] of right-padded x [N, T, F]: h_n at each sequence's own last
    step via pack_padded_sequence (forward/backward h_n concatenated), then the head."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence

    was_batch_first = module.batch_first
    with torch.no_grad():
        xt = torch.from_numpy(np.asarray(x, np.float32))
        if not was_batch_first:
            xt = xt.transpose(0, 1)
        packed = pack_padded_sequence(
            xt, torch.as_tensor(np.asarray(lengths), dtype=torch.int64), batch_first=was_batch_first, enforce_sorted=False
        )
        _, h = module(packed)
        if isinstance(h, tuple):  # LSTM: (h_n, c_n)
            h = h[0]
        emb = torch.cat([h[0], h[1]], dim=-1) if module.bidirectional else h[0]
        if head is not None:
            emb = head(emb)
    return emb.numpy().astype(np.float32)


def torch_distances(emb_left, emb_right) -> dict[str, np.ndarray]:
    """The make_goldens.distances() formulas in float32 torch."""
    import torch

    a = torch.from_numpy(np.asarray(emb_left, np.float32))
    b = torch.from_numpy(np.asarray(emb_right, np.float32))
    d = a - b
    sq = torch.sum(d * d, dim=1)

    def l2n(x):
        return x / torch.sqrt(torch.clamp(torch.sum(x * x, dim=1, keepdim=True), min=1e-12))

    out = {
        "euclidean": torch.sqrt(sq),
        "sqeuclidean": sq,
        "cosine": torch.clamp(1.0 - torch.sum(l2n(a) * l2n(b), dim=1), min=0.0),
        "manhattan": torch.sum(torch.abs(d), dim=1),
    }
    return {k: v.numpy().astype(np.float32) for k, v in out.items()}


# --------------------------------------------------------------------------- checks / fixture


def keras_embed_dir(model_dir, x) -> np.ndarray:
    sys.path.insert(0, str(TOOLS))
    from make_goldens import load_model_dir
    from keras import ops

    model = load_model_dir(model_dir)
    return np.asarray(ops.convert_to_numpy(model(np.asarray(x, np.float32), training=False)), np.float32)


def verify(module, head, model_dir, x, lengths, tol=1e-5) -> float:
    """Keras on the exported directory vs PyTorch (packed) on the same ragged batch;
    also checks that model.json is canonical (Keras rewrites it identically)."""
    import keras

    text = (Path(model_dir) / MODEL_JSON).read_text(encoding="utf-8")
    canon = keras.models.model_from_json(text).to_json()
    if json.loads(canon) != json.loads(text):
        raise AssertionError(f"{model_dir}: synthesized model.json differs from Keras' own serialization")
    assert canon == text, "model.json is not byte-identical to Keras' to_json()"
    sys.path.insert(0, str(TOOLS))
    from export_keras import check_encoder_config

    problems = check_encoder_config(json.loads(text))
    assert not problems, problems
    ref = torch_embed(module, head, x, lengths)
    got = keras_embed_dir(model_dir, x)
    err = float(np.max(np.abs(ref - got)))
    if err > tol:
        raise AssertionError(f"{model_dir}: Keras vs PyTorch max abs err {err:g} > {tol:g}")
    # own last step: each sequence alone, unpadded
    alone = np.concatenate([torch_embed(module, head, x[i : i + 1, :n], [n]) for i, n in enumerate(lengths)])
    assert float(np.max(np.abs(alone - ref))) <= tol
    return err


def self_test():
    import tempfile

    import torch
    import torch.nn as nn

    sys.path.insert(0, str(TOOLS))
    from make_recurrent_goldens import make_pairs, reference_embed_dir, unpadded

    torch.manual_seed(7)
    cases = [
        ("gru+linear", nn.GRU(5, 6, batch_first=True), nn.Linear(6, 3)),
        ("bigru", nn.GRU(5, 4, batch_first=True, bidirectional=True), None),
        ("bilstm+linear", nn.LSTM(5, 3, batch_first=True, bidirectional=True), nn.Linear(6, 2)),
        ("lstm nobias, linear nobias", nn.LSTM(5, 4, batch_first=True, bias=False), nn.Linear(4, 2, bias=False)),
        ("gru nobias, time-major", nn.GRU(5, 3, bias=False), None),
    ]
    x, _, lens, _ = make_pairs(np.random.default_rng(8), 5, 9, 7, [4, 1, 9, 7], [4, 7, 2, 1])
    for name, mod, head in cases:
        mod.eval()
        with tempfile.TemporaryDirectory(prefix="siamese_torch_selftest_") as tmp:
            shapes = export_torch_rnn(mod, head, tmp, input_size=5)
            err = verify(mod, head, tmp, x, lens)
            ref = reference_embed_dir(Path(tmp), unpadded(x, lens))
            err_np = float(np.max(np.abs(ref - torch_embed(mod, head, x, lens))))
            assert err_np <= 1e-5, err_np
            print(f"OK  {name:28s} keras-vs-torch {err:.2g}  numpy-ref-vs-torch {err_np:.2g}  {sorted(shapes)}")
    for bad, needle in ((nn.LSTM(5, 4, num_layers=2), "num_layers"), (nn.LSTM(5, 4, proj_size=2), "proj_size")):
        try:
            keras_model_config(bad)
        except ExportError as e:
            assert needle in str(e), e
            print(f"OK  rejects {needle}: {e}")
        else:
            raise AssertionError(needle)
    print("self-test passed")


def write_torch_lstm(out_root: Path):
    import torch
    import torch.nn as nn

    sys.path.insert(0, str(TOOLS))
    from make_goldens import distances

    from make_recurrent_goldens import make_pairs

    torch.manual_seed(20)
    lstm = nn.LSTM(input_size=6, hidden_size=9, batch_first=True).eval()
    head = nn.Linear(9, 4).eval()
    left, right, ll, rl = make_pairs(np.random.default_rng([20, 2]), 6, 13, 11, [7, 1, 13, 5], [7, 11, 3, 1])
    n = left.shape[0]

    out = out_root / "tests" / "fixtures" / "torch_lstm"
    shapes = export_torch_rnn(lstm, head, out, input_size=6)
    t_emb = np.concatenate([torch_embed(lstm, head, left, ll), torch_embed(lstm, head, right, rl)])
    t_dist = torch_distances(t_emb[:n], t_emb[n:])
    k_emb = np.concatenate([keras_embed_dir(out, left), keras_embed_dir(out, right)])
    k_dist = distances(k_emb[:n], k_emb[n:])
    err_l = verify(lstm, head, out, left, ll)
    err_r = verify(lstm, head, out, right, rl)
    err = float(np.max(np.abs(t_emb - k_emb)))
    assert err <= 1e-5, err
    for m in METRICS:
        np.testing.assert_allclose(k_dist[m], t_dist[m], rtol=1e-4, atol=1e-5, err_msg=m)

    np.save(out / "left.npy", left)
    np.save(out / "right.npy", right)
    np.save(out / "left_lengths.npy", ll)
    np.save(out / "right_lengths.npy", rl)
    np.save(out / "torch_embeddings.npy", t_emb)
    np.save(out / "keras_embeddings.npy", k_emb)
    for m in METRICS:
        np.save(out / f"torch_{m}.npy", t_dist[m])
        np.save(out / f"keras_{m}.npy", k_dist[m])

    print(f"== torch_lstm: nn.LSTM(6, 9) + nn.Linear(9, 4) -> {out}")
    print(f"   left {list(left.shape)} lengths {ll.tolist()}, right {list(right.shape)} lengths {rl.tolist()}")
    print(f"   max|torch-keras| embeddings {err:.2g} (verify: {err_l:.2g}, {err_r:.2g}); pair 0 bitwise: "
          f"torch {np.array_equal(t_emb[0], t_emb[n])}, keras {np.array_equal(k_emb[0], k_emb[n])}")
    for k, s in shapes.items():
        print(f"   {k:36s} {list(s)}")
    for m in METRICS:
        print(f"   torch {m:12s} " + " ".join(f"{x:.6g}" for x in t_dist[m]))
        print(f"   keras {m:12s} " + " ".join(f"{x:.6g}" for x in k_dist[m]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-root", type=Path, default=REPO, help="root to write the fixture under (default: repo root)")
    ap.add_argument("--self-test", action="store_true", help="check GRU/bidirectional/no-bias conversions; write nothing")
    args = ap.parse_args()
    import keras
    import torch

    if keras.backend.backend() != "jax":
        sys.exit(f"error: goldens are defined with the JAX backend; got {keras.backend.backend()}")
    torch.set_num_threads(1)  # deterministic CPU reductions
    print(f"torch {torch.__version__}, keras {keras.__version__}, numpy {np.__version__}")
    if args.self_test:
        self_test()
    else:
        write_torch_lstm(args.out_root)


if __name__ == "__main__":
    main()
