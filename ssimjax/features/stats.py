"""Image statistics at the image's own resolution, before the 224x224 resize: what the resize hides
and what VTracer's conversion loses (edges, fine texture, colour detail, JPEG noise).

One implementation (NumPy and Pillow, no JAX, no torch) serves training, ``ssimjax predict`` and the
PyTorch deployment (``bridge.QualityPredictionModel.predict_ssim``), so all three compute the same
numbers. Luminance is PIL's ``L`` of the image as the model and the labels see it (transparency
composited on white), in [0, 1].

One statistic is the real pipeline itself, on a thumbnail: ``thumb_ssim`` converts a copy of the
image at most :data:`THUMB_SIDE` px on its long side (VTracer -> resvg -> SSIM, about 7 ms). What
VTracer's clustering does to a logo (merging or dropping whole shapes, which decides the quality of
small images) is read from it rather than guessed; for an image that small already it is the
conversion's own SSIM.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageFilter

from ssimjax.data.images import ImageError, array_image, open_image, read_file, resize_224, rgb_pixels, to_rgb
from ssimjax.data.manifest import DataError

# Standardised statistics are clipped to this many standard deviations (in the model, both
# frameworks): an icon set not trained on can hold values far outside the training range.
STATS_CLIP = 5.0

# Part of every statistics-cache key and of a model that uses them: change it when any changes.
STATS_VERSION = "stats-v3"

STAT_NAMES = (
    "log_pixels",          # log(width * height)
    "log_aspect",          # log(width / height)
    "grad_abs",            # mean |dL/dx| + |dL/dy|
    "grad_abs_half",       # the same at half resolution (box-downsampled)
    "grad_sq",             # mean squared gradient (edge energy)
    "hf_residual_1",       # mean |L - GaussianBlur(L, 1)|
    "hf_residual_2",       # mean |L - GaussianBlur(L, 2)|
    "edge_density",        # share of (interior) pixels where Pillow's FIND_EDGES exceeds 0.1
    "lum_std",             # luminance standard deviation
    "log_colors",          # log(1 + distinct colours at 4 bits per channel)
    "color_entropy",       # entropy (bits) of the 4-bit-per-channel colour histogram
    "dominant_share",      # share of pixels in the most common 4-bit colour
    "alpha_partial",       # share of pixels neither fully transparent nor fully opaque
    "alpha_transparent",   # share of fully transparent pixels
    "blockiness",          # log of JPEG 8x8 block-edge jumps over jumps elsewhere
    "flat_share",          # share of pixels with zero gradient
    "speckle_share",       # share of pixels whose 4-bit colour differs from all four neighbours
    "thumb_ssim",          # the real pipeline's SSIM on a copy at most THUMB_SIDE px on its long side
)

# The settings model (issue 25) reads the statistics before thumb_ssim (the same numbers since
# stats-v2): it was chosen and measured without it.
SETTINGS_STATS = STAT_NAMES.index("thumb_ssim")

# The thumbnail's long side, chosen for cost: on issue 24's selection sets every larger side ranked
# better (48-192 px, docs/quality.md) because more images are then converted whole.
THUMB_SIDE = 64
# scikit-image's SSIM window (SSIM_SETTINGS["win_size"]): a thumbnail keeps at least this short side.
_MIN_SIDE = 11


# Quantities spread over orders of magnitude between a flat icon and a noisy photo: kept as
# log(x + 1e-3), so that a standardised value stays in a sane range on icon sets not trained on.
LOGGED = ("grad_abs", "grad_abs_half", "grad_sq", "hf_residual_1", "hf_residual_2", "edge_density",
          "alpha_partial", "speckle_share")
_LOGGED = [STAT_NAMES.index(n) for n in LOGGED]


def _luminance(rgb: Image.Image) -> np.ndarray:
    return np.asarray(rgb.convert("L"), np.float32) / np.float32(255.0)


def _grad_abs(lum: np.ndarray) -> tuple[float, float, float]:
    gx = np.abs(np.diff(lum, axis=1)) if lum.shape[1] > 1 else np.zeros((lum.shape[0], 1), np.float32)
    gy = np.abs(np.diff(lum, axis=0)) if lum.shape[0] > 1 else np.zeros((1, lum.shape[1]), np.float32)
    mean_abs = float(gx.mean() + gy.mean())
    mean_sq = float(np.square(gx).mean() + np.square(gy).mean())
    h, w = min(gx.shape[0], gy.shape[0]), min(gx.shape[1], gy.shape[1])
    flat = float(np.mean((gx[:h, :w] == 0) & (gy[:h, :w] == 0)))
    return mean_abs, mean_sq, flat


def _blockiness(lum: np.ndarray) -> float:
    h, w = lum.shape
    if w < 17 or h < 17:
        return 0.0
    dx = np.abs(np.diff(lum, axis=1))
    dy = np.abs(np.diff(lum, axis=0))
    on_x = dx[:, 7::8].mean()
    off_x = np.delete(dx, np.s_[7::8], axis=1).mean()
    on_y = dy[7::8, :].mean()
    off_y = np.delete(dy, np.s_[7::8], axis=0).mean()
    # Log of the ratio, with a floor: flat images have no jumps anywhere.
    return float(np.log((on_x + on_y + 1e-3) / (off_x + off_y + 1e-3)))


def thumbnail_ssim(rgb: Image.Image, side: int = THUMB_SIDE, conversion: float | None = None) -> float:
    """The real pipeline's SSIM (:func:`ssimjax.data.labelling.conversion_ssim`) on ``rgb`` resized
    (Lanczos) to at most ``side`` px on its long side, but no less than SSIM's window on its short
    side; on ``rgb`` itself if it is that small. 1.0 for an image too small for SSIM's window, or
    one the pipeline refuses: neither can be scored. ``conversion``: ``rgb``'s own conversion SSIM
    when the caller has it (a data build's label), returned rather than computed again when the
    thumbnail is the image."""
    from ssimjax.data.labelling import conversion_ssim

    w, h = rgb.size
    if min(w, h) < _MIN_SIDE:
        return 1.0
    scale = min(1.0, max(side / max(w, h), _MIN_SIDE / min(w, h)))
    if scale >= 1.0 and conversion is not None:
        return float(conversion)
    if scale < 1.0:
        rgb = rgb.resize((max(_MIN_SIDE, round(w * scale)), max(_MIN_SIDE, round(h * scale))), Image.LANCZOS)
    try:
        return conversion_ssim(rgb)
    except Exception:  # VTracer or resvg refusing a thumbnail must not stop a prediction or a run
        return 1.0


def image_statistics(img: Image.Image, thumb: bool = True, conversion: float | None = None) -> np.ndarray:
    """float32 (len(STAT_NAMES),): the statistics of one decoded image, at its own resolution;
    without ``thumb``, the first :data:`SETTINGS_STATS` (no conversion). ``conversion``: the image's
    own conversion SSIM when known (:func:`thumbnail_ssim`)."""
    w, h = img.size
    alpha = None
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        alpha = np.asarray(img.convert("RGBA").getchannel("A"))
    rgb = to_rgb(img)
    lum = _luminance(rgb)
    grad_abs, grad_sq, flat = _grad_abs(lum)
    half = rgb.resize((max(1, w // 2), max(1, h // 2)), Image.BOX) if min(w, h) >= 4 else rgb
    grad_half = _grad_abs(_luminance(half))[0]
    lum8 = rgb.convert("L")
    res1 = float(np.abs(lum - _luminance(lum8.filter(ImageFilter.GaussianBlur(1)))).mean())
    res2 = float(np.abs(lum - _luminance(lum8.filter(ImageFilter.GaussianBlur(2)))).mean())
    # Pillow's kernel filters copy the 1-px border unfiltered: only the interior counts.
    found = np.asarray(lum8.filter(ImageFilter.FIND_EDGES), np.float32)[1:-1, 1:-1] / 255.0 > 0.1
    edges = float(found.mean()) if found.size else 0.0

    px = np.asarray(rgb, np.uint8)
    q4 = (px >> 4).astype(np.int32)
    codes = (q4[..., 0] << 8) | (q4[..., 1] << 4) | q4[..., 2]
    counts = np.bincount(codes.ravel(), minlength=4096).astype(np.float64)
    p = counts[counts > 0] / codes.size
    entropy = float(-(p * np.log2(p)).sum())
    c = np.pad(codes, 1, mode="edge")
    centre = c[1:-1, 1:-1]
    speckle = float(np.mean((centre != c[:-2, 1:-1]) & (centre != c[2:, 1:-1]) &
                            (centre != c[1:-1, :-2]) & (centre != c[1:-1, 2:])))

    if alpha is None:
        partial = transparent = 0.0
    else:
        partial = float(np.mean((alpha > 0) & (alpha < 255)))
        transparent = float(np.mean(alpha == 0))
    values = [
        np.log(w * h), np.log(w / h), grad_abs, grad_half, grad_sq, res1, res2, edges, float(lum.std()),
        np.log1p(len(p)), entropy, float(p.max()), partial, transparent, _blockiness(lum), flat, speckle,
    ] + ([thumbnail_ssim(rgb, conversion=conversion)] if thumb else [])
    out = np.asarray(values, np.float64)
    out[_LOGGED] = np.log(out[_LOGGED] + 1e-3)
    return out.astype(np.float32)


def file_statistics(job: tuple[str, bytes]) -> tuple[str, np.ndarray]:
    """``(sha, statistics)`` of one image file's bytes: a worker process's job (this module imports
    no JAX, so workers start quickly)."""
    sha, raw = job
    return sha, image_statistics(open_image(raw))


def image_inputs(images: Sequence[str | Path | Image.Image | np.ndarray], with_pixels: bool = True,
                 with_stats: bool = True, map_score=None) -> dict:
    """The one path from images to the model's inputs, shared by ``ssimjax predict`` and the
    PyTorch deployment: ``image`` uint8 (N, 224, 224, 3) as the model sees it, and ``stats``
    (N, S) at each image's own resolution, each when asked. An image is a file path, a PIL image
    or a uint8 array ((H, W), (H, W, 3) or (H, W, 4)) at its own resolution. ``map_score`` (with
    ``with_stats``): a function from uint8 RGB images at their own resolution to one score each
    (the learned map network, JAX's or the deployment's), appended as the last statistic. Raises
    :class:`ssimjax.data.manifest.DataError` naming the file (or the array's index) that cannot be
    read."""
    decoded = []
    for i, item in enumerate(images):
        try:
            if isinstance(item, Image.Image):
                decoded.append(item)
            elif isinstance(item, np.ndarray):
                decoded.append(array_image(item, f"image {i}"))
            else:
                decoded.append(open_image(read_file(item)[0]))
        except ImageError as e:
            raise DataError(str(e) if isinstance(item, np.ndarray) else f"{item}: {e}") from None
    out = {}
    if with_pixels:
        out["image"] = np.stack([resize_224(img) for img in decoded])
    if with_stats:
        if map_score is None:
            out["stats"] = np.stack([image_statistics(img) for img in decoded])
        else:
            # The map network (XLA's or PyTorch's threads) scores while this thread computes the
            # statistics (NumPy, Pillow, VTracer): both cores busy instead of one at a time. Only
            # arrays cross to the other thread: Pillow's lazy loading is not thread-safe.
            pixels = [rgb_pixels(img) for img in decoded]
            with ThreadPoolExecutor(1) as pool:
                scores = pool.submit(lambda: np.asarray(map_score(pixels), np.float32))
                stats = np.stack([image_statistics(img) for img in decoded])
                out["stats"] = np.concatenate([stats, scores.result().reshape(-1, 1)], axis=1)
    return out
