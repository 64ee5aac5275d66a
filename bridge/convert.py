"""Flax variables <-> PyTorch state_dicts, by a few rules.

- conv kernel HWIO <-> weight OIHW; Dense kernel (in, out) <-> Linear weight (out, in)
- BatchNorm scale/bias/mean/var <-> weight/bias/running_mean/running_var; ``num_batches_tracked``
  is recreated on the way to torch and ignored on the way back
- module names: ``layer2_0/downsample_bn`` <-> ``layer2.0.downsample.1``; inside the
  ``QualityPredictionModel`` the backbone is a Sequential (conv1 -> 0, bn1 -> 1, layerN -> 3+N)
  and the MLP's ``dense_k``/``bn_k``/``head`` are positions in ``predictor.mlp``.

Every mismatch (missing, unexpected, mis-shaped keys) is reported at once.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Callable, Iterable

import jax
import numpy as np
import torch

from ssimjax.models.quality import BACKBONE

LEAF_TO_TORCH = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
SEQUENTIAL_INDEX = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}


class ConversionError(ValueError):
    """State dict and model disagree; the message lists every missing, unexpected and mis-shaped key."""

    def __init__(self, what: str, missing=(), unexpected=(), misshaped=()):
        self.missing, self.unexpected, self.misshaped = list(missing), list(unexpected), list(misshaped)
        parts = []
        if self.missing:
            parts.append(f"missing keys ({len(self.missing)}): " + ", ".join(self.missing))
        if self.unexpected:
            parts.append(f"unexpected keys ({len(self.unexpected)}): " + ", ".join(self.unexpected))
        if self.misshaped:
            parts.append(f"mis-shaped keys ({len(self.misshaped)}): " + ", ".join(self.misshaped))
        super().__init__(f"{what} does not match the model: " + "; ".join(parts))


def torchvision_module(path: tuple[str, ...]) -> str:
    """Backbone module path in Flax -> torchvision ResNet module name."""
    out = []
    for part in path:
        m = re.fullmatch(r"layer(\d)_(\d+)", part)
        if m:
            out += [f"layer{m.group(1)}", m.group(2)]
        elif part == "downsample_conv":
            out += ["downsample", "0"]
        elif part == "downsample_bn":
            out += ["downsample", "1"]
        else:
            out.append(part)
    return ".".join(out)


def model_module(path: tuple[str, ...], use_batch_norm: bool, hidden_layers: int) -> str:
    """Flax module path in the whole model -> ``QualityPredictionModel`` module name."""
    if path[0] == BACKBONE:
        name = torchvision_module(path[1:])
        head, _, rest = name.partition(".")
        return "feature_extractor.backbone." + ".".join(filter(None, [SEQUENTIAL_INDEX[head], rest]))
    if path[1] == "input_norm":
        return "predictor.input_norm"
    stride = 4 if use_batch_norm else 3
    m = re.fullmatch(r"(dense|bn)_(\d+)", path[1])
    if m:
        index = int(m.group(2)) * stride + (1 if m.group(1) == "bn" else 0)
    elif path[1] == "head":
        index = hidden_layers * stride
    else:
        raise ValueError(f"unknown predictor module {path[1]!r}")
    return f"predictor.mlp.{index}"


def _entries(variables: dict, name_fn: Callable[[tuple[str, ...]], str]) -> list[tuple[str, tuple, str]]:
    """(collection, flax path, torch key) for every leaf of ``variables``."""
    out = []
    for collection in ("params", "batch_stats"):
        for path, _ in jax.tree_util.tree_flatten_with_path(variables.get(collection, {}))[0]:
            keys = tuple(p.key for p in path)
            # The statistics' standardisation keeps its own names (buffers mean and std).
            leaf = keys[-1] if keys[-2] == "input_norm" else LEAF_TO_TORCH[keys[-1]]
            out.append((collection, keys, f"{name_fn(keys[:-1])}.{leaf}"))
    return out


def _model_name_fn(variables: dict) -> Callable:
    predictor = variables["params"].get("predictor", {})
    hidden_layers = sum(k.startswith("dense_") for k in predictor)
    use_bn = any(k.startswith("bn_") for k in predictor)
    return lambda path: model_module(path, use_bn, hidden_layers)


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


def _set(tree, path, value):
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def _to_torch(leaf_name: str, value) -> torch.Tensor:
    a = np.asarray(value, dtype=np.float32)
    if leaf_name == "kernel":
        a = a.transpose(3, 2, 0, 1) if a.ndim == 4 else a.T
    return torch.from_numpy(np.array(a, dtype=np.float32, order="C", copy=True))


def _to_flax(leaf_name: str, tensor: torch.Tensor) -> np.ndarray:
    a = tensor.detach().cpu().numpy().astype(np.float32, copy=False)
    if leaf_name == "kernel":
        a = a.transpose(2, 3, 1, 0) if a.ndim == 4 else a.T
    return np.ascontiguousarray(a)


def _bn_modules(entries) -> list[str]:
    return sorted({key.rsplit(".", 1)[0] for c, path, key in entries if c == "batch_stats" and path[-2] != "input_norm"})


def _flax_to_state_dict(variables, entries, num_batches_tracked: int) -> "OrderedDict[str, torch.Tensor]":
    sd = OrderedDict()
    for collection, path, key in entries:
        sd[key] = _to_torch(path[-1], _get(variables[collection], path))
    for module in _bn_modules(entries):
        sd[f"{module}.num_batches_tracked"] = torch.tensor(num_batches_tracked, dtype=torch.long)
    return sd


def _state_dict_to_flax(state_dict, template, entries, what: str, ignore: Iterable[str] = ()) -> dict:
    out: dict = {}
    missing, misshaped = [], []
    for collection, path, key in entries:
        want = tuple(np.shape(_get(template[collection], path)))
        if key not in state_dict:
            missing.append(key)
            continue
        value = _to_flax(path[-1], state_dict[key])
        if value.shape != want:
            torch_shape = tuple(state_dict[key].shape)
            misshaped.append(f"{key} {torch_shape} (expected {tuple(_to_torch(path[-1], np.zeros(want)).shape)})")
            continue
        _set(out.setdefault(collection, {}), path, value)
    known = {key for _, _, key in entries} | {f"{m}.num_batches_tracked" for m in _bn_modules(entries)}
    unexpected = [k for k in state_dict if k not in known and k not in set(ignore)]
    if missing or unexpected or misshaped:
        raise ConversionError(what, missing, unexpected, misshaped)
    return jax.tree_util.tree_map(np.asarray, out)


# -- the whole model ----------------------------------------------------------------------------

def flax_to_torch(variables: dict, num_batches_tracked: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """``{'params', 'batch_stats'}`` of a :class:`ssimjax.models.quality.QualityModel` -> the
    ``QualityPredictionModel`` state_dict."""
    return _flax_to_state_dict(variables, _entries(variables, _model_name_fn(variables)), num_batches_tracked)


def torch_to_flax(state_dict, template: dict, what: str = "state_dict") -> dict:
    """A ``QualityPredictionModel`` state_dict -> Flax variables shaped like ``template``."""
    entries = _entries(template, _model_name_fn(template))
    return _state_dict_to_flax(state_dict, template, entries, what)


# -- the backbone alone (torchvision's own resnet50 keys) -----------------------------------------

def backbone_flax_to_torchvision(backbone: dict, num_batches_tracked: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """``{'params', 'batch_stats'}`` of the ResNet module -> torchvision ``resnet50`` keys (no ``fc``)."""
    return _flax_to_state_dict(backbone, _entries(backbone, torchvision_module), num_batches_tracked)


def torchvision_to_backbone(state_dict, template: dict, what: str = "torchvision state dict") -> dict:
    """torchvision ``resnet50`` state dict -> the ResNet module's Flax variables (``fc`` ignored)."""
    entries = _entries(template, torchvision_module)
    return _state_dict_to_flax(state_dict, template, entries, what, ignore=("fc.weight", "fc.bias"))


# -- the learned SSIM-map network (ssimjax.models.mapnet) ----------------------------------------------

def map_net_to_torch(params: list, prefix: str = "map_net.") -> "OrderedDict[str, torch.Tensor]":
    """A :class:`ssimjax.models.mapnet.MapModel`'s params (HWIO convolutions, then the (C, 1) head) ->
    the state_dict entries of :class:`bridge.model.MapNet`."""
    out = OrderedDict()
    for i, layer in enumerate(params[:-1]):
        out[f"{prefix}convs.{i}.weight"] = _to_torch("kernel", layer["w"])
        out[f"{prefix}convs.{i}.bias"] = _to_torch("bias", layer["b"])
    out[f"{prefix}head.weight"] = _to_torch("kernel", params[-1]["w"])
    out[f"{prefix}head.bias"] = _to_torch("bias", params[-1]["b"])
    return out
