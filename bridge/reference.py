"""The plan's PyTorch trainer, as a reference to measure ssimjax against (``scripts/benchmark.py``).

The semantics of the plan's ``AdvancedQualityTrainer`` on the bridge's ``QualityPredictionModel``:
``model.train()`` every epoch (the plan calls it on the whole model, so a frozen backbone's
BatchNorm layers also run in training mode), a shuffled pass of batches through the whole model
(the frozen backbone runs forward every epoch: the plan caches nothing), MSE, backward, gradient
clipping at 1.0, Adam with L2 weight decay (predictor only when frozen; backbone at 0.1x the
rate otherwise), then a validation pass in eval mode under ``no_grad`` and the plateau schedule.
Images are held in memory as preprocessed tensors (the plan decodes them every epoch; that cost
is left out, in PyTorch's favour).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .model import QualityPredictionModel


def plan_model(freeze_backbone: bool = True, seed: int = 0) -> QualityPredictionModel:
    torch.manual_seed(seed)
    return QualityPredictionModel({"freeze_backbone": freeze_backbone})


def plan_optimizer(model: QualityPredictionModel, learning_rate: float = 1e-3, weight_decay: float = 1e-4):
    if model.config["freeze_backbone"]:
        return torch.optim.Adam(model.predictor.parameters(), lr=learning_rate, weight_decay=weight_decay)
    return torch.optim.Adam([
        {"params": model.feature_extractor.parameters(), "lr": learning_rate * 0.1},
        {"params": model.predictor.parameters(), "lr": learning_rate},
    ], weight_decay=weight_decay)


def train_step(model, optimizer, images: torch.Tensor, targets: torch.Tensor, autocast_bf16: bool = False) -> float:
    """One step of the plan's loop. ``autocast_bf16``: PyTorch's CPU mixed precision, autocast to
    bfloat16 around the forward pass and the loss only, as its recipe asks."""
    optimizer.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_bf16):
        pred, _ = model(images)
        loss = torch.nn.functional.mse_loss(pred.squeeze(1), targets)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def validate(model, images: torch.Tensor, targets: torch.Tensor, batch_size: int) -> tuple[float, np.ndarray]:
    model.eval()
    preds = torch.cat([model(images[i:i + batch_size])[0].squeeze(1) for i in range(0, len(images), batch_size)])
    return float(torch.nn.functional.mse_loss(preds, targets)), preds.numpy()


def train_plan(model, train_images, train_targets, val_images, val_targets, epochs: int = 20, batch_size: int = 32,
               seed: int = 0) -> dict:
    """The plan's loop for ``epochs`` epochs (no early stop). Returns the history and seconds."""
    optimizer = plan_optimizer(model)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=5)
    g = torch.Generator().manual_seed(seed)
    history = {"train_loss": [], "val_loss": [], "val_correlation": []}
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train_images), generator=g)
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2:  # BatchNorm1d cannot train on one row (the plan's loader would fail there)
                continue
            total += train_step(model, optimizer, train_images[idx], train_targets[idx]) * len(idx)
        val_loss, preds = validate(model, val_images, val_targets, batch_size)
        scheduler.step(val_loss)
        history["train_loss"].append(total / len(order))
        history["val_loss"].append(val_loss)
        history["val_correlation"].append(float(np.corrcoef(preds, val_targets.numpy())[0, 1]))
    return {"history": history, "seconds": time.perf_counter() - t0}
