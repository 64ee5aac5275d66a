"""Orbax checkpoints of a run: the latest 5 epochs and the best one (lowest validation loss).

Each checkpoint (of an epoch the fit chose to save, step = epoch number) holds two items:
- ``state``: params, batch_stats, optimiser state (learning rate and plateau counters included),
  step and rng;
- ``meta`` (JSON): epoch, early-stopping trackers, best epoch, history and validation metrics.

With a frozen backbone the backbone never changes, so it is written once to ``backbone/``
beside ``checkpoints/`` and left out of each epoch's checkpoint. The SSIM-map network, trained
before the MLP, is checkpointed as it trains (``map_net_checkpoints/``) and written once trained
(``map_net/``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import shutil
import sys
import threading
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import AnyPreservationPolicy, BestN, LatestN

from ssimjax.files import is_disk_error
from ssimjax.models.mapnet import MapModel, MapNet, init_map_net
from ssimjax.models.quality import merge_backbone, split_backbone
from ssimjax.train.state import TrainState

KEEP_LATEST = 5


class CheckpointError(RuntimeError):
    pass


UNFINISHED = "*.orbax-checkpoint-tmp*"  # Orbax writes a checkpoint here, then renames it into place


def remove_unfinished(run_dir: str | Path) -> None:
    """Removes the checkpoints a kill or a full disk left half-written (Orbax never reads them, but
    they hold the space a resumed run needs)."""
    run_dir = Path(run_dir)
    for folder in (run_dir, run_dir / "checkpoints", run_dir / "map_net_checkpoints", run_dir / "cond_map_checkpoints"):
        for path in folder.glob(UNFINISHED) if folder.is_dir() else ():
            shutil.rmtree(path, ignore_errors=True)


def _closed_loop(exc) -> bool:
    return isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"


_FILTERING = False


def _filter_closed_loop_errors() -> None:
    """When a save fails, the writes Orbax abandons report themselves from TensorStore's callback
    threads, as soon as it gives up and again at exit: each finds its event loop closed, and the
    error is printed through ``sys.excepthook``, ``threading.excepthook`` or
    ``sys.unraisablehook``. Installed before the first save, since the first of them comes before
    the save's error reaches ssimjax; every other error still prints."""
    global _FILTERING
    if _FILTERING:
        return
    _FILTERING = True
    previous_unraisable, previous_except, previous_thread = sys.unraisablehook, sys.excepthook, threading.excepthook

    def unraisable_hook(unraisable):
        if not _closed_loop(unraisable.exc_value):
            previous_unraisable(unraisable)

    def except_hook(kind, value, tb):
        if not _closed_loop(value):
            previous_except(kind, value, tb)

    def thread_hook(args):
        if not _closed_loop(args.exc_value):
            previous_thread(args)

    sys.unraisablehook, sys.excepthook, threading.excepthook = unraisable_hook, except_hook, thread_hook


def _quiet_abandoned_writes() -> None:
    """After a failed save, asyncio also logs the abandoned tasks' exceptions as never retrieved:
    noise once the failure is said in one line."""
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    _filter_closed_loop_errors()


@contextlib.contextmanager
def _writing(run_dir: Path, what: str, kept=None):
    """Turns a disk's refusal inside Orbax (a ValueError or OSError deep in TensorStore) into one
    line: what could not be written, where, and what is kept; the half-written checkpoint is removed."""
    try:
        yield
    except Exception as e:
        if not is_disk_error(e):
            raise
        _quiet_abandoned_writes()
        remove_unfinished(run_dir)
        reason = "no space left on device" if "No space left" in str(e) else \
            (getattr(e, "strerror", None) or "the disk refused the write")
        kept_note = f"; {kept()}" if kept else ""
        raise CheckpointError(f"cannot write {what} in {run_dir}: {reason}{kept_note}; "
                              "free space and continue with --resume") from None


def _metric_key(metrics):
    # Lowest val loss wins; among equals the earliest epoch, matching fit's strict "<" tracker.
    return (metrics["val_loss"], metrics["epoch"])


def _all_variables(state: TrainState) -> dict:
    # Every parameter (the adaptive loss's weights included), not just the model's.
    return {"params": state.params, "batch_stats": state.batch_stats}


def _saved_tree(state: TrainState, frozen_backbone: bool) -> dict:
    variables = split_backbone(_all_variables(state))[1] if frozen_backbone else _all_variables(state)
    return {"step": state.step, **variables, "opt_state": state.opt_state, "rng": state.rng}


def _abstract(tree):
    return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tree)


