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

With ``--protocol`` (issue 24) the candidates train on the fixed split's training sets instead and
are scored on every selection and report set, over several seeds (:mod:`ssimjax.bench.protocol`):
per set, each role's mean and worst, and the seed spread a change must beat.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import time
from pathlib import Path

import numpy as np

from ssimjax.bench.jax_side import finetune_cost
from ssimjax.bench.protocol import (
    over_seeds,
    per_set_metrics,
    protocol_data,
    protocol_split,
    protocol_table,
    role_summary,
)
from ssimjax.cli import common as _cli
from ssimjax.config import DEFAULT_RECIPES, MAP_CROP, MAP_STEPS, TrainConfig, map_steps_for
from ssimjax.data.icons import RECIPES
from ssimjax.data.logoset import icon_dataset
from ssimjax.data.manifest import split_rows
from ssimjax.data.sets import split_sets
from ssimjax.data.wordmarks import mlp_rows, wordmark_folder
from ssimjax.evaluate.metrics import quality_metrics
from ssimjax.features.cache import default_cache_dir
from ssimjax.features.inputs import build_inputs
from ssimjax.models.init import with_training_start
from ssimjax.models.mapnet import MapNet
from ssimjax.train.fit import fit, predict
from ssimjax.train.mapnet import cached_ssim_maps, read_pixels_and_shas, train_map_model
from ssimjax.train.state import Trainer, create_train_state


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


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    _cli.setup_logging(verbose=False)
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    t0 = time.perf_counter()
    if args.protocol:
        return _protocol_main(args, cache_dir, t0)
    data = args.data or icon_dataset(cache_dir, count=args.icon_count, log=print)
    shared, candidates = _prepare(args, data, cache_dir, t0)
    held_out = args.sources.split(",") if args.sources else sorted(set(shared.sources) - {""})
    results = {}
    for source in held_out:
        tr, va, te = split_rows(shared.sources, shared.base.validation_split, shared.base.seed, source)
        for key in sorted(candidates):
            name, run = candidates[key]
            t = time.perf_counter()
            m = quality_metrics(run(tr, va, te), shared.y[te])
            m["seconds"] = time.perf_counter() - t
            results.setdefault(key, {"name": name, "per_source": {}})["per_source"][source] = m
            print(f"held out {source:18s} {name:45s} SRCC {m['srcc']:.3f} PLCC {m['plcc']:.3f} "
                  f"MAE {m['mae']:.4f} ({m['seconds']:.0f}s)", flush=True)
    _print_table(results, held_out)
    out = {"data": str(data), "rows": shared.facts["valid_rows"], "feature_timings": shared.timings,
           "candidates": results}
    if args.finetune_cost:
        s = finetune_cost()
        out["finetune_s_per_image"] = s
        print(f"(d) fine-tuning ResNet-50 + MLP on this machine: {s * 1000:.0f} ms per image per step "
              f"(batch 16); one epoch over {len(shared.y)} images ~ {s * len(shared.y) / 60:.0f} min")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


def _prepare(args, data, cache_dir: Path, t0: float) -> tuple["Shared", dict]:
    """The data's shared inputs and the candidates ``--candidates`` asks for, by key."""
    wanted = set(args.candidates.split(","))
    shared = Shared.build(data, cache_dir, backbone_features=bool(wanted & {"a", "b", "c"}))
    print(f"data ready in {time.perf_counter() - t0:.0f}s: {shared.facts['valid_rows']} images; {shared.timings}")
    candidates = _candidates(shared)
    if "g" in wanted:
        g = MapCandidate(shared, args)
        candidates["g"] = ("(g) statistics + learned SSIM-map score -> MLP", g)
        for dims in filter(None, (args.mlp_variants or "").split(";")):
            hidden = tuple(int(h) for h in dims.split(","))
            wanted.add(f"g-mlp-{dims}")
            candidates[f"g-mlp-{dims}"] = (f"(g), MLP {dims}", functools.partial(g, hidden_dims=hidden))
    return shared, {k: v for k, v in candidates.items() if k in wanted}


