"""The real labelling pipeline: VTracer converts an image to SVG, resvg renders the SVG at the
original size on white, and scikit-image's ``structural_similarity`` compares render and original
on luminance. Also the worker pool the data builds use.

This module does not import JAX, so worker processes start quickly.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
from PIL import Image

from ssimjax.files import read_entry, write_entry

# Recorded with the labels; VTracer's own defaults (these are the values its Python binding
# uses when a parameter is left out, which is how we call it).
VTRACER_DEFAULTS = dict(
    colormode="color", hierarchical="stacked", mode="spline", filter_speckle=4, color_precision=6,
    layer_difference=16, corner_threshold=60, length_threshold=4.0, max_iterations=10,
    splice_threshold=45, path_precision=8,
)
SSIM_SETTINGS = dict(
    library="scikit-image", function="skimage.metrics.structural_similarity", channel="luminance (PIL 'L')",
    gaussian_weights=True, sigma=1.5, win_size=11, use_sample_covariance=False, data_range=1.0,
)


def vtracer_input(img: Image.Image) -> bytes:
    """The PNG bytes VTracer is given for an image."""
    buf = io.BytesIO()
    # Lossless whatever the level: the fastest that does not make VTracer's decode slower.
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def vectorize(img: Image.Image) -> str:
    """VTracer's SVG of an image, with VTracer's default parameters."""
    import vtracer

    return vtracer.convert_raw_image_to_svg(vtracer_input(img), img_format="png")


def render_svg(svg: str, width: int, height: int) -> Image.Image:
    """resvg's render of an SVG at ``width`` x ``height`` on white, as RGB."""
    import resvg_py

    png = resvg_py.svg_to_bytes(svg_string=svg, background="#ffffff", width=width, height=height,
                                skip_system_fonts=True)
    rendered = Image.open(io.BytesIO(bytes(png)))
    rendered.load()
    if rendered.size != (width, height):
        raise RuntimeError(f"resvg rendered {rendered.size}, expected {(width, height)}")
    white = Image.new("RGBA", rendered.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rendered.convert("RGBA")).convert("RGB")


# scikit-image averages the SSIM map without this many pixels at each edge ((win_size - 1) // 2).
SSIM_MAP_BORDER = 5


def _ssim(a: Image.Image, b: Image.Image, full: bool):
    from skimage.metrics import structural_similarity

    la = np.asarray(a.convert("L"), np.float64) / 255.0
    lb = np.asarray(b.convert("L"), np.float64) / 255.0
    return structural_similarity(la, lb, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, full=full)


def luminance_ssim(a: Image.Image, b: Image.Image) -> float:
    return float(_ssim(a, b, full=False))


def conversion_ssim_map(img: Image.Image) -> tuple[float, np.ndarray]:
    """``(ssim, map)``: the real pipeline's SSIM and its per-pixel map (float32, the image's
    height x width); ``ssim`` is the mean of the map without its ``SSIM_MAP_BORDER``-pixel edge."""
    from ssimjax.data.images import to_rgb

    original = to_rgb(img)
    rendered = render_svg(vectorize(original), original.width, original.height)
    ssim, full = _ssim(original, rendered, full=True)
    return float(ssim), full.astype(np.float32)


def conversion_ssim(img: Image.Image) -> float:
    """The SSIM the real pipeline achieves on ``img``: VTracer -> resvg -> SSIM vs the original."""
    from ssimjax.data.images import to_rgb

    original = to_rgb(img)
    rendered = render_svg(vectorize(original), original.width, original.height)
    return luminance_ssim(original, rendered)


def ssim_map_path(cache_dir: str | Path, image_sha: str) -> Path:
    """Where an image file's SSIM map is cached: ``cache_dir/ssim-maps/<sha256 of the file>.npz.entry``
    (a checksummed entry, :func:`ssimjax.files.write_entry`)."""
    return Path(cache_dir) / "ssim-maps" / f"{image_sha}.npz.entry"


def map_entry(ssim_map: np.ndarray) -> bytes:
    """An SSIM map as a cache entry's payload: float16, compressed (read back by :func:`entry_map`)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, map=np.asarray(ssim_map, np.float16))
    return buf.getvalue()


def entry_map(payload: bytes) -> np.ndarray:
    return np.load(io.BytesIO(payload))["map"]


def save_ssim_map(cache_dir: str | Path, image_sha: str, ssim_map: np.ndarray) -> None:
    """Caches an image file's SSIM map (float16, compressed), atomically and checksummed."""
    write_entry(ssim_map_path(cache_dir, image_sha), map_entry(ssim_map))


def load_ssim_map(cache_dir: str | Path, image_sha: str) -> np.ndarray | None:
    """An image file's cached SSIM map (float16); None when not cached, or damaged (reported and
    removed)."""
    path = ssim_map_path(cache_dir, image_sha)
    payload = read_entry(path)
    if payload is not None:
        return entry_map(payload)
    # A map cached before entries carried a checksum (a plain .npz), kept rather than recomputed.
    legacy = path.with_name(f"{image_sha}.npz")
    try:
        ssim_map = np.load(legacy)["map"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None
    save_ssim_map(cache_dir, image_sha, ssim_map)
    legacy.unlink(missing_ok=True)
    return ssim_map


def ssim_map_job(job: tuple) -> tuple:
    """``(sha, map or None)``: the real pipeline's SSIM map of one image file, float16 (a
    worker-process job); None where the pipeline cannot convert it (e.g. smaller than SSIM's
    window)."""
    from ssimjax.data.images import open_image, read_file

    sha, path = job
    try:
        return sha, conversion_ssim_map(open_image(read_file(path)[0]))[1].astype(np.float16)
    except Exception:  # one image VTracer, resvg or SSIM refuse must not stop the others
        return sha, None


def package_versions(*names: str) -> dict:
    """Installed version of each named distribution (None where it is not installed)."""
    out = {}
    for pkg in names:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def iter_jobs(fn, jobs: list, workers: int | None = None, progress=None, chunks_per_worker: int = 8):
    """``fn(job)`` for each job, yielded as they finish (in any order) from ``workers`` processes
    (default: every core); ``progress(1)`` after each. ``fn`` must be a module-level function."""
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    if workers > 1:
        # spawn, not fork: the parent may already run JAX's threads.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            chunk = max(1, len(jobs) // (workers * chunks_per_worker))
            for r in pool.imap_unordered(fn, jobs, chunksize=chunk):
                yield r
                if progress:
                    progress(1)
    else:
        for job in jobs:
            yield fn(job)
            if progress:
                progress(1)


def run_jobs(fn, jobs: list, workers: int | None = None, progress=None, chunks_per_worker: int = 8) -> list:
    """``[fn(job) for job in jobs]`` over ``workers`` processes, in any order (:func:`iter_jobs`)."""
    return list(iter_jobs(fn, jobs, workers, progress, chunks_per_worker))
