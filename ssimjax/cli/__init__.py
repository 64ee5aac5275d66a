"""The ``ssimjax`` command: ``ssimjax COMMAND [flags]``, each command a thin layer over the library.

``scripts/*.py`` run the same commands from a checkout (``python scripts/train.py`` is
``ssimjax train``), and ``python -m ssimjax COMMAND`` does too.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

# command -> (module with main(argv), one line of help)
COMMANDS = {
    "train": ("ssimjax.cli.train", "train a model; writes a run folder (and model.pth)"),
    "predict": ("ssimjax.cli.predict", "predict the SSIM of image files with a trained run"),
    "recommend": ("ssimjax.cli.recommend", "choose VTracer's parameters per image with a settings run"),
    "evaluate": ("ssimjax.cli.evaluate", "score a run on a labelled set (SRCC, PLCC, KRCC, MAE, RMSE)"),
    "export": ("ssimjax.cli.export", "write a run's weights as the deployment's PyTorch model.pth"),
    "cross-validate": ("ssimjax.cli.cross_validate", "k-fold cross-validation"),
    "analyze": ("ssimjax.cli.analyze", "robustness, inference speed and feature importance of a run"),
    "make-dataset": ("ssimjax.cli.make_dataset", "build a labelled set with VTracer, resvg and SSIM"),
    "benchmark": ("ssimjax.bench.cpu", "speed against the plan's PyTorch trainer on this machine"),
    "benchmark-gpu": ("ssimjax.bench.gpu", "fine-tuning and extraction throughput on an accelerator"),
    "compare-models": ("ssimjax.bench.compare", "model candidates scored with each icon set held out"),
    "bench-default-run": ("ssimjax.bench.default_run", "the default job timed twice in a fresh cache"),
}


def command_line(name: str, env: dict | None = None) -> tuple[list[str], dict]:
    """``(argv, environment)`` that run command ``name`` in a new process with this interpreter and this
    copy of ssimjax (installed or not); flags go after the argv."""
    env = dict(os.environ if env is None else env)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return [sys.executable, "-m", "ssimjax", name], env


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:{width}s}  {text}" for name, (_, text) in COMMANDS.items()]
    return "usage: ssimjax COMMAND [flags]   (ssimjax COMMAND --help for its flags)\n\ncommands:\n" + "\n".join(lines)


def run_command(name: str, argv: list[str] | None = None) -> int:
    """Runs one command's ``main`` with ``argv`` (default: the process's arguments). A file the
    disk refused (full, over quota, read-only) ends any command with one line naming it."""
    from ssimjax.cli.common import fail
    from ssimjax.files import StorageError, disk_error, is_disk_error

    try:
        return importlib.import_module(COMMANDS[name][0]).main(argv)
    except StorageError as e:
        fail(str(e), 1)
    except OSError as e:
        if not is_disk_error(e):
            raise
        fail(str(disk_error(e.filename or "a file", e)), 1)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"ssimjax: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    sys.argv[0] = f"ssimjax {name}"  # argparse's usage lines name the command
    return run_command(name, rest)
