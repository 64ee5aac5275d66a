"""Quality and size across VTracer's settings from one look at the image (issue 25, first model).

The image is read once: its statistics (:mod:`ssimjax.features.stats`) go through an image branch
to an embedding; each setting (:func:`encode_settings`) then costs one pass of a small head over
``[embedding, setting]``, which predicts the conversion's luminance SSIM, colour SSIM and
log SVG size (:data:`TARGETS`). Pure functions of explicit parameters, as the rest of the models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

TARGETS = ("ssim", "rgb_ssim", "log_bytes")
# Each setting as numbers in about [0, 1]: flags for the non-default categories, one-hot modes,
# and each numeric parameter scaled over its range (on a log scale where its values double).
ENCODING = ("binary", "cutout", "spline", "polygon", "none", "filter_speckle", "color_precision",
            "layer_difference", "corner_threshold", "length_threshold", "splice_threshold", "path_precision")


def encode_settings(settings: Sequence[dict]) -> np.ndarray:
    """float32 (N, len(ENCODING)) of settings (dicts of :data:`ssimjax.data.vtsettings.PARAMETER_SPACE`)."""
    rows = []
    for s in settings:
        rows.append([
            s["colormode"] == "binary", s["hierarchical"] == "cutout",
            s["mode"] == "spline", s["mode"] == "polygon", s["mode"] == "none",
            np.log2(1 + s["filter_speckle"]) / 5, (s["color_precision"] - 3) / 5,
            np.log2(s["layer_difference"]) / 7, s["corner_threshold"] / 180,
            (s["length_threshold"] - 3.5) / 6.5, s["splice_threshold"] / 135, s["path_precision"] / 8,
        ])
    return np.asarray(rows, np.float32).reshape(len(rows), len(ENCODING))


def _dense(key, n_in: int, n_out: int) -> dict:
    return {"w": jax.random.normal(key, (n_in, n_out)) * np.sqrt(2.0 / n_in), "b": jnp.zeros(n_out)}


def init_setting_model(n_stats: int, seed: int = 0, embed: int = 64, hidden: int = 128) -> dict:
    """Parameters of the image branch (statistics -> embedding) and the per-setting head."""
    k = jax.random.split(jax.random.PRNGKey(seed), 5)
    return {
        "image": [_dense(k[0], n_stats, hidden), _dense(k[1], hidden, embed)],
        "head": [_dense(k[2], embed + len(ENCODING), hidden), _dense(k[3], hidden, hidden),
                 _dense(k[4], hidden, len(TARGETS))],
    }


def _mlp(layers: list, x, last_linear: bool = True):
    for i, layer in enumerate(layers):
        x = x @ layer["w"] + layer["b"]
        if i < len(layers) - 1 or not last_linear:
            x = jax.nn.relu(x)
    return x


def image_embedding(params: dict, stats):
    """(N, embed): each image's embedding from its standardised statistics; computed once per image."""
    return _mlp(params["image"], stats, last_linear=False)


def head_apply(params: dict, embedding, settings_encoded):
    """(N, len(TARGETS)) for rows pairing an image embedding with an encoded setting."""
    return _mlp(params["head"], jnp.concatenate([embedding, settings_encoded], axis=-1))


def setting_model_apply(params: dict, stats, settings_encoded):
    """Predictions for rows of (standardised statistics, encoded setting)."""
    return head_apply(params, image_embedding(params, stats), settings_encoded)


def choose_setting(ssim, rgb_ssim, size, default: int = 0, min_ssim: float | None = None,
                   max_bytes: float | None = None, margin: float = 0.0) -> int:
    """The index of the setting to convert with, from each candidate setting's (predicted) luminance
    SSIM, colour SSIM and size; ``default`` is VTracer's defaults' index. With ``min_ssim``: the
    smallest among those whose SSIM and colour SSIM reach the target, capped at what the defaults
    reach (``min(min_ssim, defaults')``), plus ``margin``; the defaults themselves always qualify.
    With ``max_bytes``: among those within the size, the best of the worse of SSIM and colour SSIM
    (the smallest setting if none is within it)."""
    ssim, rgb_ssim, size = (np.asarray(a, np.float64) for a in (ssim, rgb_ssim, size))
    if (min_ssim is None) == (max_bytes is None):
        raise ValueError("give one of min_ssim and max_bytes")
    if min_ssim is not None:
        ok = (ssim >= min(min_ssim, ssim[default]) + margin) & (rgb_ssim >= min(min_ssim, rgb_ssim[default]) + margin)
        ok[default] = True
        return int(np.flatnonzero(ok)[np.argmin(size[ok])])
    within = size <= max_bytes
    if not within.any():
        return int(np.argmin(size))
    return int(np.flatnonzero(within)[np.argmax(np.minimum(ssim, rgb_ssim)[within])])


