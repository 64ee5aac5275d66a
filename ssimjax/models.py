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

from .layers import BatchNorm, max_pool_3x3_s2
from .stats import STAT_NAMES, STATS_CLIP

# The two top-level subtrees of the model's variables: the ResNet backbone and the MLP predictor.
# Every other module (checkpoints, optimiser groups, features, the bridge) asks these names here.
BACKBONE = "feature_extractor"
PREDICTOR = "predictor"


def kernel_std(shape, head_init: str | None = None) -> float:
    """The one initialisation rule for kernels: Kaiming normal with fan-out (std sqrt(2 / fan_out)),
    as torchvision initialises its convolutions and the plan its Dense layers; the output Dense uses
    ``head_init`` instead (LeCun normal: std sqrt(1 / fan_in)). Used by the modules' initialisers
    and by :func:`init_variables`."""
    if head_init == "lecun_normal":
        return float(np.sqrt(1.0 / shape[-2]))
    fan_out = int(np.prod(shape[:-2])) * shape[-1]
    return float(np.sqrt(2.0 / fan_out))


def normal_init(head_init: str | None = None):
    """A Flax initialiser drawing from :func:`kernel_std`'s normal distribution."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.normal(key, shape, dtype) * kernel_std(shape, head_init)

    return init


kaiming_fan_out = normal_init()

RESNET_STAGES = {
    "resnet50": dict(stage_sizes=(3, 4, 6, 3), width=64),
    # A four-stage bottleneck ResNet with one block per stage and 8 base channels: the same
    # code paths (stride-2 stem, downsample branches, every BatchNorm) at a fraction of the cost.
    "tiny": dict(stage_sizes=(1, 1, 1, 1), width=8),
}


def backbone_feature_dim(name: str, pooled_stages: str = "last") -> int:
    """Width of the pooled features of the named backbone (2048 for ResNet-50; 3840 with every
    stage pooled)."""
    last = RESNET_STAGES[name]["width"] * 8 * Bottleneck.expansion
    return last if pooled_stages == "last" else last * 15 // 8


def _compute_dtype(name: str):
    # float32: None, i.e. the inputs' and parameters' own type (so a float64 run stays float64).
    return None if name == "float32" else jnp.dtype(name)


def _f32_product(a, b, dims):
    return jax.lax.dot_general(a, b, (dims, ((), ())), preferred_element_type=jnp.float32)


@jax.custom_vjp
def bf16_pixel_matmul(x, kernel):
    """``x`` (N, H, W, C) bfloat16 times ``kernel`` (C, K) float32 over every pixel, in bfloat16
    with float32 sums; returns bfloat16. The kernel's gradient comes back in float32.

    XLA's CPU compiler runs a bfloat16 product that returns bfloat16 as a float32 one (it converts
    the operands), but keeps bfloat16 operands with a float32 result (AVX-512 BF16): 2048^3 at
    366 against 183 GFLOP/s here. Autodiff would hand the transposed products a float32 cotangent,
    so the gradient is written out: both of its products take bfloat16 operands too, and the
    kernel's one contracts the pixels image by image (batch as an einsum axis), which XLA lays out
    as one transpose and a plain product: 50176 x 64 x 256 in 15 against 33 ms.
    """
    return _bf16_pixel_matmul_fwd(x, kernel)[0]


def _bf16_pixel_matmul_fwd(x, kernel):
    k = kernel.astype(jnp.bfloat16)
    y = _f32_product(x.reshape(-1, x.shape[-1]), k, ((1,), (0,)))
    return y.astype(jnp.bfloat16).reshape(*x.shape[:-1], k.shape[-1]), (x, k)


def _bf16_pixel_matmul_bwd(residuals, g):
    x, k = residuals
    g = g.astype(jnp.bfloat16)
    dx = _f32_product(g.reshape(-1, g.shape[-1]), k, ((1,), (1,))).astype(x.dtype).reshape(x.shape)
    n = x.shape[0]
    dk = jnp.einsum("npc,npk->ck", x.reshape(n, -1, x.shape[-1]), g.reshape(n, -1, g.shape[-1]),
                    preferred_element_type=jnp.float32)
    return dx, dk


bf16_pixel_matmul.defvjp(_bf16_pixel_matmul_fwd, _bf16_pixel_matmul_bwd)


class Conv(nn.Module):
    """A bias-free 2D convolution with ``nn.Conv``'s parameter (``kernel``, HWIO, float32) and
    explicit symmetric padding; ``dtype`` is the compute type (bfloat16 for mixed precision).

    1x1 convolutions run as matrix products over the pixels: XLA's CPU convolution runs them at a
    fifth of its dot speed (measured: 256 -> 64 channels at 56x56, batch 32, 35 against
    176 GFLOP/s), and ResNet-50 is half 1x1 convolutions: extraction 12.4 -> 16.4 images/s,
    batch-1 latency 92 -> 62 ms, fine-tuning 2.6 -> 3.5 images/s on a 2-core CPU (4.7 with the
    reshape below). The result is the same sum, the same numbers.

    On other backends 1x1 convolutions stay convolutions: XLA's GPU compiler (jaxlib 0.11.2) aborts
    the process on the strided product (a check failure in its Triton GEMM fusion), and with
    cuBLAS instead the products were no faster than cuDNN's convolutions (H200, bfloat16
    fine-tuning at batch 128: 5,986 against 6,041 images/s).

    Under mixed precision the CPU's 1x1 products go through :func:`bf16_pixel_matmul`, the only way
    XLA's CPU compiler uses the hardware's bfloat16 arithmetic (ResNet-50 fine-tuning in bfloat16 at
    batch 16: 3.8-4.0 -> 4.7-5.0 images/s). Its 3x3 and 7x7 convolutions it still converts to
    float32 (the upcast is in the compiled program), so those stay as they are.
    """

    features: int
    kernel: int
    stride: int = 1
    padding: int = 0
    dtype: str = "float32"
    # 1x1 convolutions as matrix products; None: on a CPU only (see above).
    matmul_1x1: bool | None = None

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", kaiming_fan_out, (self.kernel, self.kernel, x.shape[-1], self.features),
                            jnp.float32)
        s, p = self.stride, self.padding
        as_matmul = jax.default_backend() == "cpu" if self.matmul_1x1 is None else self.matmul_1x1
        pixel_product = self.kernel == 1 and p == 0 and as_matmul
        if pixel_product:
            x = x[:, ::s, ::s, :]
            if _compute_dtype(self.dtype) == jnp.bfloat16:
                return bf16_pixel_matmul(x.astype(jnp.bfloat16), kernel[0, 0])
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=_compute_dtype(self.dtype))
        if pixel_product:
            # As one (pixels, channels) matrix: the gradient's product then contracts one axis, not
            # three, and XLA no longer transposes the activations for it (fine-tuning 3.66 ->
            # 4.67 images/s).
            return jnp.dot(x.reshape(-1, x.shape[-1]), kernel[0, 0]).reshape(*x.shape[:-1], self.features)
        return jax.lax.conv_general_dilated(x, kernel, (s, s), ((p, p), (p, p)),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv(features, kernel, stride=1, padding=0, name=None, dtype="float32"):
    # Parameters stay float32; ``dtype`` is the compute type (bfloat16 for mixed precision).
    return Conv(features, kernel, stride, padding, dtype=dtype, name=name)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (v1.5): 1x1, 3x3 (strided), 1x1, with a projection shortcut."""

    planes: int
    stride: int = 1
    downsample: bool = False
    train: bool = False
    dtype: str = "float32"

    expansion = 4

    @nn.compact
    def __call__(self, x, mask=None):
        bn = lambda name: (lambda y: BatchNorm(use_running_average=not self.train, name=name)(y, mask=mask))
        dt = self.dtype
        out = nn.relu(bn("bn1")(conv(self.planes, 1, name="conv1", dtype=dt)(x)))
        out = conv(self.planes, 3, self.stride, 1, name="conv2", dtype=dt)(out)
        out = nn.relu(bn("bn2")(out))
        out = bn("bn3")(conv(self.planes * self.expansion, 1, name="conv3", dtype=dt)(out))
        identity = x
        if self.downsample:
            identity = conv(self.planes * self.expansion, 1, self.stride, name="downsample_conv", dtype=dt)(x)
            identity = bn("downsample_bn")(identity)
        return nn.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's ResNet without ``fc``: stem, four bottleneck stages, global average pool.

    ``pooled_stages='all'`` returns every stage's output average-pooled and concatenated
    (layer1..layer4: 256 + 512 + 1024 + 2048 for ResNet-50) instead of the last stage's only.
    """

    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    width: int = 64
    pooled_stages: str = "last"
    # Compute type: float32, or bfloat16 (mixed precision: float32 parameters, BatchNorm
    # statistics and pooled features; bfloat16 convolutions).
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x, train: bool = False, mask=None):
        if self.dtype != "float32":
            x = x.astype(self.dtype)
        x = conv(self.width, 7, 2, 3, name="conv1", dtype=self.dtype)(x)
        x = BatchNorm(use_running_average=not train, name="bn1")(x, mask=mask)
        x = nn.relu(x)
        # torch's MaxPool2d(3, 2, padding=1) pads with -inf, which is what reduce_window does; in
        # training, the same maximum with a cheaper gradient.
        x = max_pool_3x3_s2(x) if train else nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        # Stage outputs for layer-by-layer parity checks; free unless 'intermediates' is mutable.
        self.sow("intermediates", "stem", x)
        pooled = []
        for i, blocks in enumerate(self.stage_sizes):
            planes = self.width * 2**i
            for j in range(blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                x = Bottleneck(
                    planes,
                    stride=stride,
                    downsample=(j == 0),
                    train=train,
                    dtype=self.dtype,
                    name=f"layer{i + 1}_{j}",
                )(x, mask=mask)
            self.sow("intermediates", f"layer{i + 1}", x)
            pooled.append(jnp.mean(x.astype(jnp.promote_types(x.dtype, jnp.float32)), axis=(1, 2)))
        return pooled[-1] if self.pooled_stages == "last" else jnp.concatenate(pooled, axis=-1)


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

    With ``num_stats``, the standardised image statistics (:mod:`ssimjax.stats`) are appended to
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
            x = nn.Dense(h, kernel_init=kaiming_fan_out, bias_init=nn.initializers.zeros, dtype=_compute_dtype(self.dtype),
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
