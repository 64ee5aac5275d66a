"""Loss functions on (B,) predictions and targets, with an optional (B,) mask of real rows.

Each is the mean over the real rows, as ``torch.nn`` losses with ``reduction='mean'`` are over
an unpadded batch.
"""

from __future__ import annotations

import jax.numpy as jnp


def _weights(pred, mask):
    if mask is None:
        return jnp.ones_like(pred), pred.shape[0]
    w = mask.astype(pred.dtype)
    return w, jnp.maximum(jnp.sum(w), 1.0)


def mse_loss(pred, target, mask=None):
    w, n = _weights(pred, mask)
    return jnp.sum(w * jnp.square(pred - target)) / n


def mae_loss(pred, target, mask=None):
    w, n = _weights(pred, mask)
    return jnp.sum(w * jnp.abs(pred - target)) / n


def huber_loss(pred, target, mask=None, beta: float = 0.1):
    """``torch.nn.SmoothL1Loss(beta=0.1)``: 0.5 d^2 / beta below beta, |d| - 0.5 beta above."""
    w, n = _weights(pred, mask)
    d = jnp.abs(pred - target)
    per_row = jnp.where(d < beta, 0.5 * jnp.square(d) / beta, d - 0.5 * beta)
    return jnp.sum(w * per_row) / n


def pearson(pred, target, mask=None, eps: float = 1e-8):
    """Pearson correlation over the real rows, with the plan's ``+ 1e-8`` in the denominator."""
    w, n = _weights(pred, mask)
    pc = (pred - jnp.sum(w * pred) / n) * w
    tc = (target - jnp.sum(w * target) / n) * w
    return jnp.sum(pc * tc) / (jnp.sqrt(jnp.sum(pc**2) * jnp.sum(tc**2)) + eps)


def combined_loss(pred, target, mask=None, mse_weight=1.0, mae_weight=0.3, correlation_weight=0.1):
    """The plan's CombinedSSIMLoss: MSE + 0.3 MAE + 0.1 (1 - Pearson); no Pearson term for one row."""
    _, n = _weights(pred, mask)
    corr_term = jnp.where(n > 1, 1.0 - pearson(pred, target, mask), 0.0)
    return (
        mse_weight * mse_loss(pred, target, mask)
        + mae_weight * mae_loss(pred, target, mask)
        + correlation_weight * corr_term
    )


LOSS_FUNCTIONS = {
    "mse": mse_loss,
    "mae": mae_loss,
    "huber": huber_loss,
    "combined": combined_loss,
}


def get_loss(name: str):
    try:
        return LOSS_FUNCTIONS[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_FUNCTIONS)}") from None
