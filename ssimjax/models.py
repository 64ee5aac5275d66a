"""Flax Linen model: a torchvision-exact ResNet backbone and the MLP SSIM predictor.

The backbone mirrors torchvision's ``resnet50`` (v1.5: stride on the 3x3 conv) layer for
layer, with every padding given explicitly, so that weights move between the two by simple
rules (see ``bridge``). Inputs are NHWC float32, ImageNet-normalised.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np

# Kaiming normal with fan-out, as torchvision initialises its convolutions and as the plan
# initialises the MLP's Dense layers (untruncated normal, std = sqrt(2 / fan_out)).
kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

RESNET_STAGES = {
    "resnet50": dict(stage_sizes=(3, 4, 6, 3), width=64),
    # A four-stage bottleneck ResNet with one block per stage and 8 base channels: the same
    # code paths (stride-2 stem, downsample branches, every BatchNorm) at a fraction of the cost.
    "tiny": dict(stage_sizes=(1, 1, 1, 1), width=8),
}


def backbone_feature_dim(name: str) -> int:
    """Width of the pooled features of the named backbone (2048 for ResNet-50)."""
    return RESNET_STAGES[name]["width"] * 8 * Bottleneck.expansion


class BatchNorm(nn.Module):
    """BatchNorm with PyTorch's semantics.

    - ``momentum`` is torch's (new = (1 - momentum) * old + momentum * batch).
    - The running variance is updated with the *unbiased* batch variance, as torch does, while
      the batch is normalised with the biased one.
    - An optional ``mask`` (B,) excludes padded rows from the batch statistics, so a padded
      last batch trains exactly like a short one.
    """

    use_running_average: bool = False
    momentum: float = 0.1
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, mask=None):
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))

        if self.use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            axes = tuple(range(x.ndim - 1))
            if mask is None:
                n = x.size // features
                mean = jnp.mean(x, axis=axes)
                var = jnp.mean(jnp.square(x - mean), axis=axes)
            else:
                w = mask.astype(x.dtype).reshape(mask.shape + (1,) * (x.ndim - 1))
                n_rows = jnp.sum(mask.astype(x.dtype))
                n = n_rows * (x.size // (x.shape[0] * features))
                mean = jnp.sum(x * w, axis=axes) / n
                var = jnp.sum(jnp.square(x - mean) * w, axis=axes) / n
            if not self.is_initializing():
                unbiased = var * (n / jnp.maximum(n - 1, 1))
                ra_mean.value = (1 - self.momentum) * ra_mean.value + self.momentum * mean
                ra_var.value = (1 - self.momentum) * ra_var.value + self.momentum * unbiased
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        return y * scale + bias


def conv(features, kernel, stride=1, padding=0, name=None):
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        use_bias=False,
        kernel_init=kaiming_fan_out,
        name=name,
    )


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (v1.5): 1x1, 3x3 (strided), 1x1, with a projection shortcut."""

    planes: int
    stride: int = 1
    downsample: bool = False
    train: bool = False

    expansion = 4

    @nn.compact
    def __call__(self, x, mask=None):
        bn = lambda name: (lambda y: BatchNorm(use_running_average=not self.train, name=name)(y, mask=mask))
        out = nn.relu(bn("bn1")(conv(self.planes, 1, name="conv1")(x)))
        out = conv(self.planes, 3, self.stride, 1, name="conv2")(out)
        out = nn.relu(bn("bn2")(out))
        out = bn("bn3")(conv(self.planes * self.expansion, 1, name="conv3")(out))
        identity = x
        if self.downsample:
            identity = conv(self.planes * self.expansion, 1, self.stride, name="downsample_conv")(x)
            identity = bn("downsample_bn")(identity)
        return nn.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's ResNet without ``fc``: stem, four bottleneck stages, global average pool."""

    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    width: int = 64

    @nn.compact
    def __call__(self, x, train: bool = False, mask=None):
        x = conv(self.width, 7, 2, 3, name="conv1")(x)
        x = BatchNorm(use_running_average=not train, name="bn1")(x, mask=mask)
        x = nn.relu(x)
        # torch's MaxPool2d(3, 2, padding=1) pads with -inf, which is what reduce_window does.
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        # Stage outputs for layer-by-layer parity checks; free unless 'intermediates' is mutable.
        self.sow("intermediates", "stem", x)
        for i, blocks in enumerate(self.stage_sizes):
            planes = self.width * 2**i
            for j in range(blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                x = Bottleneck(
                    planes,
                    stride=stride,
                    downsample=(j == 0),
                    train=train,
                    name=f"layer{i + 1}_{j}",
                )(x, mask=mask)
            self.sow("intermediates", f"layer{i + 1}", x)
        return jnp.mean(x, axis=(1, 2))


class Predictor(nn.Module):
    """The plan's MLP: per hidden size Dense, BatchNorm (optional), ReLU, Dropout; Dense to 1; sigmoid."""

    hidden_dims: Sequence[int] = (1024, 512, 256, 128)
    dropout_rate: float = 0.3
    use_batch_norm: bool = True

    @nn.compact
    def __call__(self, features, train: bool = False, mask=None):
        x = features
        for i, h in enumerate(self.hidden_dims):
            x = nn.Dense(h, kernel_init=kaiming_fan_out, bias_init=nn.initializers.zeros, name=f"dense_{i}")(x)
            if self.use_batch_norm:
                x = BatchNorm(use_running_average=not train, name=f"bn_{i}")(x, mask=mask)
            x = nn.relu(x)
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.Dense(1, kernel_init=kaiming_fan_out, bias_init=nn.initializers.zeros, name="head")(x)
        return nn.sigmoid(x)


class QualityModel(nn.Module):
    """ResNet backbone + MLP predictor. ``__call__`` returns ``(ssim (B, 1), features (B, D))``."""

    backbone: str = "resnet50"
    hidden_dims: Sequence[int] = (1024, 512, 256, 128)
    dropout_rate: float = 0.3
    use_batch_norm: bool = True
    # Read by init_variables only: how the output Dense (before the sigmoid) is initialised.
    head_init: str = "lecun_normal"

    def setup(self):
        self.feature_extractor = ResNet(**RESNET_STAGES[self.backbone])
        self.predictor = Predictor(self.hidden_dims, self.dropout_rate, self.use_batch_norm)

    def __call__(self, images, train: bool = False, train_backbone: bool | None = None, mask=None):
        """``train`` drives the predictor; the backbone trains only when ``train_backbone``."""
        train_backbone = train if train_backbone is None else train_backbone
        features = self.feature_extractor(images, train=train_backbone, mask=mask)
        return self.predictor(features, train=train, mask=mask), features

    def extract_features(self, images):
        """The backbone alone, in inference mode."""
        return self.feature_extractor(images, train=False)

    def predict_from_features(self, features, train: bool = False, mask=None):
        """The predictor alone, on (B, D) backbone features."""
        return self.predictor(features, train=train, mask=mask)


def make_model(config: Any) -> QualityModel:
    """The model a :class:`ssimjax.config.TrainConfig` describes."""
    return QualityModel(
        backbone=config.backbone,
        hidden_dims=tuple(config.hidden_dims),
        dropout_rate=config.dropout_rate,
        use_batch_norm=config.use_batch_norm,
        head_init=config.head_init,
    )


def init_variables(model: QualityModel, seed: int, image_size: int = 32) -> dict:
    """``{'params', 'batch_stats'}`` initialised as torchvision and the plan do, from a seed.

    Kernels: Kaiming normal, fan-out (std sqrt(2 / fan_out)); biases and BatchNorm shifts zero;
    BatchNorm scales one; running mean 0, variance 1. The output Dense (1 unit, then a sigmoid)
    is LeCun normal (std sqrt(1 / fan_in)) unless ``model.head_init == 'kaiming_fan_out'``:
    Kaiming fan-out there has fan_out = 1, so std 1.41 and logits of about +-11, which saturates
    the sigmoid (measured on the demo set: the untrained model predicts 1.000 for every image, and
    the default run's best validation loss is 0.079 against 0.045). Drawn with NumPy from the
    abstract shapes: compiling Flax's initialisers costs seconds per model on CPU, this costs a
    fraction of one.
    """
    dummy = jax.ShapeDtypeStruct((2, image_size, image_size, 3), jnp.float32)
    shapes = jax.eval_shape(lambda x: model.init({"params": jax.random.PRNGKey(0)}, x, train=False), dummy)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel" and path[-2].key == "head" and model.head_init == "lecun_normal":
            return (rng.standard_normal(leaf.shape) * np.sqrt(1.0 / leaf.shape[0])).astype(np.float32)
        if name == "kernel":
            fan_out = int(np.prod(leaf.shape[:-2])) * leaf.shape[-1]
            return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_out)).astype(np.float32)
        if name in ("scale", "var"):
            return np.ones(leaf.shape, np.float32)
        return np.zeros(leaf.shape, np.float32)  # bias, mean

    out = {}
    for collection in ("params", "batch_stats"):
        out[collection] = jax.tree_util.tree_map_with_path(fill, shapes[collection])
    return jax.tree_util.tree_map(jnp.asarray, out)


def count_params(tree) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(tree)))
