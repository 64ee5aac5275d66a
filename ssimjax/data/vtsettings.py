"""VTracer's parameters as a space to choose from (issue 25), and logos labelled across it.

Each logo of a *settings set* is converted with K settings drawn from :data:`PARAMETER_SPACE`
(VTracer's defaults always the first), and each conversion is labelled with what the conversion
pipeline cares about: the luminance SSIM of the rendered SVG against the original (the labels'
usual pipeline, :mod:`ssimjax.data.labelling`) and its per-pixel map, the colour SSIM (the mean of
SSIM over R, G and B), and the SVG's size in bytes and paths.

``make_settings_dataset`` writes ``DIR/images/*``, ``DIR/settings.csv`` (one row per logo and
setting: ``image,source,icon,setting,params,ssim,rgb_ssim,svg_bytes,svg_paths``) and
``DIR/labels_meta.json`` (the space, the recipes, versions); each conversion's luminance SSIM map
goes to the cache (:func:`settings_map_path`). Built over every core, resumable and cached like
the other sets (:mod:`ssimjax.data.build`). This module does not import JAX.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ssimjax.data.build import build_cached, resumable_jobs
from ssimjax.data.icons import ICONS_VERSION, Source, choose_icons, draw_recipe, rasterise, source_svgs
from ssimjax.data.labelling import (
    SSIM_SETTINGS,
    VTRACER_DEFAULTS,
    _ssim,
    entry_map,
    map_entry,
    package_versions,
    render_svg,
    vtracer_input,
)
from ssimjax.files import read_entry, write_bytes_atomic, write_csv, write_entry, write_text_atomic

SETTINGS_VERSION = 1
# The parameters a setting chooses, each from these values (VTracer's default among them), drawn
# with these weights (uniform where none is given). max_iterations stays at VTracer's default.
PARAMETER_SPACE = {
    "colormode": ("color", "binary"),
    "hierarchical": ("stacked", "cutout"),
    "mode": ("spline", "polygon", "none"),
    "filter_speckle": (0, 1, 2, 4, 8, 16, 32),
    "color_precision": (3, 4, 5, 6, 7, 8),
    "layer_difference": (4, 8, 16, 32, 64, 128),
    "corner_threshold": (20, 40, 60, 90, 120, 180),
    "length_threshold": (3.5, 4.0, 5.0, 6.0, 8.0, 10.0),
    "splice_threshold": (20, 45, 60, 90, 135),
    "path_precision": (1, 2, 3, 4, 6, 8),
}
# Most logos are converted in colour with curves: binary and pixel-exact ("none") settings are
# drawn less often, so that the settings the pipeline would choose are well covered.
WEIGHTS = {"colormode": (0.85, 0.15), "hierarchical": (0.7, 0.3), "mode": (0.6, 0.32, 0.08)}
PARAMETERS = tuple(PARAMETER_SPACE)
COLUMNS = ["image", "source", "icon", "setting", "params", "ssim", "rgb_ssim", "svg_bytes", "svg_paths"]


def default_setting() -> dict:
    """VTracer's defaults, as a setting of :data:`PARAMETER_SPACE`."""
    return {k: VTRACER_DEFAULTS[k] for k in PARAMETERS}


def check_setting(setting: dict) -> dict:
    """The setting with every parameter, its values checked against :data:`PARAMETER_SPACE`
    (missing ones take VTracer's defaults). Raises ValueError naming the parameter."""
    unknown = sorted(set(setting) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"unknown VTracer parameter(s) {', '.join(unknown)}; known: {', '.join(PARAMETERS)}")
    out = {**default_setting(), **setting}
    for k, v in out.items():
        choices = PARAMETER_SPACE[k]
        if isinstance(choices[0], str) and v not in choices:
            raise ValueError(f"VTracer parameter {k}: must be one of {', '.join(choices)} (got {v!r})")
        if not isinstance(choices[0], str) and not (isinstance(v, (int, float)) and min(choices) <= v <= max(choices)):
            raise ValueError(f"VTracer parameter {k}: must be a number in [{min(choices)}, {max(choices)}] (got {v!r})")
    return out


def setting_key(setting: dict) -> str:
    """A setting's canonical JSON (sorted keys): its identity in records and cache keys."""
    return json.dumps(check_setting(setting), sort_keys=True)


