"""A command run in the test process, as `ssimjax COMMAND` and `python scripts/COMMAND.py` run it
(the same ``run_command``, its exit code, its stdout and stderr), for tests that check what a
command does rather than the process around it.

A new process costs each call the library's import and the tracing and compilation of every step
(10-20 s for a tiny run); in this process a second run reuses the first's compiled steps. Tests of
what only a process shows (a kill, a second process beside it, the ``ssimjax`` entry point) start
real ones.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(script: str, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    """``scripts/<script>`` (``"train.py"``, or a command name: ``"make-dataset"``) with ``args``,
    ``env`` added to the environment while it runs. Never raises: an uncaught exception is printed
    to the returned stderr with exit code 1, as Python does for a script."""
    import re

    from ssimjax.cli import COMMANDS, run_command

    path = ROOT / "scripts" / script
    if script.endswith(".py"):  # the command the script runs
        name = re.search(r'run_command\("([\w-]+)"\)', path.read_text()).group(1)
    else:
        name, path = script, ROOT / "scripts" / f"{script.replace('-', '_')}.py"
    if name not in COMMANDS:
        raise ValueError(f"no command {name!r}")
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_env, saved_argv = os.environ.copy(), sys.argv
    os.environ.update({k: str(v) for k, v in (env or {}).items()})
    # The JAX configuration is the test process's own: a command must not point it at a cache folder.
    os.environ["SSIMJAX_COMPILATION_CACHE"] = "0"
    sys.argv = [str(path), *argv]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = run_command(name, argv)
            except SystemExit as e:
                code = e.code
                if code is not None and not isinstance(code, int):
                    print(code, file=sys.stderr)
                    code = 1
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    return subprocess.CompletedProcess([str(path), *argv], code or 0, out.getvalue(), err.getvalue())
