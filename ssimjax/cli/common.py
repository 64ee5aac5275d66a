"""Shared bits of the commands: logging, one-line errors, the persistent compilation cache."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def setup_logging(verbose: bool = True) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        force=True,  # replaces the handler a library (absl, via Orbax) may have set up on import
    )
    # Orbax and absl are chatty at INFO about their own bookkeeping, and log a failed save at ERROR
    # from each of their threads before raising it: the raise is reported (in one line for a full disk).
    for name in ("absl", "orbax"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    logging.getLogger("jax._src").setLevel(logging.ERROR)


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def enable_compilation_cache(cache_dir=None) -> None:
    """JAX's persistent compilation cache under the ssimjax cache folder (``jax-compilation/``), so a
    second run skips compiling what the first compiled. Off with SSIMJAX_COMPILATION_CACHE=0; an
    explicit JAX_COMPILATION_CACHE_DIR is left alone."""
    import os

    if os.environ.get("SSIMJAX_COMPILATION_CACHE", "1") == "0" or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    import jax

    from ssimjax.features.cache import default_cache_dir

    root = Path(cache_dir) if cache_dir else default_cache_dir()
    jax.config.update("jax_compilation_cache_dir", str(root / "jax-compilation"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
