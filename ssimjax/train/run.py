"""A whole training run as ``ssimjax train`` performs it: a sequence of named stages.

data (built-in sets built or found in the cache) -> model inputs (:mod:`ssimjax.features.inputs`)
-> split -> the map score (synthetic wordmarks, the SSIM-map network trained or read back, each
row scored) -> the MLP's training start -> fit (:mod:`ssimjax.train.fit`) -> scores of the best
weights -> summary and report. What the run folder holds is :mod:`ssimjax.train.folder`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ssimjax.config import DEFAULT_DEMO_COUNT, DEFAULT_HELD_OUT_PER_SET, DEFAULT_ICON_COUNT, TrainConfig
from ssimjax.data.manifest import split_rows
from ssimjax.evaluate.metrics import per_set_metrics, quality_metrics, role_summary, rows_by_size
from ssimjax.features.cache import default_cache_dir
from ssimjax.features.inputs import backbone_hash, build_inputs
from ssimjax.models.init import init_variables, with_training_start
from ssimjax.models.quality import PREDICTOR, count_params, merge_backbone
from ssimjax.train.checkpoint import CheckpointError, RunCheckpoints, load_backbone
from ssimjax.train.fit import fit, predict
from ssimjax.train.folder import (
    check_resumed_data,
    clear_stale,
    epoch_writer,
    record_data,
    record_start,
    truncate_jsonl,
    write_run_report,
    write_summary,
)
from ssimjax.train.map_stage import map_score_stage
from ssimjax.train.parallel import data_mesh, describe, round_up
from ssimjax.train.plan import RunError, RunPlan, is_builtin, plan_run, resolve_data
from ssimjax.train.progress import FitProgress, FitResult, TrainingError, history_keys
from ssimjax.train.state import Trainer, create_train_state

log = logging.getLogger("ssimjax")


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
    held_out_per_set: int = DEFAULT_HELD_OUT_PER_SET,
    backbone: tuple[dict, dict] | None = None,
    plan: RunPlan | None = None,
    on_epoch_end=None,
) -> tuple[FitResult, Path]:
    """Everything ``ssimjax train`` does: data, features, training, run folder. Returns the fit
    result and the run folder.

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
    if plan.reuses_folder:
        log.info(f"{out}: a run stopped before its first checkpoint left "
                 f"{', '.join(clear_stale(out))}; starting afresh there")
    mesh, devices = _devices()
    trainer = Trainer.from_config(config, mesh)
    state = _initial_state(plan)
    weights_sha = backbone_hash(state.variables)
    record_start(plan, state, weights_sha)
    data, timings = _built_data(plan.data, cache_dir, demo_count, icon_count, held_out_per_set)
    inputs, facts, input_timings = build_inputs(trainer, state.variables, data, cache_dir, skip_invalid, weights_sha)
    timings.update(input_timings)
    check_resumed_data(plan, facts)
    sources, paths = inputs.pop("source"), inputs.pop("path")
    split = split_rows(sources, config.validation_split, config.seed, config.test_source)
    map_model, extra = None, None
    if config.map_net:
        map_model, inputs, extra, map_timings = map_score_stage(plan, trainer, state.variables, inputs,
                                                                paths[split[0]], paths, cache_dir, weights_sha)
        timings.update(map_timings)
    train, val, test = _split_inputs(inputs, split, extra)
    facts = {**facts, **_split_facts(sources, split, synthetic=len(train["ssim"]) - len(split[0]))}
    state = _training_start(plan, state, train)
    record_data(plan, facts, weights_sha)
    _log_start(plan, trainer, state, facts)
    result, fit_timings = _fit(plan, state, train, val, mesh, on_epoch_end)
    timings.update(fit_timings)
    val_quality, test_figures, predictions = _score(trainer, result.state, val, test, paths, sources, split, config,
                                                    mesh)
    write_summary(out, result, val_quality, test_figures, timings, devices, config)
    if report:
        write_run_report(out, trainer, result.state, val, paths[split[1]], predictions, config, map_model)
    log.info("timings: " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in timings.items()))
    return result, out


def _built_data(data, cache_dir: Path, demo_count: int, icon_count: int, held_out_per_set: int
                ) -> tuple[str | Path, dict]:
    """The run's data (a built-in set built or found in the cache), and how long building took."""
    if not is_builtin(data):
        return data, {}
    t0 = time.perf_counter()
    data = resolve_data(data, cache_dir, demo_count, icon_count, log=log.info, held_out_per_set=held_out_per_set)
    return data, {"data_build_s": time.perf_counter() - t0}


def _devices():
    """``(mesh, description)`` of every local device (every host's, after jax.distributed.initialize())."""
    mesh = data_mesh()
    devices = describe(mesh)
    log.info(f"devices: {devices['count']} x {devices['platform']} ({', '.join(devices['kinds'])})"
             f"{', batches split over them' if mesh is not None else ''}")
    return mesh, devices