def _protocol_main(args, cache_dir: Path, t0: float) -> int:
    data = args.data or protocol_data(cache_dir, args.train_count, args.per_set, args.recipes, log=print)
    shared, candidates = _prepare(args, data, cache_dir, t0)
    results = {}
    for seed in [int(x) for x in args.seeds.split(",")]:
        tr, va, held = protocol_split(shared.sources, shared.base.validation_split, seed)
        for key in sorted(candidates):
            name, run = candidates[key]
            t = time.perf_counter()
            per = per_set_metrics(run(tr, va, held, seed), shared.y[held], shared.sources[held])
            summary = role_summary(per)
            results.setdefault(key, {"name": name, "per_seed": []})["per_seed"].append(
                {"seed": seed, "per_set": per, "summary": summary, "seconds": time.perf_counter() - t})
            print(f"seed {seed} {name:45s} " + "  ".join(
                f"{role} mean SRCC {v['mean_srcc']:.3f} PLCC {v['mean_plcc']:.3f} worst {v['worst_srcc']:.3f} "
                f"({v['worst_set']})" for role, v in summary.items()) + f" ({time.perf_counter() - t:.0f}s)",
                  flush=True)
    for r in results.values():
        r["over_seeds"] = over_seeds([p["summary"] for p in r["per_seed"]])
    print("\n" + protocol_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"data": str(data), "rows": shared.facts["valid_rows"],
                                               "split": split_sets(), "candidates": results}, indent=2) + "\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--icon-count", type=int, default=2500, help="size of the built-in real-logo set (default 2500)")
    p.add_argument("--data", help="a manifest with a 'source' column instead of the built-in set")
    p.add_argument("--cache-dir", help="default $SSIMJAX_CACHE_DIR or ~/.cache/ssimjax")
    p.add_argument("--sources", help="comma-separated held-out sources (default: every source)")
    p.add_argument("--candidates", default="a,b,c,e,f,g",
                   help="which of a,b,c,e,f,g to run (default all; g trains a map network per held-out set)")
    p.add_argument("--map-steps", type=int,
                   help="(g): training steps of the map network (default: as a default run's, by the number of "
                   f"training images, at most {MAP_STEPS})")
    p.add_argument("--map-crop", type=int, default=MAP_CROP,
                   help=f"(g): side of the map network's training crops in pixels (default {MAP_CROP})")
    p.add_argument("--map-extra", type=int, default=TrainConfig.map_extra,
                   help=f"(g): synthetic wordmarks added to its training images (default {TrainConfig.map_extra})")
    p.add_argument("--no-map-extra-mlp", dest="map_extra_mlp", action="store_false",
                   help="(g): the synthetic wordmarks train the map network only, not the MLP")
    p.add_argument("--mlp-variants", metavar="DIMS;DIMS",
                   help="(g) again with these MLP hidden sizes (e.g. '512,256,128;256,128'), each reusing (g)'s map "
                   "network for the same rows and seed")
    p.add_argument("--map-channels", type=int, default=TrainConfig.map_channels,
                   help=f"(g): the map network's width (default {TrainConfig.map_channels}, a default run's)")
    p.add_argument("--map-cell", type=int, default=2,
                   help="(g): pixels per side of the cells it predicts (2: at half resolution, the default)")
    p.add_argument("--finetune-cost", action="store_true", help="also time a ResNet-50 fine-tuning step (d)")
    p.add_argument("--protocol", action="store_true",
                   help="train on the fixed split's training sets; score every selection and report set, per seed")
    p.add_argument("--seeds", default="0,1,2", help="--protocol: comma-separated seeds (default 0,1,2)")
    p.add_argument("--train-count", type=int, default=3000,
                   help="--protocol: images drawn from the training sets (default 3000)")
    p.add_argument("--per-set", type=int, default=60,
                   help="--protocol: images per selection or report set (default 60)")
    p.add_argument("--recipes", type=int, choices=RECIPES, default=DEFAULT_RECIPES,
                   help=f"--protocol: recipe version (default {DEFAULT_RECIPES}, the default run's)")
    p.add_argument("--json", metavar="FILE", help="write the results here")
    return p


