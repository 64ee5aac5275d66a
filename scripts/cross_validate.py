#!/usr/bin/env python
"""`ssimjax cross-validate` from a checkout (see `python scripts/cross_validate.py --help`)."""

import _path  # noqa: F401

from ssimjax.cli import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("cross-validate"))
