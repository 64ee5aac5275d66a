"""A whole training run as ``scripts/train.py`` performs it: a thin orchestration of the stages.

plan (:mod:`ssimjax.train.plan`) -> data and features (:mod:`ssimjax.features.inputs`) -> split -> fit
(:mod:`ssimjax.train.fit`, checkpoints by :mod:`ssimjax.train.checkpoint`) -> ``history.json`` and
``summary.json``. A run folder holds ``config.json`` (the configuration and the run's facts),
``history.json`` (rewritten after every epoch), ``summary.json`` (best epoch, metrics, timings),
``checkpoints/`` (Orbax: latest 5 epochs and the best) and, with a frozen backbone, ``backbone/``
(its weights, written once).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from ssimjax.config import DEFAULT_DEMO_COUNT, DEFAULT_ICON_COUNT, TrainConfig, save_config
from ssimjax.data.labelling import package_versions
from ssimjax.data.manifest import read_manifest, split_rows
from ssimjax.data.wordmarks import mlp_rows, wordmark_folder
from ssimjax.evaluate.metrics import quality_metrics
from ssimjax.features.inputs import backbone_hash, build_inputs, default_cache_dir
from ssimjax.models.init import init_variables, with_training_start
from ssimjax.models.mapnet import map_spec, with_map_scores
from ssimjax.models.quality import PREDICTOR, count_params, merge_backbone
from ssimjax.train.checkpoint import (
    CheckpointError,
    RunCheckpoints,
    load_backbone,
    load_map_net,
    save_backbone,
    save_map_net,
)
from ssimjax.train.fit import fit, predict
from ssimjax.train.mapnet import fit_map_model
from ssimjax.train.parallel import data_mesh, describe, round_up
from ssimjax.train.plan import RunError, RunPlan, is_builtin, plan_run, resolve_data
from ssimjax.train.progress import FitProgress, FitResult, TrainingError, history_keys
from ssimjax.train.state import Trainer, create_train_state

log = logging.getLogger("ssimjax")


def _json_dump(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")
    tmp.replace(path)


def _write_report(out: Path, trainer, state, val: dict, val_paths, predictions: dict, config, map_model) -> None:
    from ssimjax.evaluate.analysis import run_analyses
    from ssimjax.evaluate.report import write_predictions, write_report

    t0 = time.perf_counter()
    write_predictions(out / "report" / "predictions.csv", predictions)
    run_analyses(trainer, state, list(val_paths), val, out / "report", batch_size=config.batch_size, seed=config.seed,
                 map_model=map_model)
    t1 = time.perf_counter()
    written = write_report(out)
    log.info(f"report: {written['dashboard']} (analyses {t1 - t0:.1f} s, figures {time.perf_counter() - t1:.1f} s)")


def _truncate_jsonl(path: Path, epochs: int) -> None:
    """Keeps the first ``epochs`` epochs' lines of a run's ``metrics.jsonl`` (a resumed run rewrites
    the epochs after its checkpoint)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["epoch"] <= epochs]
    path.write_text("".join(line + "\n" for line in keep))


def trainable_params(trainer: Trainer, params: dict) -> int:
    return count_params(params[PREDICTOR] if trainer.freeze_backbone else params)


def _initial_state(plan: RunPlan):
    """The state the run starts from: seeded, pretrained backbone, or (resuming) the run's own backbone."""
    config = plan.config
    variables = None
    if plan.backbone is not None:
        variables = merge_backbone(init_variables(Trainer.from_config(config).model, config.seed), plan.backbone[0])
    state = create_train_state(config, variables)
    if plan.resume and config.freeze_backbone:
        try:
            state = load_backbone(plan.out, state)
        except CheckpointError as e:
            raise RunError(str(e)) from None
    return state


