#!/usr/bin/env python3
"""Write the PyTorch -> ONNX fixtures for tests/onnx.rs: small nn.Module image encoders
(eval mode; every BatchNorm given non-trivial running_mean (normal*0.1), running_var
(uniform [0.5, 1.5)), weight (uniform [0.5, 1.5)) and bias (normal*0.1)), each exported twice:

  NAME.ts.onnx                  the TorchScript exporter (dynamo=False), opset 13, weights
                                inline, input "input" / output "encoding" with a dynamic
                                axis 0 named "batch"
  NAME.dynamo.onnx (+ .data)    the default (dynamo / torch.export) exporter, opset 18,
                                batch dimension torch.export.Dim("batch"), every initializer
                                in NAME.dynamo.onnx.data (location recorded as the bare,
                                relative file name)

The models (input C,H,W):

  tiny_cnn     [3,20,24]  Conv2d(3,8,3,p1,no bias)-BN-ReLU-MaxPool2d(2);
                          Conv2d(8,12,3,s2,p1)-BN-ReLU; a torchvision-style BasicBlock on 12
                          channels (conv3x3-bn-relu-conv3x3-bn + identity, relu);
                          AdaptiveAvgPool2d(1)-flatten-Linear(12,8)
  flatten_cnn  [1,17,21]  Conv2d(1,4,3)-ReLU-MaxPool2d(2)-Conv2d(4,6,3,p1)-Tanh;
                          torch.flatten(x,1) of the 6x7x9 map (NCHW flatten order matters);
                          Linear(378,10)
  convnext_block [3,18,22] torchvision's Conv2d(3,16,2,s2)-LayerNorm2d stem, one CNBlock(16)
                          (depthwise 7x7, LayerNorm, Linear 64, exact GELU, Linear 16, layer
                          scale uniform [0.5, 1.5), residual); AdaptiveAvgPool2d(1)-flatten-
                          Linear(16,8): the TorchScript exporter writes its LayerNorms as
                          ReduceMean/Sub/Pow/Sqrt/Div and both write GELU through Erf
  emb_lstm     [9] int64 token ids in [1, 50): Embedding(50,8)-LSTM(8,12,num_layers=2,
                          batch_first)-h_n[-1]-Linear(12,6)
  bigru_mean   [11,5]     GRU(5,7,bidirectional,batch_first), outputs averaged over time
  mbv3_block   [3,19,23]  Conv2d(3,16,3,s2,p1)-BN-Hardswish; depthwise Conv2d(16,16,3,p1,
                          groups=16)-BN-ReLU6; squeeze-excite (AdaptiveAvgPool2d(1)-Conv2d(16,4,1)
                          -ReLU-Conv2d(4,16,1)-Hardsigmoid, multiply); Conv2d(16,24,1)-BN;
                          AdaptiveAvgPool2d(1)-flatten-Linear(24,8)

Beside the model files, per model:

  NAME.left.npy, NAME.right.npy  float32 [4,C,H,W], standard normal; pair 3 has right == left
  NAME.torch_out.npy             float32 [8,D]: model(cat(left, right)) in PyTorch, computed in
                                 float64 (rows 0..3 left, 4..7 right)
  NAME.distances.npy             float32 [4]: euclidean distance between the left and right
                                 embeddings, computed in float64 from torch_out

Every exported file is then run with ONNX Runtime on cat(left, right) (batch 8, while the
exporters traced batch 2, so the batch axis is proven dynamic) and must match torch_out
to 1e-4.

  python tools/make_onnx_files.py [--out DIR] [--models tiny_cnn,...]

Versions: tools/requirements-onnx.txt.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp())

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tests" / "fixtures" / "onnx"
PAIRS = 4
# The graph output's name. Not "embedding": the dynamo exporter names nn.Embedding's own
# output so, and two values of one name are not valid ONNX. (The fixtures written before the
# token-id model call it "embedding"; the name changes nothing.)
OUTPUT = "encoding"
TRACE_BATCH = 2
TOL = 1e-4
EXPORTS = ("ts", "dynamo")


# --------------------------------------------------------------------------- models


def conv_bn(cin, cout, k=3, stride=1, padding=1, groups=1):
    return [nn.Conv2d(cin, cout, k, stride=stride, padding=padding, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock without downsample."""

    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class TinyCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, stride=2, padding=1),
            nn.BatchNorm2d(12),
            nn.ReLU(),
            BasicBlock(12),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, 8)

    def forward(self, x):
        x = self.pool(self.features(x))
        return self.fc(torch.flatten(x, 1))


class FlattenCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3),  # 17x21 -> 15x19
            nn.ReLU(),
            nn.MaxPool2d(2),  # -> 7x9
            nn.Conv2d(4, 6, 3, padding=1),
            nn.Tanh(),
        )
        self.fc = nn.Linear(6 * 7 * 9, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


class SqueezeExcite(nn.Module):
    def __init__(self, c, squeeze):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, c, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        s = self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))
        return x * s


class Mbv3Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.Hardswish(),
            nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU6(),
            SqueezeExcite(16, 4),
            nn.Conv2d(16, 24, 1, bias=False),
            nn.BatchNorm2d(24),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(24, 8)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class ConvnextBlock(nn.Module):
    """torchvision's ConvNeXt pieces as convnext_tiny uses them: a stem Conv2d(2, stride 2)
    with its LayerNorm2d (permute, LayerNorm over channels, permute back), one CNBlock
    (depthwise 7x7, LayerNorm, Linear 4x, exact GELU, Linear, layer scale, residual), then
    an embedding head."""

    def __init__(self):
        super().__init__()
        from torchvision.models.convnext import CNBlock, LayerNorm2d

        self.stem = nn.Sequential(nn.Conv2d(3, 16, 2, stride=2), LayerNorm2d(16, eps=1e-6))
        self.block = CNBlock(16, layer_scale=1e-6, stochastic_depth_prob=0.0)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 8)
        with torch.no_grad():
            # LayerScale's initial 1e-6 would hide the block; LayerNorms get weight too.
            self.block.layer_scale.copy_(torch.rand_like(self.block.layer_scale) + 0.5)
            for m in self.modules():
                if isinstance(m, nn.LayerNorm):
                    m.weight.copy_(torch.rand_like(m.weight) + 0.5)
                    m.bias.copy_(torch.randn_like(m.bias) * 0.1)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.block(self.stem(x))), 1))


class EmbLstm(nn.Module):
    """Token ids -> nn.Embedding(50, 8) -> a 2-layer nn.LSTM(8, 12, batch_first) -> the last
    layer's h_n -> Linear(12, 6): the recurrent twin of a text Siamese tutorial."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 8)
        self.lstm = nn.LSTM(8, 12, num_layers=2, batch_first=True)
        self.fc = nn.Linear(12, 6)

    def forward(self, ids):
        _, (h, _) = self.lstm(self.emb(ids))
        return self.fc(h[-1])


class BiGruMean(nn.Module):
    """nn.GRU(5, 7, bidirectional, batch_first) over float features, its outputs averaged
    over time (both directions, concatenated)."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(5, 7, batch_first=True, bidirectional=True)

    def forward(self, x):
        out, _ = self.gru(x)
        return out.mean(dim=1)


# Token-id models: their input is int64 ids in [1, VOCAB).
VOCAB = 50
IDS = {"emb_lstm"}

# name: (class, input C,H,W)
MODELS = {
    "tiny_cnn": (TinyCnn, (3, 20, 24)),
    "flatten_cnn": (FlattenCnn, (1, 17, 21)),
    "mbv3_block": (Mbv3Block, (3, 19, 23)),
    "convnext_block": (ConvnextBlock, (3, 18, 22)),
    "emb_lstm": (EmbLstm, (9,)),
    "bigru_mean": (BiGruMean, (11, 5)),
}


def randomize_bn(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n) * 0.1)
                m.running_var.copy_(torch.rand(n) + 0.5)
                m.weight.copy_(torch.rand(n) + 0.5)
                m.bias.copy_(torch.randn(n) * 0.1)


# --------------------------------------------------------------------------- export


def export_ts(model, x, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            str(path),
            dynamo=False,
            opset_version=13,
            input_names=["input"],
            output_names=[OUTPUT],
            dynamic_axes={"input": {0: "batch"}, OUTPUT: {0: "batch"}},
        )


def export_dynamo(model, x, path: Path) -> None:
    data = path.with_name(path.name + ".data")
    for p in (path, data):
        if p.exists():
            p.unlink()
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.onnx.export(
        model,
        (x,),
        dynamo=True,
        opset_version=18,
        input_names=["input"],
        output_names=[OUTPUT],
        dynamic_shapes=({0: batch},),
    )
    # The weights are small, so the exporter would inline them: save through onnx with
    # every float initializer forced into one external file, its location the bare file
    # name. Integer tensors (axes, shapes) stay inline, as the exporter writes them for real
    # models: ONNX Runtime's shape inference cannot read them from external data.
    proto = program.model_proto
    onnx.external_data_helper.convert_model_to_external_data(
        proto, all_tensors_to_one_file=True, location=data.name, size_threshold=0, convert_attribute=False
    )
    for tensor in proto.graph.initializer:
        if tensor.data_type != onnx.TensorProto.FLOAT:
            tensor.data_location = onnx.TensorProto.DEFAULT
            del tensor.external_data[:]
    onnx.save_model(proto, str(path))


