"""The PyTorch side of the CPU benchmark: the plan's trainer (bridge.reference) and model timed as the plan runs them, float32 and autocast bfloat16. torch is imported inside each function, so importing this module does not import it."""

from __future__ import annotations

import time
from pathlib import Path

from ssimjax.bench.data import load_split
from ssimjax.bench.timing import median_time


# -- PyTorch ---------------------------------------------------------------------------------
def torch_tensors(pixels):
    import numpy as np
    import torch

    from ssimjax.data.images import normalize

    return torch.from_numpy(np.ascontiguousarray(normalize(pixels).transpose(0, 3, 1, 2)))


def torch_matmul_peak(repeats: int) -> float:
    import torch

    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    t = median_time(lambda: a @ b, repeats)
    return 2 * 4096**3 / t / 1e9


def torch_e2e(data: Path, epochs: int, batch: int) -> dict:
    """The plan's loop, from reading the images to the last validation."""
    import torch

    from bridge.reference import plan_model, train_plan

    t0 = time.perf_counter()
    pixels, y, tr, va = load_split(data)
    x = torch_tensors(pixels)
    targets = torch.from_numpy(y)
    model = plan_model()
    out = train_plan(model, x[tr], targets[tr], x[va], targets[va], epochs=epochs, batch_size=batch)
    return {"seconds": time.perf_counter() - t0, "train_seconds": out["seconds"],
            "final_val_correlation": out["history"]["val_correlation"][-1]}


def torch_extract(x, batch: int, repeats: int, bf16: bool = True) -> dict:
    import torch

    from bridge.reference import plan_model

    model = plan_model().eval()
    out = {}
    for layout in TORCH_VARIANTS if bf16 else TORCH_VARIANTS[:2]:
        cl = layout != "contiguous"
        m = model.to(memory_format=torch.channels_last) if cl else model
        xb = x[:batch].contiguous(memory_format=torch.channels_last) if cl else x[:batch]
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=layout.endswith("bf16")):
            t = median_time(lambda: m.feature_extractor(xb), repeats)
        out[layout] = batch / t
    return out


def torch_finetune(x, y, batch: int, repeats: int, bf16: bool = True) -> dict:
    import torch

    from bridge.reference import plan_model, plan_optimizer, train_step

    out = {}
    for layout in TORCH_VARIANTS if bf16 else TORCH_VARIANTS[:2]:
        cl = layout != "contiguous"
        model = plan_model(freeze_backbone=False)
        if cl:
            model = model.to(memory_format=torch.channels_last)
        model.train()
        opt = plan_optimizer(model)
        xb = x[:batch].contiguous(memory_format=torch.channels_last) if cl else x[:batch]
        yb = torch.from_numpy(y[:batch])
        t = median_time(lambda: train_step(model, opt, xb, yb, autocast_bf16=layout.endswith("bf16")), repeats)
        out[layout] = batch / t
    return out


def torch_mlp(features, y, batch: int, epochs: int) -> float:
    import torch

    from bridge.model import Predictor

    torch.manual_seed(0)
    head = Predictor(2048, [1024, 512, 256, 128], 0.3, True).train()
    opt = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-4)
    f, t = torch.from_numpy(features), torch.from_numpy(y)

    def epoch():
        order = torch.randperm(len(f))
        for i in range(0, len(f), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(head(f[idx]).squeeze(1), t[idx])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            opt.step()

    return len(f) / median_time(epoch, epochs)


def torch_latency(x, repeats: int) -> float:
    import torch

    from bridge.reference import plan_model

    model = plan_model().eval()
    best = None
    for layout in ("contiguous", "channels_last"):
        m = model.to(memory_format=torch.channels_last) if layout == "channels_last" else model
        xb = x[:1].contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x[:1]
        with torch.inference_mode():
            t = median_time(lambda: m(xb), repeats, warmup=2)
        best = t if best is None else min(best, t)
    return best


# PyTorch's variants: float32 in both memory layouts, and its CPU mixed precision (autocast to
# bfloat16, oneDNN's AVX-512 BF16 kernels) in its faster layout, against ssimjax's bfloat16.
TORCH_VARIANTS = ("contiguous", "channels_last", "channels_last_bf16")
