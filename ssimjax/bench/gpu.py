"""Fine-tuning and extraction throughput on the accelerator: ssimjax benchmark-gpu [--json FILE]

ResNet-50 + the plan's MLP, full fine-tuning (backbone unfrozen) on random 224x224 images, the
way issue 9's GPU anchors were measured: ssimjax's own compiled ``train_step`` (float32, and
bfloat16 mixed precision: bfloat16 compute, float32 parameters, BatchNorm statistics and loss)
against the plan's PyTorch step on the bridge's ``QualityPredictionModel`` (channels-last, cuDNN
autotuning on; float32 and AMP bfloat16). Steps run back to back and the clock stops when the last
one has finished, for both. Also backbone feature extraction (forward only) of both. Runs on
whatever device JAX and torch see first (a CPU too, slowly: use ``--batches 2 --steps 2`` there).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from ssimjax.cli import common as _cli

GOAL_BF16_FINETUNE = 8000.0  # img/s on an H200 (issue 9)


def _windows(run_steps, steps: int, windows: int) -> float:
    """Median seconds per step over ``windows`` timed windows of ``steps`` steps each."""
    times = []
    for _ in range(windows):
        t0 = time.perf_counter()
        run_steps(steps)
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times)


def ssimjax_finetune(batch: int, dtype: str, steps: int, windows: int, size: int = 224) -> dict:
    import jax
    import numpy as np

    from ssimjax.config import TrainConfig
    from ssimjax.train.state import Trainer, create_train_state

    config = TrainConfig.plan_model(compute_dtype=dtype, freeze_backbone=False)
    trainer, state = Trainer.from_config(config), create_train_state(config)
    rng = np.random.default_rng(0)
    b = {"image": jax.device_put(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)),
         "ssim": jax.device_put(rng.uniform(0.5, 1.0, batch).astype(np.float32)),
         "mask": jax.device_put(np.ones(batch, bool))}
    holder = {"state": state}

    def run(n):
        for _ in range(n):
            holder["state"], m = trainer.train_step(holder["state"], b)
        m["loss"].block_until_ready()

    t0 = time.perf_counter()
    run(2)  # compilation, autotuning and the allocator's first growth
    first = time.perf_counter() - t0
    per_step = _windows(run, steps, windows)
    loss = float(jax.device_get(trainer.train_step(holder["state"], b)[1]["loss"]))
    return {"img_per_s": batch / per_step, "step_ms": 1e3 * per_step, "first_two_steps_s": first,
            "loss_finite": bool(np.isfinite(loss))}


def ssimjax_extract(batch: int, dtype: str, steps: int, windows: int, size: int = 224) -> float:
    import jax
    import numpy as np

    from ssimjax.config import TrainConfig
    from ssimjax.train.state import Trainer, create_train_state
    from ssimjax.train.steps import jit_extract_features

    config = TrainConfig.plan_model(compute_dtype=dtype)
    trainer, state = Trainer.from_config(config), create_train_state(config)
    x = jax.device_put(np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8))

    def run(n):
        for _ in range(n):
            f = jit_extract_features(state.variables, x, trainer=trainer)
        f.block_until_ready()

    run(2)
    return batch / _windows(run, steps, windows)


def _torch_setup(batch: int, freeze: bool, size: int = 224):
    import torch

    from bridge.reference import plan_model

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    model = plan_model(freeze_backbone=freeze).to(device).to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g).to(device).contiguous(memory_format=torch.channels_last)
    y = torch.rand(batch, generator=g).to(device)
    return torch, device, model, x, y


def _sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def torch_finetune(batch: int, amp: bool, steps: int, windows: int, size: int = 224) -> float:
    """The plan's step (MSE, gradient clipping at 1.0, Adam with the backbone at 0.1x), without its
    per-step ``float(loss)`` synchronisation, optionally under autocast bfloat16."""
    torch, device, model, x, y = _torch_setup(batch, False, size)
    from bridge.reference import plan_optimizer

    model.train()
    opt = plan_optimizer(model)

    def run(n):
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                pred, _ = model(x)
            loss = torch.nn.functional.mse_loss(pred.squeeze(1).float(), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            opt.step()
        _sync(torch, device)

    run(3)
    return batch / _windows(run, steps, windows)


def torch_extract(batch: int, amp: bool, steps: int, windows: int, size: int = 224) -> float:
    torch, device, model, x, _ = _torch_setup(batch, True, size)
    model.eval()

    def run(n):
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            for _ in range(n):
                model.feature_extractor(x)
        _sync(torch, device)

    run(3)
    return batch / _windows(run, steps, windows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].split(": ", 1)[0])
    p.add_argument("--json", help="write the results here")
    p.add_argument("--batches", default="128", help="comma-separated fine-tuning batch sizes (default 128)")
    p.add_argument("--dtypes", default="bfloat16,float32", help="ssimjax compute types (default bfloat16,float32)")
    p.add_argument("--steps", type=int, default=10, help="steps per timed window (default 10)")
    p.add_argument("--windows", type=int, default=3, help="timed windows; the median is reported (default 3)")
    p.add_argument("--skip", default="", help="comma-separated parts to leave out: torch,extract")
    p.add_argument("--size", type=int, default=224, help="image side in pixels (default 224, the plan's; smaller only "
                   "to check the script quickly)")
    args = p.parse_args(argv)
    _cli.setup_logging(verbose=False)
    import jax
    import torch

    batches = [int(b) for b in args.batches.split(",")]
    dtypes = [d for d in args.dtypes.split(",") if d]
    skip = set(filter(None, args.skip.split(",")))
    r = {"machine": {"jax_device": str(jax.devices()[0]), "jax": jax.__version__, "torch": torch.__version__,
                     "torch_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"},
         "steps": args.steps, "windows": args.windows, "size": args.size, "finetune_ssimjax": {}, "finetune_torch": {}}
    print(f"machine: {r['machine']}", flush=True)

    def save():
        if args.json:
            Path(args.json).write_text(json.dumps(r, indent=2) + "\n")

    # The goal's own figure first, so a run cut short still has it.
    for batch in batches:
        for dtype in dtypes:
            out = ssimjax_finetune(batch, dtype, args.steps, args.windows, args.size)
            r["finetune_ssimjax"][f"{dtype}_b{batch}"] = out
            print(f"ssimjax fine-tune {dtype:8s} batch {batch:4d}: {out['img_per_s']:8.0f} img/s "
                  f"({out['step_ms']:.1f} ms/step; first two steps {out['first_two_steps_s']:.1f} s)", flush=True)
            save()
    if "torch" not in skip:
        for amp in (True, False):
            name = f"{'amp_bf16' if amp else 'float32'}_b{batches[0]}"
            r["finetune_torch"][name] = torch_finetune(batches[0], amp, args.steps, args.windows, args.size)
            print(f"torch fine-tune {name}: {r['finetune_torch'][name]:8.0f} img/s", flush=True)
            save()
    if "extract" not in skip:
        r["extract_ssimjax"] = {d: ssimjax_extract(batches[0], d, args.steps, args.windows, args.size) for d in dtypes}
        print(f"ssimjax extraction batch {batches[0]}: {r['extract_ssimjax']}", flush=True)
        if "torch" not in skip:
            r["extract_torch"] = {("amp_bf16" if amp else "float32"): torch_extract(
                batches[0], amp, args.steps, args.windows, args.size) for amp in (True, False)}
            print(f"torch extraction batch {batches[0]}: {r['extract_torch']}", flush=True)
    best = max((v["img_per_s"] for k, v in r["finetune_ssimjax"].items() if k.startswith("bfloat16")), default=None)
    if best is not None:
        r["finetune_bf16_best_img_per_s"] = best
        r["finetune_bf16_goal_img_per_s"] = GOAL_BF16_FINETUNE
        print(f"\nbest ssimjax bfloat16 fine-tuning: {best:.0f} img/s (goal on an H200: >= {GOAL_BF16_FINETUNE:.0f})")
    if r["finetune_torch"] and best is not None:
        r["finetune_bf16_over_torch_best"] = best / max(r["finetune_torch"].values())
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
