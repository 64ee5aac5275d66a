"""A model's variables made and adjusted: the seeded initialisation, the image statistics'
standardisation, the output bias."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ssimjax.models.quality import PREDICTOR, QualityModel, map_residual
from ssimjax.models.resnet import kernel_std


def init_variables(model: QualityModel, seed: int, image_size: int = 32) -> dict:
    """``{'params', 'batch_stats'}`` initialised as torchvision and the plan do, from a seed.

    Kernels follow :func:`kernel_std` (Kaiming normal, fan-out; the output Dense ``head_init``);
    biases and BatchNorm shifts zero; BatchNorm scales one; running mean 0, variance 1. Kaiming
    fan-out on the output Dense would be std 1.41 (fan_out = 1), logits of about +-11, which
    saturates the sigmoid (measured on the demo set: the untrained model predicts 1.000 for every
    image, and the default run's best validation loss is 0.079 against 0.045), hence LeCun normal
    by default. Drawn with NumPy from the abstract shapes, the same distributions as the modules'
    own initialisers: compiling Flax's initialisers costs seconds per model on CPU, this costs a
    fraction of one.
    """
    dummy = jax.ShapeDtypeStruct((2, image_size, image_size, 3), jnp.float32)
    stats = jax.ShapeDtypeStruct((2, model.num_stats), jnp.float32) if model.num_stats else None
    shapes = jax.eval_shape(lambda x, s: model.init({"params": jax.random.PRNGKey(0)}, x, s, train=False), dummy, stats)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":
            head = model.head_init if path[-2].key == "head" else None
            return (rng.standard_normal(leaf.shape) * kernel_std(leaf.shape, head)).astype(np.float32)
        if name in ("scale", "var", "std"):
            return np.ones(leaf.shape, np.float32)
        return np.zeros(leaf.shape, np.float32)  # bias, mean

    out = {}
    for collection in ("params", "batch_stats"):
        out[collection] = jax.tree_util.tree_map_with_path(fill, shapes[collection])
    return jax.tree_util.tree_map(jnp.asarray, out)


def with_input_norm(variables: dict, stats: np.ndarray) -> dict:
    """``variables`` with the image-statistics standardisation set from training rows (N, S)."""
    stats = np.asarray(stats, np.float64)
    norm = {"mean": jnp.asarray(stats.mean(0), jnp.float32),
            "std": jnp.asarray(np.maximum(stats.std(0), 1e-6), jnp.float32)}
    predictor = {**variables["batch_stats"][PREDICTOR], "input_norm": norm}
    return {**variables, "batch_stats": {**variables["batch_stats"], PREDICTOR: predictor}}


def with_head_bias(variables: dict, mean_target: float, residual: bool = False) -> dict:
    """``variables`` whose output bias is logit(``mean_target``): the untrained model predicts the
    training rows' mean SSIM instead of 0.5 (real logos' labels sit near 0.96). With ``residual``
    (a model whose MLP corrects the map score) the bias is ``mean_target`` itself, the mean
    correction, and the kernel is zero."""
    head = dict(variables["params"][PREDICTOR]["head"])
    if residual:
        bias = float(mean_target)
        # The correction starts at zero everywhere: a random head would move the map score by
        # tenths of SSIM (clipping whole batches to 1, where the clip passes no gradient).
        head["kernel"] = jnp.zeros_like(head["kernel"])
    else:
        p = float(np.clip(mean_target, 1e-3, 1 - 1e-3))
        bias = np.log(p / (1 - p))
    head["bias"] = jnp.full((1,), bias, jnp.float32)
    predictor = {**variables["params"][PREDICTOR], "head": head}
    return {**variables, "params": {**variables["params"], PREDICTOR: predictor}}


def with_training_start(variables: dict, config, stats: np.ndarray, ssim: np.ndarray) -> dict:
    """``variables`` of a model with image statistics, ready to train on rows with these statistics
    (N, S) and labels: the statistics standardised with the rows' own, the untrained output at
    their mean SSIM (for a model that corrects the map score, the last statistic: the map score
    plus their mean correction)."""
    stats, ssim = np.asarray(stats, np.float64), np.asarray(ssim, np.float64)
    if map_residual(config):
        return with_head_bias(with_input_norm(variables, stats), float(np.mean(ssim - stats[:, -1])), residual=True)
    return with_head_bias(with_input_norm(variables, stats), float(np.mean(ssim)))
