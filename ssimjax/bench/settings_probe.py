"""Issue 25, first measurement: how well one look at an image ranks VTracer's settings for it.

python -m ssimjax.bench.settings_probe [--train-count 600] [--count 240] [--k 8] [--seeds 0,1,2]

Builds (cached) a settings set of the split's training sets and one of its selection sets
(:mod:`ssimjax.data.vtsettings`), trains :mod:`ssimjax.models.setting_head` on the training
logos (80/20 by logo) and scores the selection logos: within each logo, the SRCC across its
settings of predicted against real luminance SSIM, colour SSIM and SVG bytes (mean over logos),
and the same pooled over every row. Beside it, the same model without the image (statistics
zeroed: what the settings alone say). Report sets are not read.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np


def load_settings_rows(folder: Path) -> dict:
    """``{"image", "setting", "ssim", "rgb_ssim", "log_bytes", "source"}`` arrays of a settings set."""
    with open(folder / "settings.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return dict(image=np.asarray([str(folder / r["image"]) for r in rows]),
                setting=[json.loads(r["params"]) for r in rows],
                ssim=np.asarray([float(r["ssim"]) for r in rows], np.float32),
                rgb_ssim=np.asarray([float(r["rgb_ssim"]) for r in rows], np.float32),
                log_bytes=np.log(np.asarray([float(r["svg_bytes"]) for r in rows], np.float32)),
                source=np.asarray([r["source"] for r in rows]))


def within_logo_srcc(pred: np.ndarray, target: np.ndarray, groups: np.ndarray) -> float:
    """The mean over groups (logos) of the SRCC across each one's rows; groups whose targets are
    all equal are left out."""
    from scipy.stats import spearmanr

    vals = []
    for g in np.unique(groups):
        m = groups == g
        if m.sum() > 2 and np.ptp(target[m]) > 0 and np.ptp(pred[m]) > 0:
            vals.append(spearmanr(pred[m], target[m]).statistic)
    return float(np.mean(vals)) if vals else float("nan")


def grid_choices(pred: np.ndarray, g: dict, min_ssim: float, margin: float) -> dict:
    """Over the grid's logos: the share whose chosen setting (by the predictions) really meets the
    target (``min(min_ssim, the defaults' real SSIM)``, luminance and colour; strictly, and within
    0.005 as the issue's oracle counts it) and the chosen size over the defaults' (median,
    quartiles); beside it the oracle's, chosen with hindsight."""
    from ssimjax.data.vtsettings import default_setting
    from ssimjax.models.setting_head import choose_setting

    meets, tol, ratios, oracle = [], [], [], []
    for image in np.unique(g["image"]):
        idx = np.flatnonzero(g["image"] == image)
        d = next(i for i, j in enumerate(idx) if g["setting"][j] == default_setting())
        c = choose_setting(pred[idx, 0], pred[idx, 1], pred[idx, 2], d, min_ssim=min_ssim, margin=margin)
        ssim, rgb, size = g["ssim"][idx], g["rgb_ssim"][idx], np.exp(g["log_bytes"][idx])
        t_l, t_c = min(min_ssim, ssim[d]), min(min_ssim, rgb[d])
        meets.append(ssim[c] >= t_l and rgb[c] >= t_c)
        tol.append(ssim[c] >= t_l - 0.005 and rgb[c] >= t_c - 0.005)
        ratios.append(size[c] / size[d])
        ok = (ssim >= t_l - 0.005) & (rgb >= t_c - 0.005)
        oracle.append(size[ok].min() / size[d])
    q1, med, q3 = np.percentile(ratios, [25, 50, 75])
    return dict(meets=float(np.mean(meets)), meets_tol=float(np.mean(tol)), median_ratio=float(med), q1=float(q1),
                q3=float(q3), oracle_median_ratio=float(np.median(oracle)))


def map_feature_table(data: dict, cache: Path, steps: int) -> dict:
    """``{image path: map features}``: a map network trained (seed 0) on the training logos' real
    SSIM maps of VTracer's defaults, then read on every image (:func:`ssimjax.models.setting_head.map_features`)."""
    from ssimjax.data.images import open_image, read_file, rgb_pixels
    from ssimjax.data.vtsettings import default_setting, load_settings_map
    from ssimjax.models.mapnet import MapNet
    from ssimjax.models.setting_head import map_features
    from ssimjax.train.mapnet import train_map_model

    t = time.perf_counter()
    paths = sorted({p for d in data.values() for p in d["image"]})
    pixels, shas = {}, {}
    for path in paths:
        raw, sha = read_file(path)
        pixels[path], shas[path] = rgb_pixels(open_image(raw)), sha
    train = sorted(set(data["train"]["image"]))
    maps = [load_settings_map(cache, shas[p], default_setting()) for p in train]
    spec = MapNet()
    model = train_map_model([pixels[p] for p in train], [None if m is None else m.astype(np.float32) for m in maps],
                            spec, steps=steps, seed=0)
    feats = map_features(model.params, spec, [pixels[p] for p in paths])
    print(f"map network trained ({steps} steps) and read on {len(paths)} images in {time.perf_counter() - t:.0f}s",
          flush=True)
    return dict(zip(paths, feats))


def train_conditioned_map(pixels: list, targets: list, encs: list, steps: int, seed: int = 0, logos: int = 16,
                          size: int = 48, lr: float = 2e-3, diff: float = 1.0):
    """A conditioned map network (:func:`ssimjax.models.setting_head.init_conditioned_map_net`)
    trained on each training logo's real SSIM maps under its settings: every step takes one crop of
    ``logos`` logos and two of each one's settings (the trunk runs once per crop), with the
    pixel-weighted MSE of both and, weighted by ``diff``, of their difference."""
    import jax
    import jax.numpy as jnp
    import optax

    from ssimjax.models.mapnet import MapNet, crop
    from ssimjax.models.setting_head import cells_for_setting, init_conditioned_map_net, trunk_apply
    from ssimjax.train.mapnet import _cells

    spec = MapNet()
    params = init_conditioned_map_net(spec, seed)
    opt = optax.adamw(optax.cosine_decay_schedule(lr, steps), weight_decay=1e-4)
    state = opt.init(params)

    def loss_fn(p, x, e, t, w):
        hidden = trunk_apply(p, spec, x)
        c0, c1 = cells_for_setting(p, hidden, e[:, 0]), cells_for_setting(p, hidden, e[:, 1])
        total = jnp.maximum(w[:, 0].sum() + w[:, 1].sum(), 1.0)
        both = jnp.sum(w[:, 0] * (c0 - t[:, 0]) ** 2) + jnp.sum(w[:, 1] * (c1 - t[:, 1]) ** 2)
        contrast = jnp.sum(w[:, 0] * ((c0 - c1) - (t[:, 0] - t[:, 1])) ** 2)
        return (both + diff * contrast) / total

    @jax.jit
    def step(p, state, x, e, t, w):
        loss, g = jax.value_and_grad(loss_fn)(p, x, e, t, w)
        updates, state = opt.update(g, state, p)
        return optax.apply_updates(p, updates), state, loss

    rng = np.random.default_rng(seed)
    c = spec.cell
    for i in range(steps):
        xs, es, ts, ws = [], [], [], []
        for k in rng.integers(0, len(pixels), logos):
            h, w = pixels[k].shape[:2]
            y0 = c * int(rng.integers(0, max(h - size, 0) // c + 1))
            x0 = c * int(rng.integers(0, max(w - size, 0) // c + 1))
            pair = rng.choice(len(targets[k]), 2, replace=False)
            xs.append(crop(pixels[k], y0, x0, size, spec.margin))
            es.append(encs[k][pair])
            ts.append([_cells(targets[k][j][0], y0, x0, size, c) for j in pair])
            ws.append([_cells(targets[k][j][1], y0, x0, size, c) for j in pair])
        params, state, loss = step(params, state, np.stack(xs), np.stack(es), np.asarray(ts), np.asarray(ws))
        if (i + 1) % max(1, steps // 5) == 0:
            print(f"  conditioned map network step {i + 1}/{steps}: loss {float(loss):.5f}", flush=True)
    return spec, params


def conditioned_scores(params: dict, spec, image: np.ndarray, encoded: np.ndarray, tile: int = 128,
                       batch: int = 4) -> np.ndarray:
    """(K,): an image's predicted SSIM under each of K encoded settings; the trunk runs once."""
    import jax
    import jax.numpy as jnp

    from ssimjax.models.mapnet import cell_weights, tile_batches
    from ssimjax.models.setting_head import cells_for_setting, trunk_apply

    global _COND_FNS
    if "_COND_FNS" not in globals():
        _COND_FNS = (jax.jit(trunk_apply, static_argnums=1),
                     jax.jit(lambda p, hid, e: jax.vmap(
                         lambda one: cells_for_setting(p, hid, jnp.broadcast_to(one, (hid.shape[0], one.shape[0])))
                     )(e)))
    trunk, heads = _COND_FNS
    c = spec.cell
    h, w = image.shape[:2]
    weight = cell_weights(h, w, c)
    total = np.zeros(len(encoded))
    for part, x in tile_batches([image], spec, tile, batch):
        cells = np.asarray(heads(params, trunk(params, spec, x), encoded))  # (K, batch, n, n)
        for b, (_, y0, x0) in enumerate(part):
            wt = weight[y0 // c:y0 // c + tile // c, x0 // c:x0 // c + tile // c]
            total += (cells[:, b, :wt.shape[0], :wt.shape[1]] * wt).sum((1, 2))
    return (total / max(weight.sum(), 1.0)).astype(np.float32)


def score_row(pred: np.ndarray, gpred: np.ndarray, sel: dict, g: dict, args) -> dict:
    """Within-logo and pooled figures of predictions on the selection set, and on the grid with its choices."""
    from ssimjax.evaluate.metrics import quality_metrics
    from ssimjax.models.setting_head import TARGETS

    row = {}
    for j, target in enumerate(TARGETS):
        pooled = quality_metrics(pred[:, j], sel["y"][:, j])
        row[target] = dict(within=within_logo_srcc(pred[:, j], sel["y"][:, j], sel["image"]),
                           srcc=pooled["srcc"], plcc=pooled["plcc"])
    row["grid_within_ssim"] = within_logo_srcc(gpred[:, 0], g["ssim"], g["image"])
    row["grid_within_bytes"] = within_logo_srcc(gpred[:, 2], g["log_bytes"], g["image"])
    row["choice"] = {m: grid_choices(gpred, g, args.min_ssim, float(m)) for m in args.margins.split(",")}
    return row


def conditioned_predictor(data: dict, cache: Path, steps: int, seed: int):
    """A conditioned map network trained (``seed``) on every training logo's real SSIM maps under its
    settings; returns ``predict(rows)``: each row's predicted SSIM (each image's trunk read once)."""
    from ssimjax.data.images import open_image, read_file, rgb_pixels
    from ssimjax.data.vtsettings import load_settings_map
    from ssimjax.models.mapnet import cell_targets
    from ssimjax.models.setting_head import encode_settings

    t = time.perf_counter()
    tr = data["train"]
    pixels, targets, encs = [], [], []
    for image in dict.fromkeys(tr["image"]):
        idx = np.flatnonzero(tr["image"] == image)
        raw, sha = read_file(image)
        maps = [load_settings_map(cache, sha, tr["setting"][j]) for j in idx]
        keep = [j for j, m in zip(idx, maps) if m is not None]
        if len(keep) < 2:
            continue
        pixels.append(rgb_pixels(open_image(raw)))
        targets.append([cell_targets(m.astype(np.float32), 2) for m in maps if m is not None])
        encs.append(encode_settings([tr["setting"][j] for j in keep]))
    spec, params = train_conditioned_map(pixels, targets, encs, steps, seed)
    print(f"  conditioned map network: {len(pixels)} logos, trained in {time.perf_counter() - t:.0f}s", flush=True)

    def predict(rows: dict) -> np.ndarray:
        out = np.zeros(len(rows["image"]), np.float32)
        for image in dict.fromkeys(rows["image"]):
            idx = np.flatnonzero(rows["image"] == image)
            px = rgb_pixels(open_image(read_file(image)[0]))
            out[idx] = conditioned_scores(params, spec, px, encode_settings([rows["setting"][j] for j in idx]))
        return out

    return predict


def train_setting_model(stats, enc, y, k: int, seed: int, within: float = 0.0, epochs: int = 300,
                        logos_per_batch: int = 16, lr: float = 2e-3):
    """Parameters of :mod:`ssimjax.models.setting_head` fitted by AdamW on MSE over standardised
    targets; rows come ``k`` per logo, consecutive, and batches hold whole logos. ``within`` weighs
    a second term: the MSE of each logo's predictions and targets centred on the logo's mean
    (scaled by the centred targets' spread), i.e. of how the settings differ for that logo."""
    import jax
    import jax.numpy as jnp
    import optax

    from ssimjax.models.setting_head import init_setting_model, setting_model_apply

    n = len(y) // k
    logos_per_batch = min(logos_per_batch, n)
    stats, enc, y = (a.reshape(n, k, -1) for a in (stats, enc, y))
    spread = (y - y.mean(1, keepdims=True)).reshape(-1, y.shape[-1]).std(0) + 1e-6
    params = init_setting_model(stats.shape[-1], seed)
    steps = epochs * max(1, n // logos_per_batch)
    opt = optax.adamw(optax.cosine_decay_schedule(lr, steps), weight_decay=1e-4)
    state = opt.init(params)

    def loss_fn(p, s, e, t):
        pred = setting_model_apply(p, s, e)
        centred = ((pred - pred.mean(1, keepdims=True)) - (t - t.mean(1, keepdims=True))) / spread
        return jnp.mean((pred - t) ** 2) + within * jnp.mean(centred ** 2)

    @jax.jit
    def step(params, state, s, e, t):
        loss, g = jax.value_and_grad(loss_fn)(params, s, e, t)
        updates, state = opt.update(g, state, params)
        return optax.apply_updates(params, updates), state, loss

    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(n)
        for i in range(0, n - logos_per_batch + 1, logos_per_batch):
            idx = order[i:i + logos_per_batch]
            params, state, _ = step(params, state, stats[idx], enc[idx], y[idx])
    return params


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-count", type=int, default=600)
    p.add_argument("--count", type=int, default=240, help="selection logos (default 240)")
    p.add_argument("--k", type=int, default=8, help="settings per logo (default 8)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--grid-count", type=int, default=60,
                   help="selection logos converted with every setting of issue 25's 54-setting grid (default 60)")
    p.add_argument("--min-ssim", type=float, default=0.95)
    p.add_argument("--margins", default="0,0.005,0.01", help="safety margins on the predicted SSIM to try")
    p.add_argument("--map-features", action="store_true",
                   help="also read the image through a map network trained on the training logos' default "
                        "conversions (its hidden channels' mean and max, its predicted SSIM's quantiles)")
    p.add_argument("--map-steps", type=int, default=2400, help="--map-features: its training steps (default 2400)")
    p.add_argument("--cond-map-steps", type=int, default=0,
                   help="also a map network conditioned on the setting, trained this many steps per seed on every "
                        "setting's real SSIM map (0: not)")
    p.add_argument("--within", type=float, default=0.0,
                   help="weight of the loss on each logo's centred predictions (how its settings differ)")
    p.add_argument("--cache-dir", help="default $SSIMJAX_CACHE_DIR or ~/.cache/ssimjax")
    args = p.parse_args(argv)
    from ssimjax.data.images import open_image, read_file
    from ssimjax.data.sets import sources_named
    from ssimjax.data.vtsettings import issue_grid, settings_dataset
    from ssimjax.features.cache import default_cache_dir
    from ssimjax.features.stats import image_statistics
    from ssimjax.models.setting_head import TARGETS, encode_settings, setting_model_apply

    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    t0 = time.perf_counter()
    data = {role: load_settings_rows(settings_dataset(cache, n, args.k, seed=s, sources=sources_named(role), log=print))
            for role, n, s in (("train", args.train_count, 0), ("selection", args.count, 1))}
    grid_set = settings_dataset(cache, args.grid_count, 0, seed=2, sources=sources_named("selection"), log=print,
                                grid=issue_grid())
    data["grid"] = load_settings_rows(grid_set)
    stats_of = {}
    for d in data.values():
        for path in np.unique(d["image"]):
            stats_of[path] = image_statistics(open_image(read_file(path)[0]))
    if args.map_features:
        extra = map_feature_table(data, cache, args.map_steps)
        stats_of = {path: np.concatenate([v, extra[path]]) for path, v in stats_of.items()}
    print(f"data ready in {time.perf_counter() - t0:.0f}s: {len(data['train']['ssim'])} training rows, "
          f"{len(data['selection']['ssim'])} selection rows", flush=True)
    for d in data.values():
        d["stats"] = np.stack([stats_of[p] for p in d["image"]])
        d["enc"] = encode_settings(d["setting"])
        d["y"] = np.stack([d[t] for t in TARGETS], 1)
    tr = data["train"]
    mean, std = tr["stats"].mean(0), tr["stats"].std(0) + 1e-6
    ymean, ystd = tr["y"].mean(0), tr["y"].std(0)
    results = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        logos = np.unique(tr["image"])
        rng = np.random.default_rng(seed)
        fit_logos = set(rng.permutation(logos)[: int(0.8 * len(logos))])
        fit = np.asarray([i in fit_logos for i in tr["image"]])
        kept = None  # the image + setting head's predictions, which the conditioned map network completes
        variants = [("image + setting", True), ("setting only", False)]
        if args.cond_map_steps:
            variants.append(("conditioned map", True))
        for name, use_image in variants:
            def std_stats(d):
                z = np.clip((d["stats"] - mean) / std, -5, 5)
                return (z if use_image else np.zeros_like(z)).astype(np.float32)

            t = time.perf_counter()
            sel, g = data["selection"], data["grid"]
            if name == "conditioned map":  # SSIM from the conditioned map network; colour and size from the head
                pred, gpred = kept
                cond = conditioned_predictor(data, cache, args.cond_map_steps, seed)
                pred, gpred = pred.copy(), gpred.copy()
                pred[:, 0], gpred[:, 0] = cond(sel), cond(g)
            else:
                params = train_setting_model(std_stats(tr)[fit], tr["enc"][fit], ((tr["y"] - ymean) / ystd)[fit],
                                             args.k, seed, within=args.within)
                pred = np.asarray(setting_model_apply(params, std_stats(sel), sel["enc"])) * ystd + ymean
                gpred = np.asarray(setting_model_apply(params, std_stats(g), g["enc"])) * ystd + ymean
                if use_image:
                    kept = (pred, gpred)
            row = score_row(pred, gpred, sel, g, args)
            results.setdefault(name, []).append(row)
            print(f"seed {seed} {name:16s} " + "  ".join(
                f"{t_}: within-logo SRCC {row[t_]['within']:.3f}, pooled {row[t_]['srcc']:.3f} / {row[t_]['plcc']:.3f}"
                for t_ in TARGETS) + f" ({time.perf_counter() - t:.0f}s)", flush=True)
            print(f"  on the grid ({len(np.unique(g['image']))} logos x 54): within-logo SRCC ssim "
                  f"{row['grid_within_ssim']:.3f}, bytes {row['grid_within_bytes']:.3f}; at --min-ssim "
                  f"{args.min_ssim}: " + "; ".join(
                      f"margin {m}: meets {c['meets']:.2f} (within 0.005: {c['meets_tol']:.2f}), size x"
                      f"{c['median_ratio']:.3f} ({c['q1']:.3f}-{c['q3']:.3f})" for m, c in row["choice"].items()),
                  flush=True)
    for name, rows in results.items():
        print(f"mean over seeds, {name}: " + "  ".join(
            f"{t_}: within {np.mean([r[t_]['within'] for r in rows]):.3f}, pooled SRCC "
            f"{np.mean([r[t_]['srcc'] for r in rows]):.3f}" for t_ in TARGETS)
            + f"; grid within-logo SRCC ssim {np.mean([r['grid_within_ssim'] for r in rows]):.3f}, bytes "
            f"{np.mean([r['grid_within_bytes'] for r in rows]):.3f}")
        for m in args.margins.split(","):
            c = [r["choice"][m] for r in rows]
            print(f"  margin {m}: meets {np.mean([x['meets'] for x in c]):.3f} (within 0.005: "
                  f"{np.mean([x['meets_tol'] for x in c]):.3f}), median size "
                  f"x{np.mean([x['median_ratio'] for x in c]):.3f}"
                  f" (oracle x{c[0]['oracle_median_ratio']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
