"""The backbone: a torchvision-exact ResNet in Flax Linen, and the convolution it is built from.

The backbone mirrors torchvision's ``resnet50`` (v1.5: stride on the 3x3 conv) layer for
layer, with every padding given explicitly, so that weights move between the two by simple
rules (see ``bridge``). Inputs are NHWC float32, ImageNet-normalised.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssimjax.models.layers import BatchNorm, max_pool_3x3_s2


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


def compute_dtype(name: str):
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
            if compute_dtype(self.dtype) == jnp.bfloat16:
                return bf16_pixel_matmul(x.astype(jnp.bfloat16), kernel[0, 0])
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=compute_dtype(self.dtype))
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


