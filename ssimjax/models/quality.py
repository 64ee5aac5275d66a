"""The SSIM predictor: the plan's MLP over backbone features, image statistics and the map score,
and the whole ``QualityModel`` (ResNet backbone + MLP). Which subtree of the variables is the
backbone is said here, once (:data:`BACKBONE`, :func:`split_backbone`).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssimjax.features.stats import STAT_NAMES, STATS_CLIP
from ssimjax.models.layers import BatchNorm
from ssimjax.models.resnet import RESNET_STAGES, ResNet, compute_dtype, kaiming_fan_out, normal_init

# The two top-level subtrees of the model's variables: the ResNet backbone and the MLP predictor.
# Every other module (checkpoints, optimiser groups, features, the bridge) asks these names here.
BACKBONE = "feature_extractor"


PREDICTOR = "predictor"


class InputNorm(nn.Module):
    """Standardises image statistics with a mean and std stored in the model ('batch_stats'
    collection, never trained: set from the training rows before training), then clips."""

    size: int

    @nn.compact
    def __call__(self, stats):
        mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((self.size,), jnp.float32))
        std = self.variable("batch_stats", "std", lambda: jnp.ones((self.size,), jnp.float32))
        return jnp.clip((stats - mean.value) / std.value, -STATS_CLIP, STATS_CLIP)


class Predictor(nn.Module):
    """The plan's MLP: per hidden size Dense, BatchNorm (optional), ReLU, Dropout; Dense to 1; sigmoid.

    With ``num_stats``, the standardised image statistics (:mod:`ssimjax.features.stats`) are appended to
    the backbone features as the MLP's input; without ``use_features`` they are its only input.
    With ``residual`` the output is the last statistic as given (the learned map score) plus the
    Dense's output, clipped to [0, 1], instead of the sigmoid: the MLP corrects the map score.
    """

    hidden_dims: Sequence[int] = (1024, 512, 256, 128)
    dropout_rate: float = 0.3
    use_batch_norm: bool = True
    head_init: str = "lecun_normal"
    num_stats: int = 0
    use_features: bool = True
    dtype: str = "float32"  # the hidden layers' compute type; the output layer computes in float32
    residual: bool = False

    @nn.compact
    def __call__(self, features, stats=None, train: bool = False, mask=None):
        x = features if self.use_features else features[:, :0]
        if self.num_stats:
            if stats is None:
                raise ValueError(f"this model needs {self.num_stats} image statistics per row beside the features")
            if stats.shape[-1] != self.num_stats:
                raise ValueError(f"this model takes {self.num_stats} image statistics per row (with map_net the "
                                 f"learned map score is the last), got {stats.shape[-1]}")
            x = jnp.concatenate([x, InputNorm(self.num_stats, name="input_norm")(stats).astype(x.dtype)], axis=-1)
        for i, h in enumerate(self.hidden_dims):
            x = nn.Dense(h, kernel_init=kaiming_fan_out, bias_init=nn.initializers.zeros, dtype=compute_dtype(self.dtype),
                         param_dtype=jnp.float32, name=f"dense_{i}")(x)
            if self.use_batch_norm:
                x = BatchNorm(use_running_average=not train, name=f"bn_{i}")(x, mask=mask)
            x = nn.relu(x)
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        if self.dtype != "float32":
            x = x.astype(jnp.float32)
        x = nn.Dense(1, kernel_init=normal_init(self.head_init), bias_init=nn.initializers.zeros, name="head")(x)
        if self.residual:
            return jnp.clip(stats[:, -1:].astype(jnp.float32) + x, 0.0, 1.0)
        return nn.sigmoid(x)


class QualityModel(nn.Module):
    """ResNet backbone + MLP predictor. ``__call__`` returns ``(ssim (B, 1), features (B, D))``."""

    backbone: str = "resnet50"
    hidden_dims: Sequence[int] = (1024, 512, 256, 128)
    dropout_rate: float = 0.3
    use_batch_norm: bool = True
    # How the output Dense (before the sigmoid) is initialised: see kernel_std.
    head_init: str = "lecun_normal"
    # Image statistics appended to the features (0: the plan's model, backbone features only).
    num_stats: int = 0
    pooled_stages: str = "last"
    # Whether the MLP sees the backbone's features (the plan: yes).
    backbone_features: bool = True
    compute_dtype: str = "float32"
    # The MLP corrects the last statistic, the learned map score (Predictor.residual).
    map_residual: bool = False

    def setup(self):
        # Attribute names are BACKBONE and PREDICTOR.
        self.feature_extractor = ResNet(**RESNET_STAGES[self.backbone], pooled_stages=self.pooled_stages,
                                        dtype=self.compute_dtype)
        self.predictor = Predictor(self.hidden_dims, self.dropout_rate, self.use_batch_norm, self.head_init,
                                   self.num_stats, self.backbone_features, dtype=self.compute_dtype,
                                   residual=self.map_residual)

    def __call__(self, images, stats=None, train: bool = False, train_backbone: bool | None = None, mask=None):
        """``train`` drives the predictor; the backbone trains only when ``train_backbone``."""
        train_backbone = train if train_backbone is None else train_backbone
        features = self.feature_extractor(images, train=train_backbone, mask=mask)
        return self.predictor(features, stats, train=train, mask=mask), features

    def extract_features(self, images):
        """The backbone alone, in inference mode."""
        return self.feature_extractor(images, train=False)

    def predict_from_features(self, features, stats=None, train: bool = False, mask=None):
        """The predictor alone, on (B, D) backbone features (and (B, S) image statistics)."""
        return self.predictor(features, stats, train=train, mask=mask)


def make_model(config: Any) -> QualityModel:
    """The model a :class:`ssimjax.config.TrainConfig` describes."""
    return QualityModel(
        backbone=config.backbone,
        hidden_dims=tuple(config.hidden_dims),
        dropout_rate=config.dropout_rate,
        use_batch_norm=config.use_batch_norm,
        head_init=config.head_init,
        num_stats=num_stats(config),
        pooled_stages=getattr(config, "pooled_stages", "last"),
        backbone_features=getattr(config, "backbone_features", True),
        compute_dtype=getattr(config, "compute_dtype", "float32"),
        map_residual=map_residual(config),
    )


def map_residual(config: Any) -> bool:
    """Whether the configured model's MLP corrects the learned map score (it needs the map net)."""
    return bool(num_stats(config) and getattr(config, "map_net", False) and getattr(config, "map_residual", False))


def num_stats(config: Any) -> int:
    """How many image statistics the configured model takes (0 for the plan's model), the learned
    map score (``map_net``) counted as the last."""
    if not getattr(config, "image_stats", False):
        return 0
    return len(STAT_NAMES) + (1 if getattr(config, "map_net", False) else 0)


def split_backbone(variables: dict) -> tuple[dict, dict]:
    """``{'params', 'batch_stats'}`` -> (the backbone's, the rest's), each with both collections."""
    backbone = {c: variables[c][BACKBONE] for c in ("params", "batch_stats") if BACKBONE in variables.get(c, {})}
    rest = {c: {k: v for k, v in variables[c].items() if k != BACKBONE} for c in ("params", "batch_stats")}
    return backbone, rest


def merge_backbone(variables: dict, backbone: dict) -> dict:
    """``variables`` with the backbone's ``{'params', 'batch_stats'}`` put in place (a new dict)."""
    return {c: {**variables.get(c, {}), BACKBONE: backbone[c]} for c in ("params", "batch_stats")}


def count_params(tree) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(tree)))
