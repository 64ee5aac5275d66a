"""Pure training and evaluation steps over an array-only :class:`TrainState`.

Everything here is a module-level function of arrays and pytrees, with no I/O, clocks or
Python-side state. What is not an array (the model, the optimiser, the loss, the freeze flag) lives
in a :class:`Trainer`: a frozen, hashable description passed as a static argument, so that any
number of states made from one configuration share one compilation of each step (as the Flax
ImageNet example binds its learning-rate function with ``functools.partial``).

A batch is a dict with ``ssim`` (B,), ``mask`` (B,) marking real rows (a padded last batch is
masked, not recompiled), and either ``features`` (B, D) (cached frozen-backbone features) or
``image`` (B, H, W, 3): uint8 pixels, normalised inside the compiled step exactly as
:func:`ssimjax.data.images.normalize` does on the host, or float images already normalised.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssimjax.data.images import normalize
from ssimjax.models.quality import BACKBONE, QualityModel
from ssimjax.train.losses import ADAPTIVE_KEY, adaptive_weights, mae_loss
from ssimjax.train.parallel import shard_batch
from ssimjax.train.state import Trainer, TrainState, model_params

# Streams folded into the training key (TrainState.rng): dropout per step, the shuffle per epoch.
_DROPOUT, _SHUFFLE = 0, 1


# Every uint8 value's normalised float32, per channel (256, 3), computed on the host by
# data.normalize itself. XLA rewrites x / 255 as x * (1 / 255), which differs in the last bit for
# some values; a table lookup is exact by construction and as cheap.
_NORMALIZED_VALUES = normalize(np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1))


def normalize_images(images: jax.Array) -> jax.Array:
    """uint8 NHWC -> ImageNet-normalised float32, bit for bit as :func:`ssimjax.data.images.normalize`;
    float images pass through (already normalised)."""
    if images.dtype != jnp.uint8:
        return images
    return jnp.asarray(_NORMALIZED_VALUES)[images.astype(jnp.int32), jnp.arange(3)]


def _features_for_training(state: TrainState, batch, trainer: Trainer) -> jax.Array:
    if "features" in batch:
        return batch["features"]
    # Frozen backbone: inference mode, and no gradient flows into it.
    return jax.lax.stop_gradient(extract_features(state.variables, batch["image"], trainer=trainer))


def train_step(state: TrainState, batch, *, trainer: Trainer) -> tuple[TrainState, dict]:
    """One optimiser step. Returns the new state and ``{'loss', 'mae', 'pred'}`` for the batch, plus
    ``loss_weights`` (3,) with the adaptive loss."""
    batch = shard_batch(batch, trainer.mesh)
    mask = batch["mask"]
    target = batch["ssim"]
    model = trainer.model
    dropout_key = jax.random.fold_in(jax.random.fold_in(state.rng, _DROPOUT), state.step)
    backbone_trains = not trainer.freeze_backbone and "image" in batch

    def objective(params):
        variables = {"params": model_params(params), "batch_stats": state.batch_stats}
        rngs = {"dropout": dropout_key}
        if backbone_trains:
            (pred, _), updates = model.apply(
                variables, normalize_images(batch["image"]), batch.get("stats"), train=True, mask=mask, rngs=rngs,
                mutable=["batch_stats"],
            )
            new_stats = updates["batch_stats"]
        else:
            feats = _features_for_training(state, batch, trainer)
            pred, updates = model.apply(
                variables, feats, batch.get("stats"), train=True, mask=mask, rngs=rngs, mutable=["batch_stats"],
                method=QualityModel.predict_from_features,
            )
            new_stats = {**state.batch_stats, **updates.get("batch_stats", {})}
        pred = pred[:, 0]
        return trainer.loss(pred, target, mask, params), (pred, new_stats)

    (loss, (pred, new_stats)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = trainer.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=new_stats, opt_state=opt_state)
    metrics = {"loss": loss, "mae": mae_loss(pred, target, mask), "pred": pred}
    if trainer.loss.has_params:
        metrics["loss_weights"] = adaptive_weights(params[ADAPTIVE_KEY])
    return new_state, metrics


def eval_step(state: TrainState, batch, *, trainer: Trainer) -> jax.Array:
    """Predicted SSIM (B,) in inference mode (running BatchNorm statistics, no dropout)."""
    batch = shard_batch(batch, trainer.mesh)
    model = trainer.model
    if "features" in batch:
        pred = model.apply(state.variables, batch["features"], batch.get("stats"),
                           method=QualityModel.predict_from_features)
    else:
        stats = batch.get("stats")
        pred = _in_chunks(lambda sl: model.apply(state.variables, normalize_images(batch["image"][sl]),
                                                 None if stats is None else stats[sl], train=False)[0],
                          batch["image"].shape[0], trainer.inference_chunk)
    return pred[:, 0]


def _in_chunks(fn, n: int, chunk: int | None):
    """``fn(slice)`` over rows ``0..n`` ``chunk`` at a time (unrolled in the compiled program),
    concatenated; one call where ``chunk`` is None or does not divide ``n``."""
    if not chunk or n <= chunk or n % chunk:
        return fn(slice(None))
    return jnp.concatenate([fn(slice(i, i + chunk)) for i in range(0, n, chunk)])


def extract_features(variables: dict, images: jax.Array, *, trainer: Trainer) -> jax.Array:
    """Backbone features (B, D) in inference mode, from uint8 or normalised images."""
    images = shard_batch(images, trainer.mesh)
    return _in_chunks(lambda sl: trainer.model.apply(variables, normalize_images(images[sl]),
                                                     method=QualityModel.extract_features),
                      images.shape[0], trainer.inference_chunk)


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


@functools.partial(jax.jit, static_argnames=("trainer", "batch_size"))
def train_epoch(state: TrainState, features: jax.Array, targets: jax.Array, epoch, *, trainer: Trainer,
                batch_size: int, stats: jax.Array | None = None):
    """A whole epoch over cached features (and image statistics, when the model takes them) as one
    compiled ``lax.scan`` of :func:`train_step`.

    Returns the new state and per-batch ``loss`` (nb,), ``mae`` (nb,), ``pred``, ``target`` and
    ``mask`` (nb, batch_size).
    """
    idx, mask = epoch_batches(state.rng, epoch, features.shape[0], batch_size)

    def body(state, xs):
        batch = gather_batch(features, targets, stats, *xs)
        state, metrics = train_step(state, batch, trainer=trainer)
        return state, dict(metrics, target=batch["ssim"], mask=batch["mask"])

    head, restore = without_frozen_backbone(state, trainer)
    head, metrics = jax.lax.scan(body, head, (idx, mask))
    return restore(head), metrics


def gather_batch(features, targets, stats, idx, mask) -> dict:
    """The batch of rows ``idx`` (with its ``mask``) from cached inputs: features, targets and,
    when the model takes them, image statistics."""
    batch = {"features": features[idx], "ssim": targets[idx], "mask": mask}
    if stats is not None:
        batch["stats"] = stats[idx]
    return batch


def without_frozen_backbone(state: TrainState, trainer: Trainer):
    """``(state without the frozen backbone, a function putting it back)``.

    Training on cached features never reads a frozen backbone, but carrying its 23.5M parameters
    through every step costs (measured: MLP steps 1.65x faster without them). Its optimiser state
    holds no arrays (set_to_zero, masked Adam), so the head's optimiser state has the same leaves
    in the same order: only the tree structure changes, and the numbers are the same.
    """
    if not trainer.freeze_backbone or BACKBONE not in state.params:
        return state, lambda s: s
    params = {k: v for k, v in state.params.items() if k != BACKBONE}
    stats = {k: v for k, v in state.batch_stats.items() if k != BACKBONE}
    full_def = jax.tree_util.tree_structure(state.opt_state)
    head_def = jax.tree_util.tree_structure(jax.eval_shape(trainer.tx.init, params))
    leaves = jax.tree_util.tree_leaves(state.opt_state)
    if head_def.num_leaves != len(leaves):  # a frozen backbone with optimiser state: keep it all
        return state, lambda s: s
    head = state.replace(params=params, batch_stats=stats, opt_state=jax.tree_util.tree_unflatten(head_def, leaves))

    frozen_stats = {k: v for k, v in state.batch_stats.items() if k == BACKBONE}

    def restore(h: TrainState) -> TrainState:
        return h.replace(
            params={**h.params, BACKBONE: state.params[BACKBONE]},
            batch_stats={**h.batch_stats, **frozen_stats},
            opt_state=jax.tree_util.tree_unflatten(full_def, jax.tree_util.tree_leaves(h.opt_state)),
        )

    return head, restore


# Jitted entry points for per-batch use (images, or callers who drive their own loop).
jit_train_step = jax.jit(train_step, static_argnames=("trainer",))
jit_eval_step = jax.jit(eval_step, static_argnames=("trainer",))
jit_extract_features = jax.jit(extract_features, static_argnames=("trainer",))
