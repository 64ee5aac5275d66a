"""The training loop: epochs, validation, schedules, early stopping, checkpoints, best-weight restore.

Side effects (clocks, progress bars, logging, checkpoint files) live here; the arithmetic is in
the pure functions of :mod:`ssimjax.train.steps` and :mod:`ssimjax.train.optim`.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ssimjax.config import TrainConfig
from ssimjax.evaluate.metrics import comprehensive_metrics, correlation
from ssimjax.train.batching import apply_in_batches
from ssimjax.train.checkpoint import RunCheckpoints
from ssimjax.train.losses import ADAPTIVE_COMPONENTS, batched_loss
from ssimjax.train.optim import advance_learning_rate, current_learning_rate
from ssimjax.train.parallel import check_batch_size, replicate, round_up
from ssimjax.train.progress import FitProgress, FitResult, TrainingError, history_keys
from ssimjax.train.state import Trainer, TrainState
from ssimjax.train.steps import epoch_batches

log = logging.getLogger("ssimjax")


@functools.partial(jax.jit, static_argnames=("spec", "batch_size"))
def _validation_loss(spec, pred, target, params, batch_size):
    return batched_loss(spec, pred, target, batch_size, params)


def _rows(data: dict) -> int:
    return int(np.shape(data["ssim"])[0])


def _model_inputs(data: dict) -> dict:
    inputs = {"features": data["features"]} if "features" in data else {"image": data["image"]}
    if "stats" in data:
        inputs["stats"] = data["stats"]
    return inputs


def predict(trainer: Trainer, state: TrainState, data: dict, batch_size: int) -> np.ndarray:
    """Predictions for every row of ``data`` (``features`` or uint8 ``image``), one compilation."""
    return apply_in_batches(lambda b: trainer.eval_step(state, b), _model_inputs(data), batch_size)


def _train_one_epoch(trainer, state, data, epoch, config):
    """Returns (state, per-row train loss sum, mae sum, predictions, targets) for one epoch."""
    n = _rows(data)
    if "features" in data:
        state, m = trainer.train_epoch(state, data["features"], data["ssim"], epoch, batch_size=config.batch_size,
                                       stats=data.get("stats"))
        m = jax.device_get(m)
    else:
        idx, mask = map(np.asarray, epoch_batches(state.rng, epoch, n, config.batch_size))
        per = []
        inner = tqdm(total=len(idx), desc=f"Epoch {epoch + 1}/{config.epochs}", leave=False, disable=None)
        for bidx, bmask in zip(idx, mask):
            batch = {"image": data["image"][bidx], "ssim": data["ssim"][bidx], "mask": bmask}
            if "stats" in data:
                batch["stats"] = data["stats"][bidx]
            state, bm = trainer.train_step(state, batch)
            bm = jax.device_get(bm)
            per.append(dict(bm, target=batch["ssim"], mask=bmask))
            inner.set_postfix(loss=f"{bm['loss']:.4f}", mae=f"{bm['mae']:.4f}",
                              lr=f"{current_learning_rate(state.opt_state):.2e}")
            inner.update(1)
        inner.close()
        m = {k: np.stack([p[k] for p in per]) for k in per[0]}
    counts = m["mask"].sum(axis=1)
    losses = np.asarray(m["loss"], np.float64)
    if not np.all(np.isfinite(losses)):
        bad = int(np.argmax(~np.isfinite(losses)))
        raise TrainingError(f"epoch {epoch + 1}, batch {bad + 1}: training loss is {losses[bad]}; stopping")
    mask = m["mask"].astype(bool)
    train_loss = float(np.sum(losses * counts) / n)
    train_mae = float(np.sum(np.asarray(m["mae"], np.float64) * counts) / n)
    preds, targets = m["pred"][mask], m["target"][mask]
    extra = {}
    if "loss_weights" in m:  # the adaptive loss's weights after the epoch's last step
        extra = {f"loss_weight_{c}": float(w) for c, w in zip(ADAPTIVE_COMPONENTS, np.asarray(m["loss_weights"])[-1])}
    return state, train_loss, train_mae, preds, targets, extra


def fit(
    state: TrainState,
    config: TrainConfig,
    train: dict,
    val: dict,
    *,
    checkpoints: RunCheckpoints | None = None,
    progress: FitProgress | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    mesh=None,
) -> FitResult:
    """Trains ``state`` on ``train`` and validates on ``val`` each epoch.

    ``train``/``val`` hold ``ssim`` (N,), either ``features`` (N, D) (frozen backbone, cached
    features) or ``image`` (N, 224, 224, 3) uint8, and ``stats`` (N, S) when the model takes
    image statistics. The validation loss is computed as training's: per batch of
    ``config.batch_size`` rows, averaged weighted by rows (:func:`ssimjax.train.losses.batched_loss`).
    With ``checkpoints`` epochs are saved (:class:`_Saver`: every best one, the last, and others at
    most every :data:`CHECKPOINT_EVERY_S` seconds);
    ``progress`` (from :meth:`FitProgress.from_checkpoints`) continues a run where it stopped,
    reproducing the history an uninterrupted run would have written. With ``mesh`` (a
    :func:`ssimjax.train.parallel.data_mesh`) every batch is split over its devices; the state and the
    data stay replicated.
    """
    check_batch_size(config.batch_size, mesh)
    trainer = Trainer.from_config(config, mesh)
    eval_batch = round_up(config.eval_batch_size, mesh)  # padded and masked: any size works
    state = replicate(state, mesh)
    p = progress if progress is not None else FitProgress(history={k: [] for k in history_keys(config)})
    start = p.next_epoch
    if p.stopped_early:
        log.info("that run had already stopped early; nothing to do")
        start = config.epochs

    features_mode = "features" in train
    if features_mode:  # device arrays once, not per epoch
        train = replicate({k: jnp.asarray(v) for k, v in train.items()}, mesh)
    val_inputs = replicate({k: jnp.asarray(v) for k, v in _model_inputs(val).items()}, mesh)  # on the device once
    val = dict(val_inputs, ssim=np.asarray(val["ssim"], np.float32))
    bar = tqdm(total=config.epochs, initial=min(start, config.epochs), desc="epochs", unit="epoch",
               disable=None if features_mode else True)
    saver = _Saver(checkpoints)
    try:
        for epoch in range(start, config.epochs):
            state, row, val_metrics = _epoch(trainer, state, train, val, epoch, config, eval_batch)
            _record_epoch(p, epoch, row, val_metrics, state, config)
            saver.epoch_done(epoch, state, p, val_metrics, row["val_loss"],
                             last=p.stopped_early or epoch == config.epochs - 1)
            _log_epoch(epoch, config, row, val_metrics, bar)
            if on_epoch_end is not None:
                on_epoch_end(epoch, p.history, val_metrics)
            if p.stopped_early:
                log.info(f"Early stopping after {config.patience} epochs without improvement")
                break
    except (KeyboardInterrupt, TrainingError):
        saver.save_pending()  # Ctrl-C or a non-finite loss loses no finished epoch
        raise
    finally:
        bar.close()
        if checkpoints is not None:
            checkpoints.wait()

    if p.best_variables is None:
        raise TrainingError("no epoch was trained")
    state = state.replace(params=p.best_variables[0], batch_stats=p.best_variables[1])
    log.info(f"Restored the best weights: epoch {p.best_epoch + 1}, val loss {p.best_val_loss:.4f}")
    return FitResult(
        state=state, history=p.history, best_epoch=p.best_epoch,
        # The epochs the history holds: right also after resuming a run that had stopped early.
        epochs_completed=len(p.history["val_loss"]), stopped_early=p.stopped_early,
        best_val_metrics=p.best_val_metrics,
    )


def _epoch(trainer: Trainer, state: TrainState, train: dict, val: dict, epoch: int, config: TrainConfig,
           eval_batch: int) -> tuple[TrainState, dict, dict]:
    """One epoch trained and validated, the learning rate advanced: ``(state, the history's row,
    validation metrics with its loss)``."""
    t0 = time.perf_counter()
    lr_used = current_learning_rate(state.opt_state)
    state, train_loss, train_mae, train_preds, train_targets, extra = _train_one_epoch(trainer, state, train, epoch,
                                                                                       config)
    epoch_time = time.perf_counter() - t0

    t1 = time.perf_counter()
    val_preds = predict(trainer, state, val, eval_batch)
    inference_time = (time.perf_counter() - t1) / len(val["ssim"])
    val_loss = float(_validation_loss(trainer.loss, jnp.asarray(val_preds), jnp.asarray(val["ssim"]), state.params,
                                      config.batch_size))
    if not math.isfinite(val_loss):
        raise TrainingError(f"epoch {epoch + 1}: validation loss is {val_loss}; stopping")
    vm = comprehensive_metrics(val_preds, val["ssim"], config.quality_bands)

    state = state.replace(opt_state=advance_learning_rate(state.opt_state, config, epoch, val_loss))
    row = dict(
        train_loss=train_loss, train_mae=train_mae, train_correlation=correlation(train_preds, train_targets),
        val_loss=val_loss, val_mae=vm["mae"], val_correlation=vm["correlation"], val_r2=vm["r2_score"],
        val_accuracy_5pct=vm["accuracy_5pct"], val_accuracy_10pct=vm["accuracy_10pct"],
        learning_rate=lr_used, epoch_time=epoch_time, inference_time=inference_time, **extra,
    )
    return state, row, dict(vm, loss=val_loss)


# Each checkpoint costs about 0.3 s here (Orbax's files and metadata, whatever the state's size),
# more than a whole epoch of the default model's MLP: fast epochs are saved at most this often.
CHECKPOINT_EVERY_S = 30.0


class _Saver:
    """Saves an epoch's checkpoint when it is the best so far (loading a run and resuming one read
    the best epoch's), the fit's last, or the first after :data:`CHECKPOINT_EVERY_S` seconds; an
    epoch not saved then is kept in memory, to save on Ctrl-C or a non-finite loss. A run resumed from any of them
    replays the epochs after it to the same result."""

    def __init__(self, checkpoints: RunCheckpoints | None):
        self.checkpoints = checkpoints
        self.last_save = time.monotonic()
        self.pending = None

    def epoch_done(self, epoch: int, state: TrainState, p: FitProgress, val_metrics: dict, val_loss: float,
                   last: bool) -> None:
        if self.checkpoints is None:
            return
        self.pending = (epoch, state, p.meta(epoch, val_metrics), val_loss)
        if last or p.best_epoch == epoch or time.monotonic() - self.last_save >= CHECKPOINT_EVERY_S:
            self.save_pending()

    def save_pending(self) -> None:
        if self.checkpoints is not None and self.pending is not None:
            self.checkpoints.save(*self.pending)
            self.pending, self.last_save = None, time.monotonic()


def _record_epoch(p: FitProgress, epoch: int, row: dict, val_metrics: dict, state: TrainState,
                  config: TrainConfig) -> None:
    """Advances ``p`` past ``epoch``: its history row, early stopping, and the best weights so far."""
    for k in p.history:
        p.history[k].append(row[k])
    val_loss = val_metrics["loss"]
    p.early_stopping.update(val_loss, val_metrics["correlation"], config.min_delta)
    if val_loss < p.best_val_loss:
        p.best_epoch, p.best_val_loss = epoch, val_loss
        p.best_variables = (state.params, state.batch_stats)
        p.best_val_metrics = dict(val_metrics, epoch=epoch)
    p.stopped_early = p.early_stopping.should_stop(config.patience)
    p.next_epoch = epoch + 1


def _log_epoch(epoch: int, config: TrainConfig, row: dict, vm: dict, bar) -> None:
    """The plan's one line per epoch, and the progress bar."""
    log.info(
        f"Epoch {epoch + 1:3d}/{config.epochs} | Train Loss: {row['train_loss']:.4f} | Val Loss: {row['val_loss']:.4f} | "
        f"Val Corr: {vm['correlation']:.4f} | Val R²: {vm['r2_score']:.4f} | Acc(5%): {vm['accuracy_5pct']:.1%} | "
        f"LR: {row['learning_rate']:.2e} | Time: {row['epoch_time']:.1f}s"
    )
    bar.set_postfix(loss=f"{row['train_loss']:.4f}", mae=f"{row['train_mae']:.4f}", lr=f"{row['learning_rate']:.2e}")
    bar.update(1)
