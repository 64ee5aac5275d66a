#!/usr/bin/env python
"""`ssimjax compare-models` from a checkout (see `python scripts/compare_models.py --help`)."""

import _path  # noqa: F401

from ssimjax.cli import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("compare-models"))
