"""Real logos: public icon sets from the npm registry, rasterised as raster logos reach people and
labelled by the real conversion pipeline (VTracer -> resvg -> luminance SSIM).

Sources are Iconify JSON sets (``icons.json``: a prefix, default width and height, and per icon
an SVG body) and simple-icons (one SVG per brand, coloured with its own brand hex from
``data/simple-icons.json``). Each image's recipe (long side 48-512 px, aspect kept, padding, white,
transparent or flat-colour background, PNG or JPEG at some quality) is drawn from ``(seed, index)``,
so a set is reproducible whatever the number of worker processes. This module does not import JAX.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from ssimjax.data.npm import PackageError, package_files

ICONS_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Source:
    name: str  # short name, as the manifest's ``source`` column says it
    package: str
    version: str
    kind: str  # "iconify" or "simple-icons"


DEFAULT_SOURCES = (
    Source("logos", "@iconify-json/logos", "1.2.19", "iconify"),
    Source("fluent-emoji-flat", "@iconify-json/fluent-emoji-flat", "1.2.6", "iconify"),
    Source("twemoji", "@iconify-json/twemoji", "1.2.5", "iconify"),
    Source("flag", "@iconify-json/flag", "1.2.12", "iconify"),
    Source("simple-icons", "simple-icons", "16.37.0", "simple-icons"),
)


def iconify_svgs(icons_json: dict) -> dict[str, str]:
    """``{icon name: standalone SVG}`` for every icon of an Iconify JSON set (aliases and hidden
    icons left out: they repeat other icons)."""
    width, height = icons_json.get("width", 16), icons_json.get("height", 16)
    left, top = icons_json.get("left", 0), icons_json.get("top", 0)
    out = {}
    for name, icon in sorted(icons_json.get("icons", {}).items()):
        if icon.get("hidden") or not isinstance(icon.get("body"), str):
            continue
        w, h = icon.get("width", width), icon.get("height", height)
        x, y = icon.get("left", left), icon.get("top", top)
        body = icon["body"]
        transforms = []
        if icon.get("hFlip"):
            transforms.append(f"translate({2 * x + w} 0) scale(-1 1)")
        if icon.get("vFlip"):
            transforms.append(f"translate(0 {2 * y + h}) scale(1 -1)")
        if icon.get("rotate"):
            transforms.append(f"rotate({90 * int(icon['rotate'])} {x + w / 2} {y + h / 2})")
        if transforms:
            body = f'<g transform="{" ".join(transforms)}">{body}</g>'
        out[name] = (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
                     f'viewBox="{x} {y} {w} {h}" width="{w}" height="{h}" color="#000000">{body}</svg>')
    return out


def simple_icons_svgs(files: dict[str, bytes]) -> dict[str, str]:
    """``{slug: SVG filled with the brand's own hex}`` from the simple-icons package files."""
    try:
        brands = json.loads(files["data/simple-icons.json"])
    except (KeyError, ValueError) as e:
        raise PackageError(f"simple-icons: no readable data/simple-icons.json ({e})") from None
    if isinstance(brands, dict):  # older releases wrap the list
        brands = brands.get("icons", [])
    out = {}
    for brand in brands:
        slug, hex_ = brand.get("slug"), brand.get("hex")
        svg = files.get(f"icons/{slug}.svg")
        if not slug or not hex_ or svg is None:
            continue
        out[slug] = svg.decode("utf-8").replace("<svg ", f'<svg fill="#{hex_}" ', 1)
    return out


def source_svgs(source: Source, cache_dir: str | Path) -> dict[str, str]:
    """Every icon of one source, as standalone SVG text, by icon name."""
    files = package_files(source.package, source.version, cache_dir)
    if source.kind == "simple-icons":
        return simple_icons_svgs(files)
    try:
        return iconify_svgs(json.loads(files["icons.json"]))
    except (KeyError, ValueError) as e:
        raise PackageError(f"{source.package}@{source.version}: no readable icons.json ({e})") from None


RECIPES = (1, 2, 3)  # the recipe versions draw_recipe knows
# Version 3's cap on a drawing's long side (before the downscale): resvg's time grows with the
# pixels it draws and encodes, and the 7 % of version 2's drawings beyond this took a quarter of
# its labelling time.
MAX_DRAWN_SIDE = 1536
# Version 2's downscaling filters: the ones users' tools apply (PIL's names).
RESAMPLING = {"box": Image.BOX, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS,
              "nearest": Image.NEAREST}


def draw_recipe(seed: int, index: int, version: int = 1) -> dict:
    """How the ``index``-th image of set ``seed`` is rasterised (sizes, padding, background, format).

    Version 1 (the five-set default): long side 48-512 px, drawn at size, white, transparent or a
    flat colour, a third JPEG at quality 60-95. Version 2 (issue 24: like users' files): long side
    24-1024 px, drawn 1, 2 or 4 times larger and downscaled by one of :data:`RESAMPLING`'s filters,
    white, transparent, flat or two-colour linear-gradient backgrounds, a third JPEG at quality
    35-95. Version 3 (the default run's since 2026-12-07): version 2's recipes, the factor halved
    while the long side drawn would exceed :data:`MAX_DRAWN_SIDE`."""
    if version == 1:
        return _recipe_v1(seed, index)
    if version not in (2, 3):
        raise ValueError(f"unknown recipe version {version} (known: {', '.join(map(str, RECIPES))})")
    recipe = _recipe_v2(seed, index)
    while version == 3 and recipe["supersample"] > 1 and recipe["long_side"] * recipe["supersample"] > MAX_DRAWN_SIDE:
        recipe["supersample"] //= 2
    return recipe


def _recipe_v2(seed: int, index: int) -> dict:
    rng = np.random.default_rng([seed, index, ICONS_VERSION, 2, 7])
    background = str(rng.choice(["white", "transparent", "color", "gradient"], p=[0.35, 0.2, 0.25, 0.2]))
    colors = [_color(rng) for _ in range({"color": 1, "gradient": 2}.get(background, 0))]
    jpeg = bool(rng.random() < 0.3)
    return dict(
        long_side=int(round(math.exp(rng.uniform(math.log(24), math.log(1024))))),
        padding=float(rng.uniform(0.0, 0.25)),
        supersample=int(rng.choice([1, 2, 4], p=[0.3, 0.4, 0.3])),
        resample=str(rng.choice(sorted(RESAMPLING))),
        background=background, color=colors[0] if colors else None,
        color2=colors[1] if len(colors) > 1 else None,
        angle=float(rng.uniform(0, 360)) if background == "gradient" else None,
        format="jpeg" if jpeg else "png",
        quality=int(rng.integers(35, 96)) if jpeg else None,
    )


def _color(rng) -> str:
    light = rng.random() < 0.6
    lo, hi = (170, 256) if light else (0, 110)
    return "#%02x%02x%02x" % tuple(int(c) for c in rng.integers(lo, hi, 3))


def _recipe_v1(seed: int, index: int) -> dict:
    rng = np.random.default_rng([seed, index, ICONS_VERSION, 7])
    background = rng.choice(["white", "transparent", "color"], p=[0.45, 0.25, 0.30])
    color = None
    if background == "color":
        color = _color(rng)
    jpeg = bool(rng.random() < 0.3)
    return dict(
        long_side=int(round(math.exp(rng.uniform(math.log(48), math.log(512))))),
        padding=float(rng.uniform(0.0, 0.25)),
        background=str(background), color=color,
        format="jpeg" if jpeg else "png",
        # JPEG has no transparency: a transparent recipe is flattened on white first.
        quality=int(rng.integers(60, 96)) if jpeg else None,
    )


def _svg_aspect(svg: str) -> float:
    import re

    m = re.search(r'viewBox="\s*([-\d.e]+)[\s,]+([-\d.e]+)[\s,]+([-\d.e]+)[\s,]+([-\d.e]+)', svg)
    if not m:
        return 1.0
    w, h = float(m.group(3)), float(m.group(4))
    return w / h if w > 0 and h > 0 else 1.0


def rasterise(svg: str, recipe: dict) -> tuple[Image.Image, bytes]:
    """``(the image as a user would have it, its file bytes)`` for an icon's SVG and a recipe."""
    import resvg_py

    aspect = _svg_aspect(svg)
    side = recipe["long_side"]
    pad = int(round(side * recipe["padding"]))
    inner = max(side - 2 * pad, 8)
    w, h = (inner, max(1, round(inner / aspect))) if aspect >= 1 else (max(1, round(inner * aspect)), inner)
    k = int(recipe.get("supersample", 1))  # version 2: drawn k times larger, then downscaled
    png = resvg_py.svg_to_bytes(svg_string=svg, width=int(w) * k, height=int(h) * k, skip_system_fonts=True)
    icon = Image.open(io.BytesIO(bytes(png))).convert("RGBA")
    if icon.size != (w, h):
        icon = icon.resize((w, h), RESAMPLING[recipe.get("resample", "lanczos")], reducing_gap=None)
    if icon.getchannel("A").getextrema()[1] == 0:
        raise ValueError("resvg drew nothing")
    data = compose(icon, pad, recipe)
    img = Image.open(io.BytesIO(data))
    img.load()
    return img, data


def compose(icon: Image.Image, pad: int, recipe: dict) -> bytes:
    """The file bytes of an RGBA drawing with ``pad`` pixels each side on ``recipe``'s background
    (white, transparent or its ``color``), in its format (JPEG, flattened on white, at its
    ``quality``; or PNG, with alpha only on a transparent background)."""
    size = (icon.width + 2 * pad, icon.height + 2 * pad)
    if recipe["background"] == "gradient":
        canvas = gradient(size, recipe["color"], recipe["color2"], recipe["angle"])
    else:
        bg = {"white": (255, 255, 255, 255), "transparent": (0, 0, 0, 0)}.get(recipe["background"])
        canvas = Image.new("RGBA", size, bg if bg is not None else _rgb(recipe["color"]) + (255,))
    canvas.alpha_composite(icon, (pad, pad))
    buf = io.BytesIO()
    if recipe["format"] == "jpeg":
        flat = Image.alpha_composite(Image.new("RGBA", canvas.size, (255, 255, 255, 255)), canvas).convert("RGB")
        flat.save(buf, format="JPEG", quality=recipe["quality"])
    else:
        # Compression level 1: the same pixels as Pillow's default 6, encoded in two thirds of the
        # time and decoded faster (measured on 400 of the default run's PNGs: 1.9 s against 3.0 s
        # to encode, 0.6 against 0.8 s to decode; 1.5x the bytes).
        png = canvas if recipe["background"] == "transparent" else canvas.convert("RGB")
        png.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _rgb(c: str) -> tuple[int, int, int]:
    return int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)


