"""Frozen-backbone features, computed once per image and cached on disk.

A cached entry is keyed by the image file's content (sha256), the backbone's weights (sha256 of
every array, in path order) and :data:`ssimjax.data.PREPROCESS_VERSION`, so a changed image,
backbone or preprocessing never reuses a stale entry.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import jax
import numpy as np

from .data import PREPROCESS_VERSION


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


class FeatureCache:
    """One ``.npy`` per image under ``root/features/<weights>-<preprocessing>/``."""

    def __init__(self, root: str | Path, backbone_hash: str):
        self.dir = Path(root) / "features" / f"{backbone_hash[:20]}-{PREPROCESS_VERSION}"

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
