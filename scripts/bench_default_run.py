#!/usr/bin/env python
"""`ssimjax bench-default-run` from a checkout (see `python scripts/bench_default_run.py --help`)."""

import _path  # noqa: F401

from ssimjax.cli import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("bench-default-run"))