def sample_settings(seed: int, index: int, k: int) -> list[dict]:
    """``k`` distinct settings for logo ``index`` (seeded): VTracer's defaults first, the others drawn
    from :data:`PARAMETER_SPACE` by :data:`WEIGHTS`."""
    if k < 1:
        raise ValueError(f"k must be >= 1 (got {k})")
    rng = np.random.default_rng([seed, index, SETTINGS_VERSION, 25])
    out, seen = [default_setting()], {setting_key(default_setting())}
    while len(out) < k:
        s = {}
        for name, choices in PARAMETER_SPACE.items():
            i = rng.choice(len(choices), p=WEIGHTS.get(name))
            s[name] = choices[int(i)]
        key = setting_key(s)
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


def issue_grid() -> list[dict]:
    """The 54 settings issue 25 measured its oracle on (VTracer's defaults otherwise):
    filter_speckle 2 / 4 / 8 x color_precision 4 / 6 / 8 x layer_difference 8 / 16 / 32 x spline or
    polygon. VTracer's defaults are among them."""
    return [{**default_setting(), "filter_speckle": f, "color_precision": c, "layer_difference": d, "mode": m}
            for f in (2, 4, 8) for c in (4, 6, 8) for d in (8, 16, 32) for m in ("spline", "polygon")]


def coarse_polygons() -> list[dict]:
    """30 settings beyond issue 25's grid that trade detail for size: polygons (whole-pixel
    coordinates), layers merged up to a colour difference of 64 or 128, filter_speckle 2-32 x
    color_precision 4 / 6 / 8 (VTracer's defaults otherwise). On the 60 selection logos they bring the
    smallest setting within 0.005 of the defaults' quality from 0.236x to 0.209x of the defaults'
    size (docs/quality.md). path_precision does not change a polygon (whole-pixel coordinates), and
    the smallest setting was a polygon on every selection logo, so it is not varied."""
    return [{**default_setting(), "mode": "polygon", "filter_speckle": f, "color_precision": c, "layer_difference": d}
            for f in (2, 4, 8, 16, 32) for c in (4, 6, 8) for d in (64, 128)]


def candidate_grid() -> list[dict]:
    """The settings a recommendation chooses from by default: :func:`issue_grid` (VTracer's defaults
    among them) and :func:`coarse_polygons`, 84 in all."""
    return issue_grid() + coarse_polygons()


def logo_settings(seed: int, index: int, k: int, grid: Sequence[dict] | None) -> list[dict]:
    """The settings logo ``index`` is converted with: every one of ``grid``, or ``k`` drawn ones."""
    return [check_setting(s) for s in grid] if grid is not None else sample_settings(seed, index, k)


def convert(img: Image.Image, setting: dict) -> str:
    """VTracer's SVG of an RGB image with ``setting`` (max_iterations at VTracer's default)."""
    import vtracer

    s = check_setting(setting)
    return vtracer.convert_raw_image_to_svg(vtracer_input(img), img_format="png", max_iterations=10,
                                            **{k: (float(v) if k == "length_threshold" else v) for k, v in s.items()})


def rgb_ssim(a: Image.Image, b: Image.Image) -> float:
    """The mean of SSIM over R, G and B (each as the luminance SSIM is computed)."""
    from skimage.metrics import structural_similarity

    xa = np.asarray(a.convert("RGB"), np.float64) / 255.0
    xb = np.asarray(b.convert("RGB"), np.float64) / 255.0
    return float(structural_similarity(xa, xb, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, channel_axis=2))


def conversion_labels(img: Image.Image, setting: dict) -> tuple[dict, np.ndarray]:
    """``(labels, luminance SSIM map)`` of converting ``img`` with ``setting``: ``ssim`` (luminance,
    as every label), ``rgb_ssim``, ``svg_bytes`` (UTF-8) and ``svg_paths`` (``<path`` elements)."""
    from ssimjax.data.images import to_rgb

    original = to_rgb(img)
    return svg_labels(original, convert(original, setting))


