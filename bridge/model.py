"""The PyTorch ``QualityPredictionModel`` the deployment code loads (see torch-interface.md).

Structure, state_dict keys and methods are exactly the documented ones:
``feature_extractor.backbone`` is torchvision's ResNet-50 without ``fc``; ``predictor.mlp`` is a
Sequential of Linear, BatchNorm1d (optional), ReLU, Dropout per hidden size, then Linear and
Sigmoid.

A model trained with image statistics (ssimjax's default; ``config['image_stats']`` names them)
also has ``predictor.input_norm`` (buffers ``mean`` and ``std``): the statistics, computed by
:mod:`ssimjax.features.stats` from the image at its own resolution, are standardised, clipped and form the
MLP's input, after the 2048 backbone features when ``config['backbone_features']`` (default true;
ssimjax's default model sets it false and never runs the backbone in ``predict_ssim``). With
``config['map_net']`` (ssimjax's default) the model also holds ``map_net`` (:class:`MapNet`), the
learned SSIM-map network whose score is the last statistic; with ``config['map_residual']`` (also
ssimjax's default) the MLP's last Linear corrects that score (output: map score plus the Linear's,
clipped to [0, 1]) and has no Sigmoid after it. ``predict_ssim`` then takes image files or PIL
images and computes everything itself, exactly as ``scripts/predict.py`` does.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torchvision
from PIL import Image

from ssimjax.data.images import IMAGENET_MEAN, IMAGENET_STD, normalize
from ssimjax.features.stats import STAT_NAMES, STATS_CLIP, STATS_VERSION, image_inputs
from ssimjax.models.mapnet import score_from_cells

FEATURE_DIM = 2048
# Measured with the default run's model.pth (2026-12-06, statistics stats-v3) on the report sets, which
# no training row or design decision saw: SRCC 0.954 / PLCC 0.975 from the files, 0.584 / 0.468 from
# torchvision-preprocessed 224x224 tensors (Resize((224, 224)), ToTensor, ImageNet Normalize).
TENSOR_CALL_WARNING = (
    "predict_ssim got a preprocessed 224x224 tensor: this model measures the image at its own resolution, "
    "which the resize hides (on icon sets it never saw it ranked logos at SRCC 0.58 / PLCC 0.47 from such "
    "tensors against 0.95 / 0.98 from the files); pass image paths, PIL images or uint8 arrays instead, "
    "e.g. model.predict_ssim(['logo.png']) or model.predict_ssim(np.asarray(Image.open('logo.png')))")
DEFAULT_CONFIG = {
    "pretrained": False,
    "freeze_backbone": True,
    "feature_dim": FEATURE_DIM,
    "hidden_dims": [1024, 512, 256, 128],
    "dropout_rate": 0.3,
    "use_batch_norm": True,
    "version": "1.0",
}


class FeatureExtractor(nn.Module):
    def __init__(self):
        super().__init__()
        # weights=None: never download here; weights arrive through load_state_dict.
        self.backbone = nn.Sequential(*list(torchvision.models.resnet50(weights=None).children())[:-1])

    def forward(self, x):
        return torch.flatten(self.backbone(x), 1)


class InputNorm(nn.Module):
    """Standardises and clips image statistics with the mean and std stored at training time."""

    def __init__(self, size: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("std", torch.ones(size))

    def forward(self, stats):
        return torch.clamp((stats - self.mean) / self.std, -STATS_CLIP, STATS_CLIP)


class MapNet(nn.Module):
    """ssimjax's learned SSIM-map network (:mod:`ssimjax.models.mapnet`) in torch: the image at its own
    resolution as a cell x cell space-to-depth stack (channels in the same order), dilated 3x3
    convolutions without padding over the edge-extended image, one predicted SSIM per cell,
    averaged as the real map is. Its score is the last of the MLP's statistics."""

    def __init__(self, channels: int, dilations, cell: int, with_head: bool = True):
        super().__init__()
        self.dilations, self.cell = [int(d) for d in dilations], int(cell)
        self.convs = nn.ModuleList()
        cin = 3 * self.cell ** 2
        for d in self.dilations:
            self.convs.append(nn.Conv2d(cin, channels, 3, dilation=d))
            cin = channels
        if with_head:  # the settings recommender reads the hidden cells through its own per-setting head
            self.head = nn.Linear(cin, 1)

    def cells(self, rgb: np.ndarray) -> torch.Tensor:
        """Predicted SSIM per cell (ceil(H/cell), ceil(W/cell)) of a uint8 RGB image (H, W, 3)."""
        return self.head(self.hidden(rgb))[..., 0]

    def hidden(self, rgb: np.ndarray) -> torch.Tensor:
        """The last hidden activations per cell (ceil(H/cell), ceil(W/cell), channels) of a uint8 RGB image."""
        c, m = self.cell, self.cell * sum(self.dilations)
        h, w = rgb.shape[:2]
        hc, wc = -(-h // c), -(-w // c)
        param = self.convs[0].weight
        x = (torch.from_numpy(np.array(rgb, np.uint8)).to(param.device).float() / 255.0).permute(2, 0, 1)[None]
        x = nn.functional.pad(x, (m, m + wc * c - w, m, m + hc * c - h), mode="replicate")
        _, _, hp, wp = x.shape
        x = x.reshape(1, 3, hp // c, c, wp // c, c).permute(0, 3, 5, 1, 2, 4).reshape(1, 3 * c * c, hp // c, wp // c)
        for conv in self.convs:
            x = torch.relu(conv(x))
        return x[0].permute(1, 2, 0)

    @torch.no_grad()
    def score(self, images) -> np.ndarray:
        """Each uint8 RGB image's predicted SSIM (float32)."""
        return np.asarray([score_from_cells(self.cells(rgb).cpu().numpy(), *rgb.shape[:2], self.cell)
                           for rgb in images], np.float32)


class Predictor(nn.Module):
    def __init__(self, feature_dim: int, hidden_dims, dropout_rate: float, use_batch_norm: bool, num_stats: int = 0,
                 use_features: bool = True, residual: bool = False):
        super().__init__()
        self.num_stats, self.use_features, self.residual = num_stats, use_features, residual
        if num_stats:
            self.input_norm = InputNorm(num_stats)
        layers: list[nn.Module] = []
        d = (feature_dim if use_features else 0) + num_stats
        for h in hidden_dims:
            layers.append(nn.Linear(d, h))
            if use_batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers += [nn.ReLU(), nn.Dropout(dropout_rate)]
            d = h
        # With ``residual`` the output is the last statistic (the map score) plus the Linear's,
        # clipped to [0, 1] (ssimjax.models.quality.Predictor): no sigmoid; the state_dict keys are the same.
        layers += [nn.Linear(d, 1)] + ([] if residual else [nn.Sigmoid()])
        self.mlp = nn.Sequential(*layers)

    def forward(self, features, stats=None):
        if not self.use_features:
            features = features[:, :0]
        if self.num_stats:
            if stats is None:
                raise ValueError(f"this model needs {self.num_stats} image statistics per image (config['image_stats']);"
                                 " pass image files or PIL images to predict_ssim")
            features = torch.cat([features, self.input_norm(stats.to(features.dtype))], dim=1)
        if self.residual:
            return torch.clamp(stats[:, -1:].to(features.dtype) + self.mlp(features), 0.0, 1.0)
        return self.mlp(features)


class QualityPredictionModel(nn.Module):
    """ResNet-50 features -> MLP -> SSIM in [0, 1]. Input: (B, 3, 224, 224), ImageNet-normalised."""

    def __init__(self, config: dict[str, Any] | None = None):
        super().__init__()
        self.config = {**DEFAULT_CONFIG, **(config or {})}
        c = self.config
        stats = c.get("image_stats")
        if stats and (list(stats.get("names", [])) != list(STAT_NAMES) or stats.get("version") != STATS_VERSION):
            raise ValueError(f"this checkpoint's image statistics ({stats.get('version')}) are not the ones this ssimjax "
                             f"computes ({STATS_VERSION}); use the ssimjax version that trained it")
        self.num_stats = len(STAT_NAMES) if stats else 0
        if c.get("map_net"):  # ssimjax's learned map score, the last statistic
            self.map_net = MapNet(**c["map_net"])
            self.num_stats += 1
        self.feature_extractor = FeatureExtractor()
        self.uses_features = bool(c.get("backbone_features", True))
        self.predictor = Predictor(c["feature_dim"], c["hidden_dims"], c["dropout_rate"], c["use_batch_norm"],
                                   self.num_stats, self.uses_features, bool(c.get("map_residual")))
        if c["freeze_backbone"]:
            for p in self.feature_extractor.parameters():
                p.requires_grad = False

    def forward(self, x, stats=None):
        features = self.feature_extractor(x)
        return self.predictor(features, stats), features

    @torch.no_grad()
    def predict_ssim(self, x):
        """SSIM predictions (B, 1).

        ``x`` is an image path, a PIL image, a uint8 array at the image's own resolution ((H, W),
        (H, W, 3) RGB, (H, W, 4) RGBA, or (N, H, W, C) for several of one size), a list of them,
        or a preprocessed (B, 3, 224, 224) tensor. Given images, preprocessing (transparency on
        white, torchvision's resize, ImageNet normalisation) and image statistics are ssimjax's
        own, so the result equals ``scripts/predict.py``'s. Given a tensor, a model with image
        statistics computes them from the 224x224 tensor itself (the map network's score too):
        the resize hides the detail the statistics measure, so it ranks logos far worse, and the
        first such call warns (:data:`TENSOR_CALL_WARNING`).
        """
        if isinstance(x, torch.Tensor):
            return self._predict_tensor(x)
        images = _image_list(x)
        pixels, stats = prepare_images(images, with_stats=bool(self.num_stats), with_pixels=self.uses_features,
                                       map_score=self._map_score)
        param = next(self.parameters())
        stats = None if stats is None else torch.from_numpy(stats).to(param.device)
        if not self.uses_features:  # the backbone's output would be ignored: do not run it
            return self.predictor(torch.zeros(len(images), 0, device=param.device, dtype=param.dtype), stats)
        tensor = torch.from_numpy(pixels).permute(0, 3, 1, 2).to(param.device, param.dtype)
        return self.forward(tensor, stats)[0]

    def _predict_tensor(self, x: torch.Tensor):
        if not self.num_stats:  # the plan's model: the tensor is all it ever sees
            return self.forward(x)[0]
        if not getattr(self, "_tensor_warned", False):
            self._tensor_warned = True
            warnings.warn(TENSOR_CALL_WARNING, UserWarning, stacklevel=4)
        stats = prepare_images([_tensor_to_pil(t) for t in x], with_stats=True, with_pixels=False,
                               map_score=self._map_score)[1]
        return self.forward(x, torch.from_numpy(stats).to(x.device))[0]

    @property
    def _map_score(self):
        return self.map_net.score if hasattr(self, "map_net") else None

    @torch.no_grad()
    def extract_features(self, x):
        return self.feature_extractor(x)

    @classmethod
    def load_checkpoint(cls, path: str | Path) -> "QualityPredictionModel":
        """A ready model (eval mode) from a checkpoint file; loads with ``weights_only=True``."""
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model = cls(checkpoint["config"])
        model.load_state_dict(checkpoint["model_state_dict"], strict=True)
        return model.eval()


def _image_list(x) -> list:
    """``predict_ssim``'s images as a list: one path, PIL image or array, a batch array, or a list."""
    if isinstance(x, (str, Path, Image.Image)):
        return [x]
    if isinstance(x, np.ndarray):
        return list(x) if x.ndim == 4 else [x]
    return list(x)


def _tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """A normalised (3, H, W) tensor back to 8-bit RGB."""
    mean = torch.as_tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.as_tensor(IMAGENET_STD).view(3, 1, 1)
    rgb = ((t.detach().cpu().float() * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)
    return Image.fromarray(rgb.permute(1, 2, 0).numpy())


def prepare_images(images: Sequence, with_stats: bool, with_pixels: bool = True, map_score=None):
    """Paths or PIL images -> (normalised float32 NHWC pixels or None, statistics or None), by
    ssimjax's own preprocessing and statistics (:func:`ssimjax.features.stats.image_inputs`; ``map_score``
    appends the map network's score). Raises ValueError (ssimjax's DataError) naming an unreadable
    file."""
    inputs = image_inputs(images, with_pixels=with_pixels, with_stats=with_stats, map_score=map_score)
    return (normalize(inputs["image"]) if with_pixels else None), inputs.get("stats")
