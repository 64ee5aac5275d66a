"""Where VTracer's conversion loses SSIM, learned per pixel: a small fully convolutional network at
the image's own resolution, trained on the real pipeline's SSIM maps (one target per cell of
``cell`` x ``cell`` pixels instead of one per image), whose mean over an image predicts the image's
SSIM.

Part of the default model (``TrainConfig.map_net``): trained first, on the training rows' maps,
then frozen; its image score (:data:`MAP_SCORE_NAME`) joins the image statistics as one more MLP
input. The network sees the image as a cell x cell
space-to-depth stack (12 channels at half resolution for 2x2 cells, so thin lines are not lost), then dilated
3x3 convolutions; it is applied with VALID padding to tiles that carry ``margin`` pixels of context
on each side, so tiled prediction equals prediction on the whole (edge-extended) image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .config import MAP_CROP, MAP_STEPS
from .data import DataError, open_image, read_file, rgb_pixels
from .pipeline import SSIM_MAP_BORDER, conversion_ssim_map, run_jobs, save_ssim_map, ssim_map_path

# The map score's name among the MLP's inputs (after the image statistics).
MAP_SCORE_NAME = "map_score"


@dataclass(frozen=True)
class MapNet:
    channels: int = 16
    dilations: tuple = (1, 2, 4, 2, 1)
    cell: int = 2

    @property
    def margin(self) -> int:
        """Pixels of context each side that one output cell needs (at full resolution)."""
        return self.cell * sum(self.dilations)


def map_spec(config) -> MapNet:
    """The map network a :class:`ssimjax.config.TrainConfig` describes."""
    return MapNet(channels=config.map_channels)


def init_map_net(spec: MapNet, seed: int = 0) -> list:
    key = jax.random.PRNGKey(seed)
    params, cin = [], 3 * spec.cell ** 2
    for _ in spec.dilations:
        key, k = jax.random.split(key)
        params.append({"w": jax.random.normal(k, (3, 3, cin, spec.channels)) * np.sqrt(2.0 / (9 * cin)),
                       "b": jnp.zeros(spec.channels)})
        cin = spec.channels
    key, k = jax.random.split(key)
    # Starts near a typical logo's SSIM, so early steps learn structure rather than the offset.
    params.append({"w": jax.random.normal(k, (cin, 1)) * 0.01, "b": jnp.full((1,), 0.9)})
    return params


def space_to_depth(x, k: int):
    n, h, w, c = x.shape
    return x.reshape(n, h // k, k, w // k, k, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, h // k, w // k, k * k * c)


def map_net_apply(params: list, spec: MapNet, x):
    """Predicted SSIM per cell, (N, H/cell, W/cell), of ``x`` (N, H + 2 margin, W + 2 margin, 3) in
    [0, 1] with H, W multiples of ``spec.cell``."""
    x = space_to_depth(x, spec.cell)
    for layer, d in zip(params[:-1], spec.dilations):
        x = jax.lax.conv_general_dilated(x, layer["w"], (1, 1), "VALID", rhs_dilation=(d, d),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        x = jax.nn.relu(x + layer["b"])
    return (x @ params[-1]["w"] + params[-1]["b"])[..., 0]


def cell_targets(ssim_map: np.ndarray, cell: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``(target, weight)`` per cell x cell block of a full SSIM map: the mean over the block's
    pixels that count toward the image's SSIM (not within ``SSIM_MAP_BORDER`` of the edge), and
    their number. A height or width that is not a multiple of ``cell`` gets partly empty last cells."""
    h, w = ssim_map.shape
    counts = np.zeros((-(-h // cell) * cell, -(-w // cell) * cell), np.float32)
    values = np.zeros_like(counts)
    b = SSIM_MAP_BORDER
    counts[b:h - b, b:w - b] = 1.0
    values[:h, :w] = ssim_map * counts[:h, :w]
    pool = lambda a: a.reshape(a.shape[0] // cell, cell, a.shape[1] // cell, cell).sum((1, 3))  # noqa: E731
    weight = pool(counts)
    return (pool(values) / np.maximum(weight, 1.0)).astype(np.float32), weight


def cell_weights(height: int, width: int, cell: int) -> np.ndarray:
    """How many pixels of each cell count toward an image's SSIM (:func:`cell_targets`' weight)."""
    return cell_targets(np.zeros((height, width), np.float32), cell)[1]


def score_from_cells(cells: np.ndarray, height: int, width: int, cell: int) -> float:
    """An image's predicted SSIM from its predicted cells: averaged as scikit-image averages the
    real map (pixels within ``SSIM_MAP_BORDER`` of the edge left out). Shared with the torch model."""
    weight = cell_weights(height, width, cell)
    return float((cells * weight).sum() / max(weight.sum(), 1.0))


def crop(image: np.ndarray, y0: int, x0: int, size: int, margin: int) -> np.ndarray:
    """The ``size + 2 margin`` square of ``image`` (H, W, 3) whose output part starts at (y0, x0);
    outside the image its edge pixels extend (as in training and prediction alike)."""
    h, w = image.shape[:2]
    rows = np.clip(np.arange(y0 - margin, y0 + size + margin), 0, h - 1)
    cols = np.clip(np.arange(x0 - margin, x0 + size + margin), 0, w - 1)
    return image[rows[:, None], cols[None, :]]


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


def _apply_uint8(params, spec: MapNet, x_uint8):
    return map_net_apply(params, spec, x_uint8.astype(jnp.float32) / 255.0)


# One compiled forward per network shape and tile batch, kept across calls.
_forward = jax.jit(_apply_uint8, static_argnums=1)


def _squared_error_sum(params, spec: MapNet, x_uint8, target, weight):
    return jnp.sum(weight * (_apply_uint8(params, spec, x_uint8) - target) ** 2)


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
                  seed: int = 0, micro: int = 8, log=None) -> tuple[list, list]:
    """``(params, losses)``: the map network trained on uint8 RGB images and their SSIM maps
    (AdamW, cosine decay), one jit-compiled step over ``batch`` crops taken ``micro`` at a time;
    crops drawn from ``seed``."""
    if crop_size % spec.cell:
        raise ValueError(f"crop_size must be a multiple of the cell, {spec.cell} (got {crop_size})")
    targets = [cell_targets(m, spec.cell) for m in ssim_maps]
    opt = optax.adamw(optax.cosine_decay_schedule(learning_rate, steps), weight_decay=1e-4)
    params = init_map_net(spec, seed)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, x, t, w):
        loss, grads = map_loss_and_grad(params, spec, x, t, w, micro)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    losses = []
    for i in range(steps):
        x, t, w = sample_batch(images, targets, rng, batch, crop_size, spec)
        params, opt_state, loss = step(params, opt_state, x, t, w)
        losses.append(loss)
        if log and (i + 1) % max(1, steps // 5) == 0:
            log(f"map network step {i + 1}/{steps}: loss {float(np.mean(losses[-50:])):.5f}")
    return params, [float(v) for v in losses]


def predict_maps(params: list, spec: MapNet, images: Sequence[np.ndarray], tile: int = 128,
                 batch: int = 4) -> list[np.ndarray]:
    """The predicted per-cell SSIM map of each uint8 RGB image, (ceil(H/cell), ceil(W/cell)),
    computed tile by tile (one compiled shape; a few tiles per call, as XLA's CPU convolutions
    are fastest per pixel on a small working set)."""
    c = spec.cell
    if tile % c:
        raise ValueError(f"tile must be a multiple of the cell, {c} (got {tile})")
    jobs = [(k, y0, x0) for k, img in enumerate(images)
            for y0 in range(0, img.shape[0], tile) for x0 in range(0, img.shape[1], tile)]
    maps = [np.zeros((-(-img.shape[0] // c), -(-img.shape[1] // c)), np.float32) for img in images]
    for start in range(0, len(jobs), batch):
        part = jobs[start:start + batch]
        x = np.stack([crop(images[k], y0, x0, tile, spec.margin) for k, y0, x0 in part])
        if len(part) < batch:  # one compiled shape: pad the last batch
            x = np.concatenate([x, np.zeros((batch - len(part),) + x.shape[1:], x.dtype)])
        out = np.asarray(_forward(params, spec, x))
        for (k, y0, x0), cells in zip(part, out):
            dst = maps[k][y0 // c:y0 // c + tile // c, x0 // c:x0 // c + tile // c]
            dst[...] = cells[:dst.shape[0], :dst.shape[1]]
    return maps


def map_scores(params: list, spec: MapNet, images: Sequence[np.ndarray], **kw) -> np.ndarray:
    """Each image's predicted SSIM: its predicted map averaged as scikit-image averages the real
    one (pixels within ``SSIM_MAP_BORDER`` of the edge left out)."""
    return np.asarray([score_from_cells(cells, *img.shape[:2], spec.cell)
                       for img, cells in zip(images, predict_maps(params, spec, images, **kw))], np.float32)


@dataclass(frozen=True, eq=False)
class MapModel:
    """A trained map network: its shape and weights."""

    spec: MapNet
    params: list

    def score(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Each uint8 RGB image's predicted SSIM (:func:`map_scores`)."""
        return map_scores(self.params, self.spec, images)


def score_files(model: MapModel, paths: Sequence[str | Path], chunk: int = 64) -> np.ndarray:
    """The map score of each image file, decoded ``chunk`` at a time."""
    out = [model.score([rgb_pixels(open_image(read_file(p)[0])) for p in paths[i:i + chunk]])
           for i in range(0, len(paths), chunk)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def with_map_scores(stats: np.ndarray, paths: Sequence[str | Path], model: MapModel) -> np.ndarray:
    """Image statistics (N, S) of the image files ``paths`` with each one's map score appended."""
    return np.concatenate([stats, score_files(model, list(paths))[:, None]], axis=1).astype(np.float32)


def _ssim_map_job(job: tuple) -> tuple:
    """``(sha, map or None)``: the real pipeline's SSIM map of one image file, float16 (a
    worker-process job); None where the pipeline cannot convert it (e.g. smaller than SSIM's
    window)."""
    sha, path = job
    try:
        return sha, conversion_ssim_map(open_image(read_file(path)[0]))[1].astype(np.float16)
    except Exception:  # one image VTracer, resvg or SSIM refuse must not stop the others
        return sha, None


def cached_ssim_maps(paths: Sequence[str | Path], shas: Sequence[str], cache_dir: str | Path, log=None) -> list:
    """Every image's real SSIM map (VTracer, resvg, SSIM), cached by the image file's sha256
    (``shas``; :func:`ssimjax.pipeline.ssim_map_path`): the built-in real-logo set stores them as
    it labels its images; others are computed here over every core on first use. None for an
    image the pipeline cannot convert."""
    todo = sorted({(sha, str(p)) for sha, p in zip(shas, paths) if not ssim_map_path(cache_dir, sha).is_file()})
    failed = set()
    if todo:
        t = time.perf_counter()
        for sha, m in run_jobs(_ssim_map_job, todo):
            if m is None:
                failed.add(sha)
            else:
                save_ssim_map(cache_dir, sha, m)
        if log:
            log(f"SSIM maps of {len(todo)} images computed in {time.perf_counter() - t:.0f}s")
    return [None if sha in failed else np.load(ssim_map_path(cache_dir, sha))["map"].astype(np.float32)
            for sha in shas]


def read_pixels_and_shas(paths: Sequence[str | Path]) -> tuple[list, list]:
    """Each image file decoded as the map network sees it (:func:`ssimjax.data.rgb_pixels`), and
    its sha256 (the SSIM-map cache's key); every file read once."""
    pixels, shas = [], []
    for p in paths:
        raw, sha = read_file(p)
        pixels.append(rgb_pixels(open_image(raw)))
        shas.append(sha)
    return pixels, shas


def train_map_model(pixels: Sequence[np.ndarray], maps: Sequence[np.ndarray | None], spec: MapNet,
                    steps: int = MAP_STEPS, seed: int = 0, log=None, paths: Sequence = (),
                    crop_size: int = MAP_CROP) -> MapModel:
    """:func:`train_map_net` on the images that have a map (None: the pipeline could not convert
    it), those left out counted in the log; a :class:`ssimjax.data.DataError` when none has one."""
    keep = [i for i, m in enumerate(maps) if m is not None]
    if not keep:
        example = f" (e.g. {paths[0]})" if len(paths) else ""
        raise DataError("the SSIM-map network has nothing to train on: the pipeline converts none of the "
                        f"{len(maps)} training images{example}; train with --no-map-net")
    if len(keep) < len(maps) and log:
        log(f"{len(maps) - len(keep)} training images the pipeline cannot convert (e.g. smaller than SSIM's "
            "11x11 window) are left out of the map network's training")
    params, _ = train_map_net([pixels[i] for i in keep], [maps[i] for i in keep], spec, steps=steps, seed=seed,
                              crop_size=crop_size, log=log)
    return MapModel(spec, params)


def fit_map_model(paths: Sequence[str | Path], spec: MapNet, cache_dir: str | Path, steps: int = MAP_STEPS,
                  seed: int = 0, log=None, crop_size: int = MAP_CROP) -> MapModel:
    """A map network trained on the image files ``paths`` (the training rows) and their real SSIM
    maps (:func:`cached_ssim_maps`)."""
    pixels, shas = read_pixels_and_shas(paths)
    return train_map_model(pixels, cached_ssim_maps(paths, shas, cache_dir, log), spec, steps, seed, log, paths,
                           crop_size)
