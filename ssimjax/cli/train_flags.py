"""The flags of ``ssimjax train``: every ``TrainConfig`` field has one, grouped as ``--help`` shows them."""

from __future__ import annotations

import argparse

from ssimjax.config import (
    BACKBONES,
    COMPUTE_DTYPES,
    DEFAULT_DEMO_COUNT,
    DEFAULT_HELD_OUT_PER_SET,
    DEFAULT_ICON_COUNT,
    DEFAULT_TEST_SOURCE,
    HEAD_INITS,
    MAP_CROP,
    MAP_MIN_STEPS,
    MAP_STEPS,
    MAP_STEPS_PER_IMAGE,
    POOLED_STAGES,
    SCHEDULERS,
)
from ssimjax.train.losses import BASE_LOSSES, LOSSES

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train the ResNet-50 + MLP SSIM predictor (JAX/Flax). Without --data, trains on the "
        "built-in set of real logos from public icon sets (fetched from the npm registry, rasterised and labelled "
        "with VTracer + resvg on first use, then cached), holding one icon set out as a test set.",
    )
    # Training flags default to None so that --resume can tell which were given.
    _data_flags(p.add_argument_group("data and run folder"))
    _training_flags(p.add_argument_group("training"))
    _model_flags(p.add_argument_group("model"))
    _map_flags(p.add_argument_group("SSIM-map network"))
    _output_flags(p.add_argument_group("outputs"))
    from ssimjax.cli.train_settings import add_settings_flags

    add_settings_flags(p.add_argument_group("choosing VTracer's parameters (--vtracer-parameters)"))
    return p


def _data_flags(g) -> None:
    g.add_argument("--data", help="icons (the default: real logos from 22 public icon sets, trained on the split's "
                   "training sets, scored on its selection and report sets), generated (logo-like "
                   "images made offline), or a CSV (image,ssim[,source]) or JSON manifest, or a folder holding "
                   "labels.csv/labels.json")
    g.add_argument("--out", help="run folder (default: a new folder under runs/)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    g.add_argument("--test-source", metavar="NAMES|none",
                   help="hold out every row of these manifest sources (icon sets, comma-separated; 'selection' and "
                   "'report' stand for the fixed split's sets): never trained on, scored at the end, each set and "
                   f"together (default {DEFAULT_TEST_SOURCE} for --data icons, none otherwise)")
    g.add_argument("--validation-split", type=float, help="share of rows held out, seeded (default 0.2)")
    g.add_argument("--skip-invalid", action="store_true", help="train on the valid rows, skipping invalid ones")
    g.add_argument("--cache-dir", help="demo data and feature cache (default $SSIMJAX_CACHE_DIR or ~/.cache/ssimjax)")
    g.add_argument("--demo-count", type=int, default=DEFAULT_DEMO_COUNT,
                   help=f"images in the built-in generated set (default {DEFAULT_DEMO_COUNT})")
    g.add_argument("--icon-count", type=int, default=DEFAULT_ICON_COUNT,
                   help="training images in the built-in real-logo set, drawn evenly from the split's training sets "
                   f"(default {DEFAULT_ICON_COUNT})")
    g.add_argument("--held-out-per-set", type=int, default=DEFAULT_HELD_OUT_PER_SET,
                   help="images of each selection and report set in the built-in real-logo set, held out "
                   f"(default {DEFAULT_HELD_OUT_PER_SET})")

def _training_flags(g) -> None:
    g.add_argument("--epochs", type=int, help="maximum epochs (default 150; 50 with --plan-model)")
    g.add_argument("--batch-size", type=int, help="default 32")
    g.add_argument("--learning-rate", type=float, help="default 1e-3")
    g.add_argument("--weight-decay", type=float, help="L2 added to the gradient, as torch Adam (default 1e-4)")
    g.add_argument("--loss", choices=LOSSES, help="default combined (mse with --plan-model); quality_aware weights "
                   "each row's loss by its label's band, ranking is a pairwise margin loss, adaptive mixes mse, mae "
                   "and ranking with learned weights")
    g.add_argument("--quality-base-loss", choices=BASE_LOSSES, help="quality_aware loss: the per-row loss it "
                   "weights (default mse)")
    g.add_argument("--quality-weights", type=parse_numbers(3, "high, medium, low"),
                   help="quality_aware loss: weights of the high, medium and low bands (default 2,1.5,1)")
    g.add_argument("--quality-bands", type=parse_numbers(2, "low/medium edge, medium/high edge"),
                   help="quality band edges for the quality_aware loss, per-band metrics and cross-validation "
                   "strata (default 0.6,0.8)")
    g.add_argument("--ranking-margin", type=float, help="ranking and adaptive losses: pairwise margin (default 0.05)")
    g.add_argument("--scheduler", choices=SCHEDULERS, help="default reduce_on_plateau")
    g.add_argument("--patience", type=int, help="early-stopping patience in epochs (default 20; 10 with --plan-model)")
    g.add_argument("--min-delta", type=float, help="minimum improvement for early stopping (default 1e-4)")
    g.add_argument("--seed", type=int, help="default 0")
    g.add_argument("--compute-dtype", choices=COMPUTE_DTYPES,
                   help="float32 (default) or bfloat16: mixed precision for the backbone and the MLP's hidden layers "
                   "(float32 parameters, optimiser, BatchNorm statistics and output)")
    g.add_argument("--distributed", action="store_true",
                   help="several hosts: call jax.distributed.initialize() first (coordinator, process count and id "
                   "from JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID or the cluster launcher); batches "
                   "are then split over every host's devices")