@dataclasses.dataclass
class Shared:
    """What every candidate reads: the data's inputs, computed once (and cached)."""

    base: TrainConfig  # every backbone stage pooled, so (c) can read them all
    variables: dict
    cache_dir: Path
    inputs: dict
    facts: dict
    timings: dict

    @classmethod
    def build(cls, data, cache_dir: Path, backbone_features: bool) -> "Shared":
        # Backbone features (every stage; the last 2048 columns are the last stage's) only when a
        # candidate uses them: extracting them is most of the cost.
        base = TrainConfig(pooled_stages="all", backbone_features=backbone_features, map_net=False)
        variables = create_train_state(base).variables
        inputs, facts, timings = build_inputs(Trainer.from_config(base), variables, data, cache_dir,
                                              skip_invalid=True)
        return cls(base, variables, cache_dir, inputs, facts, timings)

    @property
    def y(self):
        return self.inputs["ssim"]

    @property
    def stats(self):
        return self.inputs["stats"]

    @property
    def sources(self):
        return self.inputs["source"].astype(str)

    @property
    def last_stage(self):
        """The last stage pooled: the plan's features."""
        return self.inputs["features"][:, -2048:] if self.base.backbone_features else None

    def no_features(self):
        return np.zeros((len(self.y), 0), np.float32)


def train_mlp(shared: Shared, config: TrainConfig, features, with_stats: bool, tr, va, te, stats=None, extra=None,
              seed: int = 0):
    """The MLP trained (seeded) on rows ``tr`` (and ``extra``'s synthetic rows), validated on
    ``va``; its predictions for ``te``."""
    config = dataclasses.replace(config, seed=seed)
    stats = shared.stats if stats is None else stats

    def part(idx):
        d = {"features": features[idx], "ssim": shared.y[idx]}
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


def _candidates(s: Shared) -> dict:
    return {
        "a": ("(a) plan: ResNet-50 features -> MLP",
              lambda tr, va, te, seed=0: train_mlp(s, TrainConfig.plan_model(), s.last_stage, False, tr, va, te,
                                                   seed=seed)),
        "b": ("(b) features + statistics -> MLP",
              lambda tr, va, te, seed=0: train_mlp(s, TrainConfig(backbone_features=True, map_net=False),
                                                   s.last_stage, True, tr, va, te, seed=seed)),
        "c": ("(c) all-stage features + statistics -> MLP",
              lambda tr, va, te, seed=0: train_mlp(s, s.base, s.inputs["features"], True, tr, va, te, seed=seed)),
        "e": ("(e) ridge on statistics (baseline)",
              lambda tr, va, te, seed=0: ridge_fit_predict(s.stats[tr], s.y[tr], s.stats[va], s.y[va], s.stats[te])),
        "f": ("(f) statistics -> MLP (--no-map-net)",
              lambda tr, va, te, seed=0: train_mlp(s, TrainConfig(map_net=False), s.no_features(), True, tr, va, te,
                                                   seed=seed)),
    }


