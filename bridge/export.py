"""Export a run's best weights as the plan's PyTorch checkpoint file."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ssimjax.evaluate.predict import load_run
from ssimjax.features.stats import STAT_NAMES, STATS_VERSION
from ssimjax.models.mapnet import map_spec
from ssimjax.models.quality import map_residual

from .convert import flax_to_torch, map_net_to_torch
from .model import FEATURE_DIM, QualityPredictionModel

FORMAT_VERSION = 1


class ExportError(ValueError):
    pass


def torch_config(config, pretrained: bool) -> dict:
    """The deployment's ``config`` dict for a :class:`ssimjax.config.TrainConfig`: the documented
    keys, plus ``image_stats`` (the statistics' names and version) for a model that takes them."""
    out = {
        "pretrained": bool(pretrained),
        "freeze_backbone": bool(config.freeze_backbone),
        "feature_dim": FEATURE_DIM,
        "hidden_dims": [int(h) for h in config.hidden_dims],
        "dropout_rate": float(config.dropout_rate),
        "use_batch_norm": bool(config.use_batch_norm),
        "version": "1.0",
    }
    if config.image_stats:
        out["image_stats"] = {"names": list(STAT_NAMES), "version": STATS_VERSION}
    if config.image_stats and config.map_net:  # its score follows the statistics
        spec = map_spec(config)
        out["map_net"] = {"channels": spec.channels, "dilations": list(spec.dilations), "cell": spec.cell}
    if map_residual(config):  # the MLP's output corrects the map score (no sigmoid)
        out["map_residual"] = True
    if not config.backbone_features:
        out["backbone_features"] = False  # the MLP's input is the image statistics alone
    return out


def _plain(x):
    """Numbers, strings, lists and dicts only, so the file loads with weights_only=True."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int):
        return int(x)
    return float(x)


def build_checkpoint(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    state, config, meta = run.state, run.config, run.meta
    if config.backbone != "resnet50":
        raise ExportError(f"{run_dir}: the PyTorch model is ResNet-50; this run trained the {config.backbone!r} backbone")
    if config.pooled_stages != "last":
        raise ExportError(f"{run_dir}: the PyTorch model pools the last backbone stage; this run pooled "
                          f"{config.pooled_stages!r} stages")
    pretrained = run.facts.get("backbone", {}).get("weights", "random-init") != "random-init"
    history = {k: list(v) for k, v in meta["history"].items()}
    best = dict(meta["best_val_metrics"])
    correlations = [c for c in history.get("val_correlation", []) if not math.isnan(c)]
    return _plain({
        "format_version": FORMAT_VERSION,
        "epoch": meta["best_epoch"],
        "model_state_dict": None,  # filled below (tensors are not touched by _plain)
        "config": torch_config(config, pretrained),
        "history": history,
        "val_metrics": best,
        "best_val_loss": meta["best_val_loss"],
        "best_val_correlation": max(correlations) if correlations else 0.0,
        "ssimjax": {"run_dir": str(run_dir.resolve()), "train_config": config.to_dict()},
    }) | {"model_state_dict": flax_to_torch(state.variables, num_batches_tracked=int(state.step))
          | (map_net_to_torch(run.map_model.params) if run.map_model is not None else {})}


def export_run(run_dir: str | Path, out: str | Path) -> Path:
    """Writes the run's best weights as a ``torch.save``d checkpoint dict; returns the path."""
    checkpoint = build_checkpoint(run_dir)
    # Check the file is what deployment needs before writing it.
    model = QualityPredictionModel(checkpoint["config"])
    model.load_state_dict(checkpoint["model_state_dict"], strict=True)
    return save_checkpoint(checkpoint, out)


def save_checkpoint(checkpoint: dict, out: str | Path) -> Path:
    """``torch.save`` to ``out`` whole or not at all (a kill leaves the previous file or none)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(out)
    return out
