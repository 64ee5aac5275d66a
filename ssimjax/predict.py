"""A run loaded back for prediction, and predictions on image files."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .checkpoint import CheckpointError, RunCheckpoints
from .config import ConfigError, TrainConfig, load_config
from .fit import predict
from .start import RunError
from .stats import image_inputs
from .steps import Trainer, TrainState, create_train_state


@dataclasses.dataclass
class LoadedRun:
    state: TrainState  # the best epoch's weights
    trainer: Trainer
    config: TrainConfig
    meta: dict  # the latest checkpoint's meta item (history, best epoch, metrics)
    facts: dict  # config.json's run facts (data, versions, backbone)


def load_run(run_dir: str | Path) -> LoadedRun:
    """The best weights of a run folder. Raises :class:`RunError` for anything that is not one."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise RunError(f"{run_dir}: no such run folder")
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: not a run folder (a file; pass the folder scripts/train.py wrote)")
    try:
        config, facts = load_config(run_dir / "config.json")
    except ConfigError as e:
        raise RunError(str(e)) from None
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
    except CheckpointError as e:
        raise RunError(str(e)) from None
    finally:
        checkpoints.close()
    return LoadedRun(state, Trainer.from_config(config), config, meta, facts)


def model_inputs(trainer: Trainer, images: Sequence[str | Path | Image.Image]) -> dict:
    """What the model reads from image files or decoded images: the 224x224 pixels when it sees
    backbone features, the statistics at each image's own resolution when it takes them (a backbone
    whose features the MLP does not see is not run)."""
    model = trainer.model
    inputs = image_inputs(images, with_pixels=model.backbone_features, with_stats=model.num_stats > 0)
    if not model.backbone_features:  # the MLP reads the statistics alone
        inputs["features"] = np.zeros((len(images), 0), np.float32)
    return inputs


def predict_images(trainer: Trainer, state: TrainState, images: Sequence[str | Path | Image.Image],
                   batch_size: int = 16) -> np.ndarray:
    """Predicted SSIM per image file or decoded image, through the whole model."""
    return predict(trainer, state, model_inputs(trainer, images), batch_size)


def predict_files(run: LoadedRun, paths: Sequence[str | Path], batch_size: int = 16) -> np.ndarray:
    """Predicted SSIM per image file of a loaded run."""
    return predict_images(run.trainer, run.state, paths, batch_size)
