"""Training the SSIM-map network (:mod:`ssimjax.models.mapnet`): random crops of the training
images against the real pipeline's per-pixel SSIM maps (computed over every core and cached), a
pixel-weighted squared error, AdamW with cosine decay, one compiled step per batch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssimjax.config import MAP_CROP, MAP_STEPS
from ssimjax.data.images import in_threads, rgb_pixels_and_sha
from ssimjax.data.labelling import load_ssim_map, run_jobs, save_ssim_map, ssim_map_job
from ssimjax.data.manifest import DataError
from ssimjax.files import file_lock
from ssimjax.models.mapnet import MapModel, MapNet, apply_uint8, cell_targets, crop, init_map_net
from ssimjax.train.checkpoint import checkpoint_if_due, resume_training


def _cells(a: np.ndarray, y0: int, x0: int, size: int, cell: int) -> np.ndarray:
    """``size/cell`` square of a per-cell array from cell (y0/cell, x0/cell), zero beyond it."""
    n = size // cell
    out = np.zeros((n, n), np.float32)
    part = a[y0 // cell:y0 // cell + n, x0 // cell:x0 // cell + n]
    out[:part.shape[0], :part.shape[1]] = part
    return out


def sample_batch(images: Sequence[np.ndarray], targets: Sequence[tuple[np.ndarray, np.ndarray]],
                 rng: np.random.Generator, batch: int, size: int, spec: MapNet):
    """Random crops: each of ``batch`` images drawn uniformly, an offset (a multiple of the cell)
    drawn uniformly."""
    xs, ts, ws = [], [], []
    c = spec.cell
    for i in rng.integers(0, len(images), batch):
        h, w = images[i].shape[:2]
        y0 = c * int(rng.integers(0, max(h - size, 0) // c + 1))
        x0 = c * int(rng.integers(0, max(w - size, 0) // c + 1))
        xs.append(crop(images[i], y0, x0, size, spec.margin))
        ts.append(_cells(targets[i][0], y0, x0, size, c))
        ws.append(_cells(targets[i][1], y0, x0, size, c))
    return np.stack(xs), np.stack(ts), np.stack(ws)


def _squared_error_sum(params, spec: MapNet, x_uint8, target, weight):
    return jnp.sum(weight * (apply_uint8(params, spec, x_uint8) - target) ** 2)


def map_loss(params, spec: MapNet, x_uint8, target, weight):
    """Pixel-weighted mean squared error of the predicted cells."""
    return _squared_error_sum(params, spec, x_uint8, target, weight) / jnp.maximum(weight.sum(), 1.0)


def map_loss_and_grad(params, spec: MapNet, x_uint8, target, weight, micro: int):
    """``(loss, grads)`` of :func:`map_loss` over the whole batch, computed ``micro`` crops at a
    time and summed: the same loss and gradient (up to summation order). XLA's CPU convolutions
    run several times faster per pixel on a few crops than on 32 at once (their working set then
    fits the caches), so this is what makes the network affordable here."""
    n = x_uint8.shape[0]
    if n % micro:
        raise ValueError(f"the batch ({n}) must be a multiple of the micro-batch ({micro})")
    total = jnp.maximum(weight.sum(), 1.0)
    loss, grads = 0.0, jax.tree_util.tree_map(jnp.zeros_like, params)
    # A Python loop (unrolled in the compiled step): under lax.scan XLA's CPU backend runs the
    # convolutions several times slower.
    for i in range(0, n, micro):
        part = slice(i, i + micro)
        l, g = jax.value_and_grad(_squared_error_sum)(params, spec, x_uint8[part], target[part], weight[part])
        loss, grads = loss + l, jax.tree_util.tree_map(jnp.add, grads, g)
    return loss / total, jax.tree_util.tree_map(lambda g: g / total, grads)


def train_map_net(images: Sequence[np.ndarray], ssim_maps: Sequence[np.ndarray], spec: MapNet = MapNet(),
                  steps: int = MAP_STEPS, batch: int = 32, crop_size: int = MAP_CROP, learning_rate: float = 2e-3,
                  seed: int = 0, micro: int = 8, log=None, checkpoints=None) -> tuple[list, list]:
    """``(params, losses)``: the map network trained on uint8 RGB images and their SSIM maps
    (AdamW, cosine decay), one jit-compiled step over ``batch`` crops taken ``micro`` at a time;
    crops drawn from ``seed``. With ``checkpoints`` (a
    :class:`ssimjax.train.checkpoint.MapNetCheckpoints`) the training continues from the latest one
    and is saved every ``checkpoints.every`` steps: the result equals an uninterrupted training's."""
    if crop_size % spec.cell:
        raise ValueError(f"crop_size must be a multiple of the cell, {spec.cell} (got {crop_size})")
    targets = in_threads(lambda m: cell_targets(m, spec.cell), ssim_maps)  # NumPy releases the GIL
    opt = optax.adamw(optax.cosine_decay_schedule(learning_rate, steps), weight_decay=1e-4)
    params = init_map_net(spec, seed)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, x, t, w):
        loss, grads = map_loss_and_grad(params, spec, x, t, w, micro)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    start, tree, losses = resume_training(checkpoints, {"params": params, "opt_state": opt_state}, rng, steps,
                                          "map network", log)
    params, opt_state = tree["params"], tree["opt_state"]
    for i in range(start, steps):
        x, t, w = sample_batch(images, targets, rng, batch, crop_size, spec)
        params, opt_state, loss = step(params, opt_state, x, t, w)
        losses.append(loss)
        if log and (i + 1) % max(1, steps // 5) == 0:
            log(f"map network step {i + 1}/{steps}: loss {float(np.mean(np.asarray(losses[-50:], np.float32))):.5f}")
        losses = checkpoint_if_due(checkpoints, i + 1, steps, {"params": params, "opt_state": opt_state}, rng, losses)
    return params, [float(v) for v in losses]


def cached_ssim_maps(paths: Sequence[str | Path], shas: Sequence[str], cache_dir: str | Path, log=None) -> list:
    """Every image's real SSIM map (VTracer, resvg, SSIM), cached by the image file's sha256
    (``shas``; :func:`ssimjax.data.labelling.ssim_map_path`): the built-in real-logo set stores them as
    it labels its images; others are computed here over every core on first use (one process at a
    time: a second run sharing the cache waits, then reads them). None for an image the pipeline
    cannot convert."""
    unique = sorted(set(shas))
    maps = dict(zip(unique, in_threads(lambda sha: load_ssim_map(cache_dir, sha), unique)))
    failed = set()
    if any(m is None for m in maps.values()):
        with file_lock(Path(cache_dir) / "ssim-maps" / ".lock", "computing SSIM maps", log):
            path_of = dict(zip(shas, map(str, paths)))
            # Read again: another process may have computed them while this one waited.
            maps.update({sha: load_ssim_map(cache_dir, sha) for sha, m in maps.items() if m is None})
            todo = sorted((sha, path_of[sha]) for sha, m in maps.items() if m is None)
            t = time.perf_counter()
            for sha, m in run_jobs(ssim_map_job, todo) if todo else ():
                if m is None:
                    failed.add(sha)
                else:
                    save_ssim_map(cache_dir, sha, m)
                    maps[sha] = m
            if log and todo:
                log(f"SSIM maps of {len(todo)} images computed in {time.perf_counter() - t:.0f}s")
    return [None if sha in failed else maps[sha].astype(np.float32) for sha in shas]


def read_pixels_and_shas(paths: Sequence[str | Path]) -> tuple[list, list]:
    """Each image file decoded as the map network sees it (:func:`ssimjax.data.images.rgb_pixels`), and
    its sha256 (the SSIM-map cache's key); every file read once."""
    read = in_threads(rgb_pixels_and_sha, paths)
    return [px for px, _ in read], [sha for _, sha in read]


def train_map_model(pixels: Sequence[np.ndarray], maps: Sequence[np.ndarray | None], spec: MapNet,
                    steps: int = MAP_STEPS, seed: int = 0, log=None, paths: Sequence = (),
                    crop_size: int = MAP_CROP, checkpoints=None) -> MapModel:
    """:func:`train_map_net` on the images that have a map (None: the pipeline could not convert
    it), those left out counted in the log; a :class:`ssimjax.data.manifest.DataError` when none has one."""
    keep = [i for i, m in enumerate(maps) if m is not None]
    if not keep:
        example = f" (e.g. {paths[0]})" if len(paths) else ""
        raise DataError("the SSIM-map network has nothing to train on: the pipeline converts none of the "
                        f"{len(maps)} training images{example}; train with --no-map-net")
    if len(keep) < len(maps) and log:
        log(f"{len(maps) - len(keep)} training images the pipeline cannot convert (e.g. smaller than SSIM's "
            "11x11 window) are left out of the map network's training")
    params, _ = train_map_net([pixels[i] for i in keep], [maps[i] for i in keep], spec, steps=steps, seed=seed,
                              crop_size=crop_size, log=log, checkpoints=checkpoints)
    return MapModel(spec, params)


def fit_map_model(paths: Sequence[str | Path], spec: MapNet, cache_dir: str | Path, steps: int = MAP_STEPS,
                  seed: int = 0, log=None, crop_size: int = MAP_CROP, checkpoints=None, decoded: dict | None = None
                  ) -> MapModel:
    """A map network trained on the image files ``paths`` (the training rows) and their real SSIM
    maps (:func:`cached_ssim_maps`), continued from and saved to ``checkpoints`` when given. Given
    a dict ``decoded``, each file's decoded pixels are left there by path (``str``), for scoring
    without decoding again."""
    pixels, shas = read_pixels_and_shas(paths)
    if decoded is not None:
        decoded.update(zip(map(str, paths), pixels))
    return train_map_model(pixels, cached_ssim_maps(paths, shas, cache_dir, log), spec, steps, seed, log, paths,
                           crop_size, checkpoints)
