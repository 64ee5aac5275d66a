"""Synthetic wordmarks and line art, extra training images for the SSIM-map network and the MLP.

Real logos are often a small wordmark (letters a few pixels tall beside a mark) or thin line art,
and there VTracer fails worst: strokes one or two pixels wide are merged away or dropped, and the
SSIM falls to 0.1-0.6. The icon sets the model trains on hold few such images (emoji, flags and
single-colour glyphs), so the map network and the MLP that corrects its score learn these failures
from generated ones: random words in Pillow's bundled font beside a simple mark, or outlines, drawn
8x larger and downsampled with Lanczos (as an SVG rasteriser anti-aliases), padded on white,
transparent or a flat colour, a third as JPEG, each labelled by the real pipeline (its per-pixel
SSIM map cached for the network, as the icon set does). Each image is drawn from
``(seed, index)``, so a set is reproducible on any number of cores.

This module does not import JAX, so worker processes start quickly.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ssimjax.data.build import build_cached, resumable_jobs
from ssimjax.data.icons import compose
from ssimjax.data.images import open_image
from ssimjax.data.labelling import conversion_ssim_map
from ssimjax.features.cache import cache_labelled
from ssimjax.files import write_bytes_atomic, write_csv, write_text_atomic

WORDMARKS_VERSION = 1
KINDS = ("word", "mark_and_word", "line_art")
SUPERSAMPLE = 8
LETTERS = list(string.ascii_letters)


def _color(rng, dark: bool) -> tuple:
    lo, hi = (0, 110) if dark else (0, 256)
    return tuple(int(c) for c in rng.integers(lo, hi, 3)) + (255,)


def _word(rng) -> str:
    word = "".join(rng.choice(LETTERS, int(rng.integers(3, 11))))
    if rng.random() < 0.3:
        word = word.upper()
    if rng.random() < 0.2:
        word += " " + "".join(rng.choice(list(string.ascii_lowercase), int(rng.integers(2, 7))))
    return word


def _line_art(rng) -> Image.Image:
    n = int(np.exp(rng.uniform(np.log(32), np.log(160)))) * SUPERSAMPLE
    img = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 9))):
        color, width = _color(rng, dark=True), int(max(1.0, rng.uniform(0.5, 2.5) * SUPERSAMPLE))
        (x0, x1), (y0, y1) = sorted(rng.integers(0, n, 2).tolist()), sorted(rng.integers(0, n, 2).tolist())
        shape = rng.integers(0, 4)
        if shape == 0:
            draw.line((x0, y0, x1, y1), fill=color, width=width)
        elif shape == 1:
            draw.rectangle((x0, y0, x1, y1), outline=color, width=width)
        elif shape == 2:
            draw.ellipse((x0, y0, x1, y1), outline=color, width=width)
        else:
            points = [tuple(rng.integers(0, n, 2).tolist()) for _ in range(int(rng.integers(3, 7)))]
            draw.polygon(points, outline=color, width=width)
    if rng.random() < 0.4:  # a filled dot among the lines
        x, y = rng.integers(0, n // 2, 2).tolist()
        r = int(rng.integers(n // 10, n // 4))
        draw.ellipse((x, y, x + r, y + r), fill=_color(rng, dark=rng.random() < 0.6))
    return img


def _wordmark(rng, with_mark: bool) -> Image.Image:
    text_px = float(np.exp(rng.uniform(np.log(6), np.log(40))))  # letter height in the final image
    font = ImageFont.load_default(size=int(text_px * SUPERSAMPLE * 1.3))
    word = _word(rng)
    left, top, right, bottom = font.getbbox(word)
    mark = int(text_px * SUPERSAMPLE * rng.uniform(1.0, 2.2)) if with_mark else 0
    gap = int(text_px * SUPERSAMPLE * 0.4) if with_mark else 0
    w, h = right - left + mark + gap, max(bottom - top, mark)
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    text_color = _color(rng, dark=rng.random() < 0.75)
    if mark:
        color, shape, y = _color(rng, dark=rng.random() < 0.6), rng.integers(0, 4), (h - mark) // 2
        if shape == 0:
            draw.ellipse((0, y, mark, y + mark), fill=color)
        elif shape == 1:
            draw.rounded_rectangle((0, y, mark, y + mark), radius=mark // 5, fill=color)
        elif shape == 2:
            draw.ellipse((0, y, mark, y + mark), outline=color, width=max(SUPERSAMPLE, mark // 8))
        else:  # a cluster of coloured dots
            for _ in range(int(rng.integers(2, 5))):
                cx, cy = rng.integers(0, mark, 2).tolist()
                r = int(rng.integers(mark // 8, mark // 3))
                draw.ellipse((cx - r, y + cy - r, cx + r, y + cy + r), fill=_color(rng, dark=rng.random() < 0.6))
    draw.text((mark + gap - left, (h - (bottom - top)) // 2 - top), word, font=font, fill=text_color)
    return img


def draw_wordmark(seed: int, index: int) -> tuple[str, bytes, str]:
    """``(kind, file bytes, 'png' or 'jpg')`` of the ``index``-th image of set ``seed``."""
    rng = np.random.default_rng([seed, index, WORDMARKS_VERSION, 11])
    kind = str(rng.choice(KINDS, p=[0.35, 0.4, 0.25]))
    big = _line_art(rng) if kind == "line_art" else _wordmark(rng, with_mark=kind == "mark_and_word")
    small = big.resize((max(1, round(big.width / SUPERSAMPLE)), max(1, round(big.height / SUPERSAMPLE))),
                       Image.LANCZOS)
    pad = round(max(small.size) * rng.uniform(0.0, 0.25))
    background, color = str(rng.choice(["white", "transparent", "color"], p=[0.45, 0.25, 0.30])), None
    if background == "color":
        lo, hi = (170, 256) if rng.random() < 0.6 else (0, 110)
        color = "#%02x%02x%02x" % tuple(int(c) for c in rng.integers(lo, hi, 3))
    jpeg = bool(rng.random() < 0.3)
    recipe = dict(background=background, color=color, format="jpeg" if jpeg else "png",
                  quality=int(rng.integers(60, 96)) if jpeg else None)
    return kind, compose(small, pad, recipe), "jpg" if jpeg else "png"


def _make_one(job):
    index, seed, out_dir, maps_dir = job
    kind, data, ext = draw_wordmark(seed, index)
    try:
        img = open_image(data)
        ssim, ssim_map = conversion_ssim_map(img)
    except Exception:  # one image the pipeline refuses (e.g. smaller than SSIM's window) is left out
        return index, None, []
    name = f"images/{index:05d}_{kind}.{ext}"
    write_bytes_atomic(Path(out_dir) / name, data)
    cache_labelled(maps_dir, data, img, ssim, ssim_map)
    return index, [name, ssim, kind], [name]


def wordmark_folder(cache_dir: str | Path, count: int, seed: int = 0, log=None) -> Path | None:
    """The folder of a set of ``count`` labelled synthetic wordmarks (its ``labels.csv`` a manifest
    like any data set's), built on first use (over every core, continued if interrupted) and cached
    under ``cache_dir``; their SSIM maps go to the SSIM-map cache. None for ``count`` 0."""
    if count == 0:
        return None
    final = Path(cache_dir) / "wordmarks" / f"v{WORDMARKS_VERSION}-n{count}-seed{seed}"

    def build(folder: Path) -> None:
        (folder / "images").mkdir(parents=True, exist_ok=True)
        jobs = {i: (i, seed, str(folder), str(cache_dir)) for i in range(count)}
        identity = dict(kind="wordmarks", version=WORDMARKS_VERSION, count=count, seed=seed)
        rows = [r for _, r in resumable_jobs(folder, _make_one, jobs, identity) if r is not None]
        write_csv(folder / "labels.csv", ["image", "ssim", "source", "icon"],
                  [(name, f"{ssim:.6f}", "wordmarks", kind) for name, ssim, kind in rows])
        write_text_atomic(folder / "labels_meta.json", json.dumps(
            {"version": WORDMARKS_VERSION, "count": count, "seed": seed, "labelled": len(rows)}, indent=2) + "\n")

    if log and not (final / "labels.csv").is_file():
        log(f"drawing and labelling {count} synthetic wordmarks in {final}")
    return build_cached(final, build, log)


def mlp_rows(count: int, train_rows: int) -> int:
    """How many of ``count`` synthetic images join an MLP's ``train_rows`` real training rows as
    training rows: at most one for every three, a supplement to one's own images rather than most
    of the set (the default run's 3,840 training rows take all 1,179)."""
    return min(count, train_rows // 3)
