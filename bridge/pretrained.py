"""Start from ResNet-50 weights in torchvision's format: torchvision's own ImageNet weights, or a
local ``.pth`` state dict (loaded with ``weights_only=True`` only)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torchvision

from .convert import ConversionError, torchvision_to_backbone

TORCHVISION_WEIGHTS = torchvision.models.ResNet50_Weights.DEFAULT


class PretrainedError(ValueError):
    """Weights that cannot be had or used; one line that says where and why."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def torchvision_cache_file() -> Path:
    """Where torchvision looks for (and downloads) its ResNet-50 weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(TORCHVISION_WEIGHTS.url)


def load_torchvision_state_dict(spec: str) -> tuple[dict, dict]:
    """``spec`` is ``'torchvision'`` or a path. Returns ``(state_dict, facts for config.json)``."""
    if spec == "torchvision":
        try:
            sd = TORCHVISION_WEIGHTS.get_state_dict(progress=False, check_hash=True)
        except Exception as e:  # offline: URLError, socket errors, ...
            raise PretrainedError(
                f"cannot get torchvision's ResNet-50 weights {TORCHVISION_WEIGHTS} from {TORCHVISION_WEIGHTS.url} "
                f"({type(e).__name__}: {e}); torchvision looks for the file at {torchvision_cache_file()} "
                f"— put it there, or pass --backbone-weights PATH"
            ) from None
        cached = torchvision_cache_file()
        facts = dict(weights="torchvision", name=str(TORCHVISION_WEIGHTS), url=TORCHVISION_WEIGHTS.url,
                     file=str(cached), file_sha256=_sha256(cached) if cached.is_file() else None)
        return sd, facts
    path = Path(spec)
    if not path.is_file():
        raise PretrainedError(f"{path}: no such weights file (expected 'none', 'torchvision' or a .pth path)")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise PretrainedError(f"{path}: cannot load as a weights-only torch file ({type(e).__name__}: {e})") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise PretrainedError(f"{path}: expected a torchvision-format state dict (names -> tensors)")
    return sd, dict(weights="file", file=str(path.resolve()), file_sha256=_sha256(path))


def backbone_from_torchvision(spec: str, template_backbone: dict) -> tuple[dict, dict]:
    """Flax ResNet-50 variables (``{'params', 'batch_stats'}`` of the backbone) from ``spec``."""
    sd, facts = load_torchvision_state_dict(spec)
    try:
        return torchvision_to_backbone(sd, template_backbone, what=facts.get("file") or spec), facts
    except ConversionError as e:
        raise PretrainedError(str(e)) from None