# How far below the target an anchored prediction may lie and still be worth converting: chosen on
# the selection logos (docs/quality.md, "Issue 25: the search").
SEARCH_SLACK = 0.01


def search_setting(ssim, rgb_ssim, size, default: int, real, tries: int, min_ssim: float | None = None,
                   max_bytes: float | None = None, slack: float = SEARCH_SLACK) -> tuple[int, list[int]]:
    """``(index, converted)``: the setting to keep after converting the defaults and at most
    ``tries`` more candidates, from each candidate's predicted luminance SSIM, colour SSIM and size.
    ``real(i)`` gives setting ``i``'s real ``(ssim, rgb_ssim, bytes)`` (a conversion); ``converted``
    lists the settings it was asked for, the defaults first.

    The defaults' real figures fix the target (``min(min_ssim, defaults')``, as
    :func:`choose_setting`) and anchor the predictions: each is moved by the defaults' real minus
    predicted SSIM. With ``min_ssim``: the candidates predicted within ``slack`` of the target and
    smaller than the defaults are converted from the smallest predicted up, and the first that
    really meets the target is kept; the defaults if none does, so the kept setting always really
    meets it. With ``max_bytes``: those predicted within the size, from the best predicted quality
    down (the smallest predicted up where none is); kept is the best real ``min(SSIM, colour SSIM)``
    among those really within it (the smallest converted if none is)."""
    ssim, rgb_ssim, size = (np.asarray(a, np.float64) for a in (ssim, rgb_ssim, size))
    if (min_ssim is None) == (max_bytes is None):
        raise ValueError("give one of min_ssim and max_bytes")
    default = int(default)
    figures = {default: tuple(float(v) for v in real(default))}
    d_ssim, d_rgb, d_bytes = figures[default]
    ssim, rgb_ssim = ssim + (d_ssim - ssim[default]), rgb_ssim + (d_rgb - rgb_ssim[default])
    others = np.flatnonzero(np.arange(len(size)) != default)
    if min_ssim is not None:
        t_l, t_c = min(min_ssim, d_ssim), min(min_ssim, d_rgb)
        order = [int(i) for i in others[np.argsort(size[others], kind="stable")]
                 if ssim[i] >= t_l - slack and rgb_ssim[i] >= t_c - slack and size[i] < size[default]]
        for i in order[:tries]:
            figures[i] = tuple(float(v) for v in real(i))
            if figures[i][0] >= t_l and figures[i][1] >= t_c and figures[i][2] < d_bytes:
                return i, list(figures)
        return default, list(figures)
    quality = np.minimum(ssim, rgb_ssim)
    order = [int(i) for i in others[np.argsort(-quality[others], kind="stable")] if size[i] <= max_bytes]
    if not order:  # none is predicted within the size: the smallest predicted ones
        order = [int(i) for i in others[np.argsort(size[others], kind="stable")]]
    for i in order[:tries]:
        figures[i] = tuple(float(v) for v in real(i))
    within = [i for i, f in figures.items() if f[2] <= max_bytes]
    if within:
        return max(within, key=lambda i: (min(figures[i][:2]), -figures[i][2])), list(figures)
    return min(figures, key=lambda i: figures[i][2]), list(figures)


def _hidden_and_cells(params: list, spec, x_uint8):
    """The map network's last hidden activations (N, h, w, C) and its predicted cells (N, h, w)."""
    from ssimjax.models.mapnet import map_net_hidden

    x = map_net_hidden(params[:-1], spec, x_uint8.astype(jnp.float32) / 255.0)
    return x, (x @ params[-1]["w"] + params[-1]["b"])[..., 0]


_hidden_forward = jax.jit(_hidden_and_cells, static_argnums=1)
MAP_FEATURE_QUANTILES = (0.05, 0.25, 0.5)


