#!/usr/bin/env python
"""`ssimjax evaluate` from a checkout (see `python scripts/evaluate.py --help`)."""

import _path  # noqa: F401

from ssimjax.cli import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("evaluate"))
