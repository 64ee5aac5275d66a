"""The settings model (issue 25) for the PyTorch deployment: ``SettingRecommender``, beside the
plan's ``QualityPredictionModel`` (which stays as it is).

    model = SettingRecommender.load_checkpoint("RUN/recommender.pth")
    params, figures = model.recommend("logo.png", min_ssim=0.95)   # a path, PIL image or uint8 array
    vtracer.convert_image_to_svg_py("logo.png", "logo.svg", **params)

The image is read once (its statistics, the map network's trunk, and, with ``sim_cap``, a simulation
of VTracer's clustering that caps the predictions); each candidate setting then adds two 1x1 layers
over the hidden cells and a small MLP. Equal to ``ssimjax recommend`` (the same
weights, the same arithmetic in float32).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from ssimjax.features.stats import STATS_VERSION
from ssimjax.models.mapnet import cell_weights
from ssimjax.models.setting_head import (
    ENCODING,
    TARGETS,
    anchor_index,
    cap_image_by_simulation,
    choose_setting,
    encode_settings,
    neighbour_curve,
)

from .convert import _to_torch, map_net_to_torch
from .export import save_checkpoint
from .model import InputNorm, MapNet

KIND = "vtracer-settings-recommender"


class SettingRecommender(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)
        m = config["map_net"]
        channels = int(m["channels"])
        self.map_trunk = MapNet(channels, m["dilations"], m["cell"], with_head=False)
        self.film = nn.Linear(len(ENCODING), 2 * channels)
        self.cell_head = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(), nn.Linear(channels, 1))
        n_stats, embed, hidden = int(config["n_stats"]), int(config["embed"]), int(config["hidden"])
        self.input_norm = InputNorm(n_stats)
        self.image_mlp = nn.Sequential(nn.Linear(n_stats, hidden), nn.ReLU(), nn.Linear(hidden, embed), nn.ReLU())
        self.setting_mlp = nn.Sequential(nn.Linear(embed + len(ENCODING), hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                         nn.ReLU(), nn.Linear(hidden, len(TARGETS)))
        self.register_buffer("y_mean", torch.zeros(len(TARGETS)))
        self.register_buffer("y_std", torch.ones(len(TARGETS)))
        self.candidates = [dict(c) for c in config["candidates"]]
        self.prior_logos = int(config.get("prior_logos", 0))
        if self.prior_logos:  # the neighbour prior: training logos' standardised statistics and SSIM curves
            self.register_buffer("prior_stats", torch.zeros(self.prior_logos, n_stats))
            self.register_buffer("prior_curves", torch.zeros(self.prior_logos, len(self.candidates)))
        self.register_buffer("candidates_encoded", torch.from_numpy(encode_settings(self.candidates)),
                             persistent=False)

    @torch.no_grad()
    def predict_settings(self, image, settings: Sequence[dict] | None = None) -> dict:
        """``{"ssim", "rgb_ssim", "bytes"}`` (numpy, one per setting; default: the candidates) for an
        image given as a path, a PIL image or a uint8 array at its own resolution."""
        from ssimjax.data.images import as_image, rgb_pixels
        from ssimjax.data.vtsettings import default_setting
        from ssimjax.features.stats import image_statistics

        pil = as_image(image)
        cap = self.config.get("sim_cap")
        if cap is not None and settings is not None and default_setting() not in [dict(s) for s in settings]:
            out = self.predict_settings(pil, [*settings, default_setting()])  # the cap is relative to the defaults
            return {k: v[:-1] for k, v in out.items()}
        device = self.y_mean.device
        enc = self.candidates_encoded if settings is None else torch.from_numpy(encode_settings(settings))
        enc = enc.to(device)
        stats = torch.from_numpy(image_statistics(pil, thumb=False)).to(device)[None]
        z = self.input_norm(stats)
        emb = self.image_mlp(z)
        head = self.setting_mlp(torch.cat([emb.expand(len(enc), -1), enc], 1)) * self.y_std + self.y_mean
        rgb = rgb_pixels(pil)
        curve = self._neighbour_curve(z[0], settings)
        anchor = None if curve is None else anchor_index(self.candidates if settings is None else settings,
                                                          float(self.config["prior_weight"]),
                                                          self.config.get("prior_anchor", "mean"))
        hidden = self.map_trunk.hidden(rgb)  # (hc, wc, C), once
        c = hidden.shape[-1]
        weight = torch.from_numpy(cell_weights(*rgb.shape[:2], self.map_trunk.cell)).to(device)
        ssim = []
        scored = enc[anchor:anchor + 1] if anchor is not None else enc
        for part in scored.split(8):  # a few settings at a time: (K, hc, wc, C) of a large image is large
            film = self.film(part)
            h = torch.relu(hidden[None] * (1.0 + film[:, None, None, :c]) + film[:, None, None, c:])
            cells = self.cell_head(h)[..., 0]
            ssim.append((cells * weight).sum((1, 2)) / weight.sum().clamp(min=1.0))
        ssim = torch.cat(ssim)
        if anchor is not None:  # the map network scores the defaults only; the neighbours, the rest
            ssim = ssim[0] + curve - curve[anchor]
        elif curve is not None:
            w = float(self.config["prior_weight"])
            ssim = ssim.mean() + (1 - w) * (ssim - ssim.mean()) + w * curve
        if cap is not None:
            scored = self.candidates if settings is None else settings
            ssim = torch.from_numpy(cap_image_by_simulation(ssim.cpu().numpy(), pil, scored, float(cap))).to(device)
        rgb_ssim = torch.clamp(head[:, 1] + (ssim - head[:, 0]), max=1.0)
        return {"ssim": ssim.cpu().numpy(), "rgb_ssim": rgb_ssim.cpu().numpy(),
                "bytes": torch.exp(head[:, 2]).cpu().numpy()}

    def _neighbour_curve(self, z: torch.Tensor, settings) -> torch.Tensor | None:
        """The nearest training logos' centred SSIM curve over the settings scored (as the JAX model)."""
        if not self.prior_logos or not float(self.config.get("prior_weight", 0)):
            return None
        curve = neighbour_curve(self.prior_stats.cpu().numpy(), self.prior_curves.cpu().numpy(), z.cpu().numpy(),
                                self.candidates, self.candidates if settings is None else settings,
                                int(self.config["neighbours"]))
        return None if curve is None else torch.from_numpy(curve).to(z.device)

    def recommend(self, image, min_ssim: float | None = 0.95, max_bytes: float | None = None) -> tuple[dict, dict]:
        """``(params, predicted)``: the candidate setting to convert with (as ``ssimjax recommend``
        chooses it) and its predicted ``ssim``, ``rgb_ssim`` and ``bytes``."""
        from ssimjax.data.vtsettings import default_setting

        if max_bytes is not None:
            min_ssim = None
        pred = self.predict_settings(image)
        d = self.candidates.index(default_setting())
        margin = float(self.config.get("margin", 0.0)) if min_ssim is not None else 0.0
        i = choose_setting(pred["ssim"], pred["rgb_ssim"], pred["bytes"], d, min_ssim=min_ssim, max_bytes=max_bytes,
                           margin=margin)
        return dict(self.candidates[i]), {k: float(v[i]) for k, v in pred.items()}

    @classmethod
    def load_checkpoint(cls, path: str | Path) -> "SettingRecommender":
        """A ready model (eval mode) from ``recommender.pth``; loads with ``weights_only=True``."""
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(checkpoint, dict) or checkpoint.get("kind") != KIND:
            raise ValueError(f"{path}: not a SettingRecommender checkpoint (ssimjax train --vtracer-parameters "
                             "writes one as RUN/recommender.pth; QualityPredictionModel loads model.pth)")
        model = cls(checkpoint["config"])
        model.load_state_dict(checkpoint["model_state_dict"], strict=True)
        return model.eval()