def _model_flags(g) -> None:
    g.add_argument("--hidden-dims", type=parse_hidden_dims,
                   help="MLP widths (default 512,256,128; the plan's 1024,512,256,128)")
    g.add_argument("--dropout-rate", type=float, help="default 0.3")
    g.add_argument("--no-batch-norm", dest="use_batch_norm", action="store_const", const=False,
                   help="no BatchNorm in the MLP")
    g.add_argument("--no-freeze-backbone", dest="freeze_backbone", action="store_const", const=False,
                   help="train the backbone too, at 0.1x the learning rate")
    g.add_argument("--pooled-stages", choices=POOLED_STAGES,
                   help="backbone features: the last stage pooled (default, the plan) or every stage's")
    g.add_argument("--backbone", choices=BACKBONES,
                   help="resnet50 (default) or a tiny ResNet for smoke tests")
    g.add_argument("--plan-model", action="store_true",
                   help="the plan's model exactly: 2048 backbone features into its MLP (1024,512,256,128), no image "
                   "statistics (model.pth strict-loads into the plan's own class), trained with the plan's mse, 50 "
                   "epochs, patience 10 unless those flags are given")
    g.add_argument("--backbone-features", dest="backbone_features", action="store_const", const=True,
                   help="the MLP also sees the backbone's features (on by default with --backbone-weights or "
                   "--no-freeze-backbone)")
    g.add_argument("--no-backbone-features", dest="backbone_features", action="store_const", const=False,
                   help="the MLP never sees the backbone's features")
    g.add_argument("--no-image-stats", dest="image_stats", action="store_const", const=False,
                   help="no image statistics in the MLP's input (and so no map score)")
    g.add_argument("--head-init", choices=HEAD_INITS,
                   help="output layer initialisation (default lecun_normal; kaiming_fan_out is the plan's literal "
                   "choice, which saturates the sigmoid)")
    g.add_argument("--backbone-weights", default="none", metavar="none|torchvision|PATH",
                   help="start the ResNet-50 from torchvision's ImageNet weights (downloaded by torchvision when "
                   "online), from a local torchvision-format .pth state dict, or from a seeded random init (none, "
                   "the default); needs the bridge extra")

def _map_flags(g) -> None:
    g.add_argument("--no-map-net", dest="map_net", action="store_const", const=False,
                   help="no learned SSIM-map score beside the statistics: the statistics MLP alone (saves about "
                   "4 minutes of a default run; held-out PLCC about 0.1 lower)")
    g.add_argument("--map-channels", type=int, help="the SSIM-map network's width (default 8)")
    g.add_argument("--map-steps", type=int, help="the SSIM-map network's training steps (default "
                   f"{MAP_STEPS_PER_IMAGE} per training image, {MAP_MIN_STEPS} to {MAP_STEPS})")
    g.add_argument("--map-crop", type=int, help=f"the side of its training crops in pixels (default {MAP_CROP})")
    g.add_argument("--map-extra", type=int, help="synthetic wordmarks added to the SSIM-map network's training "
                   "images (default 1200; 0: none)")
    g.add_argument("--no-map-extra-mlp", dest="map_extra_mlp", action="store_const", const=False,
                   help="the synthetic wordmarks train the SSIM-map network only, not the MLP")
    g.add_argument("--no-map-residual", dest="map_residual", action="store_const", const=False,
                   help="the MLP predicts SSIM from the map score as one more input (sigmoid output) instead of "
                   "correcting it")

def _output_flags(g) -> None:
    g.add_argument("--no-export", dest="export", action="store_false",
                   help="do not write RUN/model.pth (ssimjax export can write it later)")
    g.add_argument("--no-report", dest="report", action="store_false",
                   help="skip RUN/report/ (figures, training_dashboard.html, robustness / benchmark / feature-importance "
                   "analyses of the validation images)")
