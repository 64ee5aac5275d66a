"""Shared bits of the command-line scripts: import path, logging, one-line errors."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

# Let `python scripts/x.py` work from a checkout even before `pip install -e .`.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def setup_logging(verbose: bool = True) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    # Orbax and absl are chatty at INFO about their own bookkeeping.
    for name in ("absl", "orbax", "jax._src"):
        logging.getLogger(name).setLevel(logging.ERROR)


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)