def _dense(layer: dict) -> list:
    return [_to_torch("kernel", layer["w"]), _to_torch("bias", layer["b"])]


def settings_state_dict(model) -> dict:
    """A :class:`ssimjax.models.setting_head.SettingsModel`'s weights as SettingRecommender's state_dict."""
    sd = dict(map_net_to_torch(list(model.cond["trunk"]) + [{"w": np.zeros((1, 1)), "b": np.zeros(1)}],
                               prefix="map_trunk."))
    sd.pop("map_trunk.head.weight"), sd.pop("map_trunk.head.bias")
    for name, layer in (("film", model.cond["film"]), ("cell_head.0", model.cond["head"][0]),
                        ("cell_head.2", model.cond["head"][1]), ("image_mlp.0", model.head["image"][0]),
                        ("image_mlp.2", model.head["image"][1]), ("setting_mlp.0", model.head["head"][0]),
                        ("setting_mlp.2", model.head["head"][1]), ("setting_mlp.4", model.head["head"][2])):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = _dense(layer)
    for key, value in (("input_norm.mean", model.stats_mean), ("input_norm.std", model.stats_std),
                       ("y_mean", model.y_mean), ("y_std", model.y_std)):
        sd[key] = torch.from_numpy(np.asarray(value, np.float32).copy())
    if model.prior_stats is not None:
        sd["prior_stats"] = torch.from_numpy(np.asarray(model.prior_stats, np.float32).copy())
        sd["prior_curves"] = torch.from_numpy(np.asarray(model.prior_curves, np.float32).copy())
    return sd


def export_settings_run(run_dir: str | Path, out: str | Path) -> Path:
    """Writes a settings run's model as ``torch.save``d ``{"kind", "config", "model_state_dict"}``."""
    import json

    from ssimjax.train.settings import load_settings_model

    run_dir = Path(run_dir)
    model = load_settings_model(run_dir)
    cfg_path = run_dir / "settings_config.json"
    run_cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    image_layers = model.head["image"]
    spec = model.spec
    config = dict(map_net=dict(channels=spec.channels, dilations=list(spec.dilations), cell=spec.cell),
                  n_stats=int(len(model.stats_mean)), embed=int(np.shape(image_layers[1]["w"])[1]),
                  hidden=int(np.shape(image_layers[0]["w"])[1]), candidates=[dict(c) for c in model.candidates],
                  margin=float(run_cfg.get("margin", 0.0)), min_ssim=float(run_cfg.get("min_ssim", 0.95)),
                  stats_version=STATS_VERSION, neighbours=int(model.neighbours), prior_weight=float(model.prior_weight),
                  prior_anchor=model.prior_anchor, sim_cap=model.sim_cap,
                  prior_logos=0 if model.prior_stats is None else int(len(model.prior_stats)))
    checkpoint = {"kind": KIND, "config": config, "model_state_dict": settings_state_dict(model)}
    SettingRecommender(config).load_state_dict(checkpoint["model_state_dict"], strict=True)  # what deployment loads
    return save_checkpoint(checkpoint, out)
