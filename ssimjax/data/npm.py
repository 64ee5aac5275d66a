"""Packages from the npm registry, by name and pinned version: the published tarball, its sha512
integrity verified, cached on disk, and read offline from the cache afterwards.

Nothing half-written is ever cached: a tarball is verified in memory and renamed into place
whole. A cached copy that no longer matches its integrity (truncated or altered on disk) is
reported in one line and fetched again. This module does not import JAX.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ssimjax.files import disk_error, write_bytes_atomic

DEFAULT_REGISTRY = "https://registry.npmjs.org"
log = logging.getLogger("ssimjax")


def registry_url() -> str:
    """``$SSIMJAX_NPM_REGISTRY`` (a mirror, or a file:// folder laid out as the registry), else npm's."""
    return os.environ.get("SSIMJAX_NPM_REGISTRY", DEFAULT_REGISTRY).rstrip("/")


TIMEOUT_S = 60


class PackageError(RuntimeError):
    """A package that cannot be had or used; one line naming it and saying why."""


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        raise PackageError(f"{url}: the registry answered HTTP {e.code}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise PackageError(f"{url}: cannot reach the npm registry ({reason})") from None


def check_integrity(data: bytes, integrity: str, what: str) -> None:
    """Raises :class:`PackageError` unless ``data`` matches an npm ``sha512-<base64>`` integrity."""
    algo, _, expected = integrity.partition("-")
    if algo != "sha512" or not expected:
        raise PackageError(f"{what}: unsupported integrity {integrity!r} (expected sha512-...)")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise PackageError(f"{what}: integrity check failed (sha512 {actual[:16]}..., published {expected[:16]}...); "
                           "the download is corrupt or truncated and was not cached")


def _tar_members(data: bytes, what: str) -> dict[str, bytes]:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, OSError, EOFError) as e:
        raise PackageError(f"{what}: not a readable package tarball ({type(e).__name__}: {e})") from None


def cache_path(cache_dir: str | Path, name: str, version: str) -> Path:
    safe = name.replace("/", "__").replace("@", "")
    return Path(cache_dir) / "npm" / f"{safe}-{version}.tgz"


def fetch_tarball(name: str, version: str, cache_dir: str | Path, registry: str | None = None) -> bytes:
    """The package's published tarball: from the cache when there (re-verified against the
    integrity recorded beside it), else from the registry, verified, then cached."""
    registry = registry or registry_url()
    path = cache_path(cache_dir, name, version)
    what = f"{name}@{version}"
    meta_path = path.with_suffix(".integrity")
    if path.is_file() and meta_path.is_file():
        data = path.read_bytes()
        try:
            check_integrity(data, meta_path.read_text().strip(), f"{what} (cached at {path})")
            return data
        except (PackageError, UnicodeDecodeError):  # a damaged copy is never used: fetched again
            log.warning(f"damaged cache entry {path} ({len(data)} bytes: its sha512 does not match the integrity "
                        "recorded with it); removed, fetching it again")
            path.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
    try:
        info = json.loads(_get(f"{registry}/{urllib.parse.quote(name, safe='@')}/{version}"))
        dist = info["dist"]
        tarball_url, integrity = dist["tarball"], dist["integrity"]
    except PackageError as e:
        raise PackageError(f"{what}: not in the cache ({path}) and {e}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise PackageError(f"{what}: the registry's metadata has no usable dist ({e})") from None
    data = _get(tarball_url)
    check_integrity(data, integrity, what)
    _tar_members(data, what)  # a verified tarball that does not unpack is still refused
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise disk_error(path, e) from None
    write_bytes_atomic(path, data)
    write_bytes_atomic(meta_path, integrity.encode())  # last: a tarball without it is fetched again
    return data


def package_files(name: str, version: str, cache_dir: str | Path, registry: str | None = None) -> dict[str, bytes]:
    """``{path inside the package (without the leading 'package/'): bytes}``."""
    members = _tar_members(fetch_tarball(name, version, cache_dir, registry), f"{name}@{version}")
    return {k.split("/", 1)[1] if "/" in k else k: v for k, v in members.items()}
