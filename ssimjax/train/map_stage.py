"""The run's map-score stage: synthetic wordmarks, the SSIM-map network trained on the training
rows' maps (continued from its checkpoints after an interruption, or read back once trained), and
its score appended to every row's statistics."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ssimjax.config import TrainConfig, map_steps_for
from ssimjax.data.manifest import read_manifest
from ssimjax.data.wordmarks import mlp_rows, wordmark_folder
from ssimjax.features.inputs import build_inputs
from ssimjax.models.mapnet import map_spec, with_map_scores
from ssimjax.train.checkpoint import (
    CheckpointError,
    MapNetCheckpoints,
    load_map_net,
    map_checkpoint_interval,
    map_net_dir,
    save_map_net,
)
from ssimjax.train.mapnet import fit_map_model
from ssimjax.train.plan import RunError, RunPlan
from ssimjax.train.state import Trainer

log = logging.getLogger("ssimjax")


def map_score_stage(plan: RunPlan, trainer: Trainer, variables: dict, inputs: dict, train_paths, paths,
                    cache_dir: Path, weights_sha: str) -> tuple:
    """Returns ``(map model, inputs with scores, the MLP's synthetic rows or None, timings)``."""
    config = plan.config
    t0 = time.perf_counter()
    extra_paths, extra = synthetic_rows(config, trainer, variables, cache_dir, weights_sha, len(train_paths))
    timings = {"synthetic_s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    decoded = {}  # the training images' pixels, decoded once for training and scoring
    if map_net_dir(plan.out).exists():  # trained before the run was interrupted
        try:
            map_model = load_map_net(plan.out, map_spec(config))
        except CheckpointError as e:
            raise RunError(str(e)) from None
    else:
        steps = map_steps_for(config, len(train_paths))
        log.info(f"training the SSIM-map network on the {len(train_paths)} training images"
                 f"{f' and {len(extra_paths)} synthetic wordmarks' if extra_paths else ''} ({steps} "
                 f"steps of {config.map_crop} px crops)")
        checkpoints = MapNetCheckpoints(plan.out, every=map_checkpoint_interval(steps))
        try:
            map_model = fit_map_model(list(train_paths) + extra_paths, map_spec(config), cache_dir,
                                      steps, config.seed, log=log.info, crop_size=config.map_crop,
                                      checkpoints=checkpoints, decoded=decoded)
        finally:
            checkpoints.close()
        save_map_net(plan.out, map_model)  # frozen from here on
        checkpoints.remove()
        timings.update(map_net_train_s=time.perf_counter() - t0, map_net_steps=steps)
    t0 = time.perf_counter()
    inputs = dict(inputs, stats=with_map_scores(inputs["stats"], paths, map_model, decoded))
    if extra is not None:
        extra = dict(extra, stats=with_map_scores(extra["stats"], extra_paths[:len(extra["ssim"])], map_model,
                                                  decoded))
    timings["map_net_score_s"] = time.perf_counter() - t0
    return map_model, inputs, extra, timings


def synthetic_rows(config: TrainConfig, trainer: Trainer, variables: dict, cache_dir: Path, weights_sha: str,
                    train_rows: int) -> tuple[list[str], dict | None]:
    """Synthetic wordmarks: more training images for the map network, and (``map_extra_mlp``) more
    training rows for the MLP, read as any data set's; never validation or test rows. Returns
    ``(every wordmark's path, the MLP's rows or None)``."""
    folder = wordmark_folder(cache_dir, config.map_extra, log=log.info)
    extra_paths = [] if folder is None else [str(row.image) for row in read_manifest(folder)[1]]
    n_mlp = mlp_rows(len(extra_paths), train_rows) if config.map_extra_mlp else 0
    if not n_mlp:
        return extra_paths, None
    extra = build_inputs(trainer, variables, folder, cache_dir, False, weights_sha, limit=n_mlp)[0]
    del extra["source"], extra["path"]
    return extra_paths, extra
