"""Where VTracer's conversion loses SSIM, learned per pixel: a small fully convolutional network at
the image's own resolution, trained on the real pipeline's SSIM maps (one target per cell of
``cell`` x ``cell`` pixels instead of one per image), whose mean over an image predicts the image's
SSIM.

Part of the default model (``TrainConfig.map_net``): trained first, on the training rows' maps,
then frozen; its image score (:data:`MAP_SCORE_NAME`) joins the image statistics as one more MLP
input. The network sees the image as a cell x cell space-to-depth stack (12 channels at half
resolution for 2x2 cells, so thin lines are not lost), then dilated 3x3 convolutions; it is
applied with VALID padding to tiles that carry ``margin`` pixels of context on each side, so tiled
prediction equals prediction on the whole (edge-extended) image. Its training is
:mod:`ssimjax.train.mapnet`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ssimjax.data.images import in_threads, open_image, read_file, rgb_pixels
from ssimjax.data.labelling import SSIM_MAP_BORDER

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


def map_net_hidden(layers: list, spec: MapNet, x):
    """The last hidden activations (N, H/cell, W/cell, channels) of the convolutional ``layers``
    (the network's parameters but its output layer) on ``x`` as :func:`map_net_apply` takes it."""
    x = space_to_depth(x, spec.cell)
    for layer, d in zip(layers, spec.dilations):
        x = jax.lax.conv_general_dilated(x, layer["w"], (1, 1), "VALID", rhs_dilation=(d, d),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        x = jax.nn.relu(x + layer["b"])
    return x


def map_net_apply(params: list, spec: MapNet, x):
    """Predicted SSIM per cell, (N, H/cell, W/cell), of ``x`` (N, H + 2 margin, W + 2 margin, 3) in
    [0, 1] with H, W multiples of ``spec.cell``."""
    return (map_net_hidden(params[:-1], spec, x) @ params[-1]["w"] + params[-1]["b"])[..., 0]


def _border_counts(n: int, cell: int) -> np.ndarray:
    """Per cell along one axis of ``n`` pixels: how many of its pixels lie ``SSIM_MAP_BORDER`` or
    more from the edge (float32)."""
    inside = np.zeros(-(-n // cell) * cell, np.float32)
    inside[SSIM_MAP_BORDER:n - SSIM_MAP_BORDER] = 1.0
    return inside.reshape(-1, cell).sum(1)


def cell_weights(height: int, width: int, cell: int) -> np.ndarray:
    """How many pixels of each cell count toward an image's SSIM (:func:`cell_targets`' weight).
    The pixels that count form a rectangle, so each cell's count is its row's times its column's."""
    return np.outer(_border_counts(height, cell), _border_counts(width, cell))


def cell_targets(ssim_map: np.ndarray, cell: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``(target, weight)`` per cell x cell block of a full SSIM map: the mean over the block's
    pixels that count toward the image's SSIM (not within ``SSIM_MAP_BORDER`` of the edge), and
    their number. A height or width that is not a multiple of ``cell`` gets partly empty last cells."""
    h, w = ssim_map.shape
    values = np.zeros((-(-h // cell) * cell, -(-w // cell) * cell), np.float32)
    b = SSIM_MAP_BORDER
    values[b:h - b, b:w - b] = ssim_map[b:h - b, b:w - b]
    weight = cell_weights(h, w, cell)
    summed = values.reshape(values.shape[0] // cell, cell, values.shape[1] // cell, cell).sum((1, 3))
    return (summed / np.maximum(weight, 1.0)).astype(np.float32), weight


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


def apply_uint8(params, spec: MapNet, x_uint8):
    return map_net_apply(params, spec, x_uint8.astype(jnp.float32) / 255.0)


# One compiled forward per network shape and tile batch, kept across calls.
_forward = jax.jit(apply_uint8, static_argnums=1)

# The tile sizes prediction chooses from, each with its batch. XLA's CPU convolutions run at about
# the same speed per input pixel at every size (slightly faster on small tiles, whose working set
# fits the caches), so each image takes the size that computes the fewest pixels, its margins and
# the part of its last tiles beyond the image included: a 24 px logo one 32 px tile, a 1024 x 700 one
# twelve 256 px tiles, a 1024 px square one 1024 px tile. A few compiled shapes in all. The 512 and
# 1024 px tiles scored 900 of the default run's training images (125 megapixels) in 13.1 s against
# 15.2-16.3 s without them, the same scores to the bit (8 channels, 2 cores).
TILE_BATCHES = {32: 16, 64: 8, 128: 4, 256: 1, 512: 1, 1024: 1}


def tile_size_for(height: int, width: int, margin: int, sizes=tuple(TILE_BATCHES)) -> int:
    """The tile size of ``sizes`` that computes the fewest pixels for a ``height`` x ``width`` image."""
    return min(sizes, key=lambda t: (-(-height // t)) * (-(-width // t)) * (t + 2 * margin) ** 2)


def tile_batches(images: Sequence[np.ndarray], spec: MapNet, tile: int | None = None, batch: int = 4):
    """``(tile, part, x)`` for every batch of tiles of the images: ``part`` lists each tile's
    ``(image index, y0, x0)``, ``x`` (batch, tile + 2 margin, tile + 2 margin, 3) holds the tiles
    with their context (the image's edge pixels extended beyond it), the last batch of each size
    padded with zeros. Each image is cut into tiles of :func:`tile_size_for`'s size, batched as
    :data:`TILE_BATCHES` says; or, given ``tile``, every image into ``tile`` px tiles, ``batch``
    at a time (one compiled shape)."""
    m = spec.margin
    if tile is None:
        groups: dict[int, list[int]] = {}
        for k, img in enumerate(images):
            groups.setdefault(tile_size_for(*img.shape[:2], m), []).append(k)
        plan = [(t, TILE_BATCHES[t], groups[t]) for t in sorted(groups)]
    else:
        plan = [(tile, batch, list(range(len(images))))]
    for t, b, indices in plan:
        part, tiles = [], []
        for k in indices:
            h, w = images[k].shape[:2]
            padded = np.pad(images[k], ((m, m + -h % t), (m, m + -w % t), (0, 0)), mode="edge")
            for y0 in range(0, h, t):
                for x0 in range(0, w, t):
                    part.append((k, y0, x0))
                    tiles.append(padded[y0:y0 + t + 2 * m, x0:x0 + t + 2 * m])
                    if len(part) == b:
                        yield t, part, np.stack(tiles)
                        part, tiles = [], []
        if part:
            x = np.stack(tiles)
            yield t, part, np.concatenate([x, np.zeros((b - len(part),) + x.shape[1:], x.dtype)])


def predict_maps(params: list, spec: MapNet, images: Sequence[np.ndarray], tile: int | None = None,
                 batch: int = 4) -> list[np.ndarray]:
    """The predicted per-cell SSIM map of each uint8 RGB image, (ceil(H/cell), ceil(W/cell)),
    computed tile by tile (:func:`tile_batches`; the tiles carry their context, so the result is
    the whole image's)."""
    c = spec.cell
    if tile is not None and tile % c:
        raise ValueError(f"tile must be a multiple of the cell, {c} (got {tile})")
    maps = [np.zeros((-(-img.shape[0] // c), -(-img.shape[1] // c)), np.float32) for img in images]

    def place(t, part, out):
        for (k, y0, x0), cells in zip(part, np.asarray(out)):
            dst = maps[k][y0 // c:y0 // c + t // c, x0 // c:x0 // c + t // c]
            dst[...] = cells[:dst.shape[0], :dst.shape[1]]

    pending = None
    for t, part, x in tile_batches(images, spec, tile, batch):
        out = _forward(params, spec, x)  # dispatched: it runs while the next batch is cut
        if pending is not None:
            place(*pending)
        pending = (t, part, out)
    if pending is not None:
        place(*pending)
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


def score_files(model: MapModel, paths: Sequence[str | Path], chunk: int = 256, decoded: dict | None = None
                ) -> np.ndarray:
    """The map score of each image file, decoded ``chunk`` at a time; ``decoded`` maps paths (as
    ``str``) to pixels already decoded (:func:`ssimjax.data.images.rgb_pixels`), used as they are."""
    decoded = decoded or {}

    def pixels(p):
        hit = decoded.get(str(p))
        return hit if hit is not None else rgb_pixels(open_image(read_file(p)[0]))

    out = [model.score(in_threads(pixels, paths[i:i + chunk])) for i in range(0, len(paths), chunk)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def with_map_scores(stats: np.ndarray, paths: Sequence[str | Path], model: MapModel, decoded: dict | None = None
                    ) -> np.ndarray:
    """Image statistics (N, S) of the image files ``paths`` with each one's map score appended
    (``decoded``: :func:`score_files`')."""
    scores = score_files(model, list(paths), decoded=decoded)
    return np.concatenate([stats, scores[:, None]], axis=1).astype(np.float32)
