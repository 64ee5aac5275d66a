"""Scoring a settings model on held-out logos converted with every candidate setting (issue 25).

For each logo: how well the predictions rank its settings (within-logo SRCC of luminance SSIM,
colour SSIM and size; of SSIM also over the settings of issue 25's 54-setting grid alone), what the
recommendation at ``min_ssim`` really gives (does it meet the
target, at what size against VTracer's defaults) against the oracle (the smallest setting that
really meets it, chosen with hindsight), how long the recommendation took, and what the search
(``ssimjax recommend --search N``) keeps and how many settings it converts, read from the real grid.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import numpy as np

from ssimjax.files import write_text_atomic

TOLERANCE = 0.005  # issue 25's oracle counts a setting within 0.005 of the target as meeting it


def within_logo_srcc(pred: np.ndarray, target: np.ndarray) -> float:
    """SRCC across one logo's settings; NaN where either side is constant."""
    from scipy.stats import spearmanr

    if len(pred) < 3 or np.ptp(pred) == 0 or np.ptp(target) == 0:
        return float("nan")
    return float(spearmanr(pred, target).statistic)


def judge_choice(ssim: np.ndarray, rgb: np.ndarray, size: np.ndarray, default: int, chosen: int,
                 min_ssim: float) -> dict:
    """The real outcome of choosing setting ``chosen`` for one logo: whether its luminance and colour
    SSIM reach ``min(min_ssim, the defaults')`` (strictly, and within :data:`TOLERANCE`), its size
    over the defaults', and the oracle's (the smallest setting within the tolerance): its size over
    the defaults', and the chosen one's size and SSIM against it (regret)."""
    t_l, t_c = min(min_ssim, ssim[default]), min(min_ssim, rgb[default])
    ok = (ssim >= t_l - TOLERANCE) & (rgb >= t_c - TOLERANCE)
    oracle = int(np.flatnonzero(ok)[np.argmin(size[ok])])
    return dict(meets=bool(ssim[chosen] >= t_l and rgb[chosen] >= t_c), meets_within=bool(ok[chosen]),
                size_ratio=float(size[chosen] / size[default]), oracle_size_ratio=float(size[oracle] / size[default]),
                size_regret=float(size[chosen] / size[oracle]), ssim_regret=float(ssim[oracle] - ssim[chosen]),
                chosen=int(chosen), oracle=oracle, default=int(default))


def _mean(values) -> float:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def _geomean(ratios) -> float:
    return float(np.exp(np.mean(np.log(np.asarray(ratios, np.float64)))))


def evaluate_settings_model(model, rows: dict, min_ssim: float = 0.95, margin: float = 0.005,
                            search: int = 3) -> dict:
    """``{"metrics", "logos"}``: per logo of ``rows`` (:func:`ssimjax.data.vtsettings.read_settings_rows`,
    each logo converted with several settings, VTracer's defaults among them) the predictions and
    their real outcome, and the means over logos; ``search_*``: the same for the search with
    ``search`` candidates, each conversion read from the rows."""
    from ssimjax.data.vtsettings import default_setting, issue_grid, setting_key
    from ssimjax.models.setting_head import choose_setting, search_setting

    grid = {setting_key(g) for g in issue_grid()}
    logos = []
    for image in dict.fromkeys(rows["image"]):
        idx = np.flatnonzero(rows["image"] == image)
        settings = [rows["setting"][j] for j in idx]
        if default_setting() not in settings:
            continue
        d = settings.index(default_setting())
        t = time.perf_counter()
        pred = model.predict(str(image), settings)
        chosen = choose_setting(pred["ssim"], pred["rgb_ssim"], pred["bytes"], d, min_ssim=min_ssim, margin=margin)
        seconds = time.perf_counter() - t
        ssim, rgb, size = rows["ssim"][idx], rows["rgb_ssim"][idx], np.exp(rows["log_bytes"][idx].astype(np.float64))
        found, converted = search_setting(pred["ssim"], pred["rgb_ssim"], pred["bytes"], d,
                                          lambda j: (ssim[j], rgb[j], size[j]), search, min_ssim=min_ssim)
        searched = judge_choice(ssim, rgb, size, d, found, min_ssim)
        on_grid = np.asarray([setting_key(s) in grid for s in settings])
        logos.append(dict(image=str(image), source=str(rows["source"][idx[0]]), seconds=seconds,
                          within_srcc_ssim=within_logo_srcc(pred["ssim"], ssim),
                          within_srcc_ssim_grid=within_logo_srcc(np.asarray(pred["ssim"])[on_grid], ssim[on_grid]),
                          within_srcc_rgb_ssim=within_logo_srcc(pred["rgb_ssim"], rgb),
                          within_srcc_bytes=within_logo_srcc(pred["bytes"], size),
                          **judge_choice(ssim, rgb, size, d, chosen, min_ssim),
                          search=dict(chosen=found, conversions=len(converted), meets=searched["meets"],
                                      size_ratio=searched["size_ratio"]),
                          settings=len(idx), real=dict(ssim=ssim.tolist(), rgb_ssim=rgb.tolist(), bytes=size.tolist()),
                          predicted={k: np.asarray(v, np.float64).tolist() for k, v in pred.items()}))
    if not logos:
        raise ValueError("no logo of the held-out rows was converted with VTracer's defaults")
    ratios = [g["size_ratio"] for g in logos]
    q1, med, q3 = np.percentile(ratios, [25, 50, 75])
    metrics = dict(
        logos=len(logos), settings_per_logo=float(np.mean([g["settings"] for g in logos])), min_ssim=min_ssim,
        margin=margin, within_srcc_ssim=_mean([g["within_srcc_ssim"] for g in logos]),
        within_srcc_ssim_grid=_mean([g["within_srcc_ssim_grid"] for g in logos]),
        within_srcc_rgb_ssim=_mean([g["within_srcc_rgb_ssim"] for g in logos]),
        within_srcc_bytes=_mean([g["within_srcc_bytes"] for g in logos]),
        meets=_mean([g["meets"] for g in logos]), meets_within=_mean([g["meets_within"] for g in logos]),
        median_size_ratio=float(med), size_ratio_q1=float(q1), size_ratio_q3=float(q3),
        oracle_median_size_ratio=float(np.median([g["oracle_size_ratio"] for g in logos])),
        median_size_regret=float(np.median([g["size_regret"] for g in logos])),
        mean_ssim_regret=_mean([g["ssim_regret"] for g in logos]),
        median_recommend_seconds=float(np.median([g["seconds"] for g in logos])), search_tries=search,
        search_meets=_mean([g["search"]["meets"] for g in logos]),
        search_median_size_ratio=float(np.median([g["search"]["size_ratio"] for g in logos])),
        # the mean saving: a geometric mean moves with every logo, a median of 60 in steps
        geomean_size_ratio=_geomean(ratios),
        search_geomean_size_ratio=_geomean([g["search"]["size_ratio"] for g in logos]),
        oracle_geomean_size_ratio=_geomean([g["oracle_size_ratio"] for g in logos]),
        search_mean_conversions=_mean([g["search"]["conversions"] for g in logos]))
    return {"metrics": metrics, "logos": logos}


