#!/usr/bin/env python3
"""ONNX Runtime CPU baseline for BENCHMARKS.md: the seed twins, with the same weights, on the CPU.

Usage (in a venv outside the repo: pip install -r tools/requirements-torch.txt):

    python tools/bench_onnx.py                               # cnn,lstm,mha at 1,64,512 pairs, 20 iters
    python tools/bench_onnx.py --models cnn --batch 1,64,512 --iters 20
    python tools/bench_onnx.py --models lstm --seq-len 50
    python tools/bench_onnx.py --check-only                  # correctness checks only, no timing
    python tools/bench_onnx.py --threads 1                   # set intra_op_num_threads (0 = ORT default)
    python tools/bench_onnx.py --onnx-dir /tmp/onnx          # keep the exported .onnx files

For each model the script
 1. builds a PyTorch twin equal to the Keras encoder of the model directory and loads its
    model.safetensors (the layout conversions are in the encoders' __init__). The twin takes
    left, right [N, ...], runs the shared encoder once on torch.cat([left, right]) (2N rows,
    as `siamese bench` does) and returns the N Euclidean distances (over the whole embedding):
      cnn   models/cnn                Conv2D 32 3x3 relu, MaxPool 2, Conv2D 64 3x3 relu, MaxPool 2,
                                      Flatten (Keras NHWC order: the Dense rows are permuted to
                                      match our NCHW flatten), Dense 128 relu; input [N, 28, 28, 1]
      lstm  tests/fixtures/lstm_seed  Masking, LSTM(64) over 100 features; input [N, T, 100]. The
                                      benchmark inputs are full length, so Masking is a no-op and is
                                      left out of the twin.
      mha   tests/fixtures/mha_seed   MultiHeadAttention(4 heads, key_dim 64), self-attention on
                                      [N, 10, 64]; the embedding is the whole [10, 64] output
 2. exports it to ONNX (opset 18, torch dynamo exporter; the batch axis is dynamic, the LSTM's
    time axis is fixed at --seq-len) and
 3. checks it against the Keras goldens (keras_euclidean.npy), |err| <= 1e-4 + 1e-3*|ref|:
      cnn, mha  the ONNX model run by onnxruntime on the golden left/right pairs.
      lstm      the goldens are ragged (left/right_lengths.npy: Keras Masking gives the state after
                each row's own last step), which a fixed-length twin cannot take. So the PyTorch
                encoder is run on every row cut to its own length (as make_recurrent_goldens.py
                does) and compared with keras_embeddings.npy and keras_euclidean.npy, and then the
                ONNX model is compared with the PyTorch twin on the full-length benchmark inputs
                at every --batch size (same tolerance).
    A failed check stops the script (exit 1) before anything is timed.
 4. benchmarks the ONNX model on onnxruntime's CPUExecutionProvider (default session options:
    all graph optimisations, sequential execution; intra_op_num_threads from --threads).

What is measured (wall clock, time.perf_counter):
  session_ms        creating the InferenceSession from the .onnx file (graph optimisation
                    included); once per model, before the first batch size (a fresh session, not
                    the one the check used; ORT's process-wide set-up was paid by the check).
  first_call_ms     the first session.run at this batch size (the first one of a session also
                    pays for lazy initialisation; later sizes pay for new shapes).
  steady_ms_median  median of --iters further session.run calls, each end to end: two float32
                    NumPy arrays [B, ...] in, the B distances out as a NumPy array. The inputs are
                    uniform in [0, 1) (like `siamese bench`), made once, before the timing.
  pairs_per_s       batch_pairs / steady_ms_median.
  threads           intra_op_num_threads as run: --threads, or when 0 (ORT's default, one thread
                    per physical core) the number of physical cores of this machine.
The ONNX export and the checks are not timed. One JSON object per (model, batch) goes to stdout,
a table to stderr.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from safetensors.numpy import load_file
from torch import nn

REPO = Path(__file__).resolve().parent.parent
MODEL_DIRS = {"cnn": "models/cnn", "lstm": "tests/fixtures/lstm_seed", "mha": "tests/fixtures/mha_seed"}
GOLDEN_DIRS = {"cnn": "models/cnn/pairs", "lstm": "tests/fixtures/lstm_seed", "mha": "tests/fixtures/mha_seed"}
OPSET = 18
ATOL, RTOL = 1e-4, 1e-3


def param(a: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)), requires_grad=False)


# --------------------------------------------------------------------------- encoders


class CnnEncoder(nn.Module):
    """NHWC [B, 28, 28, 1] -> [B, 128]; the convolutions run NCHW."""

    def __init__(self, w: dict):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 3), nn.Conv2d(32, 64, 3)
        for conv, name in ((self.conv1, "conv2d"), (self.conv2, "conv2d_1")):
            conv.weight = param(w[f"{name}/kernel"].transpose(3, 2, 0, 1))  # HWIO -> OIHW
            conv.bias = param(w[f"{name}/bias"])
        # Keras flattens NHWC, (y*W + x)*C + c; we flatten NCHW, (c*H + y)*W + x: permute the
        # Dense kernel's rows once here instead of the activations at every call.
        k = w["dense/kernel"].reshape(5, 5, 64, 128).transpose(2, 0, 1, 3).reshape(1600, 128)
        self.dense = nn.Linear(1600, 128)
        self.dense.weight, self.dense.bias = param(k.T), param(w["dense/bias"])

    def forward(self, x):
        x = x.permute(0, 3, 1, 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return torch.relu(self.dense(x.flatten(1)))


class LstmEncoder(nn.Module):
    """[B, T, 100] -> the last hidden state [B, 64]. Keras gates i, f, c, o = PyTorch i, f, g, o."""

    def __init__(self, w: dict):
        super().__init__()
        p = "lstm/lstm_cell/"
        k, rk, b = w[p + "kernel"], w[p + "recurrent_kernel"], w[p + "bias"]
        self.lstm = nn.LSTM(k.shape[0], rk.shape[0], batch_first=True)
        self.lstm.weight_ih_l0, self.lstm.weight_hh_l0 = param(k.T), param(rk.T)  # (in, 4u) -> (4u, in)
        self.lstm.bias_ih_l0, self.lstm.bias_hh_l0 = param(b), param(np.zeros_like(b))  # Keras has one bias

    def forward(self, x):
        return self.lstm(x)[1][0][-1]


class MhaEncoder(nn.Module):
    """Keras MultiHeadAttention(x, x) on [B, T, D] -> [B, T, D]."""

    def __init__(self, w: dict, heads: int = 4, key_dim: int = 64):
        super().__init__()
        self.heads, self.key_dim = heads, key_dim
        p = "multi_head_attention/"
        dim = w[p + "query/kernel"].shape[0]
        self.q, self.k, self.v = (nn.Linear(dim, heads * key_dim) for _ in range(3))
        for lin, name in ((self.q, "query"), (self.k, "key"), (self.v, "value")):
            lin.weight = param(w[f"{p}{name}/kernel"].reshape(dim, heads * key_dim).T)  # (D, H, K) -> (HK, D)
            lin.bias = param(w[f"{p}{name}/bias"].reshape(heads * key_dim))  # (H, K) -> (HK,)
        self.out = nn.Linear(heads * key_dim, dim)
        self.out.weight = param(w[p + "attention_output/kernel"].reshape(heads * key_dim, dim).T)  # (H, K, D)
        self.out.bias = param(w[p + "attention_output/bias"])

    def forward(self, x):
        b, t, _ = x.shape

        def split(y):  # [B, T, H*K] -> [B, H, T, K]
            return y.reshape(b, t, self.heads, self.key_dim).transpose(1, 2)

        q = split(self.q(x)) * (1.0 / math.sqrt(self.key_dim))  # scaled after the bias, as Keras
        k, v = split(self.k(x)), split(self.v(x))
        att = torch.softmax(q @ k.transpose(-1, -2), dim=-1)  # [B, H, Tq, Tk]
        return self.out((att @ v).transpose(1, 2).reshape(b, t, self.heads * self.key_dim))


class Twin(nn.Module):
    """left, right [N, ...] -> N Euclidean distances; one encoder pass over the 2N rows."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, left, right):
        n = left.shape[0]
        e = self.encoder(torch.cat([left, right])).flatten(1)
        return torch.sqrt(((e[:n] - e[n:]) ** 2).sum(dim=1))