def map_features(params: list, spec, images: Sequence[np.ndarray], tile: int | None = None, batch: int = 4
                 ) -> np.ndarray:
    """float32 (N, 2 C + 1 + len(MAP_FEATURE_QUANTILES)) per uint8 RGB image, read once: the mean and
    the max over the image's cells of each of the map network's C last hidden channels (where in the
    image the network sees thin parts, speckles, gradients), and the mean and quantiles of its
    predicted SSIM cells. Tiled as :func:`ssimjax.models.mapnet.predict_maps`."""
    from ssimjax.models.mapnet import tile_batches

    c = spec.cell
    hidden = [[] for _ in images]
    cells = [[] for _ in images]
    for t, part, x in tile_batches(images, spec, tile, batch):
        h, out = (np.asarray(a) for a in _hidden_forward(params, spec, x))
        for (k, y0, x0), hk, ok in zip(part, h, out):
            rows = -(-min(t, images[k].shape[0] - y0) // c)
            cols = -(-min(t, images[k].shape[1] - x0) // c)
            hidden[k].append(hk[:rows, :cols].reshape(-1, hk.shape[-1]))
            cells[k].append(ok[:rows, :cols].reshape(-1))
    feats = []
    for hk, ok in zip(hidden, cells):
        h, o = np.concatenate(hk), np.concatenate(ok)
        feats.append(np.concatenate([h.mean(0), h.max(0), [o.mean()], np.quantile(o, MAP_FEATURE_QUANTILES)]))
    return np.asarray(feats, np.float32)


def init_conditioned_map_net(spec, seed: int = 0) -> dict:
    """A map network whose last layers depend on the setting: the trunk (the map network's
    convolutions, read once per image), a FiLM layer from the encoded setting to a scale and shift
    of each hidden channel, then two 1x1 layers to each cell's SSIM under that setting."""
    from ssimjax.models.mapnet import init_map_net

    trunk = init_map_net(spec, seed)[:-1]
    k = jax.random.split(jax.random.PRNGKey(seed + 1), 3)
    c = spec.channels
    return {"trunk": trunk,
            "film": {"w": jax.random.normal(k[0], (len(ENCODING), 2 * c)) * 0.01, "b": jnp.zeros(2 * c)},
            "head": [_dense(k[1], c, c),
                     {"w": jax.random.normal(k[2], (c, 1)) * 0.01, "b": jnp.full((1,), 0.9)}]}


def trunk_apply(params: dict, spec, x_uint8):
    """The hidden cells (N, H/cell, W/cell, C) of crops carrying ``spec.margin`` of context: once per image."""
    from ssimjax.models.mapnet import map_net_hidden

    return map_net_hidden(params["trunk"], spec, x_uint8.astype(jnp.float32) / 255.0)


def cells_for_setting(params: dict, hidden, settings_encoded):
    """Each cell's SSIM (N, ...) under one encoded setting per row (N, len(ENCODING)): the per-setting
    part, two 1x1 layers over the hidden cells."""
    film = settings_encoded @ params["film"]["w"] + params["film"]["b"]
    c = hidden.shape[-1]
    extra = (1,) * (hidden.ndim - 2)
    scale = 1.0 + film[:, :c].reshape((-1,) + extra + (c,))
    shift = film[:, c:].reshape((-1,) + extra + (c,))
    h = jax.nn.relu(hidden * scale + shift)
    h = jax.nn.relu(h @ params["head"][0]["w"] + params["head"][0]["b"])
    return (h @ params["head"][1]["w"] + params["head"][1]["b"])[..., 0]


_trunk_forward = jax.jit(trunk_apply, static_argnums=1)


@jax.jit
def _cells_per_setting(params: dict, hidden, encoded):
    """(K, N, h, w): the cells of N tiles' hidden activations under each of K encoded settings."""
    return jax.vmap(lambda one: cells_for_setting(params, hidden, jnp.broadcast_to(one, (hidden.shape[0],
                                                                                        one.shape[0]))))(encoded)


def conditioned_scores(params: dict, spec, image: np.ndarray, encoded: np.ndarray, tile: int | None = None,
                       batch: int = 4) -> np.ndarray:
    """(K,): a uint8 RGB image's predicted SSIM under each of K encoded settings, each setting's
    cells averaged as scikit-image averages the real map. The trunk runs once per tile; each
    setting adds two 1x1 layers."""
    from ssimjax.models.mapnet import cell_weights, tile_batches

    c = spec.cell
    h, w = image.shape[:2]
    weight = cell_weights(h, w, c)
    total = np.zeros(len(encoded))
    encoded = np.asarray(encoded, np.float32)
    for t, part, x in tile_batches([image], spec, tile, batch):
        cells = np.asarray(_cells_per_setting(params, _trunk_forward(params, spec, x), encoded))
        for b, (_, y0, x0) in enumerate(part):
            wt = weight[y0 // c:y0 // c + t // c, x0 // c:x0 // c + t // c]
            total += (cells[:, b, :wt.shape[0], :wt.shape[1]] * wt).sum((1, 2))
    return (total / max(weight.sum(), 1.0)).astype(np.float32)


_head_forward = jax.jit(setting_model_apply)


def neighbour_curve(prior_stats: np.ndarray, prior_curves: np.ndarray, z: np.ndarray, candidates: Sequence[dict],
                    settings: Sequence[dict], neighbours: int) -> np.ndarray | None:
    """float32 (len(settings),): the mean SSIM curve over ``settings`` of the ``neighbours`` training
    logos nearest to standardised statistics ``z`` (their rows of ``prior_stats``; ``prior_curves``
    in the order of ``candidates``), centred on its mean; None for a setting that is not a candidate.
    Shared with the PyTorch SettingRecommender."""
    from ssimjax.data.vtsettings import setting_key

    column = {setting_key(c): i for i, c in enumerate(candidates)}
    keys = [setting_key(s) for s in settings]
    if any(k not in column for k in keys):
        return None
    d = ((np.asarray(prior_stats, np.float32) - np.asarray(z, np.float32)) ** 2).sum(1)
    near = np.argsort(d, kind="stable")[:neighbours]
    curve = np.asarray(prior_curves, np.float32)[near][:, [column[k] for k in keys]].mean(0)
    return (curve - curve.mean()).astype(np.float32)


def cap_by_simulation(ssim: np.ndarray, simulated: np.ndarray, default: int, cap: float) -> np.ndarray:
    """``ssim`` (predicted, one per setting) with each setting's prediction held at most at the
    defaults' prediction plus the simulated clustering's change from the defaults
    (:func:`ssimjax.features.vtsim.simulate_settings`) plus ``cap``: a setting the simulation sees
    wiping out part of the logo cannot be predicted as good as the defaults. NaN simulations leave
    their setting as predicted. Shared with the PyTorch SettingRecommender."""
    ssim = np.asarray(ssim, np.float32)
    ceiling = ssim[default] + (np.asarray(simulated, np.float64) - simulated[default]) + cap
    return np.where(np.isfinite(ceiling), np.minimum(ssim, ceiling), ssim).astype(np.float32)


def cap_image_by_simulation(ssim: np.ndarray, image, settings: Sequence[dict], cap: float) -> np.ndarray:
    """:func:`cap_by_simulation` with ``image``'s clustering simulated under ``settings`` (VTracer's
    defaults among them). Shared with the PyTorch SettingRecommender."""
    from ssimjax.data.vtsettings import default_setting
    from ssimjax.features.vtsim import simulate_settings

    settings = [dict(s) for s in settings]
    return cap_by_simulation(ssim, simulate_settings(image, settings)["ssim"], settings.index(default_setting()), cap)


def anchor_index(settings: Sequence[dict], prior_weight: float, prior_anchor: str) -> int | None:
    """With the neighbours alone saying how the settings differ (``prior_weight`` 1) and
    ``prior_anchor`` "defaults": the index of VTracer's defaults among ``settings``, whose SSIM the
    map network predicts (one setting's cost); None otherwise."""
    from ssimjax.data.vtsettings import default_setting

    if prior_weight != 1 or prior_anchor != "defaults":
        return None
    settings = [dict(s) for s in settings]
    return settings.index(default_setting()) if default_setting() in settings else None


@dataclass(frozen=True, eq=False)
class SettingsModel:
    """A trained settings model: the conditioned map network (luminance SSIM per setting, cell by
    cell) and the statistics head (colour SSIM and SVG size per setting), with the standardisation
    of the statistics and of the head's targets, and the candidate settings it chooses among.

    ``predict`` reads an image once and scores every setting: ``ssim`` from the map network;
    ``rgb_ssim`` as the head's colour SSIM moved by how far the map network's SSIM is from the
    head's (colour and luminance SSIM move together across one logo's settings, and the map network
    sees where in the image they change); ``bytes`` from the head.

    With a neighbour prior (``prior_stats``, ``prior_curves``: training logos converted with every
    candidate, their standardised statistics and their SSIM across the candidates centred on its
    mean), how the candidates differ for this image is, with weight ``prior_weight``, the mean
    curve of its ``neighbours`` nearest training logos by statistics rather than the map
    network's; the map network keeps the level (the mean over the settings scored).

    With ``sim_cap``, each setting's predicted SSIM is capped by what a simulation of VTracer's
    clustering says the setting loses against the defaults (:func:`cap_by_simulation`)."""

    spec: object
    head: dict
    cond: dict
    stats_mean: np.ndarray
    stats_std: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray
    candidates: tuple
    prior_stats: np.ndarray | None = None
    prior_curves: np.ndarray | None = None
    neighbours: int = 20
    prior_weight: float = 0.0
    prior_anchor: str = "mean"  # "defaults": with prior_weight 1, the map network scores the defaults only
    sim_cap: float | None = None

    def standardised(self, stats: np.ndarray) -> np.ndarray:
        return np.clip((np.asarray(stats, np.float32) - self.stats_mean) / self.stats_std, -5, 5).astype(np.float32)

    def neighbour_curve(self, stats: np.ndarray, settings: Sequence[dict]) -> np.ndarray | None:
        """:func:`neighbour_curve` of this model's prior for an image's (raw) statistics."""
        if self.prior_stats is None or not self.prior_weight:
            return None
        return neighbour_curve(self.prior_stats, self.prior_curves, self.standardised(stats), self.candidates,
                               settings, self.neighbours)

    def anchor_index(self, settings: Sequence[dict]) -> int | None:
        return anchor_index(settings, self.prior_weight, self.prior_anchor)

    def head_predictions(self, stats: np.ndarray, encoded: np.ndarray) -> np.ndarray:
        """(K, len(TARGETS)) of the head for one image's statistics and K encoded settings."""
        z = self.standardised(stats)
        z = np.broadcast_to(z, (len(encoded), z.shape[-1]))
        return np.asarray(_head_forward(self.head, z, encoded)) * self.y_std + self.y_mean

    def predict(self, img, settings: Sequence[dict] | None = None) -> dict:
        """``{"ssim", "rgb_ssim", "bytes"}`` arrays over ``settings`` (default: the candidates) for
        an image (a path, a PIL image or a uint8 array)."""
        from ssimjax.data.images import as_image, rgb_pixels
        from ssimjax.data.vtsettings import default_setting
        from ssimjax.features.stats import image_statistics

        pil = as_image(img)
        settings = self.candidates if settings is None else [dict(s) for s in settings]
        if self.sim_cap is not None and default_setting() not in settings:  # the cap is relative to the defaults
            out = self.predict(pil, [*settings, default_setting()])
            return {k: v[:-1] for k, v in out.items()}
        encoded = encode_settings(settings)
        stats = image_statistics(pil, thumb=False)
        head = self.head_predictions(stats, encoded)
        curve = self.neighbour_curve(stats, settings)
        anchor = self.anchor_index(settings) if curve is not None else None
        if anchor is not None:  # the map network scores the defaults only; the neighbours, the rest
            level = conditioned_scores(self.cond, self.spec, rgb_pixels(pil), encoded[anchor:anchor + 1])[0]
            ssim = (level + curve - curve[anchor]).astype(np.float32)
        else:
            ssim = conditioned_scores(self.cond, self.spec, rgb_pixels(pil), encoded)
            if curve is not None:
                w = np.float32(self.prior_weight)
                ssim = (ssim.mean() + (1 - w) * (ssim - ssim.mean()) + w * curve).astype(np.float32)
        if self.sim_cap is not None:
            ssim = cap_image_by_simulation(ssim, pil, settings, self.sim_cap)
        return {"ssim": ssim, "rgb_ssim": np.minimum(head[:, 1] + (ssim - head[:, 0]), 1.0).astype(np.float32),
                "bytes": np.exp(head[:, 2]).astype(np.float32)}
