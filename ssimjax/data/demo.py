"""The built-in demo set: generated logo-like images labelled by the real conversion pipeline.

Each image is drawn from its own seed (``(seed, index)``), so a set is reproducible whatever the
number of worker processes. Its label is the SSIM between the image and its vectorised render:
VTracer (default parameters) converts it to SVG, resvg renders the SVG at the original size on
white, and scikit-image's ``structural_similarity`` (Gaussian window, sigma 1.5, i.e. 11x11;
``data_range=1``; population covariance, as Wang et al.) compares the two on luminance (ITU-R
601-2 luma, as PIL's ``convert('L')``).

This module does not import JAX, so worker processes start quickly.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ssimjax.config import DEFAULT_DEMO_COUNT
from ssimjax.data.build import build_cached, resumable_jobs
from ssimjax.data.labelling import SSIM_SETTINGS, VTRACER_DEFAULTS, conversion_ssim, package_versions
from ssimjax.files import write_bytes_atomic, write_csv, write_text_atomic

DEMO_VERSION = 1
KINDS = ("flat", "text", "gradient", "texture", "noisy", "blurred")
WORDS = ("ACME", "Logo", "NOVA", "studio", "Pixel", "ZEN", "Bolt", "Orbit", "Q", "42", "Vect", "Fern")

def _color(rng, dark=False):
    lo, hi = (0, 120) if dark else (0, 256)
    return tuple(int(c) for c in rng.integers(lo, hi, 3))


def _font(rng, size):
    # Pillow's bundled font: no reliance on system fonts.
    return ImageFont.load_default(size=int(size))


def _draw_shapes(draw, rng, w, h, count):
    for _ in range(count):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(w // 8, w // 2 + 2), y0 + rng.integers(h // 8, h // 2 + 2)
        shape = rng.integers(0, 4)
        fill = _color(rng)
        if shape == 0:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif shape == 1:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        elif shape == 2:
            pts = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(rng.integers(3, 7))]
            draw.polygon(pts, fill=fill)
        else:
            draw.line((x0, y0, x1, y1), fill=fill, width=int(rng.integers(2, 9)))


def _draw_text(draw, rng, w, h):
    word = WORDS[rng.integers(0, len(WORDS))]
    size = rng.integers(max(10, h // 8), max(12, h // 3))
    draw.text((int(rng.integers(0, w // 3 + 1)), int(rng.integers(0, h // 2 + 1))), word,
              fill=_color(rng, dark=True), font=_font(rng, size))


def _gradient(rng, w, h):
    c0, c1 = np.array(_color(rng), float), np.array(_color(rng), float)
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    if rng.random() < 0.5:
        angle = rng.uniform(0, np.pi)
        t = (xx * np.cos(angle) + yy * np.sin(angle))
    else:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        t = np.hypot(xx - cx, yy - cy)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
    return (c0 + (c1 - c0) * t[..., None]).astype(np.uint8)


def _texture(rng, w, h):
    # Photographic-looking texture: smooth random fields at a few scales, per channel.
    out = np.zeros((h, w, 3))
    for scale, weight in ((4, 1.0), (16, 0.5), (48, 0.25)):
        small = rng.random((max(2, h // scale), max(2, w // scale), 3))
        up = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC), float)
        out += weight * up
    out = out / 1.75
    return np.clip(out, 0, 255).astype(np.uint8)


def generate_image(seed: int, index: int) -> tuple[Image.Image, str]:
    """The ``index``-th demo image of set ``seed``: ``(RGB image, kind)``."""
    rng = np.random.default_rng([seed, index, DEMO_VERSION])
    w, h = int(rng.integers(96, 257)), int(rng.integers(96, 257))
    kind = KINDS[index % len(KINDS)]
    if kind == "gradient":
        img = Image.fromarray(_gradient(rng, w, h))
    elif kind == "texture":
        img = Image.fromarray(_texture(rng, w, h))
    else:
        img = Image.new("RGB", (w, h), "white" if rng.random() < 0.7 else _color(rng))
    draw = ImageDraw.Draw(img)
    if kind in ("flat", "noisy", "blurred", "gradient"):
        _draw_shapes(draw, rng, w, h, int(rng.integers(1, 6)))
    if kind == "text" or rng.random() < 0.4:
        _draw_text(draw, rng, w, h)
        if kind == "text":
            _draw_shapes(draw, rng, w, h, int(rng.integers(0, 2)))
    if kind == "blurred":
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 4.0))))
    if kind == "noisy" or rng.random() < 0.3:
        sigma = float(rng.uniform(3, 40))
        a = np.asarray(img, float) + rng.normal(0, sigma, (h, w, 3))
        img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    return img, kind


def _make_one(args):
    seed, index, out_dir = args
    img, kind = generate_image(seed, index)
    name = f"images/demo_{index:05d}.png"
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    write_bytes_atomic(Path(out_dir) / name, buf.getvalue())
    return index, [name, conversion_ssim(img), kind], [name]


def make_dataset(out: str | Path, count: int, seed: int = 0, workers: int | None = None, progress=None) -> Path:
    """Generates ``count`` images and writes them with ``labels.csv`` and ``labels_meta.json``.

    Work is spread over ``workers`` processes (default: every core). A build killed halfway
    continues where it stopped when called again with the same folder (:mod:`ssimjax.data.build`).
    Returns the labels path.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1 (got {count})")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    identity = dict(kind="demo", version=DEMO_VERSION, count=count, seed=seed)
    results = resumable_jobs(out, _make_one, {i: (seed, i, str(out)) for i in range(count)}, identity, workers,
                             progress)
    labels = out / "labels.csv"
    write_csv(labels, ["image", "ssim", "kind"], [(name, f"{ssim:.6f}", kind) for _, (name, ssim, kind) in results])
    meta = dict(
        count=count, seed=seed, demo_version=DEMO_VERSION, vtracer_parameters=VTRACER_DEFAULTS,
        render="resvg-py, original size, white background", ssim=SSIM_SETTINGS,
        versions=package_versions("vtracer", "resvg-py", "scikit-image", "pillow"),
    )
    write_text_atomic(out / "labels_meta.json", json.dumps(meta, indent=2) + "\n")
    return labels


def demo_dataset(cache_dir: str | Path, count: int = DEFAULT_DEMO_COUNT, seed: int = 0, log=None, progress=None) -> Path:
    """The built-in demo set's folder, generated on first use and cached under ``cache_dir``."""
    final = Path(cache_dir) / "demo" / f"v{DEMO_VERSION}-n{count}-seed{seed}"
    if log and not (final / "labels.csv").is_file():
        log(f"building the demo set ({count} images, seed {seed}) in {final}")
    return build_cached(final, lambda tmp: make_dataset(tmp, count, seed, progress=progress), log)