def svg_labels(original: Image.Image, svg: str, min_ssim: float | None = None) -> tuple[dict, np.ndarray]:
    """:func:`conversion_labels` of an SVG already converted from the RGB image ``original``. With
    ``min_ssim``, a luminance SSIM below it leaves ``rgb_ssim`` NaN: a search that needs both to
    reach a target skips three of the four SSIMs of a conversion that already missed it."""
    rendered = render_svg(svg, original.width, original.height)
    ssim, full = _ssim(original, rendered, full=True)
    colour = float("nan") if min_ssim is not None and ssim < min_ssim else rgb_ssim(original, rendered)
    return dict(ssim=float(ssim), rgb_ssim=colour, svg_bytes=len(svg.encode()),
                svg_paths=svg.count("<path")), full.astype(np.float32)


def settings_map_path(cache_dir: str | Path, image_sha: str, setting: dict) -> Path:
    """Where the luminance SSIM map of one image file converted with one setting is cached."""
    key = hashlib.sha256(f"{image_sha}:{setting_key(setting)}".encode()).hexdigest()
    return Path(cache_dir) / "settings-maps" / f"{key}.npz.entry"


def save_settings_map(cache_dir, image_sha: str, setting: dict, ssim_map: np.ndarray) -> None:
    write_entry(settings_map_path(cache_dir, image_sha, setting), map_entry(ssim_map))


def load_settings_map(cache_dir, image_sha: str, setting: dict) -> np.ndarray | None:
    """The cached map (float16); None when not cached or damaged (reported and removed)."""
    payload = read_entry(settings_map_path(cache_dir, image_sha, setting))
    return None if payload is None else entry_map(payload)


def _settings_one(job):
    index, source, icon, svg, seed, k, out_dir, cache_dir, recipes, grid = job
    recipe = draw_recipe(seed, index, recipes)
    try:
        img, data = rasterise(svg, recipe)
        labelled = [(s, *conversion_labels(img, s)) for s in logo_settings(seed, index, k, grid)]
    except Exception as e:  # resvg or VTracer refusing one icon must not stop the set
        return index, {"skipped": f"{type(e).__name__}: {str(e)[:120]}"}, []
    name = f"images/{index:05d}_{source}.{'jpg' if recipe['format'] == 'jpeg' else 'png'}"
    write_bytes_atomic(Path(out_dir) / name, data)
    sha = hashlib.sha256(data).hexdigest()
    rows = []
    for i, (setting, labels, ssim_map) in enumerate(labelled):
        save_settings_map(cache_dir, sha, setting, ssim_map)
        rows.append([name, source, icon, i, setting_key(setting), labels["ssim"], labels["rgb_ssim"],
                     labels["svg_bytes"], labels["svg_paths"]])
    return index, {"rows": rows, "recipe": recipe}, [name]


def make_settings_dataset(out: str | Path, count: int, k: int, seed: int = 0, sources: Sequence[Source] = (),
                          cache_dir: str | Path | None = None, recipes: int = 2, workers: int | None = None,
                          progress=None, log=None, grid: Sequence[dict] | None = None) -> Path:
    """Builds ``count`` logos from ``sources`` (drawn evenly, rasterised by recipes of version
    ``recipes``), each converted with ``k`` settings (:func:`sample_settings`), or with every
    setting of ``grid`` (``k`` is then its length), and labelled (:func:`conversion_labels`).
    Returns the path of ``settings.csv``."""
    if grid is not None:
        grid = [check_setting(g) for g in grid]
        k = len(grid)
    from ssimjax.features.cache import default_cache_dir

    if count < 1 or k < 1:
        raise ValueError(f"count and k must be >= 1 (got {count}, {k})")
    if not sources:
        raise ValueError("no icon sets to draw from")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    svgs = {s.name: source_svgs(s, cache_dir) for s in sources}
    picks = choose_icons({s: list(v) for s, v in svgs.items()}, count, seed)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    jobs = {i: (i, s, icon, svgs[s][icon], seed, k, str(out), str(cache_dir), recipes, grid)
            for i, (s, icon) in enumerate(picks)}
    identity = dict(kind="vtracer-settings", version=SETTINGS_VERSION, icons_version=ICONS_VERSION, count=count, k=k,
                    seed=seed, recipes=recipes, sources=[f"{s.package}@{s.version}" for s in sources])
    if grid is not None:
        identity["grid"] = [setting_key(g) for g in grid]
    results = [r for _, r in resumable_jobs(out, _settings_one, jobs, identity, workers, progress,
                                            chunks_per_worker=16)]
    skipped = Counter(r["skipped"].split(":")[0] for r in results if "skipped" in r)
    if log and skipped:
        log(f"skipped {sum(skipped.values())} icons that could not be drawn or converted: {dict(skipped)}")
    path = out / "settings.csv"
    write_csv(path, COLUMNS, [[*row[:5], f"{row[5]:.6f}", f"{row[6]:.6f}", row[7], row[8]]
                              for r in results if "rows" in r for row in r["rows"]])
    meta = dict(kind="vtracer-settings", count=count, k=k, grid=grid, written=count - sum(skipped.values()),
                skipped=dict(skipped), seed=seed, settings_version=SETTINGS_VERSION, recipes=recipes,
                parameter_space={k_: list(v) for k_, v in PARAMETER_SPACE.items()},
                weights={k_: list(v) for k_, v in WEIGHTS.items()}, defaults=default_setting(),
                sources=[dict(name=s.name, package=s.package, version=s.version, icons=len(svgs[s.name]))
                         for s in sources],
                render="resvg-py, original size, white background", ssim=SSIM_SETTINGS,
                rgb_ssim="mean over R, G, B of SSIM with the same settings",
                versions=package_versions("vtracer", "resvg-py", "scikit-image", "pillow"))
    write_text_atomic(out / "labels_meta.json", json.dumps(meta, indent=2) + "\n")
    return path