def gradient(size: tuple[int, int], c1: str, c2: str, angle: float) -> Image.Image:
    """An opaque RGBA linear gradient from ``c1`` to ``c2`` across ``size`` along ``angle`` degrees."""
    w, h = size
    t = math.radians(angle)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    d = (x - (w - 1) / 2) * math.cos(t) + (y - (h - 1) / 2) * math.sin(t)
    span = max(float(d.max() - d.min()), 1e-9)
    f = ((d - d.min()) / span)[..., None]
    rgb = np.rint(np.asarray(_rgb(c1)) * (1 - f) + np.asarray(_rgb(c2)) * f).astype(np.uint8)
    return Image.fromarray(np.concatenate([rgb, np.full((h, w, 1), 255, np.uint8)], axis=2), "RGBA")


def choose_icons(names_by_source: dict[str, list[str]], count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` (source, icon) pairs, as even across the sources as their sizes allow, seeded.
    An icon may appear more than once (with different recipes) only when a source runs out."""
    rng = np.random.default_rng([seed, ICONS_VERSION, 11])
    sources = sorted(names_by_source)
    share = {s: count // len(sources) + (i < count % len(sources)) for i, s in enumerate(sources)}
    picks = []
    for s in sources:
        names = sorted(names_by_source[s])
        order = rng.permutation(len(names))
        reps = -(-share[s] // max(len(names), 1))
        picks += [(s, names[i]) for i in np.tile(order, reps)[:share[s]]]
    return [picks[i] for i in rng.permutation(len(picks))]
