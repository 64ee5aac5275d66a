"""A run's matplotlib figures: training history, predictions against labels, loss convergence,
cross-validation folds and feature importance, each written to a PNG by one function.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssimjax.evaluate.metrics import BAND_NAMES, comprehensive_metrics, error_by_quantile

CORRELATION_TARGET = 0.90  # the plan's success criterion for validation correlation


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _integer_epochs(*axes) -> None:
    from matplotlib.ticker import MaxNLocator

    for a in axes:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))


def _headroom(a, factor: float = 1.22) -> None:
    # Space above the bars for their labels.
    lo, hi = a.get_ylim()
    a.set_ylim(lo, hi * factor if hi > 0 else 1.0)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def _epochs(history):
    return np.arange(1, len(history.get("val_loss", [])) + 1)


def plot_training_history(history: dict, path: Path) -> Path:
    """Loss, MAE, correlation, learning rate, epoch time and R^2 per epoch (the plan's 2x3)."""
    plt = _plt()
    e = _epochs(history)
    fig, ax = plt.subplots(2, 3, figsize=(15, 8.5))
    panels = [
        (ax[0, 0], "Loss", [("train_loss", "training"), ("val_loss", "validation")], False),
        (ax[0, 1], "Mean absolute error", [("train_mae", "training"), ("val_mae", "validation")], False),
        (ax[0, 2], "Correlation (Pearson)", [("train_correlation", "training"), ("val_correlation", "validation")], False),
        (ax[1, 0], "Learning rate", [("learning_rate", None)], True),
        (ax[1, 1], "Epoch time (s; the first includes compilation)", [("epoch_time", None)], False),
        (ax[1, 2], "Validation R²", [("val_r2", None)], False),
    ]
    for a, title, series, log in panels:
        for key, label in series:
            if key in history and len(history[key]):
                a.plot(e, history[key], lw=2, label=label)
        a.set_title(title)
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
        if log:
            a.set_yscale("log")
        if any(label for _, label in series):
            a.legend()
    ax[0, 2].axhline(CORRELATION_TARGET, color="grey", ls=":", lw=1, label=f"target {CORRELATION_TARGET}")
    ax[0, 2].legend()
    _integer_epochs(*ax.ravel())
    return _save(fig, path)


def plot_prediction_analysis(pred, target, path: Path, bands=(0.6, 0.8), title: str = "validation") -> Path:
    """Predicted vs true (identity line; correlation, MAE, R^2 in the title), residuals, error
    histogram, MAE per quality band with counts, and MAE per label quartile."""
    plt = _plt()
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    m = comprehensive_metrics(pred, target, bands)
    fig, ax = plt.subplots(2, 3, figsize=(16, 9))
    _predicted_vs_true(ax[0, 0], pred, target, m, title)
    _residuals(ax[0, 1], ax[0, 2], pred - target, target, m)
    _mae_by_band(ax[1, 0], m, bands)
    _mae_by_quartile(ax[1, 1], pred, target)
    _ranking(ax[1, 2], pred, target, m)
    return _save(fig, path)


def _predicted_vs_true(a, pred, target, m: dict, title: str) -> None:
    lo = float(min(pred.min(), target.min())) if len(pred) else 0.0
    hi = float(max(pred.max(), target.max())) if len(pred) else 1.0
    pad = 0.03 * max(hi - lo, 1e-3)
    a.scatter(target, pred, s=10, alpha=0.5)
    a.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "r--", lw=1.5, label="perfect prediction")
    a.set_xlim(lo - pad, hi + pad)
    a.set_ylim(lo - pad, hi + pad)
    a.set_xlabel("true SSIM")
    a.set_ylabel("predicted SSIM")
    a.set_title(f"Predicted vs true ({title}, n={len(pred)})\ncorrelation {m['correlation']:.3f}, "
                f"SRCC {m['srcc']:.3f}, MAE {m['mae']:.4f}, R² {m['r2_score']:.3f}")
    a.legend(loc="upper left")
    a.grid(alpha=0.3)


