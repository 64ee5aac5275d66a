"""Labelled sets of real logos from public icon sets, built in parallel and cached.

``make_icon_dataset`` writes ``DIR/images/*``, ``DIR/labels.csv`` (``image,ssim,source,icon,
recipe``) and ``DIR/labels_meta.json`` (packages and their integrity, VTracer parameters, SSIM
settings, versions, and how many icons were skipped and why); each label's per-pixel SSIM map goes
to the cache (:func:`ssimjax.data.labelling.ssim_map_path`). This module does not import JAX.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Sequence

from ssimjax.config import DEFAULT_ICON_COUNT
from ssimjax.data.icons import DEFAULT_SOURCES, ICONS_VERSION, Source, choose_icons, draw_recipe, rasterise, source_svgs
from ssimjax.data.labelling import (
    SSIM_SETTINGS,
    VTRACER_DEFAULTS,
    build_cached,
    conversion_ssim_map,
    package_versions,
    run_jobs,
    save_ssim_map,
)


def _make_one(job):
    index, source, icon, svg, seed, out_dir, maps_dir = job
    recipe = draw_recipe(seed, index)
    try:
        img, data = rasterise(svg, recipe)
        ssim, ssim_map = conversion_ssim_map(img)
    except Exception as e:  # resvg or VTracer refusing one icon must not stop the set
        return index, None, f"{type(e).__name__}: {str(e)[:120]}"
    ext = "jpg" if recipe["format"] == "jpeg" else "png"
    name = f"images/{index:05d}_{source}.{ext}"
    (Path(out_dir) / name).write_bytes(data)
    # The label's per-pixel map, cached for the map network to train on (no second conversion).
    save_ssim_map(maps_dir, hashlib.sha256(data).hexdigest(), ssim_map)
    return index, (name, ssim, source, icon, recipe), None


def make_icon_dataset(out: str | Path, count: int, seed: int = 0, workers: int | None = None, progress=None,
                      sources: Sequence[Source] = DEFAULT_SOURCES, cache_dir: str | Path | None = None,
                      log=None) -> Path:
    """Builds ``count`` labelled images from ``sources`` (fetched from the npm registry, or read
    from ``cache_dir``'s copy offline). Returns the labels path. Icons that cannot be drawn or
    converted are skipped and counted in ``labels_meta.json``."""
    from ssimjax.features.cache import default_cache_dir

    if count < 1:
        raise ValueError(f"count must be >= 1 (got {count})")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    svgs = {s.name: source_svgs(s, cache_dir) for s in sources}
    picks = choose_icons({s: list(v) for s, v in svgs.items()}, count, seed)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    jobs = [(i, s, icon, svgs[s][icon], seed, str(out), str(cache_dir)) for i, (s, icon) in enumerate(picks)]
    results = sorted(run_jobs(_make_one, jobs, workers, progress, chunks_per_worker=16), key=lambda r: r[0])
    skipped = Counter(why.split(":")[0] for _, row, why in results if row is None)
    if log and skipped:
        log(f"skipped {sum(skipped.values())} icons that could not be drawn or converted: {dict(skipped)}")
    labels = out / "labels.csv"
    with open(labels, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "ssim", "source", "icon", "recipe"])
        for _, row, _ in results:
            if row is not None:
                name, ssim, source, icon, recipe = row
                writer.writerow([name, f"{ssim:.6f}", source, icon, json.dumps(recipe, sort_keys=True)])
    meta = dict(
        kind="icons", count=count, written=count - sum(skipped.values()), skipped=dict(skipped), seed=seed,
        icons_version=ICONS_VERSION,
        sources=[dict(name=s.name, package=s.package, version=s.version, icons=len(svgs[s.name])) for s in sources],
        vtracer_parameters=VTRACER_DEFAULTS, render="resvg-py, original size, white background", ssim=SSIM_SETTINGS,
        versions=package_versions("vtracer", "resvg-py", "scikit-image", "pillow"),
    )
    (out / "labels_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return labels


def icon_dataset(cache_dir: str | Path, count: int = DEFAULT_ICON_COUNT, seed: int = 0, log=None,
                 progress=None) -> Path:
    """The built-in real-logo set's folder, built on first use and cached under ``cache_dir``."""
    final = Path(cache_dir) / "icons" / f"v{ICONS_VERSION}-n{count}-seed{seed}"
    if log and not (final / "labels.csv").is_file():
        log(f"building the real-logo set ({count} images from {len(DEFAULT_SOURCES)} icon sets, seed {seed}) "
            f"in {final}")
    return build_cached(final, lambda tmp: make_icon_dataset(tmp, count, seed, progress=progress,
                                                             cache_dir=cache_dir, log=log))