ENCODERS = {"cnn": CnnEncoder, "lstm": LstmEncoder, "mha": MhaEncoder}


def sample_shape(name: str, seq_len: int) -> tuple:
    return {"cnn": (28, 28, 1), "lstm": (seq_len, 100), "mha": (10, 64)}[name]


# --------------------------------------------------------------------------- check, export, run


def close(name: str, what: str, got, ref) -> bool:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    err = np.abs(got - ref)
    ok = bool(np.all(err <= ATOL + RTOL * np.abs(ref)))
    print(f"check {name:4} {what:52} max |err| {err.max():.3e}  {'OK' if ok else 'FAIL'}", file=sys.stderr)
    return ok


def export(twin: Twin, example: tuple, path: Path) -> None:
    batch = torch.export.Dim("batch")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(twin, example, str(path), input_names=["left", "right"], output_names=["distance"],
                          opset_version=OPSET, dynamic_shapes=({0: batch}, {0: batch}), dynamo=True, verbose=False)


def session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def bench_inputs(shape: tuple, batch: int) -> tuple:
    rng = np.random.default_rng(batch)
    return tuple(rng.random((batch, *shape), dtype=np.float32) for _ in range(2))


def check(name: str, twin: Twin, sess: ort.InferenceSession, d: Path, batches, seq_len: int) -> bool:
    ref, left, right = (np.load(d / f) for f in ("keras_euclidean.npy", "left.npy", "right.npy"))
    with torch.no_grad():
        if name == "lstm":  # ragged goldens: each row alone, cut to its own length
            lens = [np.load(d / f) for f in ("left_lengths.npy", "right_lengths.npy")]
            emb = np.stack([twin.encoder(torch.from_numpy(x[i : i + 1, :n]))[0].numpy()
                            for x, ns in zip((left, right), lens) for i, n in enumerate(ns)])
        else:
            emb = twin.encoder(torch.from_numpy(np.concatenate([left, right]))).numpy()
    how = " (rows cut to length)" if name == "lstm" else ""
    ok = close(name, f"torch{how} vs keras_embeddings", emb, np.load(d / "keras_embeddings.npy"))
    e = emb.reshape(len(emb), -1)
    ok &= close(name, f"torch{how} vs keras_euclidean", np.linalg.norm(e[: len(ref)] - e[len(ref) :], axis=1), ref)
    if name != "lstm":
        got = sess.run(None, {"left": left, "right": right})[0]
        return ok & close(name, f"onnxruntime vs keras_euclidean ({len(ref)} pairs)", got, ref)
    for b in batches:  # the ONNX LSTM has a fixed T: compare it with the torch twin at that T
        left, right = bench_inputs(sample_shape(name, seq_len), b)
        with torch.no_grad():
            want = twin(torch.from_numpy(left), torch.from_numpy(right)).numpy()
        got = sess.run(None, {"left": left, "right": right})[0]
        ok &= close(name, f"onnxruntime vs torch twin, T={seq_len}, {b} pairs", got, want)
    return ok


