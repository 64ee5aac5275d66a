"""The plan's comprehensive metrics, checked against scipy / scikit-learn and on degenerate inputs."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from ssimjax.evaluate.metrics import comprehensive_metrics, error_by_quantile, ranking_accuracy

rng = np.random.default_rng(7)
T = rng.uniform(0.3, 1.0, 300)
P = T + rng.normal(0, 0.08, 300)  # continuous: no ties


def plan_ranking_accuracy(pred, target):
    # The plan's _calculate_ranking_accuracy loop.
    pairs = list(itertools.combinations(range(len(pred)), 2))
    return sum((target[i] > target[j]) == (pred[i] > pred[j]) for i, j in pairs) / len(pairs)


def test_against_scipy_and_sklearn():
    m = comprehensive_metrics(P, T)
    assert m["mse"] == pytest.approx(skm.mean_squared_error(T, P), rel=1e-12)
    assert m["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(T, P)), rel=1e-12)
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(T, P), rel=1e-12)
    assert m["r2_score"] == pytest.approx(skm.r2_score(T, P), rel=1e-10)
    assert m["correlation"] == pytest.approx(stats.pearsonr(P, T)[0], rel=1e-10)
    assert m["srcc"] == pytest.approx(stats.spearmanr(P, T)[0], rel=1e-12)
    assert m["krcc"] == pytest.approx(stats.kendalltau(P, T)[0], rel=1e-12)
    assert m["error_skewness"] == pytest.approx(stats.skew(P - T), rel=1e-10)
    assert m["error_std"] == pytest.approx(np.std(P - T), rel=1e-12)
    for k, limit in (("accuracy_5pct", 0.05), ("accuracy_10pct", 0.10), ("accuracy_15pct", 0.15)):
        assert m[k] == np.mean(np.abs(P - T) < limit)
    high = T >= 0.8
    assert m["high_quality_samples"] == high.sum()
    assert m["high_quality_mae"] == pytest.approx(skm.mean_absolute_error(T[high], P[high]), rel=1e-12)
    assert m["high_quality_correlation"] == pytest.approx(stats.pearsonr(P[high], T[high])[0], rel=1e-10)
    assert m["low_quality_samples"] + m["medium_quality_samples"] + m["high_quality_samples"] == 300
    assert m["prediction_range"] == pytest.approx(P.max() - P.min())
    assert m["sample_count"] == 300
    # Without ties the plan's pairwise count is (1 + Kendall's tau) / 2.
    assert m["ranking_accuracy"] == pytest.approx(plan_ranking_accuracy(P, T), rel=1e-12)
    assert m["ranking_accuracy"] == pytest.approx((1 + stats.kendalltau(P, T)[0]) / 2, rel=1e-12)


def test_configurable_bands():
    m = comprehensive_metrics(P, T, bands=(0.9, 0.95))
    assert m["high_quality_samples"] == np.sum(T >= 0.95)
    assert m["low_quality_samples"] == np.sum(T < 0.9)


def test_ranking_accuracy_with_ties_is_the_plans_count_averaged_over_row_orders():
    p = rng.integers(0, 3, 12).astype(float)
    t = rng.integers(0, 3, 12).astype(float)
    # Exact average over orders: each pair tied on one side only agrees in half of the orders.
    both = [(i, j) for i, j in itertools.combinations(range(12), 2)]
    expected = np.mean([0.5 * ((t[i] > t[j]) == (p[i] > p[j])) + 0.5 * ((t[j] > t[i]) == (p[j] > p[i]))
                        for i, j in both])
    assert ranking_accuracy(p, t) == pytest.approx(expected, rel=1e-12)


def test_ranking_accuracy_is_fast_for_100k():
    import time

    t = rng.uniform(0, 1, 100_000)
    p = t + rng.normal(0, 0.1, t.size)
    start = time.perf_counter()
    value = ranking_accuracy(p, t)
    assert time.perf_counter() - start < 5.0  # the plan's loop would take hours
    assert value == pytest.approx((1 + stats.kendalltau(p, t)[0]) / 2, rel=1e-9)


@pytest.mark.parametrize("pred,target", [
    ([], []), ([0.5], [0.7]), ([0.5, 0.5, 0.5], [0.6, 0.7, 0.9]), ([0.4, 0.8], [0.9, 0.9]),
])
def test_degenerate_inputs_give_finite_values(pred, target):
    m = comprehensive_metrics(pred, target)
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in m.values()), m
    assert m["sample_count"] == len(pred)
    if len(pred) < 2:
        assert m["ranking_accuracy"] == 1.0 and m["correlation"] == 0.0


def test_error_by_quantile():
    rows = error_by_quantile(P, T, 4)
    assert [r["count"] for r in rows] == [75, 75, 75, 75]
    assert rows[0]["label_max"] <= rows[1]["label_min"]
    order = np.argsort(T)[:75]
    assert rows[0]["mae"] == pytest.approx(np.abs(P[order] - T[order]).mean())
    assert error_by_quantile([], []) == []
