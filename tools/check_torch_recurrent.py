#!/usr/bin/env python3
"""End-to-end check of the ONNX importer on recurrent PyTorch encoders written the ways
tutorials write them (issue #16; not in CI). Each is exported with both exporters (where
torch.export can export it) as make_onnx_files.py does; `siamese pairs` then runs PAIRS
pairs (the last identical) and its distances are compared with PyTorch's (float64):
|err| <= 1e-4 + 1e-3*|ref|, the identical pair exactly 0.

  emb_gru        Embedding(100, 16) -> GRU(16, 24, batch_first) -> h_n[-1]
  lstm_last      LSTM(6, 20, batch_first) -> out[:, -1, :] -> Linear(20, 8)
  bilstm2_mean   LSTM(6, 10, num_layers=2, bidirectional, batch_first) -> out.mean(1)
  emb_bigru_cat  Embedding(100, 12) -> GRU(12, 9, bidirectional) -> cat(h_n[0], h_n[1])
  gru_linear     GRU(6, 16, batch_first) -> Linear(16, 8) on every step -> mean over time

    python tools/check_torch_recurrent.py --siamese target/release/siamese [--models ...]
        [--steps 13] [--pairs 3] [--keep DIR]

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
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_torchvision import print_table, run_pairs  # noqa: E402
from make_onnx_files import export_dynamo, export_ts  # noqa: E402

VOCAB = 100


class EmbGru(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.gru = nn.Embedding(VOCAB, 16), nn.GRU(16, 24, batch_first=True)

    def forward(self, ids):
        return self.gru(self.emb(ids))[1][-1]


class LstmLast(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm, self.fc = nn.LSTM(6, 20, batch_first=True), nn.Linear(20, 8)

    def forward(self, x):
        return self.fc(self.lstm(x)[0][:, -1, :])


class BiLstm2Mean(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(6, 10, num_layers=2, bidirectional=True, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0].mean(1)


class EmbBiGruCat(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.gru = nn.Embedding(VOCAB, 12), nn.GRU(12, 9, bidirectional=True, batch_first=True)

    def forward(self, ids):
        h = self.gru(self.emb(ids))[1]
        return torch.cat([h[0], h[1]], dim=1)


class GruLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru, self.fc = nn.GRU(6, 16, batch_first=True), nn.Linear(16, 8)

    def forward(self, x):
        return self.fc(self.gru(x)[0]).mean(1)


MODELS = {
    "emb_gru": (EmbGru, True),
    "lstm_last": (LstmLast, False),
    "bilstm2_mean": (BiLstm2Mean, False),
    "emb_bigru_cat": (EmbBiGruCat, True),
    "gru_linear": (GruLinear, False),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--siamese", default="target/release/siamese")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--steps", type=int, default=13)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path)
    args = ap.parse_args()
    out = args.keep or Path(tempfile.mkdtemp(prefix="check-recurrent-"))
    out.mkdir(parents=True, exist_ok=True)
    rows, failed = [], False
    for name in args.models.split(","):
        cls, ids = MODELS[name]
        torch.manual_seed(args.seed)
        model = cls().eval()
        rng = np.random.default_rng(args.seed)

        def sample(n):
            if ids:
                return rng.integers(1, VOCAB, (n, args.steps)).astype(np.int64)
            return rng.standard_normal((n, args.steps, 6)).astype(np.float32)

        left, right = sample(args.pairs), sample(args.pairs)
        right[-1] = left[-1]
        both = np.concatenate([left, right])
        with torch.no_grad():
            emb = model.double()(torch.from_numpy(both if ids else both.astype(np.float64))).numpy()
        model.float()
        ref = np.linalg.norm(emb[: args.pairs] - emb[args.pairs :], axis=1)
        np.save(out / f"{name}.left.npy", left)
        np.save(out / f"{name}.right.npy", right)
        for exporter in ("ts", "dynamo"):
            path = out / f"{name}.{exporter}.onnx"
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    (export_ts if exporter == "ts" else export_dynamo)(model, torch.from_numpy(sample(2)), path)
            except Exception as e:  # noqa: BLE001 - the exporter's own failure is a result
                rows.append((name, exporter, "not exported", "-", f"{ref.mean():.3g}", type(e).__name__))
                continue
            result, err, note = run_pairs(args.siamese, path, out / f"{name}.left.npy", out / f"{name}.right.npy", ref)
            failed |= result != "ok"
            rows.append((name, exporter, result, err, f"{ref.mean():.3g}", note))
    print_table(f"{args.steps} steps, {args.pairs} pairs (the last identical), torch {torch.__version__}",
                ["model", "exporter", "result", "max \\|err\\|", "mean distance", "note"], rows)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