def physical_cores() -> int:
    sib = {open(f).read().strip() for f in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/topology/thread_siblings_list")}
    return len(sib) or os.cpu_count() or 1


def bench(name: str, path: Path, batches, iters: int, threads: int, seq_len: int):
    t = time.perf_counter()
    sess = session(path, threads)
    session_ms = (time.perf_counter() - t) * 1e3
    for b in batches:
        feed = dict(zip(("left", "right"), bench_inputs(sample_shape(name, seq_len), b)))
        t = time.perf_counter()
        sess.run(None, feed)
        first_ms = (time.perf_counter() - t) * 1e3
        times = []
        for _ in range(iters):
            t = time.perf_counter()
            sess.run(None, feed)
            times.append(time.perf_counter() - t)
        steady = float(np.median(times))
        yield {"model": name, "runtime": f"onnxruntime {ort.__version__} CPU",
               "threads": threads or physical_cores(), "intra_op_num_threads": threads, "batch_pairs": b,
               "seq_len": seq_len if name == "lstm" else None, "session_ms": round(session_ms, 3),
               "first_call_ms": round(first_ms, 3), "steady_ms_median": round(steady * 1e3, 3),
               "pairs_per_s": round(b / steady, 1)}


def int_list(s: str) -> list:
    return [int(v) for v in s.split(",") if v]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="cnn,lstm,mha", help="comma separated: cnn, lstm, mha")
    ap.add_argument("--batch", type=int_list, default=[1, 64, 512], help="batch sizes in pairs")
    ap.add_argument("--iters", type=int, default=20, help="timed steady-state calls per batch (median)")
    ap.add_argument("--seq-len", type=int, default=50, help="LSTM: time steps of the (full-length) inputs")
    ap.add_argument("--threads", type=int, default=0, help="intra_op_num_threads (0 = ORT default)")
    ap.add_argument("--check-only", action="store_true", help="run the correctness checks only")
    ap.add_argument("--onnx-dir", type=Path, help="keep the exported .onnx files here (default: a temp dir)")
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m]
    if bad := [m for m in models if m not in ENCODERS]:
        ap.error(f"unknown model(s) {bad}; choose from {sorted(ENCODERS)}")
    if not args.batch or min(args.batch) < 1 or args.iters < 1 or args.seq_len < 1 or args.threads < 0:
        ap.error("--batch, --iters and --seq-len must be positive, --threads >= 0")
    torch.set_num_threads(max(1, args.threads or physical_cores()))

    tmp = tempfile.TemporaryDirectory()
    out_dir = args.onnx_dir or Path(tmp.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_files, ok = {}, True
    for name in models:
        d = REPO / MODEL_DIRS[name]
        twin = Twin(ENCODERS[name](load_file(str(d / "model.safetensors")))).eval()
        example = tuple(torch.from_numpy(x) for x in bench_inputs(sample_shape(name, args.seq_len), 2))
        onnx_files[name] = out_dir / f"{name}.onnx"
        t = time.perf_counter()
        export(twin, example, onnx_files[name])
        print(f"export {name}: {onnx_files[name]} ({time.perf_counter() - t:.1f} s)", file=sys.stderr)
        sess = session(onnx_files[name], args.threads)
        ok &= check(name, twin, sess, REPO / GOLDEN_DIRS[name], args.batch, args.seq_len)
        del sess  # its thread pool must not compete with the timed session
    if not ok:
        print("correctness check FAILED; nothing timed", file=sys.stderr)
        return 1
    if args.check_only:
        return 0

    rows = []
    for name in models:
        for row in bench(name, onnx_files[name], args.batch, args.iters, args.threads, args.seq_len):
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(f"\nonnxruntime {ort.__version__} CPUExecutionProvider, {args.iters} iters, inputs uniform [0, 1)",
          file=sys.stderr)
    print(f"{'model':10} {'threads':>7} {'pairs':>6} {'session ms':>11} {'first call ms':>14} "
          f"{'steady ms':>10} {'pairs/s':>10}", file=sys.stderr)
    for r in rows:
        label = r["model"] + (f" T={r['seq_len']}" if r["seq_len"] else "")
        print(f"{label:10} {r['threads']:>7} {r['batch_pairs']:>6} {r['session_ms']:>11.1f} "
              f"{r['first_call_ms']:>14.2f} {r['steady_ms_median']:>10.3f} {r['pairs_per_s']:>10.1f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
