"""The model's inputs for a manifest: frozen-backbone features, extracted in batches once per
image and cached on disk, or the preprocessed images themselves when the backbone trains; and
the image statistics (:mod:`ssimjax.features.stats`) when the model takes them, cached the same way.

A cached feature is keyed by the image file's content (sha256), the backbone's weights (sha256 of
every array, in path order) and :data:`ssimjax.data.images.PREPROCESS_VERSION`; cached statistics by the
image's sha256 and :data:`ssimjax.features.stats.STATS_VERSION`: a changed image, backbone, preprocessing
or statistic never reuses a stale entry.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from ssimjax.data.images import PREPROCESS_VERSION, ImageError, open_image, read_file, resize_224
from ssimjax.data.manifest import Problem, file_sha256, raise_for_problems, read_manifest
from ssimjax.features.stats import STATS_VERSION, image_statistics
from ssimjax.models.mapnet import MapModel, with_map_scores
from ssimjax.models.quality import split_backbone
from ssimjax.train.batching import apply_in_batches
from ssimjax.train.parallel import replicate, round_up
from ssimjax.train.state import Trainer
from ssimjax.train.steps import jit_extract_features

log = logging.getLogger("ssimjax")
FEATURE_BATCH = 16


def default_cache_dir() -> Path:
    """``$SSIMJAX_CACHE_DIR``, else ``~/.cache/ssimjax``."""
    env = os.environ.get("SSIMJAX_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "ssimjax"


def weights_hash(tree) -> str:
    """sha256 over every leaf's path, dtype, shape and bytes."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        a = np.asarray(leaf)
        h.update(jax.tree_util.keystr(path).encode())
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class ArrayCache:
    """One ``.npy`` per image (by its sha256) under a folder."""

    def __init__(self, folder: str | Path):
        self.dir = Path(folder)

    def _path(self, image_sha: str) -> Path:
        return self.dir / image_sha[:2] / f"{image_sha}.npy"

    def get(self, image_sha: str) -> np.ndarray | None:
        try:
            return np.load(self._path(image_sha))
        except (OSError, ValueError):
            return None

    def put(self, image_sha: str, features: np.ndarray) -> None:
        path = self._path(image_sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, np.asarray(features, np.float32))
        os.replace(tmp, path)  # atomic: readers never see half a file


def feature_cache(root: str | Path, weights_sha: str, pooled_stages: str = "last") -> ArrayCache:
    """Backbone features under ``root/features/<weights>-<preprocessing>[-all-stages]/``."""
    suffix = "" if pooled_stages == "last" else f"-{pooled_stages}-stages"
    return ArrayCache(Path(root) / "features" / f"{weights_sha[:20]}-{PREPROCESS_VERSION}{suffix}")


def stats_cache(root: str | Path) -> ArrayCache:
    """Image statistics under ``root/stats/<statistics version>/``."""
    return ArrayCache(Path(root) / "stats" / STATS_VERSION)


def backbone_hash(variables: dict) -> str:
    """The cache key of a model's backbone: :func:`weights_hash` of its subtree alone."""
    return weights_hash(split_backbone(variables)[0])


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
    frozen = trainer.freeze_backbone
    # A frozen backbone whose features the MLP does not see is never run.
    extract = frozen and trainer.model.backbone_features
    use_stats = trainer.model.num_stats > 0
    cache = feature_cache(cache_dir, weights_sha or backbone_hash(variables), trainer.model.pooled_stages) \
        if extract else None
    scache = stats_cache(cache_dir) if use_stats else None

    kept, feats, images, stats, todo = [], {}, {}, {}, []
    stats_s, stats_computed = 0.0, 0
    for row in tqdm(rows, desc="reading images", unit="img", leave=False, disable=None):
        try:
            raw, sha = read_file(row.image)
            if extract and sha not in feats and sha not in images:
                cached = cache.get(sha)
                if cached is not None:
                    feats[sha] = cached
            need_image = sha not in images and (not frozen or (extract and sha not in feats))
            need_stats = use_stats and sha not in stats
            if need_stats:
                cached = scache.get(sha)
                if cached is not None:
                    stats[sha], need_stats = cached, False
            if need_image or need_stats:
                img = open_image(raw)
                if need_image:
                    images[sha] = resize_224(img)
                    if extract:
                        todo.append(sha)
                if need_stats:
                    t = time.perf_counter()
                    stats[sha] = image_statistics(img)
                    scache.put(sha, stats[sha])
                    stats_s += time.perf_counter() - t
                    stats_computed += 1
        except ImageError as e:
            problems.append(Problem(row.where, str(row.image), str(e)))
            continue
        kept.append((row, sha))
    raise_for_problems(manifest, problems, len(kept), skip_invalid, log=log.warning)
    timings = {"data_s": time.perf_counter() - t0}
    if use_stats:
        timings["stats_s"] = stats_s
        log.info(f"image statistics: {stats_computed} computed, {len(stats) - stats_computed} from the cache")

    t1 = time.perf_counter()
    if frozen and not extract:
        inputs = {"features": np.zeros((len(kept), 0), np.float32)}
    elif frozen:
        if todo:
            log.info(f"computing backbone features for {len(todo)} images ({len(feats)} cached)")
            computed = extract_features(trainer, variables, np.stack([images[s] for s in todo]))
            for sha, f in zip(todo, computed):
                cache.put(sha, f)
                feats[sha] = f
        else:
            log.info(f"all {len(feats)} backbone features found in the cache")
        inputs = {"features": np.stack([feats[sha] for _, sha in kept]).astype(np.float32)}
    else:
        inputs = {"image": np.stack([images[sha] for _, sha in kept])}
    timings.update(features_s=time.perf_counter() - t1, features_computed=len(todo))
    if use_stats:
        inputs["stats"] = np.stack([stats[sha] for _, sha in kept]).astype(np.float32)
        if map_model is not None:
            inputs["stats"] = with_map_scores(inputs["stats"], [row.image for row, _ in kept], map_model)
    inputs["ssim"] = np.asarray([row.ssim for row, _ in kept], np.float32)
    inputs["source"] = np.asarray([row.source or "" for row, _ in kept], dtype=object)
    inputs["path"] = np.asarray([str(row.image) for row, _ in kept], dtype=object)
    facts = dict(
        manifest=str(manifest.resolve()), manifest_sha256=file_sha256(manifest), rows=total_rows,
        valid_rows=len(kept), skipped_rows=len(problems), preprocessing=PREPROCESS_VERSION,
        feature_cache=str(cache.dir) if cache is not None else None,
        image_stats=STATS_VERSION if use_stats else None,
    )
    return inputs, facts, timings
