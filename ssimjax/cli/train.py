"""Train the SSIM predictor: ssimjax train [--data MANIFEST_OR_FOLDER] [--out RUN_DIR] ..."""

from __future__ import annotations

import dataclasses
import json

from ssimjax.cli import common as _cli
from ssimjax.cli.train_flags import FLAG_FOR_FIELD, build_parser
from ssimjax.config import PLAN_MODEL, ConfigError, TrainConfig
from ssimjax.data.manifest import DataError
from ssimjax.data.npm import PackageError
from ssimjax.train.checkpoint import CheckpointError
from ssimjax.train.parallel import ParallelError
from ssimjax.train.plan import RunError, plan_run
from ssimjax.train.progress import TrainingError
from ssimjax.train.run import train_run


def backbone_loader(spec: str):
    """A loader of (Flax backbone variables, facts) from torchvision's weights or a local .pth, via the bridge."""
    try:
        from bridge import PretrainedError, backbone_from_torchvision
    except ImportError as e:
        _cli.fail(f"--backbone-weights needs PyTorch ({e}); install the bridge extra: pip install -e '.[bridge]'")
    from ssimjax.models.init import init_variables
    from ssimjax.models.quality import make_model, split_backbone

    def load(config):
        template = split_backbone(init_variables(make_model(config), config.seed))[0]
        try:
            return backbone_from_torchvision(spec, template)
        except PretrainedError as e:
            _cli.fail(str(e), 1)

    return load


def write_torch_model(out, config) -> None:
    """model.pth (the best weights, for the PyTorch deployment) beside every ResNet-50 run."""
    import logging

    log = logging.getLogger("ssimjax")
    if config.backbone != "resnet50":
        log.info("model.pth not written: the PyTorch model is ResNet-50, this run used the tiny backbone")
        return
    if config.pooled_stages != "last":
        log.info("model.pth not written: the PyTorch model pools the last backbone stage only")
        return
    try:
        from bridge import export_run
    except ImportError as e:
        log.warning(f"model.pth not written: PyTorch is not installed ({e}); pip install -e '.[bridge]', then "
                    f"ssimjax export --checkpoint {out} --out {out}/model.pth")
        return
    log.info(f"wrote {export_run(out, out / 'model.pth')}")


def main(argv=None) -> int:
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    if "--vtracer-parameters" in argv:
        from ssimjax.cli.train_settings import main as train_settings

        return train_settings(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    from ssimjax.cli.train_settings import given_settings_flags

    if given_settings_flags(args):
        parser.error(f"{given_settings_flags(args)[0]} applies to --vtracer-parameters runs only")
    _cli.setup_logging()
    _cli.enable_compilation_cache(args.cache_dir)
    if args.distributed:
        import jax

        try:
            jax.distributed.initialize()
        except (RuntimeError, ValueError) as e:
            _cli.fail(f"--distributed: jax.distributed.initialize() failed: {e}", 1)
    plan = _plan(parser, args)
    try:
        result, out = train_run(plan=plan, skip_invalid=args.skip_invalid, cache_dir=args.cache_dir,
                                demo_count=args.demo_count, icon_count=args.icon_count,
                                held_out_per_set=args.held_out_per_set, report=args.report)
        if args.export:
            write_torch_model(out, plan.config)
    except (DataError, RunError, TrainingError, CheckpointError, ConfigError, PackageError, ParallelError) as e:
        _cli.fail(str(e), 1)
    except KeyboardInterrupt:
        _cli.fail(f"interrupted; the checkpoints written so far are kept. Continue with: "
                  f"ssimjax train --resume --out {plan.out}", 130)
    _print_result(result, out, plan.config, args.report)
    return 0


def flag(field: str) -> str:
    """The command-line flag of a ``TrainConfig`` field."""
    return FLAG_FOR_FIELD.get(field, "--" + field.replace("_", "-"))


def given_fields(args) -> dict:
    """The ``TrainConfig`` fields the command line set (``--resume`` refuses to change most), with
    what ``--plan-model``, ``--no-image-stats`` and ``--test-source none`` imply."""
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if given.get("test_source", "").lower() == "none":
        given["test_source"] = None
    if args.plan_model:
        if given.get("backbone_features") is False:
            raise ConfigError("--plan-model contradicts --no-backbone-features")
        given = {**PLAN_MODEL, **given, "image_stats": False, "map_net": False, "backbone_features": True}
    if given.get("image_stats") is False:
        given.setdefault("map_net", False)  # the map score joins the statistics: none without them
    return given


def _plan(parser, args):
    """How the run starts (:func:`ssimjax.train.plan.plan_run`); a bad flag is a usage error naming it."""
    for name in ("demo_count", "icon_count", "held_out_per_set"):
        if getattr(args, name) < 1:
            parser.error(f"{flag(name)}: must be >= 1 (got {getattr(args, name)})")
    loader = backbone_loader(args.backbone_weights) if args.backbone_weights != "none" else None
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    try:
        return plan_run(given_fields(args), out=args.out, resume=args.resume, data=args.data, load_backbone=loader,
                        flag_name=flag)
    except ConfigError as e:
        field = str(e).split(":", 1)[0]
        parser.error(str(e).replace(field, flag(field), 1) if field in fields else str(e))
    except RunError as e:
        _cli.fail(str(e), 1)


def _print_result(result, out, config, report: bool) -> None:
    m = result.best_val_metrics
    print(f"best epoch {result.best_epoch + 1}/{result.epochs_completed}: val loss {m['loss']:.4f}, "
          f"val correlation {m['correlation']:.4f}, val MAE {m['mae']:.4f}; run folder {out}")
    summary = json.loads((out / "summary.json").read_text())
    if report:
        print(f"dashboard: {out / 'report' / 'training_dashboard.html'}")
    for line in held_out_lines(summary):
        print(line)


def held_out_lines(summary: dict) -> list[str]:
    """What a run's summary says about its held-out sets: each role's mean and worst (report sets
    first: icon sets nobody chose anything on) and every set, or the one held-out set."""
    test, roles = summary.get("test_metrics"), summary.get("test_roles") or {}
    if not test:
        return []
    per_set = summary.get("test_per_set") or {}
    if not per_set:
        return [f"held-out icon set {summary.get('test_source')!r} ({test['count']} images): SRCC {test['srcc']:.4f}, "
                f"PLCC {test['plcc']:.4f}, MAE {test['mae']:.4f}"] + size_lines(summary)
    lines = []
    for role, what in (("report", "never trained or chosen on"), ("selection", "designs are chosen on these")):
        if role in roles:
            r = roles[role]
            lines.append(f"{role} sets ({r['sets']}, {what}): mean SRCC {r['mean_srcc']:.4f}, PLCC "
                         f"{r['mean_plcc']:.4f}; worst {r['worst_set']} SRCC {r['worst_srcc']:.4f}")
    lines.append("held-out sets: " + ", ".join(f"{name} {v['srcc']:.3f} / {v['plcc']:.3f}"
                                               for name, v in per_set.items()) + " (SRCC / PLCC)")
    lines.append(f"all {test['count']} held-out images: SRCC {test['srcc']:.4f}, PLCC {test['plcc']:.4f}, "
                 f"MAE {test['mae']:.4f}")
    return lines + size_lines(summary)


def size_lines(summary: dict) -> list[str]:
    """The held-out images by long side: how far to trust a prediction for an image of that size."""
    per_size = summary.get("test_per_size") or {}
    if not per_size:
        return []
    return ["by long side: " + ", ".join(f"{band} ({v['count']}) SRCC {v['srcc']:.3f}, MAE {v['mae']:.3f}"
                                         for band, v in per_size.items())]
