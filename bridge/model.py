"""The PyTorch ``QualityPredictionModel`` the deployment code loads (see torch-interface.md).

Structure, state_dict keys and methods are exactly the documented ones:
``feature_extractor.backbone`` is torchvision's ResNet-50 without ``fc``; ``predictor.mlp`` is a
Sequential of Linear, BatchNorm1d (optional), ReLU, Dropout per hidden size, then Linear and
Sigmoid.

A model trained with image statistics (ssimjax's default; ``config['image_stats']`` names them)
also has ``predictor.input_norm`` (buffers ``mean`` and ``std``): the statistics, computed by
:mod:`ssimjax.stats` from the image at its own resolution, are standardised, clipped and form the
MLP's input, after the 2048 backbone features when ``config['backbone_features']`` (default true;
ssimjax's default model sets it false and never runs the backbone in ``predict_ssim``). ``predict_ssim`` then takes image files or PIL
images and computes everything itself, exactly as ``scripts/predict.py`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torchvision
from PIL import Image

from ssimjax.data import IMAGENET_MEAN, IMAGENET_STD, normalize
from ssimjax.stats import STAT_NAMES, STATS_CLIP, STATS_VERSION, image_inputs, image_statistics

FEATURE_DIM = 2048
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


class Predictor(nn.Module):
    def __init__(self, feature_dim: int, hidden_dims, dropout_rate: float, use_batch_norm: bool, num_stats: int = 0,
                 use_features: bool = True):
        super().__init__()
        self.num_stats, self.use_features = num_stats, use_features
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
        layers += [nn.Linear(d, 1), nn.Sigmoid()]
        self.mlp = nn.Sequential(*layers)

    def forward(self, features, stats=None):
        if not self.use_features:
            features = features[:, :0]
        if self.num_stats:
            if stats is None:
                raise ValueError(f"this model needs {self.num_stats} image statistics per image (config['image_stats']);"
                                 " pass image files or PIL images to predict_ssim")
            features = torch.cat([features, self.input_norm(stats.to(features.dtype))], dim=1)
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
        self.feature_extractor = FeatureExtractor()
        self.uses_features = bool(c.get("backbone_features", True))
        self.predictor = Predictor(c["feature_dim"], c["hidden_dims"], c["dropout_rate"], c["use_batch_norm"],
                                   self.num_stats, self.uses_features)
        if c["freeze_backbone"]:
            for p in self.feature_extractor.parameters():
                p.requires_grad = False

    def forward(self, x, stats=None):
        features = self.feature_extractor(x)
        return self.predictor(features, stats), features

    @torch.no_grad()
    def predict_ssim(self, x):
        """SSIM predictions (B, 1).

        ``x`` is a preprocessed (B, 3, 224, 224) tensor, or an image path, a PIL image, or a list
        of them. Given images, preprocessing (transparency on white, torchvision's resize,
        ImageNet normalisation) and image statistics are ssimjax's own, so the result equals
        ``scripts/predict.py``'s. Given a tensor, a model with image statistics computes them from
        the 224x224 tensor itself: the resize hides detail the statistics measure, so predictions
        differ from those on the original image (prefer paths or PIL images).
        """
        if isinstance(x, torch.Tensor):
            stats = None
            if self.num_stats:
                stats = torch.from_numpy(np.stack([image_statistics(_tensor_to_pil(t)) for t in x]))
            return self.forward(x, stats)[0]
        images = [x] if isinstance(x, (str, Path, Image.Image)) else list(x)
        pixels, stats = prepare_images(images, with_stats=bool(self.num_stats), with_pixels=self.uses_features)
        param = next(self.parameters())
        stats = None if stats is None else torch.from_numpy(stats).to(param.device)
        if not self.uses_features:  # the backbone's output would be ignored: do not run it
            return self.predictor(torch.zeros(len(images), 0, device=param.device, dtype=param.dtype), stats)
        tensor = torch.from_numpy(pixels).permute(0, 3, 1, 2).to(param.device, param.dtype)
        return self.forward(tensor, stats)[0]

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


def _tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """A normalised (3, H, W) tensor back to 8-bit RGB."""
    mean = torch.as_tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.as_tensor(IMAGENET_STD).view(3, 1, 1)
    rgb = ((t.detach().cpu().float() * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)
    return Image.fromarray(rgb.permute(1, 2, 0).numpy())


def prepare_images(images: Sequence, with_stats: bool, with_pixels: bool = True):
    """Paths or PIL images -> (normalised float32 NHWC pixels or None, statistics or None), by
    ssimjax's own preprocessing and statistics (:func:`ssimjax.stats.image_inputs`). Raises
    ValueError (ssimjax's DataError) naming an unreadable file."""
    inputs = image_inputs(images, with_pixels=with_pixels, with_stats=with_stats)
    return (normalize(inputs["image"]) if with_pixels else None), inputs.get("stats")
