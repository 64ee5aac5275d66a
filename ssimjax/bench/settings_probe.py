"""Issue 25's selection protocol: the settings model trained over several seeds, scored on the
selection sets only (report sets are never read here).

python -m ssimjax.bench.settings_probe [--seeds 0,1,2] [--grid-count 150] [--cond-map-steps 4000] [--margins M,...]
    [--tries N,...] [--sim-caps C,...]

For each seed: the settings model of ``ssimjax train --vtracer-parameters`` with these flags
(:func:`ssimjax.train.settings.fit_settings_model`), scored on the selection logos converted with
every candidate setting (:func:`ssimjax.evaluate.settings_eval.evaluate_settings_model`): within-logo
SRCC of SSIM, colour SSIM and size, and what the choice at ``--min-ssim`` really gives for each
margin, and the search for each number of tries, each with every ``--sim-caps`` (the same trained
model, its predictions capped by the simulated clustering or not). Then the means over seeds and their spread
(max - min): a change is kept only if it lifts the selection mean by more than that spread.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

KEYS = ("within_srcc_ssim", "within_srcc_ssim_grid", "within_srcc_rgb_ssim", "within_srcc_bytes", "meets",
        "meets_within",
        "median_size_ratio", "oracle_median_size_ratio", "median_recommend_seconds", "search_meets",
        "search_median_size_ratio", "search_mean_conversions", "geomean_size_ratio", "search_geomean_size_ratio",
        "oracle_geomean_size_ratio")


def head_rgb_within(model, rows: dict) -> float:
    """Within-logo SRCC of the statistics head's own colour SSIM (without the map network's shift)."""
    from ssimjax.data.images import open_image, read_file
    from ssimjax.evaluate.settings_eval import _mean, within_logo_srcc
    from ssimjax.features.stats import image_statistics
    from ssimjax.models.setting_head import encode_settings

    vals = []
    for image in dict.fromkeys(rows["image"]):
        idx = np.flatnonzero(rows["image"] == image)
        head = model.head_predictions(image_statistics(open_image(read_file(image)[0]), thumb=False),
                                      encode_settings([rows["setting"][j] for j in idx]))
        vals.append(within_logo_srcc(head[:, 1], rows["rgb_ssim"][idx]))
    return _mean(vals)


def main(argv=None) -> int:
    from ssimjax.train.settings import SettingsRunConfig

    d = SettingsRunConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--count", type=int, default=d.count, help=f"training logos x --k settings (default {d.count})")
    p.add_argument("--k", type=int, default=d.k)
    p.add_argument("--grid-count", type=int, default=d.grid_count,
                   help=f"training logos converted with every candidate (default {d.grid_count})")
    p.add_argument("--held-out", type=int, default=d.held_out_count, help="selection logos (every candidate)")
    p.add_argument("--cond-map-steps", type=int, default=d.cond_steps)
    p.add_argument("--head-epochs", type=int, default=d.head_epochs)
    p.add_argument("--within", type=float, default=d.within)
    p.add_argument("--neighbours", type=int, default=d.neighbours)
    p.add_argument("--prior-weight", type=float, default=d.prior_weight,
                   help=f"weight of the neighbour prior on how the settings differ (default {d.prior_weight}; 0: off)")
    p.add_argument("--prior-anchor", default=d.prior_anchor, choices=("defaults", "mean"))
    run_cap = "off" if d.sim_cap is None else str(d.sim_cap)
    p.add_argument("--sim-caps", default=run_cap, help="each model is scored with each of these caps by the simulated "
                   f"clustering ('off': none; default {run_cap}, as a run)")
    p.add_argument("--min-ssim", type=float, default=d.min_ssim)
    p.add_argument("--margins", default="0,0.005,0.01", help="safety margins on the predicted SSIM to try")
    p.add_argument("--tries", default="3", help="candidates the search may convert, one figure each (default 3)")
    p.add_argument("--cache-dir", help="default $SSIMJAX_CACHE_DIR or ~/.cache/ssimjax")
    args = p.parse_args(argv)
    from ssimjax.evaluate.settings_eval import evaluate_settings_model
    from ssimjax.features.cache import default_cache_dir
    from ssimjax.train.settings import fit_settings_model, held_out_rows, training_rows

    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    margins = [float(m) for m in args.margins.split(",")]
    caps = [None if c.strip().lower() in ("off", "none") else float(c) for c in args.sim_caps.split(",")]
    tries = [int(n) for n in args.tries.split(",")]
    results = {(c, m, n): [] for c in caps for m in margins for n in tries}
    head_rgb = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        cfg = SettingsRunConfig(count=args.count, k=args.k, grid_count=args.grid_count, held_out_count=args.held_out,
                                cond_steps=args.cond_map_steps, head_epochs=args.head_epochs, within=args.within,
                                seed=seed, min_ssim=args.min_ssim, neighbours=args.neighbours,
                                prior_weight=args.prior_weight, prior_anchor=args.prior_anchor)
        train = training_rows(cfg, cache, log=print)
        selection = held_out_rows(cfg, "selection", cache, log=print)
        t = time.perf_counter()
        model = fit_settings_model(None, cfg, cache, train, log=print)
        print(f"seed {seed}: trained in {time.perf_counter() - t:.0f}s on {len(set(train['image']))} logos "
              f"({len(train['image'])} conversions)", flush=True)
        for c, m, n in results:
            r = evaluate_settings_model(dataclasses.replace(model, sim_cap=c), selection, args.min_ssim, m,
                                        search=n)["metrics"]
            results[c, m, n].append(r)
            print(f"seed {seed} sim cap {c} margin {m} search {n}: " + ", ".join(f"{k} {r[k]:.3f}" for k in KEYS),
                  flush=True)
        head_rgb.append(head_rgb_within(model, selection))
        print(f"seed {seed}: the head's own colour SSIM ranks at within-logo SRCC {head_rgb[-1]:.3f}", flush=True)
    for (c, m, n), rows in results.items():
        print(f"mean over {len(rows)} seeds, sim cap {c}, margin {m}, search {n}: " + ", ".join(
            f"{k} {np.mean([r[k] for r in rows]):.3f} (spread {np.ptp([r[k] for r in rows]):.3f})" for k in KEYS))
    print(f"head's own colour SSIM: within-logo SRCC {np.mean(head_rgb):.3f} (spread {np.ptp(head_rgb):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
