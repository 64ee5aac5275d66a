"""The plan's quality-aware, ranking and adaptive losses: hand-computed cases, the plan's own loops
as references, gradient checks, and the adaptive weights training with the model."""

import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ssimjax.config import TrainConfig
from ssimjax.train.fit import fit
from ssimjax.train.losses import (
    ADAPTIVE_INIT, LossSpec, adaptive_loss, batched_loss, init_adaptive_params, quality_aware_loss, ranking_loss,
)
from ssimjax.train.state import create_train_state

rng = np.random.default_rng(3)
P = rng.uniform(0.3, 1.0, 16)
T = np.clip(P + rng.normal(0, 0.1, 16), 0.2, 1.0)


def plan_ranking(pred, target, margin=0.05):
    # The plan's RankingPreservationLoss loop, verbatim in NumPy.
    total, pairs = 0.0, 0
    for i, j in itertools.combinations(range(len(pred)), 2):
        td, pd = target[i] - target[j], pred[i] - pred[j]
        if abs(td) > margin:
            total += max(0.0, margin - pd) if td > 0 else max(0.0, margin + pd)
            pairs += 1
    return total / pairs if pairs else 0.0


def test_quality_aware_hand_case_and_mask():
    pred = jnp.asarray([0.9, 0.7, 0.5, 0.85])
    target = jnp.asarray([1.0, 0.7, 0.4, 0.8])
    # Squared errors 0.01, 0, 0.01, 0.0025 weighted 2 (>= 0.8), 1.5, 1 (< 0.6), 2: mean 0.035 / 4.
    assert float(quality_aware_loss(pred, target)) == pytest.approx(0.00875, rel=1e-5)
    # MAE base, custom weights and bands: |errors| 0.1, 0, 0.1, 0.05 with weights 3, 1, 1, 1 (high >= 0.9).
    got = quality_aware_loss(pred, target, base="mae", weights=(3.0, 1.0, 1.0), bands=(0.5, 0.9))
    assert float(got) == pytest.approx((0.3 + 0 + 0.1 + 0.05) / 4, rel=1e-5)
    padded = quality_aware_loss(jnp.append(pred, 9.0), jnp.append(target, 0.1), jnp.asarray([1, 1, 1, 1, 0]))
    assert float(padded) == pytest.approx(0.00875, rel=1e-5)


def test_ranking_hand_case_plan_reference_and_mask():
    pred, target = jnp.asarray([0.2, 0.5, 0.4]), jnp.asarray([0.9, 0.5, 0.52])
    # Pairs (0,1): relu(0.05 + 0.3) = 0.35; (0,2): relu(0.05 + 0.2) = 0.25; (1,2) differ by 0.02: skipped.
    assert float(ranking_loss(pred, target)) == pytest.approx(0.3, rel=1e-5)
    assert float(ranking_loss(jnp.asarray(P), jnp.asarray(T))) == pytest.approx(plan_ranking(P, T), rel=1e-5)
    mask = jnp.asarray([True] * 3 + [False] * 2)
    padded = ranking_loss(jnp.append(pred, jnp.asarray([0.0, 1.0])), jnp.append(target, jnp.asarray([1.0, 0.0])), mask)
    assert float(padded) == pytest.approx(0.3, rel=1e-5)


def test_ranking_is_zero_with_zero_gradient_without_qualifying_pairs():
    pred, target = jnp.asarray([0.3, 0.9, 0.1]), jnp.asarray([0.80, 0.82, 0.84])
    value, grad = jax.value_and_grad(ranking_loss)(pred, target)
    assert float(value) == 0.0 and np.all(np.asarray(grad) == 0.0)
    value, grad = jax.value_and_grad(ranking_loss)(jnp.asarray([0.5]), jnp.asarray([0.5]))
    assert float(value) == 0.0 and np.all(np.asarray(grad) == 0.0)


def test_adaptive_combines_with_softmax_weights():
    params = init_adaptive_params()
    w = np.exp(ADAPTIVE_INIT) / np.sum(np.exp(ADAPTIVE_INIT))
    expected = w[0] * np.mean((P - T) ** 2) + w[1] * np.mean(np.abs(P - T)) + w[2] * plan_ranking(P, T)
    assert float(adaptive_loss(jnp.asarray(P), jnp.asarray(T), None, params)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("spec", [
    LossSpec("quality_aware"), LossSpec("quality_aware", base="huber"), LossSpec("ranking"), LossSpec("adaptive"),
    LossSpec("combined"), LossSpec("huber"),
])
def test_gradients_match_finite_differences(spec):
    with jax.enable_x64(True):
        pred, target = jnp.asarray(P, jnp.float64), jnp.asarray(T, jnp.float64)
        params = {"adaptive_loss": {"logits": jnp.asarray(ADAPTIVE_INIT, jnp.float64)}}
        check_grads(lambda p: spec(p, target, None, params), (pred,), order=1, modes=("rev",), eps=1e-6)
        if spec.has_params:
            check_grads(lambda prm: spec(pred, target, None, prm), (params,), order=1, modes=("rev",), eps=1e-6)


def test_batched_loss_is_the_row_weighted_mean_of_batch_losses():
    spec = LossSpec("ranking")
    got = float(batched_loss(spec, jnp.asarray(P), jnp.asarray(T), 6))
    parts = [(plan_ranking(P[i:i + 6], T[i:i + 6]), len(P[i:i + 6])) for i in range(0, 16, 6)]
    assert got == pytest.approx(sum(v * n for v, n in parts) / 16, rel=1e-5)


def test_adaptive_weights_train_and_are_recorded(tiny_config):
    from test_fit import synthetic

    config = tiny_config.replace(loss="adaptive", epochs=3)
    state = create_train_state(config)
    assert "adaptive_loss" in state.params and "adaptive_loss" not in state.variables["params"]
    res = fit(state, config, synthetic(64), synthetic(24, seed=1))
    weights = np.array([res.history[f"loss_weight_{c}"] for c in ("mse", "mae", "ranking")]).T
    assert weights.shape == (3, 3)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    start = np.exp(ADAPTIVE_INIT) / np.sum(np.exp(ADAPTIVE_INIT))
    assert np.abs(weights[-1] - start).max() > 1e-4  # they moved: trained with the model
    json.dumps(res.history)  # plain numbers


def test_loss_settings_are_validated():
    with pytest.raises(ValueError, match="quality_bands"):
        TrainConfig(quality_bands=(0.8, 0.6))
    with pytest.raises(ValueError, match="quality_base_loss"):
        TrainConfig(quality_base_loss="l3")
