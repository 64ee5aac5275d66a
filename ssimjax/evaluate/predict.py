"""A run loaded back for prediction, and predictions on image files."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ssimjax.config import ConfigError, TrainConfig, load_config
from ssimjax.features.stats import STAT_NAMES, STATS_VERSION, image_inputs
from ssimjax.models.mapnet import MapModel, map_spec
from ssimjax.train.checkpoint import CheckpointError, RunCheckpoints, load_map_net
from ssimjax.train.fit import predict
from ssimjax.train.plan import RunError
from ssimjax.train.state import Trainer, TrainState, create_train_state


@dataclasses.dataclass
class LoadedRun:
    state: TrainState  # the best epoch's weights
    trainer: Trainer
    config: TrainConfig
    meta: dict  # the latest checkpoint's meta item (history, best epoch, metrics)
    facts: dict  # config.json's run facts (data, versions, backbone)
    map_model: MapModel | None = None  # the trained map network, when the model takes its score


def load_run(run_dir: str | Path) -> LoadedRun:
    """The best weights of a run folder. Raises :class:`RunError` for anything that is not one."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise RunError(f"{run_dir}: no such run folder")
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: not a run folder (a file; pass the folder ssimjax train wrote)")
    try:
        config, facts = load_config(run_dir / "config.json")
    except ConfigError as e:
        raise RunError(str(e)) from None
    trained_on = (facts.get("data") or {}).get("image_stats")
    if config.image_stats and trained_on not in (None, STATS_VERSION):
        raise RunError(f"{run_dir}: trained on image statistics {trained_on}, but this ssimjax computes "
                       f"{STATS_VERSION}; train it again, or use the ssimjax version that trained it")
    try:
        checkpoints = RunCheckpoints(run_dir, read_only=True, frozen_backbone=config.freeze_backbone)
    except CheckpointError as e:
        raise RunError(str(e)) from None
    try:
        last = checkpoints.latest_epoch()
        if last is None:
            raise RunError(f"{run_dir}: no checkpoint saved yet")
        meta = checkpoints.read_meta(last)
        state, _ = checkpoints.restore(meta["best_epoch"], create_train_state(config))
        map_model = load_map_net(run_dir, map_spec(config)) if config.map_net else None
    except CheckpointError as e:
        raise RunError(str(e)) from None
    finally:
        checkpoints.close()
    return LoadedRun(state, Trainer.from_config(config), config, meta, facts, map_model)


def takes_map_score(trainer: Trainer) -> bool:
    return trainer.model.num_stats > len(STAT_NAMES)


def model_inputs(trainer: Trainer, images: Sequence[str | Path | Image.Image], map_model: MapModel | None = None) -> dict:
    """What the model reads from image files or decoded images: the 224x224 pixels when it sees
    backbone features, the statistics at each image's own resolution when it takes them, and the
    map network's score after them (a backbone whose features the MLP does not see is not run)."""
    model = trainer.model
    if takes_map_score(trainer) and map_model is None:
        raise ValueError("this model takes the learned map score: pass its map network (load_run(...).map_model)")
    inputs = image_inputs(images, with_pixels=model.backbone_features, with_stats=model.num_stats > 0,
                          map_score=map_model.score if takes_map_score(trainer) else None)
    if not model.backbone_features:  # the MLP reads the statistics alone
        inputs["features"] = np.zeros((len(images), 0), np.float32)
    return inputs


def predict_images(trainer: Trainer, state: TrainState, images: Sequence[str | Path | Image.Image],
                   batch_size: int = 16, map_model: MapModel | None = None) -> np.ndarray:
    """Predicted SSIM per image file or decoded image, through the whole model."""
    return predict(trainer, state, model_inputs(trainer, images, map_model), batch_size)


def predict_files(run: LoadedRun, paths: Sequence[str | Path], batch_size: int = 16) -> np.ndarray:
    """Predicted SSIM per image file of a loaded run."""
    return predict_images(run.trainer, run.state, paths, batch_size, run.map_model)