def backbone_dir(run_dir: str | Path) -> Path:
    return Path(run_dir).absolute() / "backbone"


def save_backbone(run_dir: str | Path, state: TrainState) -> None:
    """Writes a frozen backbone once, beside the per-epoch checkpoints (which leave it out)."""
    path = backbone_dir(run_dir)
    if path.exists():
        return
    with _writing(path.parent, "the frozen backbone (backbone/)"), ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, split_backbone(state.variables)[0])


def load_backbone(run_dir: str | Path, state: TrainState) -> TrainState:
    """``state`` with the run's stored frozen backbone in place of its own."""
    path = backbone_dir(run_dir)
    if not path.exists():
        raise CheckpointError(f"{path}: missing (frozen-backbone runs keep their backbone here)")
    with ocp.StandardCheckpointer() as ckptr:
        backbone = ckptr.restore(path, _abstract(split_backbone(state.variables)[0]))
    variables = merge_backbone(_all_variables(state), backbone)
    return state.replace(params=variables["params"], batch_stats=variables["batch_stats"])


def map_net_dir(run_dir: str | Path) -> Path:
    return Path(run_dir).absolute() / "map_net"


def save_map_net(run_dir: str | Path, model: MapModel) -> None:
    """Writes a run's trained map network (frozen while the MLP trains) beside its checkpoints."""
    path = map_net_dir(run_dir)
    with _writing(path.parent, "the trained SSIM-map network (map_net/)"), ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, model.params)


def load_map_net(run_dir: str | Path, spec: MapNet) -> MapModel:
    path = map_net_dir(run_dir)
    if not path.exists():
        raise CheckpointError(f"{path}: missing (runs with the map network keep it here)")
    with ocp.StandardCheckpointer() as ckptr:
        params = ckptr.restore(path, _abstract(init_map_net(spec)))
    return MapModel(spec, params)


class RunCheckpoints:
    """The ``checkpoints/`` (and, for a frozen backbone, ``backbone/``) folders of one run directory."""

    def __init__(self, run_dir: str | Path, read_only: bool = False, frozen_backbone: bool = True):
        self.run_dir = Path(run_dir).absolute()
        self.frozen_backbone = frozen_backbone
        policy = AnyPreservationPolicy([
            LatestN(n=KEEP_LATEST),
            BestN(get_metric_fn=_metric_key, reverse=True, n=1),
        ])
        options = ocp.CheckpointManagerOptions(
            preservation_policy=None if read_only else policy,
            best_fn=_metric_key,
            best_mode="min",
            read_only=read_only,
            create=not read_only,
        )
        if read_only and not (self.run_dir / "checkpoints").is_dir():
            raise CheckpointError(f"{self.run_dir}: no checkpoints/ folder (is this a run folder?)")
        if not read_only:
            remove_unfinished(self.run_dir)
        _filter_closed_loop_errors()
        self.manager = ocp.CheckpointManager(
            self.run_dir / "checkpoints", item_names=("state", "meta"), options=options
        )
        self.failed = False

    def _writing(self):
        # An async save's failure surfaces at the next save or wait: "an epoch's checkpoint".
        return _writing(self.run_dir, "an epoch's checkpoint (checkpoints/)", self._kept)

    def _kept(self) -> str:
        self.failed = True
        last = max(self.manager.all_steps(), default=None)
        if last is None:
            return "no epoch was checkpointed yet"
        return f"the last good checkpoint, epoch {last + 1}, is kept"

    # -- per-epoch checkpoints ------------------------------------------------------------
    def save(self, epoch: int, state: TrainState, meta: dict, val_loss: float) -> None:
        if self.frozen_backbone:
            save_backbone(self.run_dir, state)
        tree = _saved_tree(state, self.frozen_backbone)
        # The save finishes in the background, serialising ``meta`` then: a copy keeps the next
        # epoch's history rows, appended meanwhile to the same lists, out of this epoch's file.
        meta = copy.deepcopy(meta)
        with self._writing():
            self.manager.save(
                epoch,
                args=ocp.args.Composite(state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)),
                metrics={"val_loss": float(val_loss), "epoch": int(epoch)},
            )

    def steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def latest_epoch(self) -> int | None:
        return self.manager.latest_step()

    def restore(self, epoch: int, template: TrainState) -> tuple[TrainState, dict]:
        """The state and meta saved at ``epoch``, restored into ``template``'s structure."""
        if epoch not in self.manager.all_steps():
            raise CheckpointError(f"{self.run_dir}: no checkpoint for epoch {epoch} (have {self.steps()})")
        target = _saved_tree(template, self.frozen_backbone)
        restored = self.manager.restore(
            epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(target)), meta=ocp.args.JsonRestore())
        )
        tree, meta = restored["state"], restored["meta"]
        params = {**template.params, **tree["params"]}
        stats = {**template.batch_stats, **tree["batch_stats"]}
        state = template.replace(
            step=tree["step"], params=params, batch_stats=stats, opt_state=tree["opt_state"], rng=tree["rng"]
        )
        return (load_backbone(self.run_dir, state) if self.frozen_backbone else state), meta

    def read_meta(self, epoch: int) -> dict:
        return self.manager.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def wait(self) -> None:
        if not self.failed:
            with self._writing():
                self.manager.wait_until_finished()

    def close(self) -> None:
        self.wait()
        with contextlib.suppress(Exception) if self.failed else contextlib.nullcontext():
            self.manager.close()


