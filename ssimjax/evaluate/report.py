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

from ssimjax.evaluate.figures import (
    CORRELATION_TARGET,
    plot_cross_validation,
    plot_feature_importance,
    plot_loss_convergence,
    plot_prediction_analysis,
    plot_training_history,
)
from ssimjax.evaluate.metrics import comprehensive_metrics, error_by_quantile

ANALYSES = ("robustness", "benchmark", "feature_importance", "validation_results")


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
    roles = summary.get("test_roles") or {}
    if "report" in roles:  # icon sets nobody chose anything on: the headline
        r = roles["report"]
        cards += [("report sets: mean SRCC", r["mean_srcc"]), ("report sets: mean PLCC", r["mean_plcc"]),
                  (f"report sets: worst SRCC ({r['worst_set']})", r["worst_srcc"])]
    elif test:
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
    per_set = summary.get("test_per_set") or {}
    if per_set:
        from ssimjax.data.sets import KINDS, role_of

        parts.append("<section><h2>Held-out icon sets</h2>" + _table(
            [(html.escape(name), role_of(name) if name in KINDS else "", m["count"], _fmt(m["srcc"]), _fmt(m["plcc"]),
              _fmt(m["mae"])) for name, m in per_set.items()], ["set", "role", "images", "SRCC", "PLCC", "MAE"])
            + "</section>")
    per_size = summary.get("test_per_size") or {}
    if per_size:
        parts.append("<section><h2>Held-out images by long side</h2>" + _table(
            [(html.escape(band), m["count"], _fmt(m["srcc"]), _fmt(m["plcc"]), _fmt(m["mae"]), _fmt(m["bias"]))
             for band, m in per_size.items()], ["long side", "images", "SRCC", "PLCC", "MAE", "bias"]) + "</section>")
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
        "test_per_set": summary.get("test_per_set"), "test_roles": summary.get("test_roles"),
        "test_per_size": summary.get("test_per_size"), "correlation_target": CORRELATION_TARGET,
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
