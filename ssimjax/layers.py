"""BatchNorm with PyTorch's semantics, the one layer Flax's own does not match."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


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
        # Statistics in float32 at least (a bfloat16 input is normalised in float32, returned in bfloat16).
        in_dtype = x.dtype
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
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
        out = y * scale + bias
        return out.astype(in_dtype) if in_dtype == jnp.bfloat16 else out
