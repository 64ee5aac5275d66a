"""The PyTorch ``QualityPredictionModel`` the deployment code loads (see torch-interface.md).

Structure, state_dict keys and methods are exactly the documented ones:
``feature_extractor.backbone`` is torchvision's ResNet-50 without ``fc``; ``predictor.mlp`` is a
Sequential of Linear, BatchNorm1d (optional), ReLU, Dropout per hidden size, then Linear and
Sigmoid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torchvision

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


class Predictor(nn.Module):
    def __init__(self, feature_dim: int, hidden_dims, dropout_rate: float, use_batch_norm: bool):
        super().__init__()
        layers: list[nn.Module] = []
        d = feature_dim
        for h in hidden_dims:
            layers.append(nn.Linear(d, h))
            if use_batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers += [nn.ReLU(), nn.Dropout(dropout_rate)]
            d = h
        layers += [nn.Linear(d, 1), nn.Sigmoid()]
        self.mlp = nn.Sequential(*layers)

    def forward(self, features):
        return self.mlp(features)


class QualityPredictionModel(nn.Module):
    """ResNet-50 features -> MLP -> SSIM in [0, 1]. Input: (B, 3, 224, 224), ImageNet-normalised."""

    def __init__(self, config: dict[str, Any] | None = None):
        super().__init__()
        self.config = {**DEFAULT_CONFIG, **(config or {})}
        c = self.config
        self.feature_extractor = FeatureExtractor()
        self.predictor = Predictor(c["feature_dim"], c["hidden_dims"], c["dropout_rate"], c["use_batch_norm"])
        if c["freeze_backbone"]:
            for p in self.feature_extractor.parameters():
                p.requires_grad = False

    def forward(self, x):
        features = self.feature_extractor(x)
        return self.predictor(features), features

    @torch.no_grad()
    def predict_ssim(self, x):
        return self.forward(x)[0]

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
