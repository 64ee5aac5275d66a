"""The plan's optimiser as Optax transformations, and its epoch-level learning-rate schedules.

Per step: clip the global gradient norm (1.0), add L2 weight decay to the gradient (as
``torch.optim.Adam(weight_decay=...)`` does, not AdamW), Adam (0.9, 0.999, eps 1e-8), the
backbone group scaled by 0.1 (or frozen), then the current learning rate.

The plan steps its schedulers once per epoch, so the learning rate is a value in the optimiser
state (:class:`EpochLRState`) that :func:`advance_learning_rate` moves on after each epoch; reduce-on-plateau
keeps its best value and bad-epoch count there too, so a checkpoint carries all of it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ssimjax.config import TrainConfig
from ssimjax.models.quality import BACKBONE

PLATEAU_FACTOR = 0.5
PLATEAU_PATIENCE = 5
PLATEAU_THRESHOLD = 1e-4  # torch's default relative threshold
PLATEAU_EPS = 1e-8  # torch skips reductions smaller than this
MIN_LR = 1e-7
STEP_SIZE = 20
STEP_GAMMA = 0.5


class EpochLRState(NamedTuple):
    learning_rate: jax.Array  # the predictor's learning rate for the current epoch
    plateau_best: jax.Array
    plateau_bad_epochs: jax.Array


def _float(x):
    # The default float: float32, or float64 when x64 is enabled (so a float64 comparison
    # against PyTorch is not limited by a float32 learning rate).
    return jnp.asarray(x, dtype=jnp.result_type(float))


def scale_by_epoch_lr(initial_lr: float) -> optax.GradientTransformation:
    """Multiplies updates by ``-learning_rate`` held in the state (set per epoch by
    :func:`advance_learning_rate`)."""

    def init_fn(params):
        del params
        return EpochLRState(
            learning_rate=_float(initial_lr),
            plateau_best=_float(jnp.inf),
            plateau_bad_epochs=jnp.asarray(0, jnp.int32),
        )

    def update_fn(updates, state, params=None):
        del params
        lr = state.learning_rate
        return jax.tree_util.tree_map(lambda u: -lr * u, updates), state

    return optax.GradientTransformation(init_fn, update_fn)


def clip_grad_norm(max_norm: float) -> optax.GradientTransformation:
    """``torch.nn.utils.clip_grad_norm_``: scale by ``min(1, max_norm / (norm + 1e-6))``.

    Unlike ``optax.clip_by_global_norm`` (``max_norm / norm``, only above the threshold), torch
    adds 1e-6 to the norm; the difference is small but shifts every clipped step.
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        norm = optax.global_norm(updates)
        coef = jnp.minimum(1.0, max_norm / (norm + 1e-6))
        return jax.tree_util.tree_map(lambda u: u * coef.astype(u.dtype), updates), state

    return optax.GradientTransformation(init_fn, update_fn)


def param_labels(params) -> dict:
    """'backbone' for everything under the model's backbone subtree, 'predictor' for the rest."""
    return {
        key: jax.tree_util.tree_map(lambda _: "backbone" if key == BACKBONE else "predictor", sub)
        for key, sub in params.items()
    }


def make_optimizer(config) -> optax.GradientTransformation:
    """The optimiser a :class:`TrainConfig` (or anything with its optimiser fields) describes."""
    def adam_group(multiplier: float):
        parts = []
        if config.weight_decay > 0:
            parts.append(optax.add_decayed_weights(config.weight_decay))
        parts.append(optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8))
        if multiplier != 1.0:
            parts.append(optax.scale(multiplier))
        return optax.chain(*parts)

    backbone = optax.set_to_zero() if config.freeze_backbone else adam_group(config.backbone_lr_multiplier)
    return optax.chain(
        clip_grad_norm(config.grad_clip_norm),
        optax.multi_transform({"backbone": backbone, "predictor": adam_group(1.0)}, param_labels),
        scale_by_epoch_lr(config.learning_rate),
    )


def _is_lr_state(x) -> bool:
    return isinstance(x, EpochLRState)


def lr_state(opt_state) -> EpochLRState:
    """The :class:`EpochLRState` inside an optimiser state made by :func:`make_optimizer`, found by type."""
    found = [x for x in jax.tree_util.tree_leaves(opt_state, is_leaf=_is_lr_state) if _is_lr_state(x)]
    if len(found) != 1:
        raise ValueError(f"expected one EpochLRState in the optimiser state, found {len(found)}")
    return found[0]


def current_learning_rate(opt_state) -> float:
    return float(lr_state(opt_state).learning_rate)


def advance_learning_rate(opt_state, config: TrainConfig, epoch: int, val_loss):
    """The optimiser state with the learning rate for the epoch after 0-based ``epoch``, given that
    epoch's validation loss (the schedule steps once per epoch, as torch's do).

    Mirrors torch's ReduceLROnPlateau (mode min, factor 0.5, patience 5, relative threshold 1e-4,
    min lr 1e-7), CosineAnnealingLR (T_max = epochs, eta_min 1e-7), StepLR (20, 0.5) and a
    constant rate.
    """
    s = lr_state(opt_state)
    lr0 = config.learning_rate
    nxt = epoch + 1
    best, bad = s.plateau_best, s.plateau_bad_epochs
    if config.scheduler == "reduce_on_plateau":
        val_loss = _float(val_loss)
        better = val_loss < best * (1.0 - PLATEAU_THRESHOLD)
        best = jnp.where(better, val_loss, best)
        bad = jnp.where(better, 0, bad + 1)
        reduce = bad > PLATEAU_PATIENCE
        reduced = jnp.maximum(s.learning_rate * PLATEAU_FACTOR, MIN_LR)
        lr = jnp.where(reduce & (s.learning_rate - reduced > PLATEAU_EPS), reduced, s.learning_rate)
        bad = jnp.where(reduce, 0, bad)
    elif config.scheduler == "cosine_annealing":
        lr = MIN_LR + (lr0 - MIN_LR) * (1 + math.cos(math.pi * nxt / config.epochs)) / 2
    elif config.scheduler == "step":
        lr = lr0 * STEP_GAMMA ** (nxt // STEP_SIZE)
    else:
        lr = lr0
    new = EpochLRState(_float(lr), _float(best), jnp.asarray(bad, jnp.int32))
    return jax.tree_util.tree_map(lambda x: new if _is_lr_state(x) else x, opt_state, is_leaf=_is_lr_state)