MAP_NET_EVERY = 500  # the map network's training steps between two of its checkpoints, at most


def map_checkpoint_interval(steps: int) -> int:
    """Steps between the map network's checkpoints: :data:`MAP_NET_EVERY` for a default run's 7,000,
    about ten per training for shorter ones, and none for trainings under 20 steps."""
    return min(MAP_NET_EVERY, max(10, steps // 10))


class MapNetCheckpoints:
    """``map_net_checkpoints/``: the SSIM-map network's training as it goes, every ``every`` steps
    (the latest two kept). Each holds the network's parameters and optimiser state, and as JSON the
    step, the crop sampler's random state (so the crops after it are those an uninterrupted
    training draws) and the losses so far. Removed once the trained network is in ``map_net/``."""

    def __init__(self, run_dir: str | Path, every: int = MAP_NET_EVERY, folder: str = "map_net_checkpoints"):
        self.dir = Path(run_dir).absolute() / folder
        self.every = every
        # Written synchronously: the network is small (milliseconds a save), and a short training's
        # back-to-back async saves left Orbax writing metadata while the interpreter shut down.
        options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True, enable_async_checkpointing=False)
        _filter_closed_loop_errors()
        self.manager = ocp.CheckpointManager(self.dir, item_names=("state", "meta"), options=options)
        self.closed = False

    def save(self, step: int, tree: dict, rng: np.random.Generator, losses: list[float]) -> None:
        # The generator's state holds 128-bit integers: kept as text so any JSON reader takes them.
        meta = {"step": step, "rng": json.dumps(rng.bit_generator.state), "losses": losses}
        with _writing(self.dir.parent, f"the SSIM-map network's checkpoint at step {step} (map_net_checkpoints/)",
                      self._kept):
            self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree),
                                                            meta=ocp.args.JsonSave(meta)))

    def _kept(self) -> str:
        last = self.manager.latest_step()
        return f"its checkpoint at step {last} is kept" if last is not None else "it had no checkpoint yet"

    def restore_latest(self, template: dict, rng: np.random.Generator) -> tuple[int, dict, list[float]] | None:
        """``(step, tree, losses)`` of the latest checkpoint, with ``rng`` set to its state; None
        when there is none."""
        step = self.manager.latest_step()
        if step is None:
            return None
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_abstract(template)), meta=ocp.args.JsonRestore()))
        rng.bit_generator.state = json.loads(restored["meta"]["rng"])
        return step, restored["state"], list(restored["meta"]["losses"])

    def close(self) -> None:
        if not self.closed:
            self.manager.wait_until_finished()
            self.manager.close()
            self.closed = True

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def resume_training(checkpoints: MapNetCheckpoints | None, tree: dict, rng: np.random.Generator, steps: int,
                    what: str, log=None) -> tuple[int, dict, list]:
    """``(start step, tree, losses so far)``: from the latest of ``checkpoints`` (``rng`` set to its
    state, the log told), or ``(0, tree, [])`` when there is none."""
    resumed = None if checkpoints is None else checkpoints.restore_latest(tree, rng)
    if resumed is None:
        return 0, tree, []
    start, tree, losses = resumed
    if log:
        log(f"{what}: continuing from its checkpoint at step {start}/{steps}")
    return start, tree, losses


def checkpoint_if_due(checkpoints: MapNetCheckpoints | None, step: int, steps: int, tree: dict,
                      rng: np.random.Generator, losses: list) -> list:
    """Saves ``tree`` after ``step`` of ``steps`` when it is a checkpoint step short of the end;
    returns the losses (as floats once saved, so the JSON holds them)."""
    if checkpoints is not None and step % checkpoints.every == 0 and step < steps:
        losses = [float(v) for v in losses]
        checkpoints.save(step, tree, rng, losses)
    return losses
