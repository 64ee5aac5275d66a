"""Loss functions on (B,) predictions and targets, with an optional (B,) mask of real rows.

Each is the mean over the real rows, as ``torch.nn`` losses with ``reduction='mean'`` are over
an unpadded batch. All are vectorised (no Python loop over rows or pairs) and jit-able.

A run's loss is a :class:`LossSpec` (hashable, so it can sit in a static jit argument): its name
plus the settings of the quality-aware and ranking losses. The ``adaptive`` loss also has
parameters, its three weight logits, which live in the model's ``params`` under
:data:`ADAPTIVE_KEY` and train with the model.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

# Where the adaptive loss's learnable logits live in the params tree.
ADAPTIVE_KEY = "adaptive_loss"
# The plan's AdaptiveLoss starting values (alpha_mse, alpha_mae, alpha_ranking), softmax-normalised.
ADAPTIVE_INIT = (1.0, 0.5, 0.2)
ADAPTIVE_COMPONENTS = ("mse", "mae", "ranking")


def _weights(pred, mask):
    if mask is None:
        return jnp.ones_like(pred), pred.shape[0]
    w = mask.astype(pred.dtype)
    return w, jnp.maximum(jnp.sum(w), 1.0)


def mse_loss(pred, target, mask=None):
    """Mean squared error over the rows ``mask`` marks (every row without one)."""
    w, n = _weights(pred, mask)
    return jnp.sum(w * jnp.square(pred - target)) / n


def mae_loss(pred, target, mask=None):
    """Mean absolute error over the rows ``mask`` marks (every row without one)."""
    w, n = _weights(pred, mask)
    return jnp.sum(w * jnp.abs(pred - target)) / n


def _huber_rows(d, beta):
    return jnp.where(d < beta, 0.5 * jnp.square(d) / beta, d - 0.5 * beta)


def huber_loss(pred, target, mask=None, beta: float = 0.1):
    """``torch.nn.SmoothL1Loss(beta=0.1)``: 0.5 d^2 / beta below beta, |d| - 0.5 beta above."""
    w, n = _weights(pred, mask)
    return jnp.sum(w * _huber_rows(jnp.abs(pred - target), beta)) / n


def pearson(pred, target, mask=None, eps: float = 1e-8):
    """Pearson correlation over the real rows, with the plan's ``+ 1e-8`` in the denominator."""
    w, n = _weights(pred, mask)
    pc = (pred - jnp.sum(w * pred) / n) * w
    tc = (target - jnp.sum(w * target) / n) * w
    # sqrt's gradient at 0 is infinite: with one real row, or every prediction the same (e.g. all
    # clipped to 1), it made every parameter NaN, even where combined_loss leaves the term out. The
    # floor changes no value above 1e-16 (eps is 1e-8).
    return jnp.sum(pc * tc) / (jnp.sqrt(jnp.maximum(jnp.sum(pc**2) * jnp.sum(tc**2), 1e-32)) + eps)


def combined_loss(pred, target, mask=None, mse_weight=1.0, mae_weight=0.3, correlation_weight=0.1):
    """The plan's CombinedSSIMLoss: MSE + 0.3 MAE + 0.1 (1 - Pearson); no Pearson term for one row."""
    _, n = _weights(pred, mask)
    corr_term = jnp.where(n > 1, 1.0 - pearson(pred, target, mask), 0.0)
    return (
        mse_weight * mse_loss(pred, target, mask)
        + mae_weight * mae_loss(pred, target, mask)
        + correlation_weight * corr_term
    )


_BASE_ROWS = {
    "mse": lambda d: jnp.square(d),
    "mae": lambda d: jnp.abs(d),
    "huber": lambda d: _huber_rows(jnp.abs(d), 0.1),
}
BASE_LOSSES = tuple(_BASE_ROWS)


def quality_aware_loss(pred, target, mask=None, base: str = "mse", weights=(2.0, 1.5, 1.0), bands=(0.6, 0.8)):
    """The plan's QualityAwareLoss: the base loss of each row weighted by its target's band,
    ``weights`` = (high, medium, low) for target >= ``bands[1]``, in [``bands[0]``, ``bands[1]``),
    < ``bands[0]``; the mean over the rows of weight x loss (not divided by the weights' sum)."""
    w, n = _weights(pred, mask)
    high, medium, low = weights
    band_w = jnp.where(target >= bands[1], high, jnp.where(target >= bands[0], medium, low))
    return jnp.sum(w * band_w * _BASE_ROWS[base](pred - target)) / n


def ranking_loss(pred, target, mask=None, margin: float = 0.05):
    """The plan's RankingPreservationLoss, over all pairs at once: for every pair of real rows whose
    targets differ by more than ``margin``, ``relu(margin - s (p_i - p_j))`` with ``s`` the sign of
    ``t_i - t_j``; the mean over those pairs. Zero, with a zero gradient, when no pair qualifies."""
    w = jnp.ones_like(pred) if mask is None else mask.astype(pred.dtype)
    dt = target[:, None] - target[None, :]
    dp = pred[:, None] - pred[None, :]
    upper = jnp.triu(jnp.ones(dt.shape, bool), k=1)  # each unordered pair once (i < j)
    pair = upper & (jnp.abs(dt) > margin) & (w[:, None] * w[None, :] > 0)
    per_pair = jax.nn.relu(margin - jnp.sign(dt) * dp)
    count = jnp.sum(pair)
    return jnp.sum(jnp.where(pair, per_pair, 0.0)) / jnp.maximum(count, 1).astype(pred.dtype)