def metric_line(m: dict) -> str:
    """One line of a role's figures, as the command prints them."""
    grid = m.get("within_srcc_ssim_grid", float("nan"))
    return (f"within-logo SRCC ssim {m['within_srcc_ssim']:.3f} (issue 25's 54-setting grid {grid:.3f}), colour "
            f"{m['within_srcc_rgb_ssim']:.3f}, bytes "
            f"{m['within_srcc_bytes']:.3f}; at min-ssim {m['min_ssim']}: meets {100 * m['meets']:.0f} % "
            f"({100 * m['meets_within']:.0f} % within {TOLERANCE}), median size x{m['median_size_ratio']:.3f} "
            f"of the defaults' (oracle x{m['oracle_median_size_ratio']:.3f}); {m['median_recommend_seconds']:.2f} s "
            f"per recommendation ({m['logos']} logos x {m['settings_per_logo']:.0f} settings)"
            + (f"; --search {m['search_tries']}: meets {100 * m['search_meets']:.0f} %, median size "
               f"x{m['search_median_size_ratio']:.3f}, {m['search_mean_conversions']:.1f} settings converted"
               if "search_meets" in m else ""))


def plot_fronts(results: dict, path: Path, count: int = 4) -> Path:
    """Predicted against real size-quality fronts of a few held-out logos: SVG bytes (log) against
    the worse of luminance and colour SSIM, every setting, the defaults and the choice marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logos = [g for role in ("report", "selection") if role in results for g in results[role]["logos"]]
    picks = [logos[i] for i in np.linspace(0, len(logos) - 1, min(count, len(logos))).astype(int)]
    fig, axes = plt.subplots(1, len(picks), figsize=(4.2 * len(picks), 3.8), squeeze=False)
    for ax, g in zip(axes[0], picks):
        real = np.minimum(g["real"]["ssim"], g["real"]["rgb_ssim"])
        pred = np.minimum(g["predicted"]["ssim"], g["predicted"]["rgb_ssim"])
        ax.scatter(g["real"]["bytes"], real, s=12, c="tab:blue", label="real")
        ax.scatter(g["predicted"]["bytes"], pred, s=12, c="tab:orange", marker="x", label="predicted")
        for key, color, label in (("default", "black", "defaults (real)"), ("chosen", "red", "chosen (real)"),
                                  ("oracle", "green", "oracle (real)")):
            i = g[key]
            ax.scatter([g["real"]["bytes"][i]], [real[i]], s=70, facecolors="none", edgecolors=color, label=label)
        ax.set_xscale("log")
        ax.set_title(Path(g["image"]).name, fontsize=8)
        ax.set_xlabel("SVG bytes")
        ax.set_ylabel("min(SSIM, colour SSIM)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_settings_report(out: Path, summary: dict, results: dict, plots: bool = True) -> None:
    """``summary.json``, ``report/settings_eval.json`` (every held-out logo), and with ``plots``
    ``report/fronts.png`` and ``report/index.html``."""
    out = Path(out)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    write_text_atomic(report / "settings_eval.json", json.dumps(results, indent=1) + "\n")
    if not plots:
        return
    plot_fronts(results, report / "fronts.png")
    rows = "".join(f"<tr><th>{html.escape(role)}</th><td>{html.escape(metric_line(m))}</td></tr>"
                   for role, m in summary["held_out"].items())
    write_text_atomic(report / "index.html", (
        "<!doctype html><html><head><meta charset='utf-8'><title>ssimjax settings run</title></head><body>"
        "<h1>Choosing VTracer's settings per logo</h1>"
        f"<p>{summary['training_logos']} training logos ({summary['training_rows']} conversions); held-out logos "
        "converted with every candidate setting. Report sets chose nothing.</p>"
        f"<table border='1' cellpadding='4'>{rows}</table>"
        "<h2>Predicted against real size-quality fronts</h2><img src='fronts.png' alt='fronts'>"
        "</body></html>\n"))