def _residuals(a, b, res, target, m: dict) -> None:
    """Residuals against the label (``a``) and their histogram (``b``)."""
    a.scatter(target, res, s=10, alpha=0.5)
    a.axhline(0, color="r", ls="--", lw=1.5)
    a.set_xlabel("true SSIM")
    a.set_ylabel("predicted - true")
    a.set_title("Residuals")
    a.grid(alpha=0.3)
    b.hist(res, bins=40, edgecolor="black", alpha=0.7)
    b.axvline(0, color="r", ls="--", lw=1.5)
    b.set_xlabel("prediction error")
    b.set_ylabel("images")
    b.set_title(f"Error distribution: mean {res.mean() if len(res) else 0:.4f}, std {m['error_std']:.4f}")
    b.grid(alpha=0.3)


def _mae_by_band(a, m: dict, bands) -> None:
    labels = [f"low (<{bands[0]:g})", f"medium ({bands[0]:g}-{bands[1]:g})", f"high (≥{bands[1]:g})"]
    maes = [m[f"{b}_quality_mae"] for b in BAND_NAMES]
    counts = [m[f"{b}_quality_samples"] for b in BAND_NAMES]
    bars = a.bar(labels, maes, alpha=0.75, color=["#d62728", "#ff7f0e", "#2ca02c"])
    for bar, n in zip(bars, counts):
        a.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"n={n}", ha="center", va="bottom")
    _headroom(a)
    a.set_ylabel("MAE")
    a.set_title("MAE by quality band")
    a.grid(alpha=0.3, axis="y")


def _mae_by_quartile(a, pred, target) -> None:
    rows = error_by_quantile(pred, target, 4)
    if rows:
        names = [f"Q{r['quantile']}\n{r['label_min']:.3f}-{r['label_max']:.3f}" for r in rows]
        bars = a.bar(names, [r["mae"] for r in rows], alpha=0.75)
        for bar, r in zip(bars, rows):
            a.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"n={r['count']}\nbias {r['bias']:+.3f}",
                   ha="center", va="bottom", fontsize=8)
    _headroom(a, 1.3)
    a.set_ylabel("MAE")
    a.set_title("MAE by label quartile")
    a.grid(alpha=0.3, axis="y")


def _ranking(a, pred, target, m: dict) -> None:
    order = np.argsort(target)
    a.plot(np.arange(len(order)), target[order], lw=2, label="true (sorted)")
    a.scatter(np.arange(len(order)), pred[order], s=6, alpha=0.5, color="C1", label="predicted")
    a.set_xlabel("images, by true SSIM")
    a.set_ylabel("SSIM")
    a.set_title(f"Ranking: ranking accuracy {m['ranking_accuracy']:.3f}, KRCC {m['krcc']:.3f}")
    a.legend()
    a.grid(alpha=0.3)


