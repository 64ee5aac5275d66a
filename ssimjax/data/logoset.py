"""Labelled sets of real logos from public icon sets, built in parallel and cached.

``make_icon_dataset`` writes ``DIR/images/*``, ``DIR/labels.csv`` (``image,ssim,source,icon,
recipe``) and ``DIR/labels_meta.json`` (packages and their integrity, VTracer parameters, SSIM
settings, versions, and how many icons were skipped and why); each label's per-pixel SSIM map goes
to the cache (:func:`ssimjax.data.labelling.ssim_map_path`). This module does not import JAX.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Sequence

from ssimjax.config import DEFAULT_HELD_OUT_PER_SET, DEFAULT_ICON_COUNT, DEFAULT_RECIPES
from ssimjax.data.build import build_cached, resumable_jobs
from ssimjax.data.icons import DEFAULT_SOURCES, ICONS_VERSION, Source, choose_icons, draw_recipe, rasterise, source_svgs
from ssimjax.data.labelling import SSIM_SETTINGS, VTRACER_DEFAULTS, conversion_ssim_map, package_versions
from ssimjax.features.cache import cache_labelled
from ssimjax.files import write_bytes_atomic, write_csv, write_text_atomic

ROLE_SEEDS = {"train": 0, "selection": 1, "report": 2}  # each role's images are drawn with their own seed


def _make_one(job):
    index, source, icon, svg, seed, out_dir, maps_dir, recipes = job
    recipe = draw_recipe(seed, index, recipes)
    try:
        img, data = rasterise(svg, recipe)
        ssim, ssim_map = conversion_ssim_map(img)
    except Exception as e:  # resvg or VTracer refusing one icon must not stop the set
        return index, {"skipped": f"{type(e).__name__}: {str(e)[:120]}"}, []
    ext = "jpg" if recipe["format"] == "jpeg" else "png"
    name = f"images/{index:05d}_{source}.{ext}"
    write_bytes_atomic(Path(out_dir) / name, data)
    cache_labelled(maps_dir, data, img, ssim, ssim_map)
    return index, {"row": [name, ssim, source, icon, recipe]}, [name]


def _drawn_pixels(recipe: dict) -> int:
    return (recipe["long_side"] * recipe.get("supersample", 1)) ** 2


def make_icon_dataset(out: str | Path, count: int, seed: int = 0, workers: int | None = None, progress=None,
                      sources: Sequence[Source] = DEFAULT_SOURCES, cache_dir: str | Path | None = None,
                      log=None, recipes: int = 1) -> Path:
    """Builds ``count`` labelled images from ``sources`` (fetched from the npm registry, or read
    from ``cache_dir``'s copy offline), as even across the sources as their sizes allow, each
    rasterised by :func:`ssimjax.data.icons.draw_recipe` of version ``recipes``. Returns the labels
    path. Icons that cannot be drawn or converted are skipped and counted in ``labels_meta.json``."""
    from ssimjax.features.cache import default_cache_dir

    if count < 1:
        raise ValueError(f"count must be >= 1 (got {count})")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    svgs = {s.name: source_svgs(s, cache_dir) for s in sources}
    picks = choose_icons({s: list(v) for s, v in svgs.items()}, count, seed)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    # The costliest drawings first (a drawing's cost grows with the pixels resvg renders), in small
    # chunks: no worker is left with a long tail while the other idles. Results do not depend on it.
    order = sorted(range(len(picks)), key=lambda i: -_drawn_pixels(draw_recipe(seed, i, recipes)))
    jobs = {i: (i, *picks[i], svgs[picks[i][0]][picks[i][1]], seed, str(out), str(cache_dir), recipes) for i in order}
    identity = dict(kind="icons", version=ICONS_VERSION, count=count, seed=seed,
                    sources=[f"{s.package}@{s.version}" for s in sources])
    if recipes != 1:  # version 1's identity is what sets built before versions existed recorded
        identity["recipes"] = recipes
    results = [r for _, r in resumable_jobs(out, _make_one, jobs, identity, workers, progress, chunks_per_worker=128)]
    skipped = Counter(r["skipped"].split(":")[0] for r in results if "skipped" in r)
    if log and skipped:
        log(f"skipped {sum(skipped.values())} icons that could not be drawn or converted: {dict(skipped)}")
    labels = out / "labels.csv"
    write_csv(labels, ["image", "ssim", "source", "icon", "recipe"],
              [(name, f"{ssim:.6f}", source, icon, json.dumps(recipe, sort_keys=True))
               for name, ssim, source, icon, recipe in (r["row"] for r in results if "row" in r)])
    meta = dict(
        kind="icons", count=count, written=count - sum(skipped.values()), skipped=dict(skipped), seed=seed,
        icons_version=ICONS_VERSION, recipes=recipes,
        sources=[dict(name=s.name, package=s.package, version=s.version, icons=len(svgs[s.name])) for s in sources],
        vtracer_parameters=VTRACER_DEFAULTS, render="resvg-py, original size, white background", ssim=SSIM_SETTINGS,
        versions=package_versions("vtracer", "resvg-py", "scikit-image", "pillow"),
    )
    write_text_atomic(out / "labels_meta.json", json.dumps(meta, indent=2) + "\n")
    return labels


def icon_dataset(cache_dir: str | Path, count: int = DEFAULT_ICON_COUNT, seed: int = 0, log=None,
                 progress=None, sources: Sequence[Source] = DEFAULT_SOURCES, recipes: int = 1) -> Path:
    """A real-logo set's folder, built on first use and cached under ``cache_dir``: the built-in
    one by default, or ``count`` images from ``sources`` by recipes of version ``recipes``."""
    name = f"v{ICONS_VERSION}-n{count}-seed{seed}"
    if tuple(sources) != DEFAULT_SOURCES or recipes != 1:
        key = hashlib.sha256(json.dumps([f"{s.package}@{s.version}" for s in sources]).encode()).hexdigest()[:10]
        name = f"v{ICONS_VERSION}-r{recipes}-sets{len(sources)}-{key}-n{count}-seed{seed}"
    final = Path(cache_dir) / "icons" / name
    if log and not (final / "labels.csv").is_file():
        log(f"building a real-logo set ({count} images from {len(sources)} icon sets, recipes {recipes}, seed {seed}) "
            f"in {final}")
    return build_cached(final, lambda tmp: make_icon_dataset(tmp, count, seed, progress=progress, sources=sources,
                                                             cache_dir=cache_dir, log=log, recipes=recipes), log)


def split_icon_dataset(cache_dir: str | Path, train_count: int = DEFAULT_ICON_COUNT,
                       per_set: int = DEFAULT_HELD_OUT_PER_SET, recipes: int = DEFAULT_RECIPES, log=None,
                       progress=None) -> Path:
    """The built-in real-logo set of a default run (issue 24's split): the folder of a manifest
    joining ``train_count`` images drawn evenly from the training sets of
    :func:`ssimjax.data.sets.split_sets` and ``per_set`` images of each selection and report set,
    each part built and cached on first use; the ``source`` column names each row's icon set."""
    import csv
    import os

    from ssimjax.data.sets import ROLES, SPLIT_VERSION, sources_named, split_sets

    split = split_sets()
    counts = {"train": train_count, "selection": per_set * len(split["selection"]),
              "report": per_set * len(split["report"])}
    parts = {role: icon_dataset(cache_dir, counts[role], ROLE_SEEDS[role], log=log, progress=progress,
                                sources=sources_named(role), recipes=recipes) for role in ROLES}
    out = Path(cache_dir) / "protocol" / f"{SPLIT_VERSION}-r{recipes}-n{train_count}-per-set{per_set}"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for role in ROLES:
        with open(parts[role] / "labels.csv", newline="") as f:
            for r in csv.DictReader(f):
                rows.append((os.path.relpath(parts[role] / r["image"], out), r["ssim"], r["source"]))
    write_csv(out / "labels.csv", ["image", "ssim", "source"], rows)
    return out