def _split_inputs(inputs: dict, split: tuple, extra: dict | None) -> tuple[dict, dict, dict]:
    """``(train, val, test)`` rows of ``inputs``; the synthetic rows follow the training rows."""
    train, val, test = ({k: v[idx] for k, v in inputs.items()} for idx in split)
    if extra is not None and len(extra["ssim"]):
        train = {k: np.concatenate([v, extra[k]]) for k, v in train.items()}
    return train, val, test


def _split_facts(sources, split: tuple, synthetic: int) -> dict:
    names, counts = np.unique(sources.astype(str), return_counts=True)
    return dict(train_rows=len(split[0]), val_rows=len(split[1]), test_rows=len(split[2]),
                synthetic_train_rows=synthetic, sources={n: int(c) for n, c in zip(names, counts) if n})


def _training_start(plan: RunPlan, state, train: dict):
    """The statistics are standardised with the training rows'; the head starts at their mean SSIM.
    (A resumed run's MLP checkpoint, where there is one, then replaces all of it.)"""
    if "stats" not in train:
        return state
    return create_train_state(plan.config, with_training_start(state.variables, plan.config, train["stats"],
                                                               train["ssim"]))


def _log_start(plan: RunPlan, trainer: Trainer, state, facts: dict) -> None:
    config, synthetic, held_out = plan.config, facts["synthetic_train_rows"], facts["test_rows"]
    log.info(
        f"{facts['valid_rows']} images ({facts['train_rows']} train{f' + {synthetic} synthetic' if synthetic else ''}, "
        f"{facts['val_rows']} val{f', {held_out} held out: {config.test_source}' if held_out else ''}); "
        f"trainable parameters: {trainable_params(trainer, state.params):,}; batch size {config.batch_size}, "
        f"learning rate {config.learning_rate}; run folder {plan.out}"
    )


def _fit(plan: RunPlan, state, train: dict, val: dict, mesh, on_epoch_end) -> tuple[FitResult, dict]:
    """:func:`ssimjax.train.fit.fit` with the run's checkpoints (continued when resuming),
    ``history.json`` and ``metrics.jsonl`` written after every epoch; returns the result and timings."""
    config, out = plan.config, plan.out
    metrics_log = out / "metrics.jsonl"
    if not plan.resume:
        metrics_log.unlink(missing_ok=True)
    checkpoints = RunCheckpoints(out, frozen_backbone=config.freeze_backbone)
    t0 = time.perf_counter()
    try:
        progress = None
        if plan.resume:
            state, progress = FitProgress.from_checkpoints(checkpoints, state, history_keys(config))
            truncate_jsonl(metrics_log, progress.next_epoch)
        result = fit(state, config, train, val, checkpoints=checkpoints, progress=progress,
                     on_epoch_end=epoch_writer(out, metrics_log, on_epoch_end), mesh=mesh)
    except TrainingError as e:
        last = checkpoints.latest_epoch()
        kept = f"checkpoints up to epoch {last + 1} are kept in {out}" if last is not None else "no checkpoint was written"
        raise TrainingError(f"{e} ({kept})") from None
    finally:
        checkpoints.close()
    epoch_times = result.history["epoch_time"]
    return result, {"training_s": time.perf_counter() - t0,
                    "median_epoch_s": float(np.median(epoch_times)) if epoch_times else None}


def _score(trainer: Trainer, state, val: dict, test: dict, paths, sources, split: tuple, config: TrainConfig, mesh):
    """``(validation quality, held-out figures, predictions for the report)`` of the best weights.
    The held-out figures: ``metrics`` over every held-out row, ``per_set`` (each held-out set's),
    ``roles`` (the selection and report sets' mean and worst, where those sets are held out) and
    ``per_size`` (by the image's long side, where the model reads image statistics)."""
    _, val_idx, test_idx = split
    val_pred = predict(trainer, state, val, round_up(config.eval_batch_size, mesh))
    predictions = {"val": (paths[val_idx], val_pred, val["ssim"])}
    figures = {"metrics": None, "per_set": None, "roles": None, "per_size": None}
    if len(test_idx):
        test_pred = predict(trainer, state, test, round_up(config.eval_batch_size, mesh))
        predictions["test"] = (paths[test_idx], test_pred, test["ssim"])
        figures["metrics"] = quality_metrics(test_pred, test["ssim"])
        per_set = per_set_metrics(test_pred, test["ssim"], sources[test_idx])
        if len(per_set) > 1:
            figures.update(per_set=per_set, roles=role_summary(per_set) or None)
        figures["per_size"] = rows_by_size(test_pred, test)
        m = figures["metrics"]
        log.info(f"held out: {config.test_source!r} ({len(test_idx)} images, never trained on): "
                 f"SRCC {m['srcc']:.4f}, PLCC {m['plcc']:.4f}, MAE {m['mae']:.4f}")
    return quality_metrics(val_pred, val["ssim"]), figures, predictions