def train_run(
    config: TrainConfig | dict | None = None,
    *,
    data: str | Path | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    skip_invalid: bool = False,
    cache_dir: str | Path | None = None,
    report: bool = True,
    demo_count: int = DEFAULT_DEMO_COUNT,
    icon_count: int = DEFAULT_ICON_COUNT,
    backbone: tuple[dict, dict] | None = None,
    plan: RunPlan | None = None,
    on_epoch_end=None,
) -> tuple[FitResult, Path]:
    """Everything ``scripts/train.py`` does: data, features, training, run folder. Returns the
    fit result and the run folder.

    ``backbone`` is ``(variables, facts)``: the backbone's ``{'params', 'batch_stats'}`` to start
    from (e.g. converted torchvision weights) and what to record about them in ``config.json``.
    ``plan`` (from :func:`ssimjax.train.plan.plan_run`) replaces ``config``/``data``/``out``/``resume``/
    ``backbone``. With ``report`` the run ends with robustness, benchmark and feature-importance
    analyses of its validation images and ``report/`` (:func:`ssimjax.evaluate.report.write_report`).
    """
    if plan is None:
        plan = plan_run(config, out=out, resume=resume, data=data,
                        load_backbone=None if backbone is None else (lambda _: backbone))
    config, out = plan.config, plan.out
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    data = plan.data
    if is_builtin(data):
        t0 = time.perf_counter()
        data = resolve_data(data, cache_dir, demo_count, icon_count, log=log.info)
        timings["data_build_s"] = time.perf_counter() - t0

    mesh = data_mesh()  # every local device (every host's, after jax.distributed.initialize())
    devices = describe(mesh)
    log.info(f"devices: {devices['count']} x {devices['platform']} ({', '.join(devices['kinds'])})"
             f"{', batches split over them' if mesh is not None else ''}")
    trainer = Trainer.from_config(config, mesh)
    state = _initial_state(plan)
    weights_sha = backbone_hash(state.variables)
    inputs, facts, input_timings = build_inputs(trainer, state.variables, data, cache_dir, skip_invalid, weights_sha)
    timings.update(input_timings)
    sources = inputs.pop("source")
    paths = inputs.pop("path")
    train_idx, val_idx, test_idx = split_rows(sources, config.validation_split, config.seed, config.test_source)
    map_model, extra = None, None
    if config.map_net:
        # Synthetic wordmarks: more training images for the map network, and (map_extra_mlp) more
        # training rows for the MLP; never validation or test rows.
        t0 = time.perf_counter()
        folder = wordmark_folder(cache_dir, config.map_extra, log=log.info)
        extra_paths = [] if folder is None else [str(row.image) for row in read_manifest(folder)[1]]
        n_mlp = mlp_rows(len(extra_paths), len(train_idx)) if config.map_extra_mlp else 0
        if n_mlp:  # the MLP's synthetic rows, read (statistics, features) as any data set's
            extra = build_inputs(trainer, state.variables, folder, cache_dir, False, weights_sha, limit=n_mlp)[0]
            del extra["source"], extra["path"]
        timings["synthetic_s"] = time.perf_counter() - t0
        # Trained first, on the training rows' SSIM maps alone, then frozen: its score is one more
        # statistic for every row. A resumed run reads back the network it trained.
        t0 = time.perf_counter()
        if plan.resume:
            try:
                map_model = load_map_net(out, map_spec(config))
            except CheckpointError as e:
                raise RunError(str(e)) from None
        else:
            log.info(f"training the SSIM-map network on the {len(train_idx)} training images"
                     f"{f' and {len(extra_paths)} synthetic wordmarks' if extra_paths else ''} ({config.map_steps} "
                     f"steps of {config.map_crop} px crops)")
            map_model = fit_map_model(list(paths[train_idx]) + extra_paths, map_spec(config), cache_dir,
                                      config.map_steps, config.seed, log=log.info, crop_size=config.map_crop)
            timings["map_net_train_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        inputs["stats"] = with_map_scores(inputs["stats"], paths, map_model)
        if extra is not None:
            extra["stats"] = with_map_scores(extra["stats"], extra_paths[:n_mlp], map_model)
        timings["map_net_score_s"] = time.perf_counter() - t0
    train, val, test = ({k: v[idx] for k, v in inputs.items()} for idx in (train_idx, val_idx, test_idx))
    synthetic = 0 if extra is None else len(extra["ssim"])
    if synthetic:
        train = {k: np.concatenate([v, extra[k]]) for k, v in train.items()}
    names, counts = np.unique(sources.astype(str), return_counts=True)
    facts.update(train_rows=len(train_idx), val_rows=len(val_idx), test_rows=len(test_idx),
                 synthetic_train_rows=synthetic,
                 sources={n: int(c) for n, c in zip(names, counts) if n})
    if "stats" in train and not plan.resume:
        # The statistics are standardised with the training rows'; the head starts at their mean SSIM.
        v = with_training_start(state.variables, config, train["stats"], train["ssim"])
        state = create_train_state(config, v)

    if plan.resume and plan.saved_facts.get("data", {}).get("manifest_sha256") != facts["manifest_sha256"]:
        raise RunError(f"{out}: --resume needs the same data the run started with "
                       f"({plan.saved_facts.get('data', {}).get('manifest')})")
    backbone_facts = (plan.saved_facts.get("backbone") if plan.resume else None) or \
        (dict(plan.backbone[1]) if plan.backbone is not None else dict(weights="random-init", seed=config.seed))
    versions = package_versions("jax", "flax", "optax", "orbax-checkpoint", "vtracer", "resvg-py",
                                "scikit-image", "pillow")
    save_config(out / "config.json", config, data=facts, versions=versions,
                backbone=dict(backbone_facts, sha256=weights_sha))
    if map_model is not None and not plan.resume:
        save_map_net(out, map_model)
    if not plan.resume and config.freeze_backbone:
        save_backbone(out, state)  # before any epoch, so even a run cut short keeps its start
    log.info(
        f"{facts['valid_rows']} images ({len(train_idx)} train{f' + {synthetic} synthetic' if synthetic else ''}, "
        f"{len(val_idx)} val"
        f"{f', {len(test_idx)} held out: {config.test_source}' if len(test_idx) else ''}); "
        f"trainable parameters: {trainable_params(trainer, state.params):,}; batch size {config.batch_size}, "
        f"learning rate {config.learning_rate}; run folder {out}"
    )

    metrics_log = out / "metrics.jsonl"
    if not plan.resume:
        metrics_log.unlink(missing_ok=True)

    def after_epoch(epoch, history, val_metrics):
        _json_dump(out / "history.json", history)
        row = {"epoch": epoch + 1, **{k: v[-1] for k, v in history.items()},
               **{f"val_{k}": v for k, v in val_metrics.items()}}
        with metrics_log.open("a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)

    checkpoints = RunCheckpoints(out, frozen_backbone=config.freeze_backbone)
    t0 = time.perf_counter()
    try:
        progress = None
        if plan.resume:
            state, progress = FitProgress.from_checkpoints(checkpoints, state, history_keys(config))
            _truncate_jsonl(metrics_log, progress.next_epoch)
        result = fit(state, config, train, val, checkpoints=checkpoints, progress=progress, on_epoch_end=after_epoch,
                     mesh=mesh)
    except TrainingError as e:
        last = checkpoints.latest_epoch()
        kept = f"checkpoints up to epoch {last + 1} are kept in {out}" if last is not None else "no checkpoint was written"
        raise TrainingError(f"{e} ({kept})") from None
    finally:
        checkpoints.close()
    timings["training_s"] = time.perf_counter() - t0
    epoch_times = result.history["epoch_time"]
    timings["median_epoch_s"] = float(np.median(epoch_times)) if epoch_times else None
    val_pred = predict(trainer, result.state, val, round_up(config.eval_batch_size, mesh))
    val_quality = quality_metrics(val_pred, val["ssim"])
    predictions = {"val": (paths[val_idx], val_pred, val["ssim"])}
    test_metrics = None
    if len(test_idx):
        test_pred = predict(trainer, result.state, test, round_up(config.eval_batch_size, mesh))
        predictions["test"] = (paths[test_idx], test_pred, test["ssim"])
        test_metrics = quality_metrics(test_pred, test["ssim"])
        log.info(f"held-out source {config.test_source!r} ({len(test_idx)} images, never trained on): "
                 f"SRCC {test_metrics['srcc']:.4f}, PLCC {test_metrics['plcc']:.4f}, MAE {test_metrics['mae']:.4f}")
    _json_dump(out / "history.json", result.history)
    _json_dump(out / "summary.json", dict(
        best_epoch=result.best_epoch + 1, epochs_completed=result.epochs_completed,
        stopped_early=result.stopped_early, best_val_metrics=result.best_val_metrics, val_quality=val_quality,
        test_source=config.test_source, test_metrics=test_metrics, timings=timings, devices=devices,
    ))
    if report:
        _write_report(out, trainer, result.state, val, paths[val_idx], predictions, config, map_model)
    log.info("timings: " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in timings.items()))
    return result, out
