"""A run's report: matplotlib figures, ``training_dashboard.html`` and ``training_summary.json``.

Everything is read from the run folder (``config.json``, ``history.json``, ``summary.json``) and
from ``report/`` itself (``predictions.csv``, and when they were run ``robustness.json``,
``benchmark.json``, ``feature_importance.json``, ``validation_results.json``), so the report can be
rebuilt at any time: :func:`write_report`.
"""

from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path

import numpy as np

from .metrics import BAND_NAMES, band_masks, comprehensive_metrics, error_by_quantile

CORRELATION_TARGET = 0.90  # the plan's success criterion for validation correlation
ANALYSES = ("robustness", "benchmark", "feature_importance", "validation_results")


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
    res = pred - target
    fig, ax = plt.subplots(2, 3, figsize=(16, 9))
    lo = float(min(pred.min(), target.min())) if len(pred) else 0.0
    hi = float(max(pred.max(), target.max())) if len(pred) else 1.0
    pad = 0.03 * max(hi - lo, 1e-3)
    a = ax[0, 0]
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
    a = ax[0, 1]
    a.scatter(target, res, s=10, alpha=0.5)
    a.axhline(0, color="r", ls="--", lw=1.5)
    a.set_xlabel("true SSIM")
    a.set_ylabel("predicted - true")
    a.set_title("Residuals")
    a.grid(alpha=0.3)
    a = ax[0, 2]
    a.hist(res, bins=40, edgecolor="black", alpha=0.7)
    a.axvline(0, color="r", ls="--", lw=1.5)
    a.set_xlabel("prediction error")
    a.set_ylabel("images")
    a.set_title(f"Error distribution: mean {res.mean() if len(res) else 0:.4f}, std {m['error_std']:.4f}")
    a.grid(alpha=0.3)
    a = ax[1, 0]
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
    a = ax[1, 1]
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
    a = ax[1, 2]
    order = np.argsort(target)
    a.plot(np.arange(len(order)), target[order], lw=2, label="true (sorted)")
    a.scatter(np.arange(len(order)), pred[order], s=6, alpha=0.5, color="C1", label="predicted")
    a.set_xlabel("images, by true SSIM")
    a.set_ylabel("SSIM")
    a.set_title(f"Ranking: ranking accuracy {m['ranking_accuracy']:.3f}, KRCC {m['krcc']:.3f}")
    a.legend()
    a.grid(alpha=0.3)
    return _save(fig, path)


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


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def read_predictions(path: Path) -> dict:
    """``report/predictions.csv`` -> {split: (pred, target)}."""
    out = {}
    if not path.exists():
        return out
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            p, t = out.setdefault(row["split"], ([], []))
            p.append(float(row["predicted"]))
            t.append(float(row["ssim"]))
    return {k: (np.asarray(p), np.asarray(t)) for k, (p, t) in out.items()}