def adaptive_weights(loss_params) -> jax.Array:
    """The adaptive loss's (mse, mae, ranking) weights: the softmax of its learnable logits."""
    return jax.nn.softmax(loss_params["logits"])


def adaptive_loss(pred, target, mask=None, loss_params=None, margin: float = 0.05):
    """The plan's AdaptiveLoss: MSE, MAE and ranking combined with learnable softmax-normalised
    weights (``loss_params['logits']``, trained with the model)."""
    components = jnp.stack([mse_loss(pred, target, mask), mae_loss(pred, target, mask),
                            ranking_loss(pred, target, mask, margin)])
    return jnp.sum(adaptive_weights(loss_params) * components)


def init_adaptive_params() -> dict:
    return {"logits": jnp.asarray(ADAPTIVE_INIT, jnp.float32)}


LOSSES = ("mse", "mae", "huber", "combined", "quality_aware", "ranking", "adaptive")


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """A loss and its settings. Call it as ``spec(pred, target, mask, params)``: ``params`` is the
    model's params tree, read only by the adaptive loss (for its logits)."""

    name: str = "mse"
    base: str = "mse"  # quality_aware: the per-row loss it weights
    weights: tuple = (2.0, 1.5, 1.0)  # quality_aware: high, medium, low
    bands: tuple = (0.6, 0.8)  # quality_aware: the low/medium and medium/high edges
    margin: float = 0.05  # ranking and adaptive: the pairwise margin

    def __post_init__(self):
        if self.name not in LOSSES:
            raise ValueError(f"unknown loss {self.name!r}; choose one of {', '.join(LOSSES)}")
        if self.base not in BASE_LOSSES:
            raise ValueError(f"unknown base loss {self.base!r}; choose one of {', '.join(BASE_LOSSES)}")
        object.__setattr__(self, "weights", tuple(float(x) for x in self.weights))
        object.__setattr__(self, "bands", tuple(float(x) for x in self.bands))

    @classmethod
    def from_config(cls, config) -> "LossSpec":
        return cls(name=config.loss, base=config.quality_base_loss, weights=config.quality_weights,
                   bands=config.quality_bands, margin=config.ranking_margin)

    @property
    def has_params(self) -> bool:
        return self.name == "adaptive"

    def __call__(self, pred, target, mask=None, params=None):
        if self.name == "quality_aware":
            return quality_aware_loss(pred, target, mask, self.base, self.weights, self.bands)
        if self.name == "ranking":
            return ranking_loss(pred, target, mask, self.margin)
        if self.name == "adaptive":
            return adaptive_loss(pred, target, mask, params[ADAPTIVE_KEY], self.margin)
        return LOSS_FUNCTIONS[self.name](pred, target, mask)


LOSS_FUNCTIONS = {
    "mse": mse_loss,
    "mae": mae_loss,
    "huber": huber_loss,
    "combined": combined_loss,
    "quality_aware": quality_aware_loss,
    "ranking": ranking_loss,
}


def get_loss(name: str):
    """The loss function of that name with its default settings (``adaptive`` needs its params:
    use :class:`LossSpec`)."""
    try:
        return LOSS_FUNCTIONS[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_FUNCTIONS)}") from None


def batched_loss(spec: LossSpec, pred, target, batch_size: int, params=None, mask=None):
    """The loss as an epoch reports it: ``spec`` over consecutive batches of ``batch_size`` rows (the
    last one masked where short), averaged weighted by each batch's real rows, as the plan's
    ``validate_epoch`` averages ``loss.item() * batch_size``. Validation uses this so that its loss
    is computed the way training's is (whose per-batch losses are averaged the same way).
    ``mask`` (N,) marks real rows when the arrays are padded at the end."""
    n = pred.shape[0]
    nb = -(-n // batch_size)
    pad = nb * batch_size - n
    real = jnp.ones((n,), bool) if mask is None else mask.astype(bool)
    p = jnp.concatenate([pred, jnp.zeros((pad,), pred.dtype)]).reshape(nb, batch_size)
    t = jnp.concatenate([target, jnp.zeros((pad,), target.dtype)]).reshape(nb, batch_size)
    m = jnp.concatenate([real, jnp.zeros((pad,), bool)]).reshape(nb, batch_size)
    per_batch = jax.vmap(lambda a, b, c: spec(a, b, c, params))(p, t, m)
    counts = jnp.sum(m, axis=1).astype(pred.dtype)
    return jnp.sum(jnp.where(counts > 0, per_batch, 0.0) * counts) / jnp.maximum(jnp.sum(counts), 1.0)