# --------------------------------------------------------------------------- inspection


def describe(path: Path) -> dict:
    m = onnx.load(str(path), load_external_data=False)
    ops: dict[str, int] = {}
    for node in m.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    external = [i.name for i in m.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL]
    locations = sorted(
        {e.value for i in m.graph.initializer for e in i.external_data if e.key == "location"}
    )
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))

    def shape(vi):
        return [d.dim_param if d.dim_param else d.dim_value for d in vi.type.tensor_type.shape.dim]

    return {
        "opset": opset,
        "ops": ops,
        "initializers": len(m.graph.initializer),
        "external": len(external),
        "locations": locations,
        "inputs": [(i.name, shape(i)) for i in m.graph.input],
        "outputs": [(o.name, shape(o)) for o in m.graph.output],
        "functions": [f.name for f in m.functions],
    }


def ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: x})[0]


# --------------------------------------------------------------------------- main


def make(name: str, out: Path, seed: int) -> list[tuple]:
    cls, chw = MODELS[name]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = cls()
    randomize_bn(model)
    model.eval()

    def sample(rows):
        if name in IDS:
            return rng.integers(1, VOCAB, (rows, *chw)).astype(np.int64)
        return rng.standard_normal((rows, *chw)).astype(np.float32)

    left, right = sample(PAIRS), sample(PAIRS)
    right[PAIRS - 1] = left[PAIRS - 1]
    both = np.concatenate([left, right], axis=0)
    # PyTorch in float64 (in float32 the same sample at two batch positions can differ by
    # 1e-7), then float32.
    with torch.no_grad():
        exact = model.double()(torch.from_numpy(both if name in IDS else both.astype(np.float64)))
        torch_out = exact.numpy().astype(np.float32)
    model.float()
    e = torch_out.astype(np.float64)
    distances = np.sqrt(((e[:PAIRS] - e[PAIRS:]) ** 2).sum(axis=1)).astype(np.float32)
    if distances[PAIRS - 1] != 0.0:
        raise SystemExit(f"{name}: identical pair distance {distances[PAIRS - 1]} != 0")

    np.save(out / f"{name}.left.npy", left)
    np.save(out / f"{name}.right.npy", right)
    np.save(out / f"{name}.torch_out.npy", torch_out)
    np.save(out / f"{name}.distances.npy", distances)

    x = torch.from_numpy(sample(TRACE_BATCH))
    export_ts(model, x, out / f"{name}.ts.onnx")
    export_dynamo(model, x, out / f"{name}.dynamo.onnx")

    rows = []
    for export in EXPORTS:
        path = out / f"{name}.{export}.onnx"
        onnx.checker.check_model(str(path))
        got = ort_run(path, both)
        diff = float(np.abs(got - torch_out).max())
        g = got.astype(np.float64)
        d = np.sqrt(((g[:PAIRS] - g[PAIRS:]) ** 2).sum(axis=1))
        ddiff = float(np.abs(d - distances).max())
        ok = got.shape == torch_out.shape and diff < TOL and d[PAIRS - 1] == 0.0
        rows.append((path.name, got.shape, diff, ddiff, float(d[PAIRS - 1]), ok, describe(path)))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)

    names = [n for n in args.models.split(",") if n]
    for n in names:
        if n not in MODELS:
            raise SystemExit(f"unknown model {n!r}; known: {', '.join(MODELS)}")
    rows = []
    for i, name in enumerate(names):
        rows += make(name, args.out, seed=list(MODELS).index(name))

    print(f"\n{'file':<24} {'ort shape':<10} {'max|ort-torch|':>14} {'max|d-d_torch|':>14} {'d[3]':>5}  ok")
    for fname, shape, diff, ddiff, d3, ok, _ in rows:
        print(f"{fname:<24} {str(list(shape)):<10} {diff:>14.3e} {ddiff:>14.3e} {d3:>5}  {'ok' if ok else 'FAIL'}")
    print()
    for fname, *_, info in rows:
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(info["ops"].items()))
        print(f"{fname}: opset {info['opset']}, {info['initializers']} initializers "
              f"({info['external']} external {info['locations']}), in {info['inputs']}, out {info['outputs']}"
              f"{', functions ' + str(info['functions']) if info['functions'] else ''}\n    {ops}")
    return 0 if all(r[5] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