def plot_loss_convergence(history: dict, path: Path) -> Path:
    """Log-scale loss, smoothed curves (moving average) and the generalisation gap (val - train)."""
    plt = _plt()
    e = _epochs(history)
    train, val = np.asarray(history.get("train_loss", [])), np.asarray(history.get("val_loss", []))
    fig, ax = plt.subplots(1, 3, figsize=(16, 5))
    ax[0].semilogy(e, np.maximum(train, 1e-12), lw=2, label="training")
    ax[0].semilogy(e, np.maximum(val, 1e-12), lw=2, label="validation")
    ax[0].set_title("Loss convergence (log scale)")
    window = max(1, min(5, len(val) // 4))
    kernel = np.ones(window) / window
    for series, label, color in ((train, "training", "C0"), (val, "validation", "C1")):
        ax[1].plot(e, series, color=color, alpha=0.3 if window > 1 else 1.0, label=f"{label} (raw)")
        if window > 1 and len(series) >= window:
            smooth = np.convolve(series, kernel, mode="valid")
            ax[1].plot(e[window - 1:], smooth, color=color, lw=2, label=f"{label} ({window}-epoch mean)")
    ax[1].set_title("Smoothed loss")
    ax[2].plot(e, val - train, color="purple", lw=2)
    ax[2].axhline(0, color="black", ls="--", alpha=0.5)
    ax[2].set_title("Generalisation gap (validation - training loss)")
    for a in ax:
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
    ax[0].legend()
    ax[1].legend(fontsize=8)
    _integer_epochs(*ax)
    return _save(fig, path)


def plot_cross_validation(results: dict, path: Path) -> Path:
    """Per fold: correlation and SRCC, MAE, accuracy within 0.05 / 0.10, and training time."""
    plt = _plt()
    folds = results["fold_results"]
    x = np.arange(len(folds))
    names = [f"fold {f['fold'] + 1}" for f in folds]
    fig, ax = plt.subplots(2, 2, figsize=(13, 8))
    w = 0.38
    ax[0, 0].bar(x - w / 2, [f["correlation"] for f in folds], w, label="correlation (PLCC)")
    ax[0, 0].bar(x + w / 2, [f["srcc"] for f in folds], w, label="SRCC")
    ax[0, 0].axhline(CORRELATION_TARGET, color="grey", ls=":")
    ax[0, 0].set_ylim(0, 1.18)
    ax[0, 0].set_title("Correlation by fold")
    ax[0, 0].legend(loc="upper center", ncol=2)
    ax[0, 1].bar(x, [f["mae"] for f in folds], color="C2")
    _headroom(ax[0, 1], 1.1)
    ax[0, 1].set_title("MAE by fold")
    ax[1, 0].bar(x - w / 2, [f["accuracy_5pct"] for f in folds], w, label="|error| < 0.05")
    ax[1, 0].bar(x + w / 2, [f["accuracy_10pct"] for f in folds], w, label="|error| < 0.10")
    ax[1, 0].set_ylim(0, 1.22)
    ax[1, 0].set_title("Accuracy by fold")
    ax[1, 0].legend(loc="upper center", ncol=2)
    for a in (ax[0, 0], ax[0, 1], ax[1, 0]):
        a.set_xticks(x, names)
        a.grid(alpha=0.3, axis="y")
    val_loss = results.get("history", {}).get("val_loss")
    if val_loss:
        # Folds that train together share one clock: their loss curves say more than equal time shares.
        for f, curve in zip(folds, val_loss):
            ax[1, 1].plot(np.arange(1, len(curve) + 1), curve, lw=1.5, label=f"fold {f['fold'] + 1}")
        ax[1, 1].set_xlabel("epoch")
        ax[1, 1].set_ylabel("validation loss")
        ax[1, 1].legend(fontsize=8)
        _integer_epochs(ax[1, 1])
        how = "trained together" if results.get("vectorised") else "one after the other"
        ax[1, 1].set_title(f"Validation loss per epoch ({len(folds)} folds {how}: {results['total_time_s']:.1f} s)")
        ax[1, 1].grid(alpha=0.3)
    s = results["summary"]
    fig.suptitle(f"{len(folds)}-fold cross-validation ({results.get('strata', '')}): correlation "
                 f"{s['correlation']['mean']:.3f} ± {s['correlation']['std']:.3f}, SRCC {s['srcc']['mean']:.3f} ± "
                 f"{s['srcc']['std']:.3f}, MAE {s['mae']['mean']:.4f}")
    return _save(fig, path)


def plot_feature_importance(importance: dict, path: Path) -> Path:
    plt = _plt()
    top = importance["top_important_features"][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(top) + 1.5))
    ax.barh([t["name"] for t in top], [t["mean_abs_gradient"] for t in top], color="C0")
    ax.set_xlabel("mean |d prediction / d input| (statistics: per standard deviation)")
    ax.set_title(f"Top {len(top)} of {importance['inputs']} inputs by gradient ({importance['samples']} images)")
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)
