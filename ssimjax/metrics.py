"""Regression metrics on host arrays (NumPy), as the plan reports them each epoch."""

from __future__ import annotations

import numpy as np


def correlation(pred, target) -> float:
    """Pearson correlation; 0.0 where it is undefined (fewer than two rows, or a constant side)."""
    pred = np.asarray(pred, np.float64).ravel()
    target = np.asarray(target, np.float64).ravel()
    if pred.size < 2:
        return 0.0
    pc, tc = pred - pred.mean(), target - target.mean()
    denom = np.sqrt(np.sum(pc**2) * np.sum(tc**2))
    if not np.isfinite(denom) or denom == 0.0:
        return 0.0
    return float(np.sum(pc * tc) / denom)


def r2_score(pred, target) -> float:
    pred = np.asarray(pred, np.float64).ravel()
    target = np.asarray(target, np.float64).ravel()
    ss_tot = np.sum((target - target.mean()) ** 2)
    if ss_tot == 0.0:
        return 0.0
    return float(1.0 - np.sum((pred - target) ** 2) / ss_tot)


def regression_metrics(pred, target) -> dict:
    """MAE, correlation, R^2 and the share of predictions within 0.05 and 0.10 of the target."""
    pred = np.asarray(pred, np.float64).ravel()
    target = np.asarray(target, np.float64).ravel()
    err = np.abs(pred - target)
    return {
        "mae": float(err.mean()),
        "correlation": correlation(pred, target),
        "r2": r2_score(pred, target),
        "accuracy_5pct": float(np.mean(err < 0.05)),
        "accuracy_10pct": float(np.mean(err < 0.10)),
    }


def quality_metrics(pred, target) -> dict:
    """What ranks a quality predictor: SRCC (Spearman), PLCC (Pearson), KRCC (Kendall tau-b), MAE,
    RMSE and the row count. Correlations are 0.0 where undefined (fewer than two rows, or constant)."""
    from scipy.stats import kendalltau, spearmanr

    pred = np.asarray(pred, np.float64).ravel()
    target = np.asarray(target, np.float64).ravel()

    def defined(value) -> float:
        return float(value) if np.isfinite(value) else 0.0

    constant = pred.size < 2 or np.ptp(pred) == 0 or np.ptp(target) == 0
    return {
        "srcc": 0.0 if constant else defined(spearmanr(pred, target)[0]),
        "plcc": correlation(pred, target),
        "krcc": 0.0 if constant else defined(kendalltau(pred, target)[0]),
        "mae": float(np.abs(pred - target).mean()) if pred.size else 0.0,
        "rmse": float(np.sqrt(np.square(pred - target).mean())) if pred.size else 0.0,
        "count": int(pred.size),
    }
