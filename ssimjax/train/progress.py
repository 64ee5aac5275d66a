"""Where a fit stands: the history's keys, the plan's early-stopping rule, what a checkpoint
records to resume from (``FitProgress``) and what a finished fit returns (``FitResult``).
"""

from __future__ import annotations

import dataclasses
import logging
import math

from ssimjax.config import TrainConfig
from ssimjax.train.checkpoint import RunCheckpoints
from ssimjax.train.losses import ADAPTIVE_COMPONENTS
from ssimjax.train.state import TrainState

log = logging.getLogger("ssimjax")

HISTORY_KEYS = (
    "train_loss", "train_mae", "train_correlation",
    "val_loss", "val_mae", "val_correlation", "val_r2", "val_accuracy_5pct", "val_accuracy_10pct",
    "learning_rate", "epoch_time", "inference_time",
)


# Measured wall-clock values: everything else in the history is reproducible bit for bit.
TIMING_KEYS = ("epoch_time", "inference_time")


# With the adaptive loss: its (mse, mae, ranking) weights at the end of each epoch.
ADAPTIVE_HISTORY_KEYS = tuple(f"loss_weight_{c}" for c in ADAPTIVE_COMPONENTS)


def history_keys(config: TrainConfig) -> tuple[str, ...]:
    return HISTORY_KEYS + (ADAPTIVE_HISTORY_KEYS if config.loss == "adaptive" else ())


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says why and what was kept."""


@dataclasses.dataclass
class EarlyStopping:
    """The plan's rule: an epoch improves if val loss drops by more than ``min_delta`` or val
    correlation rises by more than ``min_delta``; stop after ``patience`` epochs without either."""

    best_val_loss: float = math.inf
    best_val_correlation: float = -1.0
    patience_counter: int = 0

    def update(self, val_loss: float, val_correlation: float, min_delta: float) -> bool:
        improved = False
        if val_loss < self.best_val_loss - min_delta:
            self.best_val_loss = val_loss
            improved = True
        if val_correlation > self.best_val_correlation + min_delta:
            self.best_val_correlation = val_correlation
            improved = True
        self.patience_counter = 0 if improved else self.patience_counter + 1
        return improved

    def should_stop(self, patience: int) -> bool:
        return self.patience_counter >= patience


@dataclasses.dataclass
class FitProgress:
    """Where a fit stands after some epochs: what a checkpoint's meta item records, plus the best
    weights. A fresh fit starts from ``FitProgress()``; a resumed one from :meth:`from_checkpoints`."""

    next_epoch: int = 0
    history: dict = dataclasses.field(default_factory=lambda: {k: [] for k in HISTORY_KEYS})
    early_stopping: EarlyStopping = dataclasses.field(default_factory=EarlyStopping)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    best_val_metrics: dict = dataclasses.field(default_factory=dict)
    best_variables: tuple | None = None  # (params, batch_stats)
    stopped_early: bool = False

    def meta(self, epoch: int, val_metrics: dict) -> dict:
        """What a checkpoint of ``epoch`` records: a snapshot (the next epoch's rows go to the
        history's own lists, not to these)."""
        return dict(
            epoch=epoch, history={k: list(v) for k, v in self.history.items()}, early_stopping=dataclasses.asdict(self.early_stopping),
            best_epoch=self.best_epoch, best_val_loss=self.best_val_loss, best_val_metrics=self.best_val_metrics,
            val_metrics=val_metrics, stopped_early=self.stopped_early,
        )

    @classmethod
    def from_checkpoints(cls, checkpoints: RunCheckpoints, template: TrainState,
                         keys: tuple[str, ...] = HISTORY_KEYS) -> tuple[TrainState, "FitProgress"]:
        """The latest saved epoch's state and progress (a fresh start where nothing was saved);
        ``keys``: the history's keys (:func:`history_keys`)."""
        last = checkpoints.latest_epoch()
        if last is None:
            return template, cls(history={k: [] for k in keys})
        state, meta = checkpoints.restore(last, template)
        best_state, _ = checkpoints.restore(meta["best_epoch"], state)
        progress = cls(
            # An epoch's checkpoint holds its epochs' rows; files written before saves copied their
            # history could hold some of the next epoch's rows too.
            next_epoch=last + 1, history={k: list(meta["history"].get(k, []))[:last + 1] for k in keys},
            early_stopping=EarlyStopping(**meta["early_stopping"]), best_epoch=meta["best_epoch"],
            best_val_loss=meta["best_val_loss"], best_val_metrics=meta["best_val_metrics"],
            best_variables=(best_state.params, best_state.batch_stats),
            stopped_early=meta.get("stopped_early", False),
        )
        log.info(f"resuming after epoch {last + 1} (best so far: epoch {progress.best_epoch + 1}, "
                 f"val loss {progress.best_val_loss:.4f})")
        return state, progress


@dataclasses.dataclass
class FitResult:
    state: TrainState  # with the best epoch's weights restored
    history: dict
    best_epoch: int  # 0-based
    epochs_completed: int
    stopped_early: bool
    best_val_metrics: dict
