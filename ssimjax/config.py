"""The one configuration object of a training run, with the plan's defaults."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Optional, Tuple

from ssimjax.files import write_text_atomic

SCHEDULERS = ("reduce_on_plateau", "cosine_annealing", "step", "constant")
BACKBONES = ("resnet50", "tiny")
HEAD_INITS = ("lecun_normal", "kaiming_fan_out")
POOLED_STAGES = ("last", "all")
COMPUTE_DTYPES = ("float32", "bfloat16")
MAP_STEPS = 7000  # the most steps the SSIM-map network trains by default (map_steps_for)
MAP_MIN_STEPS = 500  # and the fewest
MAP_STEPS_PER_IMAGE = 1  # its default steps per training image, between those bounds
MAP_CROP = 48  # and the side of its training crops, in pixels
# What differs between the plan's model and training defaults and ssimjax's (TrainConfig.plan_model).
PLAN_MODEL = dict(image_stats=False, map_net=False, backbone_features=True, loss="mse", epochs=50, patience=10,
                  hidden_dims=(1024, 512, 256, 128))
DEFAULT_DEMO_COUNT = 400  # images in the built-in generated set
DEFAULT_ICON_COUNT = 3000  # training images of the built-in real-logo set (from the split's training sets)
DEFAULT_HELD_OUT_PER_SET = 60  # and images of each selection and report set, held out
DEFAULT_RECIPES = 3  # how they are rasterised (ssimjax.data.icons.draw_recipe's version)
# The built-in sets (--data icons | generated); icons is the default.
BUILTIN_DATA = ("icons", "generated")
# What a default run holds out and scores at the end: every selection and report set of the fixed
# split (ssimjax.data.sets), none of which it trains on.
HELD_OUT_ROLES = "selection,report"
DEFAULT_TEST_SOURCE = HELD_OUT_ROLES


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the field."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    # Optimisation. The plan's defaults except epochs, patience and loss (plan: 50, 10, mse; see
    # plan_model): measured on real logos with icon sets held out, 150 epochs with patience 20 and
    # the combined loss rank better (mean SRCC / PLCC 0.903 / 0.851 against 0.894 / 0.840).
    epochs: int = 150
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip_norm: float = 1.0
    backbone_lr_multiplier: float = 0.1
    loss: str = "combined"
    scheduler: str = "reduce_on_plateau"
    # The quality-aware loss: its per-row base loss and the weights of the high / medium / low bands.
    quality_base_loss: str = "mse"
    quality_weights: Tuple[float, ...] = (2.0, 1.5, 1.0)
    # Quality band edges (low < 0.6 <= medium < 0.8 <= high, the plan's): the quality-aware loss's
    # bands, the per-band metrics and the cross-validation strata.
    quality_bands: Tuple[float, ...] = (0.6, 0.8)
    # The ranking and adaptive losses' pairwise margin.
    ranking_margin: float = 0.05
    # Early stopping.
    patience: int = 20
    min_delta: float = 1e-4
    validation_split: float = 0.2
    # Rows of these manifest sources (icon sets: comma-separated, or the split's roles 'selection'
    # and 'report') are held out: never trained on nor used to stop
    # training, and scored at the end (summary.json test_metrics). None: no test set.
    test_source: Optional[str] = None
    # Model.
    backbone: str = "resnet50"
    # The MLP's widths. The plan's are (1024, 512, 256, 128), for 2048 backbone features; the default
    # model reads 19 numbers, and three layers of half the width rank as well at a quarter of the
    # cost per epoch (issue 24's protocol, seeds 0-2: selection SRCC / PLCC 0.934 / 0.969 against
    # 0.936 / 0.969, seed spread 0.008; (256, 128): 0.929 / 0.969).
    hidden_dims: Tuple[int, ...] = (512, 256, 128)
    dropout_rate: float = 0.3
    use_batch_norm: bool = True
    freeze_backbone: bool = True
    head_init: str = "lecun_normal"
    # Image statistics at the image's own resolution (ssimjax.features.stats) join the backbone features as
    # the MLP's input; False is the plan's model exactly (2048 backbone features in).
    image_stats: bool = True
    # A learned SSIM-map score joins the statistics as one more MLP input (ssimjax.models.mapnet): a
    # small convolutional network trained, before the MLP, on the real pipeline's per-pixel SSIM
    # maps of the training images. Measured on held-out icon sets it lifts PLCC by 0.03-0.06.
    map_net: bool = True
    # 8 since 2026-12-07 (16 before): on the protocol's selection sets over seeds 0-2 the same
    # ranking (SRCC 0.935 against 0.934, PLCC 0.967 against 0.969, within the seed spread), its
    # training and scoring about a quarter faster (docs/quality.md). 12 was slower than 16 here:
    # XLA's CPU convolutions vectorise 8 and 16 channels, not 12.
    map_channels: int = 8
    # It is undertrained long before its crops run out: on held-out logos its score alone ranked
    # at SRCC 0.859 / PLCC 0.715 after 1,000 steps of 64 px crops, 0.894 / 0.830 after 3,000 and
    # 0.905 / 0.863 after 6,000. A step of 48 px crops costs 0.55x one of 64 px (its 20 px of
    # context each side are a larger share of less work), so 7,000 steps of them take about as
    # long as 4,000 of 64 px and reach 0.911 / 0.887: more steps matter more than larger crops.
    # None: MAP_STEPS_PER_IMAGE per training image, within [MAP_MIN_STEPS, MAP_STEPS] (map_steps_for),
    # so that a small set does not spend minutes here. Since thumb_ssim joined the statistics, the
    # MLP ranks as well after 1 step per training image as after 2 (issue 24's protocol, three
    # seeds: selection mean SRCC / PLCC 0.935 / 0.969 against 0.932 / 0.968), two minutes sooner.
    map_steps: Optional[int] = None
    map_crop: int = MAP_CROP
    # With the map network, the MLP corrects its score (output: the map score plus the MLP's, in
    # place of a sigmoid of the MLP's) rather than predicting SSIM from it as one more input.
    map_residual: bool = True
    # Synthetic wordmarks and line art (ssimjax.data.wordmarks) added to the map network's training
    # images: the icon sets hold few of the small letters and thin lines VTracer drops. Measured on
    # held-out logos, 1,200 of them lift the map score's PLCC by about 0.009 (two seeds). 0: none.
    map_extra: int = 1200
    # Those synthetic images also train the MLP (beside the training rows; validation stays the
    # icon sets' own rows): the correction it learns then covers small letters and thin lines too.
    # Measured on the default run's held-out logos (seed 0): SRCC / PLCC 0.919 / 0.894 without
    # them in the MLP, 0.931 / 0.902 with them (three seeds: +0.010 / +0.007 on average); held out
    # in turn, flags and simple-icons rank 0.010 worse and the five sets' mean is unchanged.
    map_extra_mlp: bool = True
    # Whether the MLP sees the backbone's features. Features of a randomly initialised ResNet-50
    # carry no signal about conversion quality and make the MLP overfit (measured: held-out SRCC
    # 0.50 with them, 0.88 without), so they are off unless pretrained weights are loaded.
    backbone_features: bool = False
    # Backbone features: the last stage average-pooled (the plan), or every stage's, concatenated.
    pooled_stages: str = "last"
    # Compute type of the backbone and the MLP's hidden layers: bfloat16 is mixed precision
    # (float32 parameters, optimiser, BatchNorm statistics, features and output).
    compute_dtype: str = "float32"
    # Reproducibility and I/O.
    seed: int = 0
    eval_batch_size: int = 64

    def __post_init__(self):
        object.__setattr__(self, "hidden_dims", tuple(int(h) for h in self.hidden_dims))
        object.__setattr__(self, "quality_weights", tuple(self.quality_weights))
        object.__setattr__(self, "quality_bands", tuple(self.quality_bands))
        self.validate()

    def validate(self) -> None:
        from ssimjax.train.losses import BASE_LOSSES, LOSSES  # here: data builds read this module without JAX

        def need(cond, field, msg):
            if not cond:
                raise ConfigError(f"{field}: {msg} (got {getattr(self, field)!r})")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        def finite(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        need(is_int(self.epochs) and self.epochs >= 1, "epochs", "must be a whole number >= 1")
        need(is_int(self.batch_size) and self.batch_size >= 2, "batch_size",
             "must be a whole number >= 2 (BatchNorm needs two rows per batch)")
        need(finite(self.learning_rate) and self.learning_rate > 0, "learning_rate", "must be a finite number > 0")
        need(finite(self.weight_decay) and self.weight_decay >= 0, "weight_decay", "must be a finite number >= 0")
        need(finite(self.grad_clip_norm) and self.grad_clip_norm > 0, "grad_clip_norm", "must be a finite number > 0")
        need(finite(self.backbone_lr_multiplier) and self.backbone_lr_multiplier >= 0,
             "backbone_lr_multiplier", "must be a finite number >= 0")
        need(self.loss in LOSSES, "loss", f"must be one of {', '.join(LOSSES)}")
        need(self.quality_base_loss in BASE_LOSSES, "quality_base_loss", f"must be one of {', '.join(BASE_LOSSES)}")
        need(len(self.quality_weights) == 3 and all(finite(w) and w >= 0 for w in self.quality_weights),
             "quality_weights", "must be three finite numbers >= 0 (high, medium, low)")
        need(len(self.quality_bands) == 2 and all(finite(b) for b in self.quality_bands)
             and self.quality_bands[0] < self.quality_bands[1], "quality_bands",
             "must be two increasing numbers (low/medium edge, medium/high edge)")
        need(finite(self.ranking_margin) and self.ranking_margin >= 0, "ranking_margin", "must be a finite number >= 0")
        need(self.scheduler in SCHEDULERS, "scheduler", f"must be one of {', '.join(SCHEDULERS)}")
        need(is_int(self.patience) and self.patience >= 1, "patience", "must be a whole number >= 1")
        need(finite(self.min_delta) and self.min_delta >= 0, "min_delta", "must be a finite number >= 0")
        need(finite(self.validation_split) and 0 < self.validation_split < 1, "validation_split",
             "must be a number strictly between 0 and 1")
        need(self.backbone in BACKBONES, "backbone", f"must be one of {', '.join(BACKBONES)}")
        need(len(self.hidden_dims) >= 1 and all(h >= 1 for h in self.hidden_dims), "hidden_dims",
             "must be one or more positive whole numbers")
        need(self.test_source is None or (isinstance(self.test_source, str) and self.test_source.strip() != ""),
             "test_source", "must be source names (comma-separated) or None")
        need(self.image_stats or self.backbone_features, "backbone_features",
             "the MLP needs an input: backbone features, image statistics, or both")
        need(self.image_stats or not self.map_net, "map_net",
             "the map score joins the image statistics: it needs image_stats (or map_net false)")
        need(is_int(self.map_channels) and self.map_channels >= 1, "map_channels", "must be a whole number >= 1")
        need(self.map_steps is None or (is_int(self.map_steps) and self.map_steps >= 1), "map_steps",
             "must be a whole number >= 1 (or None: by the number of training images)")
        need(is_int(self.map_extra) and self.map_extra >= 0, "map_extra", "must be a whole number >= 0")
        need(is_int(self.map_crop) and self.map_crop >= 2 and self.map_crop % 2 == 0, "map_crop",
             "must be an even whole number >= 2 (the network predicts 2x2 cells)")
        need(self.backbone_features or self.freeze_backbone, "freeze_backbone",
             "training the backbone needs backbone_features (the MLP must see what it trains)")
        need(self.pooled_stages in POOLED_STAGES, "pooled_stages", f"must be one of {', '.join(POOLED_STAGES)}")
        need(self.compute_dtype in COMPUTE_DTYPES, "compute_dtype", f"must be one of {', '.join(COMPUTE_DTYPES)}")
        need(self.head_init in HEAD_INITS, "head_init", f"must be one of {', '.join(HEAD_INITS)}")
        need(finite(self.dropout_rate) and 0 <= self.dropout_rate < 1, "dropout_rate", "must be in [0, 1)")
        need(is_int(self.seed) and self.seed >= 0, "seed", "must be a whole number >= 0")
        need(is_int(self.eval_batch_size) and self.eval_batch_size >= 1, "eval_batch_size", "must be >= 1")

    @classmethod
    def plan_model(cls, **changes) -> "TrainConfig":
        """The plan's model and training defaults exactly: 2048 backbone features into its MLP
        (1024, 512, 256, 128), no image statistics, MSE, 50 epochs, patience 10."""
        return cls(**{**PLAN_MODEL, **changes})

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("hidden_dims", "quality_weights", "quality_bands"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
        return cls(**d)


def map_steps_for(config: TrainConfig, train_images: int) -> int:
    """The SSIM-map network's training steps for ``train_images`` training images (the synthetic
    wordmarks not counted): ``config.map_steps`` if set, else :data:`MAP_STEPS_PER_IMAGE` per image
    within [:data:`MAP_MIN_STEPS`, :data:`MAP_STEPS`]."""
    if config.map_steps is not None:
        return config.map_steps
    return int(min(MAP_STEPS, max(MAP_MIN_STEPS, MAP_STEPS_PER_IMAGE * train_images)))


def save_config(path: Path, config: TrainConfig, **extra) -> None:
    """Writes ``config.json``: the training configuration plus run facts (data, versions)."""
    payload = {"train": config.to_dict(), **extra}
    # Whole or not at all: a run killed while writing keeps the config.json it had.
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def load_config(path: Path) -> tuple[TrainConfig, dict]:
    """Reads ``config.json`` back: ``(TrainConfig, the other run facts)``."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
        extra = {k: v for k, v in payload.items() if k != "train"}
        # Runs written before the map network (or its residual head, or its extra images) had none.
        legacy = {"map_net": False, "map_residual": False, "map_extra": 0, "map_extra_mlp": False}
        return TrainConfig.from_dict({**legacy, **payload["train"]}), extra
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (is this a run folder?)") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: not a valid ssimjax config.json ({e})") from None
