"""The train state and its trainer.

:class:`TrainState` is everything that changes during training, and only arrays. What is not an
array (the model, the optimiser, the loss, the freeze flag) lives in a :class:`Trainer`: a frozen,
hashable description passed to the steps as a static argument, so that any number of states made
from one configuration share one compilation of each step.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from ssimjax.config import TrainConfig
from ssimjax.models.init import init_variables
from ssimjax.models.quality import QualityModel, make_model
from ssimjax.train.losses import ADAPTIVE_KEY, LossSpec, init_adaptive_params
from ssimjax.train.optim import make_optimizer

# Stream tags folded into the run's key, so each use of randomness has its own stream (the steps'
# dropout and shuffle streams are folded into this one).
_TRAIN = 1


# Images per ResNet pass in inference on a CPU: a batch is run this many at a time inside one
# compiled call, as XLA's CPU convolutions run faster on a working set that fits the caches
# (measured, ResNet-50 extraction of 32 images on 2 cores: 16.5 images/s whole, 17.2 by 16,
# 18.3 by 8, 18.8-19.3 by 4, 18.7 by 2). Inference treats every image alone, so the numbers are
# the same. Not on accelerators, which want the whole batch, nor over a mesh, which splits it.
CPU_INFERENCE_CHUNK = 4


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training, and nothing else: arrays only."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array  # raw uint32[2] key; never advanced, streams are folded in by step and epoch

    @property
    def variables(self) -> dict:
        """The model's variables (what ``model.apply`` takes): without the adaptive loss's weights."""
        return {"params": model_params(self.params), "batch_stats": self.batch_stats}


def model_params(params: dict) -> dict:
    """``params`` without the adaptive loss's logits (which train beside the model's)."""
    return {k: v for k, v in params.items() if k != ADAPTIVE_KEY} if ADAPTIVE_KEY in params else params


@dataclasses.dataclass(frozen=True)
class Trainer:
    """How a state is trained: the model, the optimiser's settings, the loss, the freeze flag.

    Frozen and hashable: equal trainers (e.g. from one configuration) hit the same compiled steps.
    """

    model: QualityModel
    loss: LossSpec = LossSpec()
    freeze_backbone: bool = True
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip_norm: float = 1.0
    backbone_lr_multiplier: float = 0.1
    # A jax.sharding.Mesh with a 'data' axis: batches are split over its devices (ssimjax.train.parallel);
    # None: one device.
    mesh: Any = None
    # Images per backbone pass in inference (extraction, image-mode evaluation); None: the whole batch.
    inference_chunk: int | None = None

    @classmethod
    def from_config(cls, config: TrainConfig, mesh=None) -> "Trainer":
        chunk = CPU_INFERENCE_CHUNK if mesh is None and jax.default_backend() == "cpu" else None
        return cls(
            mesh=mesh, model=make_model(config), loss=LossSpec.from_config(config), freeze_backbone=config.freeze_backbone,
            learning_rate=config.learning_rate, weight_decay=config.weight_decay,
            grad_clip_norm=config.grad_clip_norm, backbone_lr_multiplier=config.backbone_lr_multiplier,
            inference_chunk=chunk,
        )

    @property
    def tx(self) -> optax.GradientTransformation:
        return make_optimizer(self)

    def init_state(self, variables: dict, seed: int) -> TrainState:
        params = variables["params"]
        if self.loss.has_params and ADAPTIVE_KEY not in params:
            params = {**params, ADAPTIVE_KEY: init_adaptive_params()}
        return TrainState(
            step=jnp.asarray(0, jnp.int32),
            params=params,
            batch_stats=variables["batch_stats"],
            opt_state=self.tx.init(params),
            rng=jax.random.fold_in(jax.random.PRNGKey(seed), _TRAIN),
        )

    # Jitted entry points bound to this trainer.
    def train_step(self, state, batch):
        return steps.jit_train_step(state, batch, trainer=self)

    def eval_step(self, state, batch):
        return steps.jit_eval_step(state, batch, trainer=self)

    def train_epoch(self, state, features, targets, epoch, batch_size: int, stats=None):
        return steps.train_epoch(state, features, targets, epoch, trainer=self, batch_size=batch_size, stats=stats)


def create_train_state(config: TrainConfig, variables: dict | None = None) -> TrainState:
    """A fresh state for ``config`` (train it with ``Trainer.from_config(config)``); ``variables``
    (``{'params', 'batch_stats'}``) replaces the seeded initialisation, e.g. with pretrained
    backbone weights."""
    trainer = Trainer.from_config(config)
    if variables is None:
        variables = init_variables(trainer.model, config.seed)
    return trainer.init_state(variables, config.seed)


# Imported last: the steps take the state and the trainer defined above, and the trainer's methods
# call the steps.
from ssimjax.train import steps  # noqa: E402