class MapCandidate:
    """(g): a map network trained per held-out set on the training rows' SSIM maps (and synthetic
    wordmarks'), its score appended to the statistics, the MLP correcting it: the default model."""

    def __init__(self, shared: Shared, args):
        self.s, self.args = shared, args
        self._last = (None, None)  # (rows and seed, what _train_and_score gave for them)
        t = time.perf_counter()
        paths = list(shared.inputs["path"])
        self.pixels, shas = read_pixels_and_shas(paths)
        self.maps = cached_ssim_maps(paths, shas, shared.cache_dir, log=print)
        print(f"SSIM maps and pixels ready in {time.perf_counter() - t:.0f}s", flush=True)
        self.spec = MapNet(channels=args.map_channels, cell=args.map_cell)
        folder = wordmark_folder(shared.cache_dir, args.map_extra, log=print)
        # Read as the default run reads them: statistics, no backbone features (so the backbone's
        # variables go unused, and the ones already built serve).
        self.extra = None if folder is None else build_inputs(
            Trainer.from_config(TrainConfig()), shared.variables, folder, shared.cache_dir, skip_invalid=False)[0]
        extra_paths = list(self.extra["path"]) if self.extra is not None else []
        self.extra_pixels, extra_shas = read_pixels_and_shas(extra_paths)
        self.extra_maps = cached_ssim_maps(extra_paths, extra_shas, shared.cache_dir)

    def __call__(self, tr, va, te, seed=0, hidden_dims=None):
        """The held-out predictions; ``hidden_dims``: the MLP's, in place of the default's (the map
        network trained for the same rows and seed is reused)."""
        extended, synthetic = self._inputs(tr, te, seed)
        config = TrainConfig() if hidden_dims is None else TrainConfig(hidden_dims=hidden_dims)
        return train_mlp(self.s, config, self.s.no_features(), True, tr, va, te, stats=extended, extra=synthetic,
                         seed=seed)

    def _inputs(self, tr, te, seed):
        """The MLP's statistics with the map score (and its synthetic rows), the map network trained
        once per training rows and seed."""
        key = (seed, np.asarray(tr).tobytes())
        if self._last[0] != key:
            self._last = (key, self._train_and_score(tr, te, seed))
        return self._last[1]

    def _train_and_score(self, tr, te, seed):
        s, args = self.s, self.args
        t = time.perf_counter()
        model = train_map_model([self.pixels[i] for i in tr] + self.extra_pixels,
                                [self.maps[i] for i in tr] + self.extra_maps, self.spec,
                                map_steps_for(TrainConfig(map_steps=args.map_steps), len(tr)), seed,
                                log=print, crop_size=args.map_crop)
        t_train = time.perf_counter() - t
        score = model.score(self.pixels)
        alone = quality_metrics(score[te], s.y[te])
        print(f"  map network: trained {t_train:.0f}s, scored {len(self.pixels)} images "
              f"{time.perf_counter() - t - t_train:.0f}s; its score alone on the held-out rows: SRCC "
              f"{alone['srcc']:.3f} PLCC {alone['plcc']:.3f}", flush=True)
        extended = np.concatenate([s.stats, score[:, None]], axis=1)
        synthetic = None
        if self.extra is not None and args.map_extra_mlp:  # as the default run adds them
            n = mlp_rows(len(self.extra_pixels), len(tr))
            synthetic = {"features": np.zeros((n, 0), np.float32), "ssim": self.extra["ssim"][:n],
                         "stats": np.concatenate([self.extra["stats"][:n],
                                                  model.score(self.extra_pixels[:n])[:, None]], 1)}
        return extended, synthetic


def _print_table(results: dict, held_out: list) -> None:
    """The Markdown table of every candidate's SRCC / PLCC per held-out set; adds each one's means."""
    print("\n| candidate | " + " | ".join(held_out) + " | mean | train s |")
    print("|---|" + "---|" * (len(held_out) + 2))
    for key, r in sorted(results.items()):
        per = r["per_source"]
        r["mean_srcc"] = float(np.mean([per[s]["srcc"] for s in held_out]))
        r["mean_plcc"] = float(np.mean([per[s]["plcc"] for s in held_out]))
        cells = [f"{per[s]['srcc']:.3f} / {per[s]['plcc']:.3f}" for s in held_out]
        secs = np.mean([per[s]["seconds"] for s in held_out])
        print(f"| {r['name']} | " + " | ".join(cells) + f" | {r['mean_srcc']:.3f} / {r['mean_plcc']:.3f} | {secs:.0f} |")
