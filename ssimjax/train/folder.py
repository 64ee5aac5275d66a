"""A run folder's files, written as the run goes.

A frozen backbone (``backbone/``) and ``config.json`` (the configuration and the run's facts:
data, versions, backbone) first, before any work, so a run killed at any moment can be resumed;
the data's identity added to ``config.json`` once read; ``history.json`` (rewritten after every
epoch) and ``metrics.jsonl`` (one line per epoch); ``checkpoints/`` (Orbax: latest 5 epochs and the
best, by :mod:`ssimjax.train.checkpoint`); ``summary.json`` (best epoch, metrics, timings) at the
end; and ``report/`` (:mod:`ssimjax.evaluate.report`).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from ssimjax.config import TrainConfig, save_config
from ssimjax.data.labelling import package_versions
from ssimjax.files import write_text_atomic
from ssimjax.train.checkpoint import save_backbone
from ssimjax.train.plan import RunError, RunPlan, is_builtin
from ssimjax.train.progress import FitResult

log = logging.getLogger("ssimjax")


def json_dump(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")


def write_run_report(out: Path, trainer, state, val: dict, val_paths, predictions: dict, config, map_model) -> None:
    from ssimjax.evaluate.analysis import run_analyses
    from ssimjax.evaluate.report import write_predictions, write_report

    t0 = time.perf_counter()
    write_predictions(out / "report" / "predictions.csv", predictions)
    run_analyses(trainer, state, list(val_paths), val, out / "report", batch_size=config.batch_size, seed=config.seed,
                 map_model=map_model)
    t1 = time.perf_counter()
    written = write_report(out)
    log.info(f"report: {written['dashboard']} (analyses {t1 - t0:.1f} s, figures {time.perf_counter() - t1:.1f} s)")


def truncate_jsonl(path: Path, epochs: int) -> None:
    """Keeps the first ``epochs`` epochs' lines of a run's ``metrics.jsonl`` (a resumed run rewrites
    the epochs after its checkpoint)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["epoch"] <= epochs]
    write_text_atomic(path, "".join(line + "\n" for line in keep))


def record_start(plan: RunPlan, state, weights_sha: str) -> None:
    """A new run records itself before it works: its frozen backbone (``backbone/``), then
    ``config.json`` (configuration, the data asked for, versions, backbone), so that a run killed
    at any moment after this can be resumed. A resumed run's record is already there."""
    if plan.resume:
        return
    if plan.config.freeze_backbone:
        save_backbone(plan.out, state)
    write_config(plan, {"requested": requested_data(plan.data)}, weights_sha)


def check_resumed_data(plan: RunPlan, facts: dict) -> None:
    """A resumed run must find the data it started with, once it had read it."""
    saved = plan.saved_facts.get("data", {})
    if plan.resume and "manifest_sha256" in saved and saved["manifest_sha256"] != facts["manifest_sha256"]:
        raise RunError(f"{plan.out}: --resume needs the same data the run started with ({saved.get('manifest')})")


def record_data(plan: RunPlan, facts: dict, weights_sha: str) -> None:
    """``config.json`` again, now with the data's identity (manifest, its sha256, rows per split)."""
    requested = plan.saved_facts.get("data", {}).get("requested") if plan.resume else requested_data(plan.data)
    write_config(plan, {**facts, "requested": requested or facts["manifest"]}, weights_sha)


def requested_data(data) -> str:
    """The data as asked for: a built-in set's name, or the absolute path of a manifest or folder."""
    return data if is_builtin(data) else str(Path(data).resolve())


def write_config(plan: RunPlan, data: dict, weights_sha: str) -> None:
    config = plan.config
    backbone_facts = (plan.saved_facts.get("backbone") if plan.resume else None) or \
        (dict(plan.backbone[1]) if plan.backbone is not None else dict(weights="random-init", seed=config.seed))
    versions = package_versions("jax", "flax", "optax", "orbax-checkpoint", "vtracer", "resvg-py",
                                "scikit-image", "pillow")
    save_config(plan.out / "config.json", config, data=data, versions=versions,
                backbone=dict(backbone_facts, sha256=weights_sha))


STALE = ("config.json", "history.json", "metrics.jsonl", "summary.json", "backbone", "report")


def clear_stale(out: Path) -> list[str]:
    """Removes what a run stopped before its first checkpoint left in ``out`` (a new run starts
    there afresh); returns what was removed."""
    removed = []
    for name in STALE:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def epoch_writer(out: Path, metrics_log: Path, on_epoch_end):
    """What runs after each epoch: ``history.json`` rewritten, one line added to ``metrics.jsonl``."""
    def after_epoch(epoch, history, val_metrics):
        json_dump(out / "history.json", history)
        row = {"epoch": epoch + 1, **{k: v[-1] for k, v in history.items()},
               **{f"val_{k}": v for k, v in val_metrics.items()}}
        # Rewritten whole (a few KB) rather than appended: a full disk or a kill never tears a line.
        before = metrics_log.read_text() if metrics_log.exists() else ""
        write_text_atomic(metrics_log, before + json.dumps(row, sort_keys=True) + "\n")
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)

    return after_epoch


def write_summary(out: Path, result: FitResult, val_quality: dict, test: dict, timings: dict, devices: dict,
                  config: TrainConfig) -> None:
    """``history.json`` and ``summary.json``; ``test`` is :func:`ssimjax.train.run`'s held-out
    figures: ``metrics`` (all held-out rows pooled, or None), ``per_set``, ``roles`` and ``per_size``."""
    json_dump(out / "history.json", result.history)
    json_dump(out / "summary.json", dict(
        best_epoch=result.best_epoch + 1, epochs_completed=result.epochs_completed,
        stopped_early=result.stopped_early, best_val_metrics=result.best_val_metrics, val_quality=val_quality,
        test_source=config.test_source, test_metrics=test["metrics"], test_per_set=test["per_set"],
        test_roles=test["roles"], test_per_size=test["per_size"], timings=timings, devices=devices,
    ))
