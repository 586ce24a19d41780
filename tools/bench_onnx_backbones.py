#!/usr/bin/env python3
"""ONNX Runtime CPU beside `siamese bench` on deep backbones (BENCHMARKS.md, issue #15):
torchvision's ResNet50 and MobileNetV2 at 224x224 (random weights, eval mode), exported to
ONNX and timed on onnxruntime's CPUExecutionProvider the way `siamese bench` runs a twin:
both twins as one batch of 2N images, then the N Euclidean distances (numpy).

torchvision's MobileNetV2 is keras.applications.MobileNetV2 (alpha 1.0): the same blocks,
channels and strides. Its ResNet50 is "v1.5" (the stride of each downsampling bottleneck on
its 3x3 conv, where Keras puts it on the first 1x1): the same layers and weights, 4.1
against Keras' 3.9 GFLOP per image. Weights do not change the speed.

Before timing, the ONNX model's output is checked against PyTorch's on the same input
(|err| <= 1e-4 + 1e-3*|ref|).

Usage (a venv outside the repo: pip install -r tools/requirements-torch.txt, plus torchvision):

    python tools/bench_onnx_backbones.py [--models resnet50,mobilenetv2] [--batch 1,4] [--iters 5]
        [--threads 0]

or, on a file that `siamese bench --model FILE.onnx` also runs (issue #16: the same file on
both; its input must be [batch, 3, H, W] float32):

    python tools/bench_onnx_backbones.py --onnx FILE.onnx [--batch 1,4] [--iters 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torchvision


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "resnet50":
        model = torchvision.models.resnet50(weights=None)
    elif name == "mobilenetv2":
        model = torchvision.models.mobilenet_v2(weights=None)
    else:
        raise SystemExit(f"unknown model {name}")
    # The encoder only, as keras.applications(include_top=False, pooling="avg") builds it.
    if name == "resnet50":
        model.fc = torch.nn.Identity()
    else:
        model.classifier = torch.nn.Identity()
    return model.eval()


def time_session(name: str, session: ort.InferenceSession, input_name: str, sample: list, args) -> None:
    """First call and the median steady call of both twins as one batch of 2N, then the N
    Euclidean distances."""
    for pairs in [int(b) for b in args.batch.split(",")]:
        rng = np.random.default_rng(pairs)
        x = rng.random((2 * pairs, *sample), dtype=np.float32)

        def call():
            y = session.run(None, {input_name: x})[0]
            d = y[:pairs] - y[pairs:]
            return np.sqrt(np.sum(d * d, axis=1))

        start = time.perf_counter()
        call()
        first = time.perf_counter() - start
        times = []
        for _ in range(args.iters):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        steady = float(np.median(times))
        print(f"{name} ORT CPU threads={args.threads}: {pairs} pairs: first call {first * 1e3:.1f} ms, "
              f"steady {steady * 1e3:.1f} ms, {pairs / steady:.2f} pairs/s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet50,mobilenetv2")
    ap.add_argument("--batch", default="1,4", help="pairs per call, comma separated")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="intra_op_num_threads (0: ORT default)")
    ap.add_argument("--onnx", type=Path, help="time this ONNX file instead of exporting --models")
    args = ap.parse_args()
    if args.onnx:
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(args.onnx), options, providers=["CPUExecutionProvider"])
        time_session(args.onnx.name, session, session.get_inputs()[0].name, session.get_inputs()[0].shape[1:], args)
        return 0
    for name in args.models.split(","):
        model = build(name)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.onnx"
            example = torch.randn(2, 3, 224, 224)
            torch.onnx.export(
                model, (example,), str(path), input_names=["x"], output_names=["y"],
                dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=18, dynamo=False,
            )
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        with torch.no_grad():
            want = model(example).numpy()
        got = session.run(None, {"x": example.numpy()})[0]
        if np.any(np.abs(got - want) > 1e-4 + 1e-3 * np.abs(want)):
            raise SystemExit(f"{name}: ONNX Runtime differs from PyTorch by {np.abs(got - want).max()}")
        time_session(name, session, "x", [3, 224, 224], args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
