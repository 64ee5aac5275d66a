"""One device-side batching helper, for prediction and for feature extraction.

Rows go through a jitted function in fixed-size batches (the last one padded, so one compilation
serves every batch); every batch is dispatched without waiting for the one before, and the
results are fetched to the host once, at the end.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


@jax.jit
def _take(x, start, size_like):
    return jax.lax.dynamic_slice_in_dim(x, start, size_like.shape[0])


def _pad_rows(x, rows: int):
    if isinstance(x, jax.Array):
        return jnp.pad(x, [(0, rows)] + [(0, 0)] * (x.ndim - 1)) if rows else x
    return np.concatenate([x, np.zeros((rows,) + x.shape[1:], x.dtype)]) if rows else x


def apply_in_batches(fn: Callable[[dict], jax.Array], inputs: dict, batch_size: int,
                     progress: Callable[[int], None] | None = None) -> np.ndarray:
    """``fn`` over every row of ``inputs`` (a dict of equally long host or device arrays), in
    batches of ``batch_size``; returns the concatenated results as one NumPy array.

    Host arrays travel to the device batch by batch, in their own dtype (send images as uint8);
    device arrays are sliced where they are. ``progress(k)`` is told of each finished batch; it
    waits on the batch before last, so the device always has the next one queued.
    """
    n = int(next(iter(inputs.values())).shape[0])
    if n == 0:
        raise ValueError("apply_in_batches: no rows")
    num = -(-n // batch_size)
    padded = {k: _pad_rows(v, num * batch_size - n) for k, v in inputs.items()}
    like = jnp.zeros((batch_size,), jnp.int8)
    outs = []
    for i in range(num):
        start = i * batch_size
        batch = {
            k: _take(v, start, like) if isinstance(v, jax.Array) else v[start:start + batch_size]
            for k, v in padded.items()
        }
        outs.append(fn(batch))
        if progress is not None and i >= 1:
            outs[i - 1].block_until_ready()
            progress(1)
    if progress is not None:
        outs[-1].block_until_ready()
        progress(1)
    return np.asarray(jnp.concatenate(outs)[:n])
