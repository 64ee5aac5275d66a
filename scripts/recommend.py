#!/usr/bin/env python
"""`ssimjax recommend` from a checkout (see `python scripts/recommend.py --help`)."""

import _path  # noqa: F401

from ssimjax.cli import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("recommend"))
