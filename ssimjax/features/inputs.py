"""The model's inputs for a manifest: frozen-backbone features, extracted in batches once per
image and cached on disk, or the preprocessed images themselves when the backbone trains; and
the image statistics (:mod:`ssimjax.features.stats`) when the model takes them, cached the same way.
(the caches are :mod:`ssimjax.features.cache`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ssimjax.data.images import PREPROCESS_VERSION, ImageError, open_image, read_file, resize_224
from ssimjax.data.labelling import iter_jobs
from ssimjax.data.manifest import Problem, file_sha256, raise_for_problems, read_manifest
from ssimjax.features.cache import ArrayCache, backbone_hash, feature_cache, stats_cache
from ssimjax.features.stats import STATS_VERSION, file_statistics
from ssimjax.files import file_lock
from ssimjax.models.mapnet import MapModel, with_map_scores
from ssimjax.train.batching import apply_in_batches
from ssimjax.train.parallel import replicate, round_up
from ssimjax.train.state import Trainer
from ssimjax.train.steps import jit_extract_features

log = logging.getLogger("ssimjax")
FEATURE_BATCH = 16


def extract_features(trainer: Trainer, variables: dict, images_uint8: np.ndarray,
                     batch_size: int = FEATURE_BATCH) -> np.ndarray:
    """Backbone features (N, D) in inference mode; images travel as uint8, one compilation. With
    the trainer's mesh each batch is split over the devices (``batch_size`` rounded up to a
    multiple of their count)."""
    batch_size = round_up(batch_size, trainer.mesh)
    variables = replicate(variables, trainer.mesh)
    with tqdm(total=-(-len(images_uint8) // batch_size), desc="backbone features", unit="batch", leave=False,
              disable=None) as bar:
        return apply_in_batches(
            lambda b: jit_extract_features(variables, b["image"], trainer=trainer),
            {"image": images_uint8}, batch_size, progress=bar.update,
        )


def build_inputs(trainer: Trainer, variables: dict, data: str | Path, cache_dir: Path, skip_invalid: bool,
                 weights_sha: str | None = None, map_model: MapModel | None = None,
                 limit: int | None = None) -> tuple[dict, dict, dict]:
    """Reads and validates a manifest, then builds the model inputs for every valid row.

    Frozen backbone: cached features (extracted for the images not yet in the cache), keyed by
    ``weights_sha`` (the backbone's :func:`backbone_hash`, computed when not given). Otherwise: the
    preprocessed uint8 images. Plus ``stats`` when the model takes image statistics, ``ssim`` and
    ``source`` (the manifest's column, '' where it has none) and ``path`` (each row's image file).
    With ``map_model`` (a loaded run's map network) each row's map score follows its statistics;
    a run that trains its map network adds the scores itself, after the split. ``limit``: only the
    manifest's first ``limit`` valid rows. Returns ``(inputs, facts about the data for config.json,
    timings)``.
    """
    t0 = time.perf_counter()
    manifest, rows, problems = read_manifest(data)
    rows = rows[:limit]
    total_rows = len(rows) + len(problems)
    # A frozen backbone whose features the MLP does not see is never run.
    extract = trainer.freeze_backbone and trainer.model.backbone_features
    cache = feature_cache(cache_dir, weights_sha or backbone_hash(variables), trainer.model.pooled_stages) \
        if extract else None
    scache = stats_cache(cache_dir) if trainer.model.num_stats > 0 else None
    # One process at a time computes a shared cache's entries: a second run waits, then reads them.
    caching = cache is not None or scache is not None
    lock = file_lock(Path(cache_dir) / ".inputs.lock", "computing image statistics and features", log.info) \
        if caching else contextlib.nullcontext()
    with lock:
        read = _read_images(rows, trainer.freeze_backbone, cache, scache)
        problems = problems + read.problems
        raise_for_problems(manifest, problems, len(read.kept), skip_invalid, log=log.warning)
        timings = {"data_s": time.perf_counter() - t0}
        if scache is not None:
            timings["stats_s"] = read.stats_s
            log.info(f"image statistics: {read.stats_computed} computed, {len(read.stats) - read.stats_computed} "
                     "from the cache")
        t1 = time.perf_counter()
        inputs = _image_inputs(trainer, variables, read, cache)
        timings.update(features_s=time.perf_counter() - t1, features_computed=len(read.todo))
    kept_rows = [row for row, _ in read.kept]
    if scache is not None:
        inputs["stats"] = np.stack([read.stats[sha] for _, sha in read.kept]).astype(np.float32)
        if map_model is not None:
            inputs["stats"] = with_map_scores(inputs["stats"], [row.image for row in kept_rows], map_model)
    inputs["ssim"] = np.asarray([row.ssim for row in kept_rows], np.float32)
    inputs["source"] = np.asarray([row.source or "" for row in kept_rows], dtype=object)
    inputs["path"] = np.asarray([str(row.image) for row in kept_rows], dtype=object)
    facts = dict(
        manifest=str(manifest.resolve()), manifest_sha256=file_sha256(manifest), rows=total_rows,
        valid_rows=len(read.kept), skipped_rows=len(problems), preprocessing=PREPROCESS_VERSION,
        feature_cache=str(cache.dir) if cache is not None else None,
        image_stats=STATS_VERSION if scache is not None else None,
    )
    return inputs, facts, timings


@dataclasses.dataclass
class _ReadImages:
    """What one pass over a manifest's image files found, each file read once (keyed by sha256)."""

    kept: list = dataclasses.field(default_factory=list)  # (row, sha) of every readable row
    problems: list = dataclasses.field(default_factory=list)  # the unreadable ones
    feats: dict = dataclasses.field(default_factory=dict)  # cached backbone features
    images: dict = dataclasses.field(default_factory=dict)  # uint8 224x224 pixels where needed
    stats: dict = dataclasses.field(default_factory=dict)  # image statistics, cached or computed
    todo: list = dataclasses.field(default_factory=list)  # images whose features are to be extracted
    stats_todo: dict = dataclasses.field(default_factory=dict)  # sha -> file bytes whose statistics are to compute
    stats_s: float = 0.0
    stats_computed: int = 0


# From this many images on, statistics are computed over every core: each costs a conversion of
# its thumbnail (thumb_ssim), and a worker process costs a few seconds to start.
PARALLEL_STATS_MIN = 200


def _compute_stats(r: _ReadImages, scache: ArrayCache) -> None:
    """The statistics of ``r.stats_todo``'s files, cached (over every core when there are many)."""
    if not r.stats_todo:
        return
    t = time.perf_counter()
    workers = None if len(r.stats_todo) >= PARALLEL_STATS_MIN else 1
    # Largest files first, in small chunks: no worker is left with a long tail while the other idles.
    jobs = sorted(r.stats_todo.items(), key=lambda job: -len(job[1]))
    for sha, values in iter_jobs(file_statistics, jobs, workers, chunks_per_worker=64):
        r.stats[sha] = values
        scache.put(sha, values)
    r.stats_s += time.perf_counter() - t
    r.stats_computed += len(r.stats_todo)
    r.stats_todo.clear()


def _read_images(rows, frozen: bool, cache: ArrayCache | None, scache: ArrayCache | None) -> _ReadImages:
    """Reads every row's image file once: cached features and statistics where the caches hold them;
    otherwise the pixels the backbone needs (extracted later, in batches) and the statistics,
    computed here and cached."""
    r = _ReadImages()
    for row in tqdm(rows, desc="reading images", unit="img", leave=False, disable=None):
        try:
            raw, sha = read_file(row.image)
            if cache is not None and sha not in r.feats and sha not in r.images:
                cached = cache.get(sha)
                if cached is not None:
                    r.feats[sha] = cached
            need_image = sha not in r.images and (not frozen or (cache is not None and sha not in r.feats))
            need_stats = scache is not None and sha not in r.stats and sha not in r.stats_todo
            if need_stats:
                cached = scache.get(sha)
                if cached is not None:
                    r.stats[sha], need_stats = cached, False
            if need_image or need_stats:
                _decode(raw, sha, r, need_image, need_stats, cache is not None)
        except ImageError as e:
            r.problems.append(Problem(row.where, str(row.image), str(e)))
            continue
        r.kept.append((row, sha))
    if scache is not None:
        _compute_stats(r, scache)
    return r


def _decode(raw: bytes, sha: str, r: _ReadImages, need_image: bool, need_stats: bool, extract: bool) -> None:
    img = open_image(raw)  # an unreadable file fails here, naming its row, before any statistics
    if need_image:
        r.images[sha] = resize_224(img)
        if extract:
            r.todo.append(sha)
    if need_stats:
        r.stats_todo[sha] = raw


def _image_inputs(trainer: Trainer, variables: dict, r: _ReadImages, cache: ArrayCache | None) -> dict:
    """``features`` (N, D) of the kept rows (extracted and cached where the cache had none; N x 0
    when the MLP does not see them) with a frozen backbone, else their uint8 ``image``s."""
    if not trainer.freeze_backbone:
        return {"image": np.stack([r.images[sha] for _, sha in r.kept])}
    if cache is None:
        return {"features": np.zeros((len(r.kept), 0), np.float32)}
    if r.todo:
        log.info(f"computing backbone features for {len(r.todo)} images ({len(r.feats)} cached)")
        computed = extract_features(trainer, variables, np.stack([r.images[s] for s in r.todo]))
        for sha, f in zip(r.todo, computed):
            cache.put(sha, f)
            r.feats[sha] = f
    else:
        log.info(f"all {len(r.feats)} backbone features found in the cache")
    return {"features": np.stack([r.feats[sha] for _, sha in r.kept]).astype(np.float32)}