def write_predictions(path: Path, rows: dict) -> None:
    """``rows``: {split: (images, pred, target)}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["split", "image", "ssim", "predicted"])
        for split, (images, pred, target) in rows.items():
            for img, p, t in zip(images, pred, target):
                w.writerow([split, img, f"{float(t):.6f}", f"{float(p):.6f}"])


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return html.escape(str(v))
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"
    if isinstance(v, (list, tuple)):
        return html.escape(", ".join(str(x) for x in v))
    return html.escape(str(v))


def _table(rows, header=None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header) if header else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{'<tr>' + head + '</tr>' if head else ''}{body}</table>"


_CSS = """
body{font-family:system-ui,-apple-system,"DejaVu Sans",Arial,sans-serif;margin:0;background:#f4f6f9;color:#1d2733}
header{background:#1d3557;color:#fff;padding:18px 32px}header h1{margin:0;font-size:24px}
header p{margin:4px 0 0;opacity:.85}main{padding:20px 32px;max-width:1500px}
.cards{display:flex;flex-wrap:wrap;gap:14px;margin-bottom:18px}
.card{background:#fff;border-radius:8px;padding:12px 18px;min-width:150px;box-shadow:0 1px 3px #0002}
.card .v{font-size:26px;font-weight:600}.card .k{font-size:13px;color:#566}
.status{padding:12px 18px;border-radius:8px;margin-bottom:18px;font-weight:600}
.ok{background:#d8f3dc;color:#1b4332}.below{background:#ffe5d9;color:#7f2704}
section{background:#fff;border-radius:8px;padding:14px 20px;margin-bottom:18px;box-shadow:0 1px 3px #0002}
section h2{margin-top:0;font-size:19px}img.fig{max-width:100%;border:1px solid #dde}
.missing{color:#b00020;font-weight:600;padding:12px;border:2px dashed #b00020}
table{border-collapse:collapse;font-size:14px}td,th{border-bottom:1px solid #e3e6ea;padding:4px 10px;text-align:left}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:18px}
"""

# Broken figures show a visible notice instead of a broken-image icon, and the page says how many
# figures loaded (a reader, or a test, sees at once if one is missing).
_SCRIPT = """
function figMissing(img){var d=document.createElement('div');d.className='missing';
d.textContent='figure missing: '+img.getAttribute('src');img.replaceWith(d);}
window.addEventListener('load',function(){var imgs=document.querySelectorAll('img.fig');var ok=0;
imgs.forEach(function(i){if(i.complete&&i.naturalWidth>0)ok++;});
var n=document.querySelectorAll('img.fig, div.missing').length;
document.getElementById('figstatus').textContent=ok+' of '+n+' figures loaded';});
"""


def _dashboard_html(summary: dict, figures: dict, config: dict) -> str:
    val = summary.get("validation_metrics") or {}
    test = summary.get("test_metrics")
    cards = [
        ("validation correlation", val.get("correlation")), ("validation SRCC", val.get("srcc")),
        ("validation MAE", val.get("mae")), ("validation R²", val.get("r2_score")),
        ("ranking accuracy", val.get("ranking_accuracy")),
    ]
    if test:
        src = summary.get("test_source")
        cards += [(f"held-out {src}: SRCC", test.get("srcc")), (f"held-out {src}: PLCC", test.get("plcc"))]
    cards += [("best epoch", summary.get("best_epoch")), ("epochs", summary.get("epochs_completed"))]
    card_html = "".join(f'<div class="card"><div class="v">{_fmt(v)}</div><div class="k">{html.escape(k)}</div></div>'
                        for k, v in cards)
    corr = val.get("correlation", 0.0)
    met = corr >= CORRELATION_TARGET
    status = (f'<div class="status {"ok" if met else "below"}">Validation correlation {corr:.4f}: '
              f'{"meets" if met else "below"} the {CORRELATION_TARGET:.2f} target'
              f'{"" if met else f" (short by {CORRELATION_TARGET - corr:.4f})"}</div>')
    fig_html = "".join(
        f'<section><h2>{html.escape(title)}</h2><img class="fig" src="{html.escape(name)}" alt="{html.escape(title)}" '
        f'onerror="figMissing(this)"></section>' for name, title in figures.items())
    parts = [f"<section><h2>Validation metrics (best epoch)</h2>"
             f"{_table([(html.escape(k), _fmt(v)) for k, v in val.items()])}</section>"]
    if test:
        parts.append(f"<section><h2>Held-out source: {html.escape(str(summary.get('test_source')))}</h2>"
                     f"{_table([(html.escape(k), _fmt(v)) for k, v in test.items()])}</section>")
    q = summary.get("validation_error_by_quantile") or []
    if q:
        parts.append("<section><h2>Error by label quartile (validation)</h2>" + _table(
            [(r["quantile"], f"{r['label_min']:.4f} – {r['label_max']:.4f}", r["count"], _fmt(r["mae"]),
              _fmt(r["bias"])) for r in q], ["quartile", "labels", "images", "MAE", "bias"]) + "</section>")
    cv = summary.get("cross_validation")
    if cv:
        parts.append(f"<section><h2>Cross-validation: {cv['folds']} folds ({html.escape(cv['strata'])})</h2>" + _table(
            [(html.escape(k), *(_fmt(v[s]) for s in ("mean", "std", "min", "max", "median")))
             for k, v in cv["summary"].items()], ["metric", "mean", "std", "min", "max", "median"]) + "</section>")
    for key, title in (("robustness", "Robustness"), ("benchmark", "Inference benchmark")):
        if summary.get(key):
            parts.append(f"<section><h2>{title}</h2>" + _table(
                [(html.escape(k), _fmt(v)) for k, v in summary[key].items()]) + "</section>")
    imp = summary.get("feature_importance")
    if imp:
        parts.append("<section><h2>Most important inputs (gradient)</h2>" + _table(
            [(t["name"], _fmt(t["mean_abs_gradient"])) for t in imp["top_important_features"]],
            ["input", "mean |gradient|"]) + "</section>")
    parts.append("<section><h2>Configuration</h2>" + _table(
        [(html.escape(k), _fmt(v)) for k, v in sorted(config.items())]) + "</section>")
    run = html.escape(str(summary.get("run_dir", "")))
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>ssimjax training dashboard</title>"
            f"<style>{_CSS}</style><script>{_SCRIPT}</script></head><body><header><h1>ssimjax training dashboard</h1>"
            f"<p>{run} · <span id='figstatus'>figures loading</span></p></header><main>"
            f"<div class='cards'>{card_html}</div>{status}<div class='grid'>{''.join(parts[:2])}</div>"
            f"{fig_html}{''.join(parts[2:])}</main></body></html>\n")


def write_report(run_dir: str | Path) -> dict:
    """(Re)builds ``RUN/report/``: the figures, ``training_summary.json`` and
    ``training_dashboard.html``. Returns the paths written, by name."""
    run_dir = Path(run_dir)
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    history = _read_json(run_dir / "history.json") or {}
    summary = _read_json(run_dir / "summary.json") or {}
    config = (_read_json(run_dir / "config.json") or {}).get("train", {})
    bands = tuple(config.get("quality_bands", (0.6, 0.8)))
    preds = read_predictions(out / "predictions.csv")
    analyses = {k: _read_json(out / f"{k}.json") for k in ANALYSES}

    figures = {}
    if history.get("val_loss"):
        figures[plot_training_history(history, out / "training_history.png").name] = "Training history"
        figures[plot_loss_convergence(history, out / "loss_convergence.png").name] = "Loss convergence"
    val_metrics, quantiles = summary.get("best_val_metrics", {}), []
    if "val" in preds:
        p, t = preds["val"]
        val_metrics = comprehensive_metrics(p, t, bands)
        quantiles = error_by_quantile(p, t, 4)
        figures[plot_prediction_analysis(p, t, out / "prediction_analysis.png", bands).name] = \
            "Prediction analysis (validation)"
    if "test" in preds:
        p, t = preds["test"]
        name = plot_prediction_analysis(p, t, out / "prediction_analysis_test.png", bands,
                                        title=f"held out: {summary.get('test_source')}").name
        figures[name] = f"Prediction analysis (held-out source {summary.get('test_source')})"
    if analyses["validation_results"]:
        figures[plot_cross_validation(analyses["validation_results"], out / "cross_validation.png").name] = \
            "Cross-validation"
    if analyses["feature_importance"]:
        figures[plot_feature_importance(analyses["feature_importance"], out / "feature_importance.png").name] = \
            "Feature importance"

    cv = analyses["validation_results"]
    imp = analyses["feature_importance"]
    training_summary = {
        "run_dir": str(run_dir.resolve()), "best_epoch": summary.get("best_epoch"),
        "epochs_completed": summary.get("epochs_completed"), "stopped_early": summary.get("stopped_early"),
        "validation_metrics": val_metrics, "validation_error_by_quantile": quantiles,
        "test_source": summary.get("test_source"), "test_metrics": summary.get("test_metrics"),
        "correlation_target": CORRELATION_TARGET,
        "target_met": bool(val_metrics.get("correlation", 0.0) >= CORRELATION_TARGET),
        "timings": summary.get("timings"),
        "robustness": analyses["robustness"], "benchmark": analyses["benchmark"],
        "feature_importance": None if imp is None else {k: imp[k] for k in ("samples", "inputs", "top_important_features")},
        "cross_validation": None if cv is None else {k: cv[k] for k in ("folds", "strata", "summary", "total_time_s")},
        "figures": list(figures), "config": config,
    }
    (out / "training_summary.json").write_text(json.dumps(training_summary, indent=2) + "\n")
    (out / "training_dashboard.html").write_text(_dashboard_html(training_summary, figures, config))
    return {"dashboard": out / "training_dashboard.html", "summary": out / "training_summary.json",
            **{name: out / name for name in figures}}
