"""The on-disk caches of model inputs, and where they live.

A cached feature is keyed by the image file's content (sha256), the backbone's weights (sha256 of
every array, in path order) and :data:`ssimjax.data.images.PREPROCESS_VERSION`; cached statistics
by the image's sha256 and :data:`ssimjax.features.stats.STATS_VERSION`: a changed image, backbone,
preprocessing or statistic never reuses a stale entry. Entries are written atomically and carry
their checksum (:mod:`ssimjax.files`).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

from ssimjax.data.images import PREPROCESS_VERSION
from ssimjax.data.labelling import save_ssim_map
from ssimjax.features.stats import STATS_VERSION, image_statistics
from ssimjax.files import read_entry, write_entry


def default_cache_dir() -> Path:
    """``$SSIMJAX_CACHE_DIR``, else ``~/.cache/ssimjax``."""
    env = os.environ.get("SSIMJAX_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "ssimjax"


def weights_hash(tree) -> str:
    """sha256 over every leaf's path, dtype, shape and bytes."""
    import jax  # here: a data build's workers use this module's caches without JAX

    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        a = np.asarray(leaf)
        h.update(jax.tree_util.keystr(path).encode())
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class ArrayCache:
    """One array per image (by its sha256) under a folder, each entry checksummed
    (:func:`ssimjax.files.write_entry`): a damaged entry is reported, removed and recomputed."""

    SUFFIX = ".npy.entry"

    def __init__(self, folder: str | Path):
        self.dir = Path(folder)

    def _path(self, image_sha: str) -> Path:
        return self.dir / image_sha[:2] / f"{image_sha}{self.SUFFIX}"

    def get(self, image_sha: str) -> np.ndarray | None:
        payload = read_entry(self._path(image_sha))
        if payload is None:
            return self._migrate(image_sha)
        return np.load(io.BytesIO(payload))

    def put(self, image_sha: str, features: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, np.asarray(features, np.float32))
        write_entry(self._path(image_sha), buf.getvalue())

    def _migrate(self, image_sha: str) -> np.ndarray | None:
        # Entries written before they carried a checksum (plain .npy), kept rather than recomputed.
        legacy = self._path(image_sha).with_name(f"{image_sha}.npy")
        try:
            value = np.load(legacy)
        except (OSError, ValueError):
            return None
        self.put(image_sha, value)
        legacy.unlink(missing_ok=True)
        return value


def feature_cache(root: str | Path, weights_sha: str, pooled_stages: str = "last") -> ArrayCache:
    """Backbone features under ``root/features/<weights>-<preprocessing>[-all-stages]/``."""
    suffix = "" if pooled_stages == "last" else f"-{pooled_stages}-stages"
    return ArrayCache(Path(root) / "features" / f"{weights_sha[:20]}-{PREPROCESS_VERSION}{suffix}")


def stats_cache(root: str | Path) -> ArrayCache:
    """Image statistics under ``root/stats/<statistics version>/``."""
    return ArrayCache(Path(root) / "stats" / STATS_VERSION)


def cache_labelled(root: str | Path, data: bytes, img, ssim: float, ssim_map: np.ndarray) -> None:
    """What a data build's worker caches for an image file it has just written and labelled
    (``data`` its bytes, ``img`` them decoded, ``ssim`` and ``ssim_map`` the label): the SSIM map,
    for the map network to train on without a second conversion, and the file's statistics, for
    the run without a second decode (``thumb_ssim`` of an image no larger than the thumbnail is
    the label itself); both keyed by the file's sha256."""
    sha = hashlib.sha256(data).hexdigest()
    save_ssim_map(root, sha, ssim_map)
    stats_cache(root).put(sha, image_statistics(img, conversion=ssim))


def backbone_hash(variables: dict) -> str:
    """The cache key of a model's backbone: :func:`weights_hash` of its subtree alone."""
    from ssimjax.models.quality import split_backbone

    return weights_hash(split_backbone(variables)[0])
