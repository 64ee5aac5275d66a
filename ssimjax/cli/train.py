"""Train the SSIM predictor: ssimjax train [--data MANIFEST_OR_FOLDER] [--out RUN_DIR] ..."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ssimjax.cli import common as _cli

FLAG_FOR_FIELD = {
    "use_batch_norm": "--no-batch-norm",
    "freeze_backbone": "--no-freeze-backbone",
    "image_stats": "--no-image-stats",
    "map_net": "--no-map-net",
    "map_residual": "--no-map-residual",
    "map_extra_mlp": "--no-map-extra-mlp",
}  # every other field's flag is --field-name


def parse_hidden_dims(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(x) for x in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers like 1024,512,256,128 (got {text!r})") from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"expected one or more positive whole numbers (got {text!r})")
    return dims


def parse_numbers(count: int, what: str):
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(x) for x in text.replace(",", " ").split())
        except ValueError:
            values = ()
        if len(values) != count:
            raise argparse.ArgumentTypeError(f"expected {count} numbers ({what}), e.g. "
                                             f"{','.join(['0.5'] * count)} (got {text!r})")
        return values
    return parse


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


def build_parser() -> argparse.ArgumentParser:
    from ssimjax.config import (
        BACKBONES,
        COMPUTE_DTYPES,
        DEFAULT_DEMO_COUNT,
        DEFAULT_ICON_COUNT,
        DEFAULT_TEST_SOURCE,
        HEAD_INITS,
        MAP_CROP,
        MAP_STEPS,
        POOLED_STAGES,
        SCHEDULERS,
    )
    from ssimjax.train.losses import BASE_LOSSES, LOSSES

    p = argparse.ArgumentParser(
        description="Train the ResNet-50 + MLP SSIM predictor (JAX/Flax). Without --data, trains on the "
        "built-in set of real logos from public icon sets (fetched from the npm registry, rasterised and labelled "
        "with VTracer + resvg on first use, then cached), holding one icon set out as a test set.",
    )
    p.add_argument("--data", help="icons (the default: real logos from five public icon sets), generated (logo-like "
                   "images made offline), or a CSV (image,ssim[,source]) or JSON manifest, or a folder holding "
                   "labels.csv/labels.json")
    p.add_argument("--out", help="run folder (default: a new folder under runs/)")
    # Training flags default to None so that --resume can tell which were given.
    p.add_argument("--epochs", type=int, help="maximum epochs (default 150; 50 with --plan-model)")
    p.add_argument("--batch-size", type=int, help="default 32")
    p.add_argument("--learning-rate", type=float, help="default 1e-3")
    p.add_argument("--weight-decay", type=float, help="L2 added to the gradient, as torch Adam (default 1e-4)")
    p.add_argument("--loss", choices=LOSSES, help="default combined (mse with --plan-model); quality_aware weights "
                   "each row's loss by its label's band, ranking is a pairwise margin loss, adaptive mixes mse, mae "
                   "and ranking with learned weights")
    p.add_argument("--quality-base-loss", choices=BASE_LOSSES, help="quality_aware loss: the per-row loss it "
                   "weights (default mse)")
    p.add_argument("--quality-weights", type=parse_numbers(3, "high, medium, low"),
                   help="quality_aware loss: weights of the high, medium and low bands (default 2,1.5,1)")
    p.add_argument("--quality-bands", type=parse_numbers(2, "low/medium edge, medium/high edge"),
                   help="quality band edges for the quality_aware loss, per-band metrics and cross-validation "
                   "strata (default 0.6,0.8)")
    p.add_argument("--ranking-margin", type=float, help="ranking and adaptive losses: pairwise margin (default 0.05)")
    p.add_argument("--scheduler", choices=SCHEDULERS, help="default reduce_on_plateau")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (default 20; 10 with --plan-model)")
    p.add_argument("--min-delta", type=float, help="minimum improvement for early stopping (default 1e-4)")
    p.add_argument("--validation-split", type=float, help="share of rows held out, seeded (default 0.2)")
    p.add_argument("--test-source", metavar="NAME|none",
                   help="hold out every row of this manifest source (an icon set): never trained on, scored at the "
                   f"end (default {DEFAULT_TEST_SOURCE} for --data icons, none otherwise)")
    p.add_argument("--hidden-dims", type=parse_hidden_dims, help="MLP widths, e.g. 1024,512,256,128 (the default)")
    p.add_argument("--dropout-rate", type=float, help="default 0.3")
    p.add_argument("--no-batch-norm", dest="use_batch_norm", action="store_const", const=False,
                   help="no BatchNorm in the MLP")
    p.add_argument("--no-freeze-backbone", dest="freeze_backbone", action="store_const", const=False,
                   help="train the backbone too, at 0.1x the learning rate")
    p.add_argument("--pooled-stages", choices=POOLED_STAGES,
                   help="backbone features: the last stage pooled (default, the plan) or every stage's")
    p.add_argument("--compute-dtype", choices=COMPUTE_DTYPES,
                   help="float32 (default) or bfloat16: mixed precision for the backbone and the MLP's hidden layers "
                   "(float32 parameters, optimiser, BatchNorm statistics and output)")
    p.add_argument("--backbone", choices=BACKBONES,
                   help="resnet50 (default) or a tiny ResNet for smoke tests")
    p.add_argument("--plan-model", action="store_true",
                   help="the plan's model exactly: 2048 backbone features into the MLP, no image statistics "
                   "(model.pth strict-loads into the plan's own class), trained with the plan's mse, 50 epochs, patience 10 "
                   "unless those flags are given")
    p.add_argument("--backbone-features", dest="backbone_features", action="store_const", const=True,
                   help="the MLP also sees the backbone's features (on by default with --backbone-weights or "
                   "--no-freeze-backbone)")
    p.add_argument("--no-backbone-features", dest="backbone_features", action="store_const", const=False,
                   help="the MLP never sees the backbone's features")
    p.add_argument("--no-image-stats", dest="image_stats", action="store_const", const=False,
                   help="no image statistics in the MLP's input (and so no map score)")
    p.add_argument("--no-map-net", dest="map_net", action="store_const", const=False,
                   help="no learned SSIM-map score beside the statistics: the statistics MLP alone (saves about "
                   "4 minutes of a default run; held-out PLCC about 0.1 lower)")
    p.add_argument("--map-channels", type=int, help="the SSIM-map network's width (default 16)")
    p.add_argument("--map-steps", type=int, help=f"the SSIM-map network's training steps (default {MAP_STEPS})")
    p.add_argument("--map-crop", type=int, help=f"the side of its training crops in pixels (default {MAP_CROP})")
    p.add_argument("--map-extra", type=int, help="synthetic wordmarks added to the SSIM-map network's training "
                   "images (default 1200; 0: none)")
    p.add_argument("--no-map-extra-mlp", dest="map_extra_mlp", action="store_const", const=False,
                   help="the synthetic wordmarks train the SSIM-map network only, not the MLP")
    p.add_argument("--no-map-residual", dest="map_residual", action="store_const", const=False,
                   help="the MLP predicts SSIM from the map score as one more input (sigmoid output) instead of "
                   "correcting it")
    p.add_argument("--head-init", choices=HEAD_INITS,
                   help="output layer initialisation (default lecun_normal; kaiming_fan_out is the plan's literal "
                   "choice, which saturates the sigmoid)")
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--backbone-weights", default="none", metavar="none|torchvision|PATH",
                   help="start the ResNet-50 from torchvision's ImageNet weights (downloaded by torchvision when "
                   "online), from a local torchvision-format .pth state dict, or from a seeded random init (none, "
                   "the default); needs the bridge extra")
    p.add_argument("--no-export", dest="export", action="store_false",
                   help="do not write RUN/model.pth (ssimjax export can write it later)")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="skip RUN/report/ (figures, training_dashboard.html, robustness / benchmark / feature-importance "
                   "analyses of the validation images)")
    p.add_argument("--distributed", action="store_true",
                   help="several hosts: call jax.distributed.initialize() first (coordinator, process count and id "
                   "from JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID or the cluster launcher); batches "
                   "are then split over every host's devices")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--skip-invalid", action="store_true", help="train on the valid rows, skipping invalid ones")
    p.add_argument("--cache-dir", help="demo data and feature cache (default $SSIMJAX_CACHE_DIR or ~/.cache/ssimjax)")
    p.add_argument("--demo-count", type=int, default=DEFAULT_DEMO_COUNT,
                   help=f"images in the built-in generated set (default {DEFAULT_DEMO_COUNT})")
    p.add_argument("--icon-count", type=int, default=DEFAULT_ICON_COUNT,
                   help=f"images in the built-in real-logo set (default {DEFAULT_ICON_COUNT})")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _cli.setup_logging()
    _cli.enable_compilation_cache(args.cache_dir)
    if args.distributed:
        import jax

        try:
            jax.distributed.initialize()
        except (RuntimeError, ValueError) as e:
            _cli.fail(f"--distributed: jax.distributed.initialize() failed: {e}", 1)
    from ssimjax.config import PLAN_MODEL, ConfigError, TrainConfig
    from ssimjax.data.manifest import DataError
    from ssimjax.data.npm import PackageError
    from ssimjax.train.checkpoint import CheckpointError
    from ssimjax.train.parallel import ParallelError
    from ssimjax.train.plan import RunError, plan_run
    from ssimjax.train.progress import TrainingError
    from ssimjax.train.run import train_run

    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if given.get("test_source", "").lower() == "none":
        given["test_source"] = None
    if args.plan_model:
        if given.get("backbone_features") is False:
            parser.error("--plan-model contradicts --no-backbone-features")
        given = {**PLAN_MODEL, **given, "image_stats": False, "map_net": False, "backbone_features": True}
    if given.get("image_stats") is False:
        given.setdefault("map_net", False)  # the map score joins the statistics: none without them

    def flag(field):
        return FLAG_FOR_FIELD.get(field, "--" + field.replace("_", "-"))

    for name in ("demo_count", "icon_count"):
        if getattr(args, name) < 1:
            parser.error(f"{flag(name)}: must be >= 1 (got {getattr(args, name)})")
    loader = backbone_loader(args.backbone_weights) if args.backbone_weights != "none" else None
    try:
        plan = plan_run(given, out=args.out, resume=args.resume, data=args.data, load_backbone=loader, flag_name=flag)
    except ConfigError as e:
        field = str(e).split(":", 1)[0]
        parser.error(str(e).replace(field, flag(field), 1) if field in fields else str(e))
    except RunError as e:
        _cli.fail(str(e), 1)

    try:
        result, out = train_run(plan=plan, skip_invalid=args.skip_invalid, cache_dir=args.cache_dir,
                                demo_count=args.demo_count, icon_count=args.icon_count, report=args.report)
        if args.export:
            write_torch_model(out, plan.config)
    except (DataError, RunError, TrainingError, CheckpointError, ConfigError, PackageError, ParallelError) as e:
        _cli.fail(str(e), 1)
    except KeyboardInterrupt:
        _cli.fail(f"interrupted; the checkpoints written so far are kept. Continue with: "
                  f"ssimjax train --resume --out {plan.out}", 130)
    m = result.best_val_metrics
    print(f"best epoch {result.best_epoch + 1}/{result.epochs_completed}: val loss {m['loss']:.4f}, "
          f"val correlation {m['correlation']:.4f}, val MAE {m['mae']:.4f}; run folder {out}")
    test = json.loads((out / "summary.json").read_text()).get("test_metrics")
    if args.report:
        print(f"dashboard: {out / 'report' / 'training_dashboard.html'}")
    if test:
        print(f"held-out icon set {plan.config.test_source!r} ({test['count']} images): SRCC {test['srcc']:.4f}, "
              f"PLCC {test['plcc']:.4f}, MAE {test['mae']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
