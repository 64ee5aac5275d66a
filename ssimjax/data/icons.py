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


def draw_recipe(seed: int, index: int) -> dict:
    """How the ``index``-th image of set ``seed`` is rasterised (sizes, padding, background, format)."""
    rng = np.random.default_rng([seed, index, ICONS_VERSION, 7])
    background = rng.choice(["white", "transparent", "color"], p=[0.45, 0.25, 0.30])
    color = None
    if background == "color":
        light = rng.random() < 0.6
        lo, hi = (170, 256) if light else (0, 110)
        color = "#%02x%02x%02x" % tuple(int(c) for c in rng.integers(lo, hi, 3))
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
    png = resvg_py.svg_to_bytes(svg_string=svg, width=int(w), height=int(h), skip_system_fonts=True)
    icon = Image.open(io.BytesIO(bytes(png))).convert("RGBA")
    if icon.size != (w, h):
        icon = icon.resize((w, h), Image.LANCZOS)
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
    bg = {"white": (255, 255, 255, 255), "transparent": (0, 0, 0, 0)}.get(recipe["background"])
    if bg is None:
        c = recipe["color"]
        bg = (int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16), 255)
    canvas = Image.new("RGBA", (icon.width + 2 * pad, icon.height + 2 * pad), bg)
    canvas.alpha_composite(icon, (pad, pad))
    buf = io.BytesIO()
    if recipe["format"] == "jpeg":
        flat = Image.alpha_composite(Image.new("RGBA", canvas.size, (255, 255, 255, 255)), canvas).convert("RGB")
        flat.save(buf, format="JPEG", quality=recipe["quality"])
    else:
        (canvas if recipe["background"] == "transparent" else canvas.convert("RGB")).save(buf, format="PNG")
    return buf.getvalue()


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
