"""``ssimjax train --vtracer-parameters``: train the settings model (issue 25) in its own run folder."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ssimjax.cli import common as _cli


def _sim_cap(text: str):
    """A float, or ``off`` (kept as the string until :func:`config_from` reads it as None)."""
    return "off" if text.strip().lower() == "off" else float(text)


# flag -> (SettingsRunConfig field, type, help)
SETTINGS_FLAGS = {
    "--settings-count": ("count", int, "training logos converted with K drawn settings each (default 600)"),
    "--settings-k": ("k", int, "settings per training logo, VTracer's defaults among them (default 8)"),
    "--settings-grid-count": ("grid_count", int, "further training logos converted with every candidate setting "
                              "(default 150; 0: none)"),
    "--settings-held-out": ("held_out_count", int, "logos of the selection and of the report sets, each converted "
                            "with every candidate, scored at the end (default 60 each)"),
    "--cond-map-steps": ("cond_steps", int, "training steps of the map network conditioned on the setting "
                         "(default 4000)"),
    "--head-epochs": ("head_epochs", int, "epochs of the head predicting colour SSIM and size (default 300)"),
    "--neighbours": ("neighbours", int, "training logos (of --settings-grid-count) whose SSIM across the candidates "
                     "the neighbour prior averages (default 20)"),
    "--prior-weight": ("prior_weight", float, "how much the neighbours' curve, rather than the map network, says "
                       "how the candidates differ for an image (default 1; 0: the map network alone)"),
    "--prior-anchor": ("prior_anchor", str, "with --prior-weight 1: the map network predicts the defaults' SSIM "
                       "and the neighbours each setting's difference from it (defaults, the default), or the map "
                       "network's mean over the candidates sets the level (mean: it scores every candidate)"),
    "--sim-cap": ("sim_cap", _sim_cap, "cap each setting's predicted SSIM at the defaults' plus what a simulation "
                  "of VTracer's clustering says the setting changes, plus this (default off: no simulation; 0.01 was "
                  "measured)"),
    "--min-ssim": ("min_ssim", float, "the target the report's recommendations meet (default 0.95)"),
    "--margin": ("margin", float, "safety margin on the predicted SSIM when choosing (default 0.005)"),
    "--candidates": ("candidates", str, "a JSON file listing the settings to choose among (objects of VTracer "
                     "parameters; missing ones take the defaults; default: issue 25's 54-setting grid and 30 "
                     "coarse polygons)"),
}


def _dest(flag: str) -> str:
    return "settings_" + flag[2:].replace("-", "_")


def add_settings_flags(g, for_image_parser: bool = False) -> None:
    """The settings run's flags; the image run's parser lists them in its --help (and refuses them
    without --vtracer-parameters)."""
    g.add_argument("--vtracer-parameters", action="store_true",
                   help="train the model that chooses VTracer's parameters per logo (recommend.py) instead of the "
                   "SSIM predictor; takes the flags of this group and --out, --resume, --cache-dir, --seed, "
                   "--no-report, --no-export")
    for flag, (_, kind, text) in SETTINGS_FLAGS.items():
        g.add_argument(flag, type=kind, default=None, help=text, dest=_dest(flag))


def given_settings_flags(args) -> list[str]:
    return [flag for flag in SETTINGS_FLAGS if getattr(args, _dest(flag)) is not None]


def read_candidates(path: str) -> tuple:
    """The settings listed in a JSON file (a list of objects). Raises ValueError naming the file."""
    from ssimjax.data.vtsettings import check_setting

    try:
        items = json.loads(Path(path).read_text())
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise ValueError(f"{path}: expected a non-empty JSON list of objects of VTracer parameters")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(check_setting(item))
        except ValueError as e:
            raise ValueError(f"{path}: setting {i}: {e}") from None
    return tuple(out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ssimjax train --vtracer-parameters",
                                description="Train the model that predicts, from one look at an image, the SSIM, "
                                "colour SSIM and SVG size of VTracer's conversion under each candidate setting.")
    p.add_argument("--out", help="run folder (default: a new folder under runs/)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.add_argument("--cache-dir", help="data and feature cache (default $SSIMJAX_CACHE_DIR or ~/.cache/ssimjax)")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--no-report", dest="report", action="store_false", help="skip report/index.html and its plot")
    p.add_argument("--no-export", dest="export", action="store_false",
                   help="do not write RUN/recommender.pth (the PyTorch SettingRecommender)")
    add_settings_flags(p)
    return p


def config_from(args):
    from ssimjax.train.settings import SettingsRunConfig

    fields = {SETTINGS_FLAGS[f][0]: getattr(args, _dest(f)) for f in SETTINGS_FLAGS}
    fields = {k: v for k, v in fields.items() if v is not None}
    if fields.get("sim_cap") == "off":
        fields["sim_cap"] = None
    if "candidates" in fields:
        fields["candidates"] = read_candidates(fields["candidates"])
    return SettingsRunConfig(seed=args.seed, **fields)


def result_lines(summary: dict) -> list[str]:
    """The held-out figures: report sets first (chosen on nothing), then the selection sets."""
    from ssimjax.evaluate.settings_eval import metric_line

    what = {"report": "report sets, never trained or chosen on", "selection": "selection sets, designs chosen on these"}
    return [f"{what[role]}: {metric_line(summary['held_out'][role])}" for role in ("report", "selection")
            if role in summary["held_out"]]


def main(argv=None) -> int:
    from ssimjax.cli.train_flags import build_parser as image_parser

    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        image_flags = {o for a in image_parser()._actions for o in a.option_strings}
        flag = unknown[0].split("=")[0]
        if flag in image_flags:
            parser.error(f"{flag} applies to the SSIM predictor's runs, not to --vtracer-parameters")
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        cfg = config_from(args)
    except ValueError as e:
        parser.error(str(e))
    _cli.setup_logging()
    _cli.enable_compilation_cache(args.cache_dir)
    log = logging.getLogger("ssimjax").info
    import time

    from ssimjax.data.npm import PackageError
    from ssimjax.files import StorageError
    from ssimjax.train.checkpoint import CheckpointError
    from ssimjax.train.settings import SettingsRunError, train_settings_run

    out = Path(args.out) if args.out else Path("runs") / time.strftime("settings-%Y%m%d-%H%M%S")
    try:
        summary = train_settings_run(out, cfg, args.cache_dir, resume=args.resume, report=args.report, log=log)
    except (SettingsRunError, CheckpointError, PackageError, StorageError, ValueError) as e:
        _cli.fail(str(e), 1)
    except KeyboardInterrupt:
        _cli.fail(f"interrupted; what was trained so far is kept. Continue with: ssimjax train --vtracer-parameters "
                  f"--resume --out {out}", 130)
    if args.export:
        _export(out, log)
    print(f"settings run folder {out}")
    for line in result_lines(summary):
        print(line)
    return 0


def _export(out: Path, log) -> None:
    try:
        from bridge import export_settings_run
    except ImportError as e:
        log(f"recommender.pth not written: PyTorch is not installed ({e}); pip install -e '.[bridge]', then "
            f"ssimjax export --checkpoint {out} --out {out}/recommender.pth")
        return
    log(f"wrote {export_settings_run(out, out / 'recommender.pth')}")
