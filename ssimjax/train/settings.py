"""Training the settings model (issue 25): ``ssimjax train --vtracer-parameters``.

A run reads the split's training icon sets converted with K drawn settings each (and, with
``grid_count``, other training logos converted with every candidate setting), and trains

- the statistics head (:mod:`ssimjax.models.setting_head`): colour SSIM and log SVG size per
  setting from the image's statistics, written once trained to ``setting_head/``;
- the conditioned map network: luminance SSIM per cell under each setting, trained on every
  training conversion's real SSIM map, checkpointed as it trains (``cond_map_checkpoints/``), so
  a killed run continues where it stopped and ends with the same weights.

The trained model goes to ``settings_model/`` (Orbax) and ``settings_model.json`` (its shape,
standardisation and candidate settings). The run is then scored on held-out logos of the
selection and the report sets converted with every candidate setting
(:mod:`ssimjax.evaluate.settings_eval`): ``summary.json`` and ``report/``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from ssimjax.data.vtsettings import candidate_grid, check_setting, default_setting, setting_key
from ssimjax.files import write_text_atomic
from ssimjax.models.mapnet import MapNet, cell_targets, cell_weights, crop
from ssimjax.models.setting_head import (
    ENCODING,
    TARGETS,
    SettingsModel,
    cells_for_setting,
    encode_settings,
    init_conditioned_map_net,
    init_setting_model,
    setting_model_apply,
    trunk_apply,
)
from ssimjax.train.checkpoint import (
    MapNetCheckpoints,
    _abstract,
    _writing,
    checkpoint_if_due,
    map_checkpoint_interval,
    resume_training,
)
from ssimjax.train.mapnet import _cells

# The seed of each settings set a run reads; the roles' icon sets never overlap (ssimjax.data.sets).
DATA_SEEDS = {"train": 0, "train_grid": 3, "selection": 2, "report": 4}
SETTINGS_MODEL = "settings_model"
CONFIG_FILE = "settings_config.json"


class SettingsRunError(RuntimeError):
    """A settings run that cannot start or continue; the message says why, in one line."""


@dataclass(frozen=True)
class SettingsRunConfig:
    count: int = 600          # training logos converted with k drawn settings each
    k: int = 8                # settings per training logo (VTracer's defaults among them)
    grid_count: int = 150     # further training logos converted with every candidate setting (0: none)
    held_out_count: int = 60  # logos per held-out role (selection, report), converted with every candidate
    cond_steps: int = 4000    # the conditioned map network's training steps
    head_epochs: int = 300    # the statistics head's epochs
    within: float = 1.0       # weight of the head's loss on each logo's centred predictions
    seed: int = 0
    min_ssim: float = 0.95    # the target a recommendation meets by default
    margin: float = 0.005     # added to the target on the predicted SSIM (a safety margin)
    neighbours: int = 20      # training logos (of the grid_count converted with every candidate) a prior reads
    prior_weight: float = 1.0  # how much the neighbours' curve, not the map network, says how the settings differ
    prior_anchor: str = "defaults"  # with prior_weight 1: the map network's SSIM of the defaults ("defaults") or
    #                                 its mean over the settings scored ("mean") sets the level
    sim_cap: float | None = None  # predictions capped at the defaults' plus the simulated clustering's change
    #                               plus this (ssimjax.features.vtsim); None (the default): no simulation
    candidates: tuple = field(default_factory=lambda: tuple(candidate_grid()))

    def __post_init__(self):
        for name in ("count", "k", "held_out_count", "cond_steps", "head_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1 (got {getattr(self, name)})")
        if self.grid_count < 0:
            raise ValueError(f"grid_count: must be >= 0 (got {self.grid_count})")
        if self.neighbours < 1 or not 0 <= self.prior_weight <= 1:
            raise ValueError(f"neighbours must be >= 1 and prior_weight in [0, 1] (got {self.neighbours}, "
                             f"{self.prior_weight})")
        if self.prior_anchor not in ("defaults", "mean"):
            raise ValueError(f"prior_anchor: must be defaults or mean (got {self.prior_anchor!r})")
        if self.sim_cap is not None and not 0 <= self.sim_cap <= 1:
            raise ValueError(f"sim_cap: must be in [0, 1] or None (got {self.sim_cap})")
        if not 0 < self.min_ssim <= 1:
            raise ValueError(f"min_ssim: must be in (0, 1] (got {self.min_ssim})")
        cands = [check_setting(c) for c in self.candidates]
        if default_setting() not in cands:
            cands.insert(0, default_setting())  # the defaults always qualify as a choice
        keys = [setting_key(c) for c in cands]
        if len(set(keys)) != len(keys):
            raise ValueError("candidates: a setting is listed twice")
        object.__setattr__(self, "candidates", tuple(cands))

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "candidates": [dict(c) for c in self.candidates]}


# -- the statistics head -------------------------------------------------------------------------


def train_setting_head(stats: np.ndarray, enc: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int = 0,
                       within: float = 1.0, epochs: int = 300, logos_per_batch: int = 16, rows_per_logo: int = 8,
                       lr: float = 2e-3) -> dict:
    """Parameters of :mod:`ssimjax.models.setting_head` fitted by AdamW on MSE over standardised
    targets ``y`` (rows of standardised ``stats`` and encoded settings ``enc``; ``groups`` names
    each row's logo). Each step takes ``logos_per_batch`` logos and ``rows_per_logo`` of each one's
    rows (drawn, so a logo with every candidate converted and one with 8 weigh alike). ``within``
    weighs a second term: the MSE of each logo's predictions and targets centred on the logo's mean
    (scaled by the centred targets' spread): how the settings differ for that logo."""
    logos = [np.flatnonzero(groups == g) for g in dict.fromkeys(groups)]
    logos = [idx for idx in logos if len(idx) >= 2]
    rows_per_logo = min(rows_per_logo, min(len(idx) for idx in logos))
    logos_per_batch = min(logos_per_batch, len(logos))
    centred = np.concatenate([y[idx] - y[idx].mean(0) for idx in logos])
    spread = centred.std(0) + 1e-6
    params = init_setting_model(stats.shape[-1], seed)
    steps = epochs * max(1, len(logos) // logos_per_batch)
    opt = optax.adamw(optax.cosine_decay_schedule(lr, steps), weight_decay=1e-4)
    state = opt.init(params)

    def loss_fn(p, s, e, t):
        pred = setting_model_apply(p, s, e)
        c = ((pred - pred.mean(1, keepdims=True)) - (t - t.mean(1, keepdims=True))) / spread
        return jnp.mean((pred - t) ** 2) + within * jnp.mean(c ** 2)

    @jax.jit
    def step(params, state, s, e, t):
        loss, g = jax.value_and_grad(loss_fn)(params, s, e, t)
        updates, state = opt.update(g, state, params)
        return optax.apply_updates(params, updates), state, loss

    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(logos))
        for i in range(0, len(logos) - logos_per_batch + 1, logos_per_batch):
            idx = np.stack([rng.choice(logos[j], rows_per_logo, replace=False) for j in order[i:i + logos_per_batch]])
            params, state, _ = step(params, state, stats[idx], enc[idx], y[idx])
    return params


# -- the conditioned map network ------------------------------------------------------------------


def conditioned_loss(params: dict, spec: MapNet, x, e, t, w, diff: float = 1.0):
    """Pixel-weighted MSE of the cells under two settings of each crop (``e`` (N, 2, E), ``t``
    (N, 2, h, w), ``w`` (N, h, w): both settings share the crop's pixels), plus ``diff`` times the
    MSE of their difference (how the two settings differ there). The trunk runs once per crop."""
    hidden = trunk_apply(params, spec, x)
    c0, c1 = cells_for_setting(params, hidden, e[:, 0]), cells_for_setting(params, hidden, e[:, 1])
    total = jnp.maximum(2.0 * w.sum(), 1.0)
    both = jnp.sum(w * (c0 - t[:, 0]) ** 2) + jnp.sum(w * (c1 - t[:, 1]) ** 2)
    contrast = jnp.sum(w * ((c0 - c1) - (t[:, 0] - t[:, 1])) ** 2)
    return (both + diff * contrast) / total


def conditioned_batch(pixels: Sequence[np.ndarray], targets: Sequence[np.ndarray], weights: Sequence[np.ndarray],
                      encs: Sequence[np.ndarray], rng: np.random.Generator, logos: int, size: int, spec: MapNet):
    """One step's crops: ``logos`` logos drawn uniformly, one crop of each (an offset a multiple of
    the cell) and two of its settings: ``(x, e, t, w)`` as :func:`conditioned_loss` takes them."""
    c = spec.cell
    xs, es, ts, ws = [], [], [], []
    for k in rng.integers(0, len(pixels), logos):
        h, w = pixels[k].shape[:2]
        y0 = c * int(rng.integers(0, max(h - size, 0) // c + 1))
        x0 = c * int(rng.integers(0, max(w - size, 0) // c + 1))
        pair = rng.choice(len(targets[k]), 2, replace=False)
        xs.append(crop(pixels[k], y0, x0, size, spec.margin))
        es.append(encs[k][pair])
        ts.append([_cells(targets[k][j].astype(np.float32), y0, x0, size, c) for j in pair])
        ws.append(_cells(weights[k], y0, x0, size, c))
    return np.stack(xs), np.stack(es), np.asarray(ts), np.stack(ws)


def train_conditioned_map(pixels, targets, weights, encs, steps: int, seed: int = 0, spec: MapNet = MapNet(),
                          logos: int = 16, size: int = 48, lr: float = 2e-3, log=None, checkpoints=None) -> dict:
    """The conditioned map network trained ``steps`` steps on logos' pixels, each one's per-cell
    SSIM targets under its settings (``targets[k]`` (S_k, h, w)), cell weights and encoded
    settings. With ``checkpoints`` (a :class:`MapNetCheckpoints`) it continues from the latest and
    saves every ``checkpoints.every`` steps: the result equals an uninterrupted training's."""
    params = init_conditioned_map_net(spec, seed)
    opt = optax.adamw(optax.cosine_decay_schedule(lr, steps), weight_decay=1e-4)
    opt_state = opt.init(params)

    @jax.jit
    def step(p, s, x, e, t, w):
        loss, g = jax.value_and_grad(conditioned_loss)(p, spec, x, e, t, w)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss

    rng = np.random.default_rng(seed)
    start, tree, losses = resume_training(checkpoints, {"params": params, "opt_state": opt_state}, rng, steps,
                                          "conditioned map network", log)
    params, opt_state = tree["params"], tree["opt_state"]
    for i in range(start, steps):
        params, opt_state, loss = step(params, opt_state, *conditioned_batch(pixels, targets, weights, encs, rng,
                                                                             logos, size, spec))
        losses.append(loss)
        if log and (i + 1) % max(1, steps // 5) == 0:
            log(f"conditioned map network step {i + 1}/{steps}: loss "
                f"{float(np.mean(np.asarray(losses[-50:], np.float32))):.5f}")
        losses = checkpoint_if_due(checkpoints, i + 1, steps, {"params": params, "opt_state": opt_state}, rng, losses)
    return params


def map_targets(rows: dict, cache_dir, spec: MapNet, log=None) -> tuple[list, list, list, list]:
    """``(pixels, targets, weights, encoded settings)`` per training logo with at least two cached
    SSIM maps: targets float16 (S, h, w) per cell (memory: thousands of maps), one weight array per
    logo (every setting's map covers the same pixels)."""
    from ssimjax.data.images import open_image, read_file, rgb_pixels
    from ssimjax.data.vtsettings import load_settings_map

    pixels, targets, weights, encs, missing = [], [], [], [], 0
    for image in dict.fromkeys(rows["image"]):
        idx = np.flatnonzero(rows["image"] == image)
        raw, sha = read_file(image)
        maps = [(j, load_settings_map(cache_dir, sha, rows["setting"][j])) for j in idx]
        kept = [(j, m) for j, m in maps if m is not None]
        missing += len(maps) - len(kept)
        if len(kept) < 2:
            continue
        px = rgb_pixels(open_image(raw))
        pixels.append(px)
        targets.append(np.stack([cell_targets(m.astype(np.float32), spec.cell)[0] for _, m in kept]).astype(np.float16))
        weights.append(cell_weights(*px.shape[:2], spec.cell))
        encs.append(encode_settings([rows["setting"][j] for j, _ in kept]))
    if log and missing:
        log(f"{missing} training conversions have no cached SSIM map (removed from the cache?) and are left out")
    return pixels, targets, weights, encs


def neighbour_prior(rows: dict, stats_of: dict, candidates: Sequence[dict]) -> tuple[np.ndarray, np.ndarray] | None:
    """``(statistics, curves)`` of the training logos converted with every candidate: each one's
    statistics (raw) and its real SSIM across the candidates (in their order) centred on its mean;
    None when no logo was."""
    column = {setting_key(c): i for i, c in enumerate(candidates)}
    stats, curves = [], []
    for image in dict.fromkeys(rows["image"]):
        idx = np.flatnonzero(rows["image"] == image)
        curve = np.full(len(candidates), np.nan, np.float32)
        for j in idx:
            k = column.get(setting_key(rows["setting"][j]))
            if k is not None:
                curve[k] = rows["ssim"][j]
        if np.isfinite(curve).all():
            stats.append(stats_of[image])
            curves.append(curve - curve.mean())
    return (np.stack(stats).astype(np.float32), np.stack(curves)) if stats else None


# -- data ------------------------------------------------------------------------------------------


def _cache(cache_dir) -> Path:
    from ssimjax.features.cache import default_cache_dir

    return Path(cache_dir) if cache_dir else default_cache_dir()


def _concat_rows(parts: Sequence[dict]) -> dict:
    out = {}
    for key in parts[0]:
        out[key] = [s for p in parts for s in p[key]] if key == "setting" else np.concatenate([p[key] for p in parts])
    return out


def training_rows(cfg: SettingsRunConfig, cache_dir, sources=None, log=None) -> dict:
    """The training logos' rows: ``count`` logos x ``k`` drawn settings, and ``grid_count`` others x
    every candidate (cached settings sets of the split's training sets)."""
    from ssimjax.data.sets import sources_named
    from ssimjax.data.vtsettings import read_settings_rows, settings_dataset

    sources = sources or sources_named("train")
    cache_dir = _cache(cache_dir)
    parts = [read_settings_rows(settings_dataset(cache_dir, cfg.count, cfg.k, seed=DATA_SEEDS["train"],
                                                 sources=sources, log=log))]
    if cfg.grid_count:
        parts.append(read_settings_rows(settings_dataset(cache_dir, cfg.grid_count, 0, seed=DATA_SEEDS["train_grid"],
                                                         sources=sources, log=log, grid=cfg.candidates)))
    return _concat_rows(parts)


def held_out_rows(cfg: SettingsRunConfig, role: str, cache_dir, sources=None, log=None) -> dict:
    """``held_out_count`` logos of the ``role`` sets converted with every candidate setting."""
    from ssimjax.data.sets import sources_named
    from ssimjax.data.vtsettings import read_settings_rows, settings_dataset

    return read_settings_rows(settings_dataset(_cache(cache_dir), cfg.held_out_count, 0, seed=DATA_SEEDS[role],
                                               sources=sources or sources_named(role), log=log, grid=cfg.candidates))


def image_table(paths: Sequence[str], cache_dir) -> dict:
    """``{path: statistics}``: the settings model's (:data:`ssimjax.features.stats.SETTINGS_STATS`),
    cached by the file's sha256 as every run caches them."""
    from ssimjax.data.images import open_image, read_file
    from ssimjax.features.cache import stats_cache
    from ssimjax.features.stats import SETTINGS_STATS, image_statistics

    cache = stats_cache(cache_dir)
    out = {}
    for path in dict.fromkeys(paths):
        raw, sha = read_file(path)
        stats = cache.get(sha)
        if stats is None:
            stats = image_statistics(open_image(raw))
            cache.put(sha, stats)
        out[path] = stats[:SETTINGS_STATS]
    return out


# -- saving and loading ----------------------------------------------------------------------------


def _model_tree(model: SettingsModel) -> dict:
    tree = {"head": model.head, "cond": model.cond,
            "norm": {k: np.asarray(getattr(model, k), np.float32) for k in ("stats_mean", "stats_std", "y_mean",
                                                                             "y_std")}}
    if model.prior_stats is not None:
        tree["prior"] = {"stats": np.asarray(model.prior_stats, np.float32),
                         "curves": np.asarray(model.prior_curves, np.float32)}
    return tree


def save_settings_model(out: str | Path, model: SettingsModel) -> Path:
    """``settings_model/`` (Orbax: the head, the map network, the standardisation) and
    ``settings_model.json`` (the network's shape, the statistics' count, the candidate settings)."""
    out = Path(out).absolute()
    path = out / SETTINGS_MODEL
    shutil.rmtree(path, ignore_errors=True)
    with _writing(out, f"the trained settings model ({SETTINGS_MODEL}/)"), ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, _model_tree(model))
    spec = model.spec
    write_text_atomic(out / f"{SETTINGS_MODEL}.json", json.dumps(dict(
        kind="vtracer-settings", targets=list(TARGETS), encoding=list(ENCODING), n_stats=int(len(model.stats_mean)),
        map_net=dict(channels=spec.channels, dilations=list(spec.dilations), cell=spec.cell),
        candidates=[dict(c) for c in model.candidates], neighbours=model.neighbours, prior_weight=model.prior_weight,
        prior_anchor=model.prior_anchor, sim_cap=model.sim_cap,
        prior_logos=0 if model.prior_stats is None else int(len(model.prior_stats))), indent=2) + "\n")
    return path


def is_settings_run(run_dir: str | Path) -> bool:
    return (Path(run_dir) / f"{SETTINGS_MODEL}.json").is_file()


def load_settings_model(run_dir: str | Path) -> SettingsModel:
    """The settings model a run wrote. Raises :class:`SettingsRunError` naming what is missing."""
    run_dir = Path(run_dir).absolute()
    meta_path = run_dir / f"{SETTINGS_MODEL}.json"
    if not meta_path.is_file():
        what = "an image-quality run (ssimjax train), not a settings run" if (run_dir / "summary.json").is_file() \
            else "not a finished settings run"
        raise SettingsRunError(f"{run_dir}: {what}; {SETTINGS_MODEL}.json is missing "
                               "(train one with: ssimjax train --vtracer-parameters --out RUN_DIR)")
    try:
        meta = json.loads(meta_path.read_text())
        spec = MapNet(channels=meta["map_net"]["channels"], dilations=tuple(meta["map_net"]["dilations"]),
                      cell=meta["map_net"]["cell"])
        n_stats = int(meta["n_stats"])
        candidates = tuple(check_setting(c) for c in meta["candidates"])
        prior_logos = int(meta.get("prior_logos", 0))
        sim_cap = None if meta.get("sim_cap") is None else float(meta["sim_cap"])
    except (ValueError, KeyError, TypeError) as e:
        raise SettingsRunError(f"{meta_path}: unreadable ({type(e).__name__}: {e})") from None
    template = {"head": init_setting_model(n_stats), "cond": init_conditioned_map_net(spec),
                "norm": {"stats_mean": np.zeros(n_stats, np.float32), "stats_std": np.zeros(n_stats, np.float32),
                         "y_mean": np.zeros(len(TARGETS), np.float32), "y_std": np.zeros(len(TARGETS), np.float32)}}
    if prior_logos:
        template["prior"] = {"stats": np.zeros((prior_logos, n_stats), np.float32),
                             "curves": np.zeros((prior_logos, len(candidates)), np.float32)}
    try:
        with ocp.StandardCheckpointer() as ckptr:
            tree = ckptr.restore(run_dir / SETTINGS_MODEL, _abstract(template))
    except Exception as e:  # Orbax raises many types for a missing or damaged folder
        raise SettingsRunError(f"{run_dir / SETTINGS_MODEL}: cannot be read ({type(e).__name__}: "
                               f"{str(e).splitlines()[0][:160]})") from None
    norm = {k: np.asarray(v, np.float32) for k, v in tree["norm"].items()}
    prior = {}
    if prior_logos:
        prior = dict(prior_stats=np.asarray(tree["prior"]["stats"]), prior_curves=np.asarray(tree["prior"]["curves"]),
                     neighbours=int(meta["neighbours"]), prior_weight=float(meta["prior_weight"]),
                     prior_anchor=str(meta.get("prior_anchor", "mean")))
    return SettingsModel(spec, tree["head"], tree["cond"], candidates=candidates, sim_cap=sim_cap, **norm, **prior)


def _save_head(out: Path, tree: dict) -> None:
    path = out / "setting_head"
    with _writing(out, "the trained statistics head (setting_head/)"), ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, tree)


def _load_head(out: Path, template: dict) -> dict | None:
    path = out / "setting_head"
    if not path.is_dir():
        return None
    with ocp.StandardCheckpointer() as ckptr:
        return ckptr.restore(path, _abstract(template))


def _check_config(out: Path, cfg: SettingsRunConfig, resume: bool) -> None:
    """Writes ``settings_config.json``; a folder holding another run is refused unless ``resume``,
    and a resumed run must keep its flags (the message names those that differ)."""
    path = out / CONFIG_FILE
    now = cfg.to_json()
    if path.is_file():
        if not resume:
            raise SettingsRunError(f"{out} already holds a settings run; continue it with --resume, or choose "
                                   "another --out")
        try:
            before = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise SettingsRunError(f"{path}: unreadable ({e})") from None
        # a key the run's code did not yet write reads as its default today
        defaults = SettingsRunConfig().to_json()
        changed = sorted(k for k in now if before.get(k, defaults[k]) != now[k])
        if changed:
            raise SettingsRunError(f"--resume cannot change {', '.join(changed)} of the run in {out} "
                                   "(start a new run with another --out)")
        return
    if resume:
        raise SettingsRunError(f"--resume: {out} holds no settings run to continue ({CONFIG_FILE} is missing)")
    if out.is_dir() and any(out.iterdir()):
        raise SettingsRunError(f"{out} is not empty and holds no settings run; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(now, indent=2) + "\n")


# -- a run ---------------------------------------------------------------------------------------------


def fit_settings_model(out: Path | None, cfg: SettingsRunConfig, cache_dir, train: dict, log=None) -> SettingsModel:
    """The settings model trained on the rows ``train``. With ``out`` its parts are written as they
    are trained (``setting_head/``, ``cond_map_checkpoints/``) and read back by a continued run."""
    stats_of = image_table(train["image"], cache_dir)
    stats = np.stack([stats_of[p] for p in train["image"]])
    mean, std = stats.mean(0), stats.std(0) + 1e-6
    y = np.stack([train[t] for t in TARGETS], 1)
    y_mean, y_std = y.mean(0), y.std(0) + 1e-6
    z = np.clip((stats - mean) / std, -5, 5).astype(np.float32)
    enc = encode_settings(train["setting"])
    t = time.perf_counter()
    head = None if out is None else _load_head(out, init_setting_model(stats.shape[1]))
    if head is None:
        head = train_setting_head(z, enc, ((y - y_mean) / y_std).astype(np.float32), train["image"], seed=cfg.seed,
                                  within=cfg.within, epochs=cfg.head_epochs)
        if out is not None:
            _save_head(out, head)
        if log:
            log(f"statistics head trained ({cfg.head_epochs} epochs) in {time.perf_counter() - t:.0f}s")
    spec = MapNet()
    pixels, targets, weights, encs = map_targets(train, cache_dir, spec, log)
    if not pixels:
        raise SettingsRunError("the conditioned map network has nothing to train on: no training logo has two "
                               "converted settings")
    t = time.perf_counter()
    ckpt = None if out is None else MapNetCheckpoints(out, every=map_checkpoint_interval(cfg.cond_steps),
                                                      folder="cond_map_checkpoints")
    try:
        cond = train_conditioned_map(pixels, targets, weights, encs, cfg.cond_steps, cfg.seed, spec, log=log,
                                     checkpoints=ckpt)
    finally:
        if ckpt is not None:
            ckpt.close()
    if log:
        log(f"conditioned map network trained on {len(pixels)} logos ({sum(len(t_) for t_ in targets)} conversions) "
            f"in {time.perf_counter() - t:.0f}s")
    prior = neighbour_prior(train, stats_of, cfg.candidates) if cfg.prior_weight else None
    if prior is not None:  # kept standardised, as the image's statistics are compared with them
        prior = (np.clip((prior[0] - mean) / std, -5, 5).astype(np.float32), prior[1].astype(np.float32))
    model = SettingsModel(spec, jax.device_get(head), jax.device_get(cond), mean.astype(np.float32),
                          std.astype(np.float32), y_mean.astype(np.float32), y_std.astype(np.float32), cfg.candidates,
                          *(prior if prior is not None else (None, None)), neighbours=cfg.neighbours,
                          prior_weight=cfg.prior_weight if prior is not None else 0.0, prior_anchor=cfg.prior_anchor,
                          sim_cap=cfg.sim_cap)
    if log and prior is not None:
        log(f"neighbour prior: {len(prior[0])} training logos converted with every candidate")
    if out is not None:
        save_settings_model(out, model)
        ckpt.remove()
        shutil.rmtree(out / "setting_head", ignore_errors=True)
    return model


def train_settings_run(out: str | Path, cfg: SettingsRunConfig = SettingsRunConfig(), cache_dir=None,
                       resume: bool = False, sources: dict | None = None, report: bool = True, log=None) -> dict:
    """A whole settings run in ``out``: data (built and cached on first use), the model (continued
    from what a killed run wrote), then the held-out report and selection logos scored
    (:func:`ssimjax.evaluate.settings_eval.evaluate_settings_model`). ``sources`` maps a role
    (``train``, ``selection``, ``report``) to icon sets (default: the split's). Returns the summary."""
    from ssimjax.evaluate.settings_eval import evaluate_settings_model, write_settings_report
    from ssimjax.features.cache import default_cache_dir
    from ssimjax.train.checkpoint import remove_unfinished

    out = Path(out).absolute()
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    sources = sources or {}
    _check_config(out, cfg, resume)
    remove_unfinished(out)
    timings, t0 = {}, time.perf_counter()
    train = training_rows(cfg, cache_dir, sources.get("train"), log)
    held = {role: held_out_rows(cfg, role, cache_dir, sources.get(role), log) for role in ("report", "selection")}
    timings["data_s"] = time.perf_counter() - t0
    t = time.perf_counter()
    model = load_settings_model(out) if is_settings_run(out) else fit_settings_model(out, cfg, cache_dir, train, log)
    timings["train_s"] = time.perf_counter() - t
    results = {}
    for role, rows in held.items():
        t = time.perf_counter()
        results[role] = evaluate_settings_model(model, rows, cfg.min_ssim, cfg.margin)
        timings[f"evaluate_{role}_s"] = time.perf_counter() - t
    summary = dict(kind="vtracer-settings", config=cfg.to_json(), training_logos=len(set(train["image"])),
                   training_rows=len(train["image"]), held_out={r: v["metrics"] for r, v in results.items()},
                   timings={k: round(v, 1) for k, v in timings.items()})
    write_settings_report(out, summary, results, plots=report)
    return summary
