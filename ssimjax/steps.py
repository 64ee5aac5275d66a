"""Pure training and evaluation steps over a :class:`TrainState` pytree.

Everything here is a module-level function of arrays and pytrees, with no I/O, clocks or
Python-side state, so it can be jitted once and reused. A batch is a dict with
``ssim`` (B,), ``mask`` (B,) marking real rows (a padded last batch is masked, not recompiled),
and either ``features`` (B, D) (cached frozen-backbone features) or ``image`` (B, H, W, 3).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from .config import TrainConfig
from .losses import get_loss
from .models import QualityModel, init_variables, make_model
from .optim import make_optimizer

# Stream tags folded into the run's key, so each use of randomness has its own stream.
_TRAIN = 1
_DROPOUT, _SHUFFLE = 0, 1


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training (pytree leaves) plus how to apply it (static)."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array  # raw uint32[2] key; never advanced, streams are folded in by step and epoch
    model: QualityModel = flax.struct.field(pytree_node=False)
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
    loss: str = flax.struct.field(pytree_node=False, default="mse")
    freeze_backbone: bool = flax.struct.field(pytree_node=False, default=True)

    @property
    def variables(self) -> dict:
        return {"params": self.params, "batch_stats": self.batch_stats}


def create_train_state(config: TrainConfig, variables: dict | None = None) -> TrainState:
    """A fresh state for ``config``; ``variables`` (``{'params', 'batch_stats'}``) replaces the
    seeded initialisation, e.g. with pretrained backbone weights."""
    model = make_model(config)
    root = jax.random.PRNGKey(config.seed)
    if variables is None:
        variables = init_variables(model, config.seed)
    tx = make_optimizer(config)
    return TrainState(
        step=jnp.asarray(0, jnp.int32),
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        opt_state=tx.init(variables["params"]),
        rng=jax.random.fold_in(root, _TRAIN),
        model=model,
        tx=tx,
        loss=config.loss,
        freeze_backbone=config.freeze_backbone,
    )


def _features_for_training(state: TrainState, batch) -> jax.Array:
    if "features" in batch:
        return batch["features"]
    # Frozen backbone: inference mode, and no gradient flows into it.
    feats = state.model.apply(state.variables, batch["image"], method=QualityModel.extract_features)
    return jax.lax.stop_gradient(feats)


def train_step(state: TrainState, batch) -> tuple[TrainState, dict]:
    """One optimiser step. Returns the new state and ``{'loss', 'mae', 'pred'}`` for the batch."""
    mask = batch["mask"]
    target = batch["ssim"]
    dropout_key = jax.random.fold_in(jax.random.fold_in(state.rng, _DROPOUT), state.step)
    loss_fn = get_loss(state.loss)
    backbone_trains = not state.freeze_backbone and "image" in batch

    def objective(params):
        variables = {"params": params, "batch_stats": state.batch_stats}
        rngs = {"dropout": dropout_key}
        if backbone_trains:
            (pred, _), updates = state.model.apply(
                variables, batch["image"], train=True, mask=mask, rngs=rngs, mutable=["batch_stats"]
            )
            new_stats = updates["batch_stats"]
        else:
            feats = _features_for_training(state, batch)
            pred, updates = state.model.apply(
                variables, feats, train=True, mask=mask, rngs=rngs, mutable=["batch_stats"],
                method=QualityModel.predict_from_features,
            )
            new_stats = dict(state.batch_stats)
            new_stats.update(updates.get("batch_stats", {}))
        pred = pred[:, 0]
        return loss_fn(pred, target, mask), (pred, new_stats)

    (loss, (pred, new_stats)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    w = mask.astype(pred.dtype)
    mae = jnp.sum(w * jnp.abs(pred - target)) / jnp.maximum(jnp.sum(w), 1.0)
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=new_stats, opt_state=opt_state)
    return new_state, {"loss": loss, "mae": mae, "pred": pred}


def eval_step(state: TrainState, batch) -> jax.Array:
    """Predicted SSIM (B,) in inference mode (running BatchNorm statistics, no dropout)."""
    if "features" in batch:
        pred = state.model.apply(state.variables, batch["features"], method=QualityModel.predict_from_features)
    else:
        pred, _ = state.model.apply(state.variables, batch["image"], train=False)
    return pred[:, 0]


def extract_features(variables: dict, model: QualityModel, images: jax.Array) -> jax.Array:
    """Backbone features (B, D) in inference mode."""
    return model.apply(variables, images, method=QualityModel.extract_features)


def epoch_batches(rng: jax.Array, epoch, n: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """The seeded shuffle of ``n`` rows for ``epoch``: indices and mask, both (batches, batch_size).

    The last batch is padded with index 0 and masked out.
    """
    key = jax.random.fold_in(jax.random.fold_in(rng, _SHUFFLE), epoch)
    perm = jax.random.permutation(key, n)
    num_batches = math.ceil(n / batch_size)
    pad = num_batches * batch_size - n
    idx = jnp.concatenate([perm, jnp.zeros((pad,), perm.dtype)]).reshape(num_batches, batch_size)
    mask = (jnp.arange(num_batches * batch_size) < n).reshape(num_batches, batch_size)
    return idx, mask


@functools.partial(jax.jit, static_argnames=("batch_size",))
def train_epoch(state: TrainState, features: jax.Array, targets: jax.Array, epoch, *, batch_size: int):
    """A whole epoch over cached features as one compiled ``lax.scan`` of :func:`train_step`.

    Returns the new state and per-batch ``loss`` (nb,), ``mae`` (nb,), ``pred``, ``target`` and
    ``mask`` (nb, batch_size).
    """
    idx, mask = epoch_batches(state.rng, epoch, features.shape[0], batch_size)

    def body(state, xs):
        bidx, bmask = xs
        batch = {"features": features[bidx], "ssim": targets[bidx], "mask": bmask}
        state, metrics = train_step(state, batch)
        return state, dict(metrics, target=batch["ssim"], mask=bmask)

    return jax.lax.scan(body, state, (idx, mask))


# Jitted entry points for per-batch use (images, or callers who drive their own loop).
jit_train_step = jax.jit(train_step)
jit_eval_step = jax.jit(eval_step)


@functools.partial(jax.jit, static_argnames=("model",))
def jit_extract_features(variables, images, *, model):
    return extract_features(variables, model, images)
