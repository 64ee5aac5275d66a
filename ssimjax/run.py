"""A whole training run as ``scripts/train.py`` performs it, and loading a run back to predict.

A run folder holds ``config.json`` (the configuration and the run's facts), ``history.json``
(rewritten after every epoch), ``summary.json`` (best epoch, metrics, timings),
``checkpoints/`` (Orbax: latest 5 epochs and the best) and, with a frozen backbone,
``backbone/`` (its weights, written once).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from .checkpoint import BACKBONE, CheckpointError, RunCheckpoints, load_backbone, save_backbone
from .config import TrainConfig, load_config, save_config
from .data import (
    DataError, ImageError, PREPROCESS_VERSION, Problem, file_sha256, load_image_file, normalize, open_image,
    raise_for_problems, read_manifest, resize_224, split_indices,
)
from .demo import DEFAULT_DEMO_COUNT, demo_dataset, package_versions
from .features import FeatureCache, default_cache_dir, weights_hash
from .fit import FitResult, TrainingError, fit, predict
from .models import init_variables, make_model
from .steps import TrainState, create_train_state, jit_extract_features

log = logging.getLogger("ssimjax")
FEATURE_BATCH = 16


class RunError(RuntimeError):
    """A run folder that cannot be used as asked; the message names it."""


def _json_dump(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")
    tmp.replace(path)


def backbone_variables(state: TrainState) -> dict:
    return {"params": {BACKBONE: state.params[BACKBONE]}, "batch_stats": {BACKBONE: state.batch_stats[BACKBONE]}}


def compute_features(state: TrainState, images_uint8: np.ndarray, batch_size: int = FEATURE_BATCH) -> np.ndarray:
    """Backbone features (N, D) in inference mode, in fixed-size padded batches (one compilation)."""
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    n = images_uint8.shape[0]
    out = []
    for start in tqdm(range(0, n, batch_size), desc="backbone features", unit="batch", leave=False, disable=None):
        chunk = images_uint8[start:start + batch_size]
        real = chunk.shape[0]
        if real < batch_size:
            chunk = np.concatenate([chunk, np.zeros((batch_size - real,) + chunk.shape[1:], chunk.dtype)])
        out.append(np.asarray(jit_extract_features(variables, normalize(chunk), model=state.model))[:real])
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def load_inputs(state: TrainState, data: str | Path, cache_dir: Path, skip_invalid: bool, timings: dict,
                backbone_hash: str | None = None) -> tuple[dict, dict]:
    """Reads and validates a manifest, then builds the model inputs for every valid row.

    Frozen backbone: cached features (computed for the images not yet in the cache), keyed by
    ``backbone_hash`` (computed here when not given). Otherwise: the preprocessed uint8 images.
    Returns ``(inputs, facts about the data for config.json)``.
    """
    t0 = time.perf_counter()
    manifest, rows, problems = read_manifest(data)
    total_rows = len(rows) + len(problems)
    frozen = state.freeze_backbone
    if frozen and backbone_hash is None:
        backbone_hash = weights_hash(backbone_variables(state))
    cache = FeatureCache(cache_dir, backbone_hash) if frozen else None

    kept, feats, images, todo = [], {}, {}, []
    for row in tqdm(rows, desc="reading images", unit="img", leave=False, disable=None):
        try:
            raw = row.image.read_bytes()
        except OSError as e:
            problems.append(Problem(row.where, str(row.image), f"cannot read file ({e.strerror or e})"))
            continue
        sha = hashlib.sha256(raw).hexdigest()
        cached = cache.get(sha) if cache is not None else None
        if cached is not None:
            feats[sha] = cached
        else:
            try:
                img = resize_224(open_image(raw))
            except ImageError as e:
                problems.append(Problem(row.where, str(row.image), str(e)))
                continue
            images[sha] = img
            if frozen and sha not in todo:
                todo.append(sha)
        kept.append((row, sha))
    raise_for_problems(manifest, problems, len(kept), skip_invalid, log=log.warning)
    timings["data_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    if frozen:
        if todo:
            log.info(f"computing backbone features for {len(todo)} images ({len(feats)} cached)")
            computed = compute_features(state, np.stack([images[s] for s in todo]))
            for sha, f in zip(todo, computed):
                cache.put(sha, f)
                feats[sha] = f
        else:
            log.info(f"all {len(feats)} backbone features found in the cache")
        inputs = {"features": np.stack([feats[sha] for _, sha in kept]).astype(np.float32)}
    else:
        inputs = {"image": np.stack([images[sha] for _, sha in kept])}
    timings["features_s"] = time.perf_counter() - t1
    timings["features_computed"] = len(todo)
    inputs["ssim"] = np.asarray([row.ssim for row, _ in kept], np.float32)
    facts = dict(
        manifest=str(manifest.resolve()), manifest_sha256=file_sha256(manifest), rows=total_rows,
        valid_rows=len(kept), skipped_rows=len(problems), preprocessing=PREPROCESS_VERSION,
        feature_cache=str(cache.dir) if cache is not None else None,
    )
    return inputs, facts


def new_run_dir(root: str | Path = "runs") -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / stamp
    i = 1
    while path.exists():
        i += 1
        path = Path(root) / f"{stamp}-{i}"
    return path


def train_run(
    config: TrainConfig,
    *,
    data: str | Path | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    skip_invalid: bool = False,
    cache_dir: str | Path | None = None,
    demo_count: int = DEFAULT_DEMO_COUNT,
    backbone: tuple[dict, dict] | None = None,
    on_epoch_end=None,
) -> tuple[FitResult, Path]:
    """Everything ``scripts/train.py`` does: data, features, training, run folder. Returns the
    fit result and the run folder.

    ``backbone`` is ``(variables, facts)``: the backbone's ``{'params', 'batch_stats'}`` to start
    from (e.g. converted torchvision weights) and what to record about them in ``config.json``.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = Path(out) if out is not None else new_run_dir()
    config_path = out / "config.json"
    if resume and backbone is not None:
        raise RunError(f"{out}: --resume continues with the run's own backbone; do not pass backbone weights")
    if resume:
        if not config_path.is_file():
            raise RunError(f"{out}: nothing to resume (no config.json)")
    elif any((out / name).exists() for name in ("checkpoints", "backbone", "config.json")):
        raise RunError(f"{out}: already holds a run; pass --resume to continue it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    saved_facts = load_config(config_path)[1] if resume else {}
    if resume and data is None:  # continue on the data the run started with
        data = saved_facts.get("data", {}).get("manifest")

    if data is None:
        t0 = time.perf_counter()
        data = demo_dataset(cache_dir, count=demo_count, seed=0, log=log.info)
        timings["demo_build_s"] = time.perf_counter() - t0

    variables = None
    backbone_facts = dict(weights="random-init", seed=config.seed)
    if backbone is not None:
        variables = init_variables(make_model(config), config.seed)
        for collection in ("params", "batch_stats"):
            variables[collection][BACKBONE] = jax.tree_util.tree_map(jnp.asarray, backbone[0][collection])
        backbone_facts = dict(backbone[1])
    state = create_train_state(config, variables)
    if resume:
        backbone_facts = saved_facts.get("backbone", backbone_facts)
        if state.freeze_backbone:
            try:
                state = load_backbone(out, state)
            except CheckpointError as e:
                raise RunError(str(e)) from None
    backbone_hash = weights_hash(backbone_variables(state))
    inputs, facts = load_inputs(state, data, cache_dir, skip_invalid, timings, backbone_hash)
    train_idx, val_idx = split_indices(len(inputs["ssim"]), config.validation_split, config.seed)
    train = {k: v[train_idx] for k, v in inputs.items()}
    val = {k: v[val_idx] for k, v in inputs.items()}
    facts.update(train_rows=len(train_idx), val_rows=len(val_idx))

    if resume:
        if saved_facts.get("data", {}).get("manifest_sha256") != facts["manifest_sha256"]:
            raise RunError(f"{out}: --resume needs the same data the run started with ({saved_facts.get('data', {}).get('manifest')})")
    versions = package_versions("jax", "flax", "optax", "orbax-checkpoint", "vtracer", "resvg-py",
                                "scikit-image", "pillow")
    save_config(config_path, config, data=facts, versions=versions,
                backbone=dict(backbone_facts, sha256=backbone_hash))
    if not resume:
        save_backbone(out, state)  # before any epoch, so even a run cut short keeps its start
    log.info(
        f"{facts['valid_rows']} images ({len(train_idx)} train, {len(val_idx)} val); "
        f"trainable parameters: {trainable_params(state):,}; batch size {config.batch_size}, "
        f"learning rate {config.learning_rate}; run folder {out}"
    )

    def after_epoch(epoch, history):
        _json_dump(out / "history.json", history)
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)

    checkpoints = RunCheckpoints(out)
    t0 = time.perf_counter()
    try:
        result = fit(state, config, train, val, checkpoints=checkpoints, resume=resume, on_epoch_end=after_epoch)
    except TrainingError as e:
        last = checkpoints.latest_epoch()
        kept = f"checkpoints up to epoch {last + 1} are kept in {out}" if last is not None else "no checkpoint was written"
        raise TrainingError(f"{e} ({kept})") from None
    finally:
        checkpoints.close()
    timings["training_s"] = time.perf_counter() - t0
    epoch_times = result.history["epoch_time"]
    timings["median_epoch_s"] = float(np.median(epoch_times)) if epoch_times else None
    _json_dump(out / "history.json", result.history)
    _json_dump(out / "summary.json", dict(
        best_epoch=result.best_epoch + 1, epochs_completed=result.epochs_completed,
        stopped_early=result.stopped_early, best_val_metrics=result.best_val_metrics, timings=timings,
    ))
    log.info("timings: " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in timings.items()))
    return result, out


def trainable_params(state: TrainState) -> int:
    sub = {"predictor": state.params["predictor"]} if state.freeze_backbone else state.params
    return int(sum(x.size for x in jax.tree_util.tree_leaves(sub)))


def load_run(run_dir: str | Path) -> tuple[TrainState, TrainConfig, dict]:
    """The best weights of a run folder: ``(state, config, meta of the latest checkpoint)``."""
    run_dir = Path(run_dir)
    config, _ = load_config(run_dir / "config.json")
    checkpoints = RunCheckpoints(run_dir, read_only=True)
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
    return state, config, meta


def predict_files(state: TrainState, paths: Sequence[str | Path], batch_size: int = 16) -> np.ndarray:
    """Predicted SSIM per image file, through the whole model (backbone + predictor)."""
    images = []
    for p in paths:
        try:
            images.append(load_image_file(p)[0])
        except ImageError as e:
            raise DataError(f"{p}: {e}") from None
    return predict(state, {"image": np.stack(images), "ssim": np.zeros(len(images), np.float32)}, batch_size)
