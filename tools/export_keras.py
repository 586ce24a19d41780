#!/usr/bin/env python3
"""Export a Keras 3 encoder to a siamese-wgpu model directory.

A model directory holds two files:

  model.json         exactly the string Keras 3 returns from ``encoder.to_json()``.
                     The encoder must be a Sequential, or a Functional model whose
                     layers form a single chain (one input, one output, each layer
                     fed by the previous one), starting with an InputLayer.
  model.safetensors  float32 tensors named ``{layer.name}/{variable.name}``, e.g.
                     ``conv2d/kernel``, ``conv2d/bias``, ``dense/kernel``, in Keras
                     layouts: Conv2D kernel (kh, kw, in, out) [HWIO], Dense kernel
                     (in, out), bias (out,). Only layers that own weights appear;
                     optimizer state and RNG (SeedGenerator) state are never written.

Supported layers: InputLayer, Conv2D, MaxPooling2D, AveragePooling2D,
GlobalAveragePooling2D, Flatten, Dense, Activation, ReLU, Dropout (channels_last).
Supported activations: linear, relu, sigmoid, tanh, gelu, silu/swish, elu,
softplus, selu.

Usage:
  python tools/export_keras.py MODEL.keras OUT_DIR [--encoder LAYER_NAME] [--unsafe] [--no-check]

  --encoder NAME  export the nested sub-model layer NAME (e.g. the shared encoder
                  inside a saved whole Siamese model) instead of the whole model.
  --unsafe        load with safe_mode=False; needed when the file contains Lambda
                  layers (e.g. a Lambda distance head). Only for files you trust.
  --no-check      write the files even if the encoder uses layers/activations the
                  Rust runtime does not support (problems are printed as warnings).

Importable: ``from export_keras import export_encoder; export_encoder(model, out_dir)``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

# Keras' own default backend is TensorFlow; prefer JAX when the caller did not choose.
if "KERAS_BACKEND" not in os.environ and importlib.util.find_spec("jax") is not None:
    os.environ["KERAS_BACKEND"] = "jax"

import numpy as np  # noqa: E402

MODEL_JSON = "model.json"
MODEL_WEIGHTS = "model.safetensors"

SUPPORTED_LAYERS = frozenset(
    {
        "InputLayer",
        "Conv2D",
        "MaxPooling2D",
        "AveragePooling2D",
        "GlobalAveragePooling2D",
        "Flatten",
        "Dense",
        "Activation",
        "ReLU",
        "Dropout",
    }
)
SUPPORTED_ACTIVATIONS = frozenset(
    {"linear", "relu", "sigmoid", "tanh", "gelu", "silu", "swish", "elu", "softplus", "selu"}
)


class ExportError(Exception):
    """Raised with a human-readable message when a model cannot be exported."""


# --------------------------------------------------------------------------- checks


def _activation_name(act) -> str:
    if isinstance(act, str):
        return act
    if isinstance(act, dict):  # serialized custom / non-builtin activation
        return str(act.get("config", act.get("class_name", act)))
    return repr(act)


def check_encoder_config(config: dict) -> list[str]:
    """Return a list of problems that would stop the Rust runtime from loading
    the model described by ``json.loads(encoder.to_json())`` (empty = fine)."""
    problems: list[str] = []
    cls = config.get("class_name")
    if cls not in ("Sequential", "Functional"):
        return [
            f"encoder is a {cls!r}; only Sequential or Functional models can be "
            "exported (subclassed models have no usable to_json())"
        ]
    layers = config.get("config", {}).get("layers", [])
    if not layers:
        return ["encoder has no layers"]

    if layers[0].get("class_name") != "InputLayer":
        problems.append(
            "first layer is not an InputLayer; build the encoder with keras.Input(shape) "
            "so model.json records the input shape"
        )
    else:
        bs = layers[0]["config"].get("batch_shape")
        if not bs or any(d is None for d in bs[1:]):
            problems.append(f"InputLayer batch_shape {bs} must have fixed non-batch dimensions")

    for i, layer in enumerate(layers):
        lcls = layer.get("class_name")
        lcfg = layer.get("config", {})
        lname = lcfg.get("name", f"#{i}")
        if lcls not in SUPPORTED_LAYERS:
            problems.append(f"layer {lname!r}: class {lcls!r} is not supported")
            continue
        if i > 0 and lcls == "InputLayer":
            problems.append(f"layer {lname!r}: a second InputLayer (only single-input chains)")
        if "activation" in lcfg:
            act = _activation_name(lcfg["activation"])
            if act not in SUPPORTED_ACTIVATIONS:
                problems.append(f"layer {lname!r}: activation {act!r} is not supported")
        if lcfg.get("data_format", "channels_last") != "channels_last":
            problems.append(f"layer {lname!r}: data_format {lcfg['data_format']!r}; only channels_last")
        if lcls == "Conv2D" and lcfg.get("groups", 1) != 1:
            problems.append(f"layer {lname!r}: grouped convolution (groups={lcfg['groups']})")
        if lcls == "GlobalAveragePooling2D" and lcfg.get("keepdims", False):
            problems.append(f"layer {lname!r}: keepdims=True is not supported")

    if cls == "Functional":
        problems += _check_functional_chain(config["config"])
    return problems


def _check_functional_chain(cfg: dict) -> list[str]:
    problems = []
    layers = cfg["layers"]
    ins, outs = cfg.get("input_layers"), cfg.get("output_layers")
    # A single input/output is written flat: ["name", 0, 0]; several are nested lists.
    if not (isinstance(ins, list) and len(ins) == 3 and isinstance(ins[0], str)):
        problems.append(f"Functional model must have exactly one input, got input_layers={ins}")
    if not (isinstance(outs, list) and len(outs) == 3 and isinstance(outs[0], str)):
        problems.append(f"Functional model must have exactly one output, got output_layers={outs}")
    if problems:
        return problems
    if ins[0] != layers[0]["name"]:
        problems.append(f"input {ins[0]!r} is not the first layer {layers[0]['name']!r}")
    if outs[0] != layers[-1]["name"]:
        problems.append(f"output {outs[0]!r} is not the last layer {layers[-1]['name']!r}")
    for prev, layer in zip(layers, layers[1:]):
        nodes = layer.get("inbound_nodes", [])
        name = layer["name"]
        if len(nodes) != 1:
            problems.append(f"layer {name!r} is called {len(nodes)} times (shared layers are not a chain)")
            continue
        args = nodes[0].get("args", [])
        tensors = [a for a in args if isinstance(a, dict) and a.get("class_name") == "__keras_tensor__"]
        if len(args) != 1 or len(tensors) != 1:
            problems.append(f"layer {name!r} does not take exactly one tensor input (args={args!r:.200})")
            continue
        src = tensors[0]["config"]["keras_history"][0]
        if src != prev["name"]:
            problems.append(
                f"layer {name!r} is fed by {src!r}, not by the previous layer {prev['name']!r}: "
                "layers do not form a single chain"
            )
    return problems


# --------------------------------------------------------------------------- export


def encoder_weights(model) -> dict[str, np.ndarray]:
    """``{layer.name}/{variable.name}`` -> float32 array for every layer that owns weights.

    ``v.path`` is not used: Keras 3 prefixes it with the enclosing model's name for
    Sequential models (``sequential/conv2d/kernel``) and for nested encoders
    (``encoder/conv2d/kernel``), but not for Functional ones (``conv2d/kernel``).
    ``layer.weights`` excludes SeedGenerator state (Dropout) and optimizer slots.
    """
    out: dict[str, np.ndarray] = {}
    for layer in model.layers:
        for v in layer.weights:
            if "seed_generator" in v.path:  # belt and braces: RNG state is not a weight
                continue
            key = f"{layer.name}/{v.name}"
            if key in out:
                raise ExportError(
                    f"two weights map to the same name {key!r} (layer {layer.name!r} "
                    f"has nested sub-layers, variable path {v.path!r}); flatten the encoder"
                )
            arr = np.asarray(v.numpy())
            if not np.issubdtype(arr.dtype, np.floating):
                raise ExportError(f"weight {key!r} has dtype {arr.dtype}; only float weights can be exported")
            out[key] = np.ascontiguousarray(arr, dtype=np.float32)
    return out


def export_encoder(model, out_dir, check: bool = True, verbose: bool = False) -> dict[str, tuple]:
    """Write ``out_dir/model.json`` and ``out_dir/model.safetensors`` for ``model``.

    Returns ``{tensor_name: shape}``. With ``check=True`` (default) raises
    ExportError if the Rust runtime could not run the model; with ``check=False``
    problems are printed to stderr and the files are written anyway.
    """
    from safetensors.numpy import save_file

    import keras

    if not isinstance(model, keras.Model):
        raise ExportError(f"expected a keras.Model (Sequential/Functional), got {type(model).__name__}")
    if not model.built:
        raise ExportError(
            f"model {model.name!r} is not built; create it with keras.Input(shape) or call model.build()"
        )
    try:
        json_str = model.to_json()
    except Exception as e:  # subclassed models etc.
        raise ExportError(f"model {model.name!r} cannot be serialized with to_json(): {e}") from e

    problems = check_encoder_config(json.loads(json_str))
    if problems:
        msg = f"encoder {model.name!r} is not supported by siamese-wgpu:\n  - " + "\n  - ".join(problems)
        if check:
            raise ExportError(msg + "\n(use --no-check / check=False to write it anyway)")
        print("warning: " + msg, file=sys.stderr)

    tensors = encoder_weights(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_JSON).write_text(json_str, encoding="utf-8")
    save_file(tensors, str(out / MODEL_WEIGHTS))
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    if verbose:
        print(f"wrote {out / MODEL_JSON} ({model.__class__.__name__} {model.name!r}, {len(model.layers)} layers)")
        print(f"wrote {out / MODEL_WEIGHTS} ({len(tensors)} tensors)")
        for k, s in shapes.items():
            print(f"  {k:40s} {list(s)}")
    return shapes


# --------------------------------------------------------------------------- loading


def load_keras_model(path, unsafe: bool = False):
    """``keras.saving.load_model(path, compile=False, safe_mode=not unsafe)`` with clear errors."""
    import keras

    p = Path(path)
    if not p.is_file():
        raise ExportError(f"no such file: {p}")
    if p.suffix not in (".keras", ".h5", ".hdf5"):
        raise ExportError(f"{p}: expected a Keras 3 '.keras' file (got suffix {p.suffix!r})")
    try:
        return keras.saving.load_model(str(p), compile=False, safe_mode=not unsafe)
    except Exception as e:
        text = str(e)
        if not unsafe and ("safe_mode" in text or "Lambda" in text or "lambda" in text):
            raise ExportError(
                f"{p} contains a Lambda layer (or other arbitrary code), which Keras refuses to "
                "load in safe mode; rerun with --unsafe if you trust the file\n"
                f"(keras said: {text.splitlines()[0] if text else type(e).__name__})"
            ) from e
        raise ExportError(
            f"could not load {p}: {type(e).__name__}: {text}\n"
            "(custom layers/objects must be importable and registered with "
            "@keras.saving.register_keras_serializable)"
        ) from e


def _submodels(model) -> list[str]:
    import keras

    return [f"{l.name} ({type(l).__name__})" for l in model.layers if isinstance(l, keras.Model)]


def select_encoder(model, name: str | None):
    """Return ``model`` itself, or its nested sub-model layer called ``name``."""
    import keras

    if name is None:
        n_in = len(model.inputs) if getattr(model, "inputs", None) else 1
        if n_in != 1:
            subs = _submodels(model)
            hint = f"; nested models: {', '.join(subs)}" if subs else ""
            raise ExportError(
                f"model {model.name!r} has {n_in} inputs, so it is not an encoder; "
                f"pass --encoder LAYER_NAME to pick the shared encoder{hint}"
            )
        return model
    try:
        enc = model.get_layer(name)
    except ValueError:
        names = ", ".join(f"{l.name} ({type(l).__name__})" for l in model.layers)
        raise ExportError(f"model {model.name!r} has no layer named {name!r}; its layers are: {names}") from None
    if not isinstance(enc, keras.Model):
        raise ExportError(
            f"layer {name!r} is a {type(enc).__name__}, not a Sequential/Functional sub-model; "
            f"nested models: {', '.join(_submodels(model)) or 'none'}"
        )
    return enc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Export a Keras 3 encoder to a siamese-wgpu model directory "
        "(model.json + model.safetensors).",
    )
    ap.add_argument("model", help="path to a Keras 3 .keras file")
    ap.add_argument("out_dir", help="directory to write model.json and model.safetensors into")
    ap.add_argument("--encoder", metavar="LAYER_NAME", help="name of the nested sub-model to export as the encoder")
    ap.add_argument("--unsafe", action="store_true", help="load with safe_mode=False (needed for Lambda layers)")
    ap.add_argument("--no-check", action="store_true", help="write even if the Rust runtime does not support the model")
    args = ap.parse_args(argv)
    try:
        model = load_keras_model(args.model, unsafe=args.unsafe)
        enc = select_encoder(model, args.encoder)
        export_encoder(enc, args.out_dir, check=not args.no_check, verbose=True)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
