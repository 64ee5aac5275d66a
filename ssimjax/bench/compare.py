"""Compare predictor designs on icon sets they never trained on:

    ssimjax compare-models [--icon-count 2500] [--json results.json]

For each source of the real-logo set in turn, trains on the other sources (80/20 train/val split,
seeded; early stopping on val) and scores the held-out source (SRCC, PLCC, MAE):
  (a) the plan's model: frozen ResNet-50 features -> MLP
  (b) backbone features + image statistics (native resolution, standardised in the model) -> MLP
  (c) as (b), with every backbone stage average-pooled instead of the last only
  (e) ridge regression on the image statistics alone (the baseline to beat)
  (f) image statistics alone -> MLP (``--no-map-net``)
  (g) as (f), plus the image's SSIM as a small network predicts it pixel by pixel at the image's
      own resolution, trained on the real pipeline's SSIM maps of the training rows and of
      synthetic wordmarks (ssimjax.models.mapnet, ssimjax.data.wordmarks), which the MLP corrects:
      ssimjax's default model
(d), fine-tuning the backbone, is priced per image on this machine rather than run: see --finetune-cost.
Backbone features and statistics are computed once (and cached) and shared by every candidate.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from ssimjax.cli import common as _cli


def ridge_fit_predict(x_train, y_train, x_val, y_val, x_test, alphas=np.logspace(-3, 3, 13)):
    """Ridge on standardised inputs; the penalty chosen on the validation rows."""
    mu, sd = x_train.mean(0), np.maximum(x_train.std(0), 1e-6)
    z = lambda x: np.clip((x - mu) / sd, -5, 5)  # noqa: E731  (as the model standardises)
    a, b, c = z(x_train), z(x_val), z(x_test)
    best = None
    for alpha in alphas:
        w = np.linalg.solve(a.T @ a + alpha * len(a) * np.eye(a.shape[1]), a.T @ (y_train - y_train.mean()))
        err = np.mean((b @ w + y_train.mean() - y_val) ** 2)
        if best is None or err < best[0]:
            best = (err, w)
    return c @ best[1] + y_train.mean()


def finetune_cost(batch_size: int = 16, steps: int = 3) -> float:
    """Seconds per image of one full fine-tuning step of ResNet-50 + MLP (backbone unfrozen)."""
    import jax.numpy as jnp

    from ssimjax.config import TrainConfig
    from ssimjax.train.state import Trainer, create_train_state

    config = TrainConfig(freeze_backbone=False, image_stats=False, map_net=False, backbone_features=True,
                         batch_size=batch_size)
    state, trainer = create_train_state(config), Trainer.from_config(config)
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.integers(0, 256, (batch_size, 224, 224, 3), dtype=np.uint8)),
             "ssim": jnp.asarray(rng.uniform(0.8, 1.0, batch_size), jnp.float32), "mask": jnp.ones(batch_size, bool)}
    state, m = trainer.train_step(state, batch)  # compile
    m["loss"].block_until_ready()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, m = trainer.train_step(state, batch)
        m["loss"].block_until_ready()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) / batch_size


def main(argv=None) -> int:
    from ssimjax.config import MAP_CROP, MAP_STEPS, TrainConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--icon-count", type=int, default=2500, help="size of the built-in real-logo set (default 2500)")
    p.add_argument("--data", help="a manifest with a 'source' column instead of the built-in set")
    p.add_argument("--cache-dir", help="default $SSIMJAX_CACHE_DIR or ~/.cache/ssimjax")
    p.add_argument("--sources", help="comma-separated held-out sources (default: every source)")
    p.add_argument("--candidates", default="a,b,c,e,f,g",
                   help="which of a,b,c,e,f,g to run (default all; g trains a map network per held-out set)")
    p.add_argument("--map-steps", type=int, default=MAP_STEPS,
                   help=f"(g): training steps of the map network (default {MAP_STEPS})")
    p.add_argument("--map-crop", type=int, default=MAP_CROP,
                   help=f"(g): side of the map network's training crops in pixels (default {MAP_CROP})")
    p.add_argument("--map-extra", type=int, default=TrainConfig.map_extra,
                   help=f"(g): synthetic wordmarks added to its training images (default {TrainConfig.map_extra})")
    p.add_argument("--no-map-extra-mlp", dest="map_extra_mlp", action="store_false",
                   help="(g): the synthetic wordmarks train the map network only, not the MLP")
    p.add_argument("--map-channels", type=int, default=16, help="(g): the map network's width (default 16)")
    p.add_argument("--map-cell", type=int, default=2,
                   help="(g): pixels per side of the cells it predicts (2: at half resolution, the default)")
    p.add_argument("--finetune-cost", action="store_true", help="also time a ResNet-50 fine-tuning step (d)")
    p.add_argument("--json", metavar="FILE", help="write the results here")
    args = p.parse_args(argv)
    _cli.setup_logging(verbose=False)
    from pathlib import Path

    from ssimjax.data.logoset import icon_dataset
    from ssimjax.data.manifest import split_rows
    from ssimjax.evaluate.metrics import quality_metrics
    from ssimjax.features.inputs import build_inputs, default_cache_dir
    from ssimjax.models.init import with_training_start
    from ssimjax.train.fit import fit, predict
    from ssimjax.train.state import Trainer, create_train_state

    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    t0 = time.perf_counter()
    data = args.data or icon_dataset(cache_dir, count=args.icon_count, log=print)
    wanted = set(args.candidates.split(","))
    # Backbone features (every stage; the last 2048 columns are the last stage's) only when a
    # candidate uses them: extracting them is most of the cost.
    base = TrainConfig(pooled_stages="all", backbone_features=bool(wanted & {"a", "b", "c"}), map_net=False)
    trainer = Trainer.from_config(base)
    state = create_train_state(base)
    inputs, facts, timings = build_inputs(trainer, state.variables, data, cache_dir, skip_invalid=True)
    print(f"data ready in {time.perf_counter() - t0:.0f}s: {facts['valid_rows']} images; {timings}")
    all_stages, stats, y = inputs["features"], inputs["stats"], inputs["ssim"]
    sources = inputs["source"].astype(str)
    last = all_stages[:, -2048:] if base.backbone_features else None  # layer4 pooled: the plan's features
    held_out = args.sources.split(",") if args.sources else sorted(set(sources) - {""})

    def mlp(config, features, with_stats, tr, va, te, stats=stats, extra=None):
        """The MLP trained on rows ``tr`` (and ``extra``'s synthetic rows), validated on ``va``;
        its predictions for ``te``."""
        def part(idx):
            d = {"features": features[idx], "ssim": y[idx]}
            if with_stats:
                d["stats"] = stats[idx]
            return d

        train = part(tr)
        if extra is not None:
            train = {k: np.concatenate([v, extra[k]]) for k, v in train.items()}
        state = create_train_state(config)
        if with_stats:
            state = create_train_state(config, with_training_start(state.variables, config, train["stats"],
                                                                   train["ssim"]))
        res = fit(state, config, train, part(va))
        return predict(Trainer.from_config(config), res.state, part(te), 256)

    if "g" in wanted:
        from ssimjax.data.wordmarks import mlp_rows, wordmark_folder
        from ssimjax.models.mapnet import MapNet
        from ssimjax.train.mapnet import cached_ssim_maps, read_pixels_and_shas, train_map_model

        t = time.perf_counter()
        pixels, shas = read_pixels_and_shas(list(inputs["path"]))
        maps = cached_ssim_maps(list(inputs["path"]), shas, cache_dir, log=print)
        print(f"SSIM maps and pixels ready in {time.perf_counter() - t:.0f}s", flush=True)
        spec = MapNet(channels=args.map_channels, cell=args.map_cell)
        folder = wordmark_folder(cache_dir, args.map_extra, log=print)
        extra = None
        # Read as the default run reads them: statistics, no backbone features (so the backbone's
        # variables go unused, and the ones already built serve).
        if folder is not None:
            extra = build_inputs(Trainer.from_config(TrainConfig()), state.variables, folder, cache_dir,
                                 skip_invalid=False)[0]
        extra_paths = list(extra["path"]) if extra is not None else []
        extra_pixels, extra_shas = read_pixels_and_shas(extra_paths)
        extra_maps = cached_ssim_maps(extra_paths, extra_shas, cache_dir)

        def with_map_score(tr, va, te):
            t = time.perf_counter()
            model = train_map_model([pixels[i] for i in tr] + extra_pixels, [maps[i] for i in tr] + extra_maps, spec,
                                    args.map_steps, base.seed, log=print, crop_size=args.map_crop)
            t_train = time.perf_counter() - t
            score = model.score(pixels)
            alone = quality_metrics(score[te], y[te])
            print(f"  map network: trained {t_train:.0f}s, scored {len(pixels)} images "
                  f"{time.perf_counter() - t - t_train:.0f}s; its score alone on the held-out rows: SRCC "
                  f"{alone['srcc']:.3f} PLCC {alone['plcc']:.3f}", flush=True)
            extended = np.concatenate([stats, score[:, None]], axis=1)
            synthetic = None
            if extra is not None and args.map_extra_mlp:  # as the default run adds them
                n = mlp_rows(len(extra_paths), len(tr))
                synthetic = {"features": np.zeros((n, 0), np.float32), "ssim": extra["ssim"][:n],
                             "stats": np.concatenate([extra["stats"][:n], model.score(extra_pixels[:n])[:, None]], 1)}
            return mlp(TrainConfig(), np.zeros((len(y), 0), np.float32), True, tr, va, te, stats=extended,
                       extra=synthetic)

    candidates = {
        "a": ("(a) plan: ResNet-50 features -> MLP",
              lambda tr, va, te: mlp(TrainConfig.plan_model(), last, False, tr, va, te)),
        "b": ("(b) features + statistics -> MLP",
              lambda tr, va, te: mlp(TrainConfig(backbone_features=True, map_net=False), last, True, tr, va, te)),
        "c": ("(c) all-stage features + statistics -> MLP",
              lambda tr, va, te: mlp(base, all_stages, True, tr, va, te)),
        "e": ("(e) ridge on statistics (baseline)",
              lambda tr, va, te: ridge_fit_predict(stats[tr], y[tr], stats[va], y[va], stats[te])),
        "f": ("(f) statistics -> MLP (--no-map-net)",
              lambda tr, va, te: mlp(TrainConfig(map_net=False), np.zeros((len(y), 0), np.float32), True, tr, va, te)),
    }
    if "g" in wanted:
        candidates["g"] = ("(g) statistics + learned SSIM-map score -> MLP", with_map_score)
    results = {}
    for source in held_out:
        tr, va, te = split_rows(sources, base.validation_split, base.seed, source)
        for key in sorted(wanted & set(candidates)):
            name, run = candidates[key]
            t = time.perf_counter()
            m = quality_metrics(run(tr, va, te), y[te])
            m["seconds"] = time.perf_counter() - t
            results.setdefault(key, {"name": name, "per_source": {}})["per_source"][source] = m
            print(f"held out {source:18s} {name:45s} SRCC {m['srcc']:.3f} PLCC {m['plcc']:.3f} "
                  f"MAE {m['mae']:.4f} ({m['seconds']:.0f}s)", flush=True)
    print("\n| candidate | " + " | ".join(held_out) + " | mean | train s |")
    print("|---|" + "---|" * (len(held_out) + 2))
    for key, r in sorted(results.items()):
        per = r["per_source"]
        r["mean_srcc"] = float(np.mean([per[s]["srcc"] for s in held_out]))
        r["mean_plcc"] = float(np.mean([per[s]["plcc"] for s in held_out]))
        cells = [f"{per[s]['srcc']:.3f} / {per[s]['plcc']:.3f}" for s in held_out]
        secs = np.mean([per[s]["seconds"] for s in held_out])
        print(f"| {r['name']} | " + " | ".join(cells) + f" | {r['mean_srcc']:.3f} / {r['mean_plcc']:.3f} | {secs:.0f} |")
    out = {"data": str(data), "rows": facts["valid_rows"], "feature_timings": timings, "candidates": results}
    if args.finetune_cost:
        s = finetune_cost()
        out["finetune_s_per_image"] = s
        print(f"(d) fine-tuning ResNet-50 + MLP on this machine: {s * 1000:.0f} ms per image per step "
              f"(batch 16); one epoch over {len(y)} images ~ {s * len(y) / 60:.0f} min")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