def settings_dataset(cache_dir: str | Path, count: int, k: int, seed: int = 0, sources: Sequence[Source] = (),
                     recipes: int = 2, log=None, progress=None, grid: Sequence[dict] | None = None) -> Path:
    """A settings set's folder, built on first use and cached under ``cache_dir``."""
    key = hashlib.sha256(json.dumps([f"{s.package}@{s.version}" for s in sources]).encode()).hexdigest()[:10]
    if grid is not None:
        grid = [check_setting(g) for g in grid]
        k = len(grid)
        key += "-grid" + hashlib.sha256(json.dumps([setting_key(g) for g in grid]).encode()).hexdigest()[:8]
    final = (Path(cache_dir) / "settings"
             / f"v{SETTINGS_VERSION}-r{recipes}-sets{len(sources)}-{key}-n{count}-k{k}-seed{seed}")
    if log and not (final / "settings.csv").is_file():
        log(f"building a VTracer-settings set ({count} logos x {k} settings from {len(sources)} icon sets) in {final}")
    return build_cached(final, lambda tmp: make_settings_dataset(tmp, count, k, seed, sources, cache_dir, recipes,
                                                                 progress=progress, log=log, grid=grid), log,
                        labels="settings.csv")


def _row_values(row: dict, folder: Path, line: int) -> tuple:
    where = f"{folder / 'settings.csv'} row {line}"
    try:
        setting = check_setting(json.loads(row["params"]))
        values = float(row["ssim"]), float(row["rgb_ssim"]), float(row["svg_bytes"])
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{where}: unreadable ({type(e).__name__}: {e})") from None
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if not (-1 <= values[0] <= 1 and -1 <= values[1] <= 1 and values[2] > 0):
        raise ValueError(f"{where}: ssim and rgb_ssim must lie in [-1, 1] and svg_bytes be > 0 (got {values})")
    return setting, *values


def read_settings_rows(folder: str | Path) -> dict:
    """A settings set's rows as arrays: ``image`` (paths), ``setting`` (dicts), ``ssim``,
    ``rgb_ssim``, ``log_bytes``, ``source``. Raises ValueError naming the file and row that is wrong."""
    import csv

    folder = Path(folder)
    path = folder / "settings.csv"
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
    if not rows:
        raise ValueError(f"{path}: no rows")
    parsed = [_row_values(r, folder, i + 2) for i, r in enumerate(rows)]
    return dict(image=np.asarray([str(folder / r["image"]) for r in rows]), setting=[p[0] for p in parsed],
                ssim=np.asarray([p[1] for p in parsed], np.float32),
                rgb_ssim=np.asarray([p[2] for p in parsed], np.float32),
                log_bytes=np.log(np.asarray([p[3] for p in parsed], np.float32)),
                source=np.asarray([r.get("source", "") for r in rows]))
