"""ssimjax against the plan's PyTorch trainer, on this machine: ssimjax benchmark [--json FILE]

Runs both side by side in one run on the same data and prints a table of medians over repeats.
Ratios are ssimjax's speed over PyTorch's (higher is better), except cv5_over_1fold (time of
5 folds over 1; lower is better). The PyTorch reference is bridge.reference (the plan's trainer
semantics on the bridge's QualityPredictionModel).

  e2e_frozen_speedup      the plan's model (frozen ResNet-50 -> MLP) trained 20 epochs (no early stop) on
                          128 images of 224x224, batch 32, validation included: the plan's PyTorch loop's
                          wall time over `ssimjax train --plan-model` in a fresh process with an empty
                          feature cache and no persistent compilation cache (compilation included)
  e2e_default_speedup     with --default-e2e: the same with ssimjax's default model (SSIM-map network
                          trained first, then statistics + map score -> MLP)
  mlp_speedup_vs_torch    MLP-head training throughput on cached 2048-d features, batch 32
  mlp_fraction_of_limit   that throughput over the limit the fp32 matmul peak (measured here) allows
  extract_ratio_vs_torch  backbone feature extraction images/s against PyTorch's best layout, batch 32
  finetune_ratio_vs_torch full fine-tuning (unfrozen backbone) images/s, batch 16
  *_ratio_vs_torch_bf16   the same two in mixed precision: ssimjax --compute-dtype bfloat16 against
                          PyTorch's CPU autocast to bfloat16 (channels-last); *_best_dtype: best over best
  cv5_over_1fold          5-fold cross-validation time over one fold's, cached features
  latency_*               batch-1 prediction latency of both
  real_ssim_ms_<size>     the real pipeline (VTracer, resvg, SSIM) per image, beside ssimjax's prediction cost
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from ssimjax.bench.data import bench_data, load_split
from ssimjax.bench.jax_side import jax_cv, jax_extract, jax_finetune, jax_latency, jax_mlp, ssimjax_e2e
from ssimjax.bench.timing import cpu_name, median_time
from ssimjax.bench.torch_side import (
    torch_e2e,
    torch_extract,
    torch_finetune,
    torch_latency,
    torch_matmul_peak,
    torch_mlp,
    torch_tensors,
)
from ssimjax.cli import common as _cli
from ssimjax.features.cache import default_cache_dir

SIZES = (128, 256, 512, 1024)


def prediction_costs(images_by_size: dict, repeats: int) -> dict:
    """ssimjax's per-image prediction cost from a decoded image, per size: the default model
    (statistics and the map network at the image's resolution + MLP) and the plan's (resize +
    ResNet-50 + MLP)."""
    from ssimjax.config import TrainConfig
    from ssimjax.evaluate.predict import model_inputs
    from ssimjax.models.mapnet import MapModel, init_map_net, map_spec
    from ssimjax.train.fit import predict
    from ssimjax.train.state import Trainer, create_train_state

    out = {}
    for name, config in (("default", TrainConfig()), ("plan", TrainConfig.plan_model())):
        trainer, state = Trainer.from_config(config), create_train_state(config)
        maps = MapModel(map_spec(config), init_map_net(map_spec(config))) if config.map_net else None
        for size, img in images_by_size.items():
            for batch in (1, 32):
                imgs = [img] * batch
                t = median_time(lambda: predict(trainer, state, model_inputs(trainer, imgs, maps), batch), repeats)
                out[f"predict_ms_{name}_b{batch}_{size}"] = 1e3 * t / batch
    return out


def real_ssim_costs(repeats: int) -> tuple[dict, dict]:
    from ssimjax.data.demo import generate_image
    from ssimjax.data.labelling import conversion_ssim

    base = generate_image(11, 3)[0]
    images = {s: base.resize((s, s)) for s in SIZES}
    return {f"real_ssim_ms_{s}": 1e3 * median_time(lambda: conversion_ssim(images[s]), repeats)
            for s in SIZES}, images


def dtype_ratios(part: str, ours: dict, torch_rates: dict) -> dict:
    """``<part>_ratio_vs_torch``: ssimjax float32 over PyTorch's faster float32 layout (the goal's
    figure); ``<part>_ratio_vs_torch_bf16``: mixed precision against mixed precision; and
    ``<part>_ratio_vs_torch_best_dtype``: ssimjax's best over PyTorch's best, whatever the types."""
    torch32 = max(v for k, v in torch_rates.items() if not k.endswith("bf16"))
    out = {f"{part}_ratio_vs_torch": ours["float32"] / torch32,
           f"{part}_ratio_vs_torch_best_dtype": max(ours.values()) / max(torch_rates.values())}
    if "bfloat16" in ours and "channels_last_bf16" in torch_rates:
        out[f"{part}_ratio_vs_torch_bf16"] = ours["bfloat16"] / torch_rates["channels_last_bf16"]
    return out


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    _cli.setup_logging(verbose=False)
    import jax
    import torch

    skip = set(filter(None, args.skip.split(",")))
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    started = time.perf_counter()
    r = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "device": str(jax.devices()[0]),
                     "jax": jax.__version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
         "repeats": args.repeats}
    print(f"machine: {r['machine']}", flush=True)
    data = bench_data(cache_dir, args.images)
    pixels, y, _, _ = load_split(data)
    x = torch_tensors(pixels)
    r["matmul_peak_gflops"] = torch_matmul_peak(args.repeats)
    print(f"fp32 matmul peak (torch, 4096^3): {r['matmul_peak_gflops']:.0f} GFLOP/s", flush=True)
    parts = {
        "e2e": lambda: _e2e(args, data, warm="warm" not in skip),
        "mlp": lambda: _mlp(args, r["matmul_peak_gflops"]),
        "extract": lambda: _extract(args, x, pixels, bf16="bf16" not in skip),
        "finetune": lambda: _finetune(args, x, pixels, y, bf16="bf16" not in skip),
        "cv": lambda: _cv(args),
        "latency": lambda: _latency(args, x, pixels),
        "real": lambda: _real(args),
    }
    for name, part in parts.items():
        if name not in skip:
            r.update(part())
    r["total_s"] = time.perf_counter() - started
    _print_table(r)
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].split(": ", 1)[0])
    p.add_argument("--json", help="write the results here")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median; default 3)")
    p.add_argument("--images", type=int, default=128, help="end-to-end set size (default 128)")
    p.add_argument("--epochs", type=int, default=20, help="end-to-end epochs (default 20)")
    p.add_argument("--default-e2e", action="store_true",
                   help="also time ssimjax's default model end to end (e2e_default_speedup): about 5 more minutes, "
                        "most of them training its SSIM-map network")
    p.add_argument("--map-steps", type=int, help="end-to-end default model: its SSIM-map network's training steps "
                   "(default: the default model's)")
    p.add_argument("--map-extra", type=int, help="end-to-end default model: its synthetic wordmarks (default: the "
                   "default model's)")
    p.add_argument("--cv-rows", type=int, default=1024, help="cached-feature rows of the cross-validation timing "
                   "(default 1024)")
    p.add_argument("--skip", default="", help="comma-separated parts to leave out: e2e,extract,finetune,mlp,cv,"
                   "latency,real,bf16, and warm (the plan model's second end-to-end run, with a warm compilation "
                   "cache)")
    p.add_argument("--cache-dir", help="where the labelled benchmark set is cached (default $SSIMJAX_CACHE_DIR or "
                   "~/.cache/ssimjax)")
    return p


def _e2e(args, data: Path, warm: bool = True) -> dict:
    r = {"e2e_torch": torch_e2e(data, args.epochs, 32)}
    print(f"e2e PyTorch plan loop: {r['e2e_torch']['seconds']:.1f} s", flush=True)
    plan = r["e2e_ssimjax_plan"] = ssimjax_e2e(data, args.epochs, 32, plan=True,
                                               attempts=("cold", "warm") if warm else ("cold",))
    print(f"e2e ssimjax --plan-model: {plan['cold']['seconds']:.1f} s cold" +
          (f", {plan['warm']['seconds']:.1f} s with a warm compilation cache" if warm else ""), flush=True)
    r["e2e_frozen_speedup"] = r["e2e_torch"]["seconds"] / plan["cold"]["seconds"]
    if warm:
        r["e2e_frozen_speedup_warm_cache"] = r["e2e_torch"]["seconds"] / plan["warm"]["seconds"]
    if args.default_e2e:
        # Once, cold: most of it is training the SSIM-map network, which a warm compilation cache
        # hardly shortens, and a second run would take the benchmark past 15 minutes.
        r["e2e_ssimjax_default"] = ssimjax_e2e(data, args.epochs, 32, plan=False, map_steps=args.map_steps,
                                               attempts=("cold",), map_extra=args.map_extra)
        print(f"e2e ssimjax default model: {r['e2e_ssimjax_default']['cold']['seconds']:.1f} s cold", flush=True)
        r["e2e_default_speedup"] = r["e2e_torch"]["seconds"] / r["e2e_ssimjax_default"]["cold"]["seconds"]
    r["persistent_compilation_cache"] = ("e2e_frozen_speedup: empty (cold, every compilation timed); "
                                         "e2e_frozen_speedup_warm_cache: warm from the run before")
    return r


def _mlp(args, matmul_peak_gflops: float) -> dict:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(4096, 2048)).astype(np.float32)
    ty = rng.uniform(0.5, 1.0, 4096).astype(np.float32)
    r = {"mlp_torch_samples_per_s": torch_mlp(feats, ty, 32, args.repeats),
         "mlp_ssimjax_samples_per_s": jax_mlp(feats, ty, 32, args.repeats)}
    macs = 2048 * 1024 + 1024 * 512 + 512 * 256 + 256 * 128 + 128
    r["mlp_flops_per_sample"] = 6 * macs  # forward 2 MACs' worth, backward twice that
    r["mlp_limit_samples_per_s"] = matmul_peak_gflops * 1e9 / r["mlp_flops_per_sample"]
    r["mlp_speedup_vs_torch"] = r["mlp_ssimjax_samples_per_s"] / r["mlp_torch_samples_per_s"]
    r["mlp_fraction_of_limit"] = r["mlp_ssimjax_samples_per_s"] / r["mlp_limit_samples_per_s"]
    print(f"MLP head: ssimjax {r['mlp_ssimjax_samples_per_s']:.0f} samples/s, torch "
          f"{r['mlp_torch_samples_per_s']:.0f}, limit {r['mlp_limit_samples_per_s']:.0f}", flush=True)
    return r


def _extract(args, x, pixels, bf16: bool) -> dict:
    torch_rates = torch_extract(x, 32, args.repeats, bf16=bf16)
    ours = {"float32": jax_extract(pixels, 32, args.repeats, "float32")}
    if bf16:
        ours["bfloat16"] = jax_extract(pixels, 32, args.repeats, "bfloat16")
    print(f"extraction (batch 32): ssimjax {ours}, torch {torch_rates}", flush=True)
    return {"extract_torch_img_per_s": torch_rates, "extract_ssimjax_img_per_s": ours,
            **dtype_ratios("extract", ours, torch_rates)}


def _finetune(args, x, pixels, y, bf16: bool) -> dict:
    reps = max(2, args.repeats - 1)
    torch_rates = torch_finetune(x, y, 16, reps, bf16=bf16)
    ours = {"float32": jax_finetune(pixels, y, 16, reps, "float32")}
    if bf16:
        ours["bfloat16"] = jax_finetune(pixels, y, 16, reps, "bfloat16")
    print(f"fine-tuning (batch 16): ssimjax {ours}, torch {torch_rates}", flush=True)
    return {"finetune_torch_img_per_s": torch_rates, "finetune_ssimjax_img_per_s": ours,
            **dtype_ratios("finetune", ours, torch_rates)}


def _cv(args) -> dict:
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(args.cv_rows, 2048)).astype(np.float32)
    cy = (1 / (1 + np.exp(-feats[:, :8].sum(1) / 3))).astype(np.float32)
    cv = jax_cv(feats, cy, 5)
    print(f"cross-validation ({args.cv_rows} rows, 20 epochs): 5 folds {cv['all']['warm_s']:.2f} s, one fold "
          f"{cv['one']['warm_s']:.2f} s (compiled; cold {cv['all']['cold_s']:.2f} / {cv['one']['cold_s']:.2f})",
          flush=True)
    return {"cv": cv, "cv5_over_1fold": cv["all"]["warm_s"] / cv["one"]["warm_s"],
            "cv5_over_1fold_cold": cv["all"]["cold_s"] / cv["one"]["cold_s"]}


def _latency(args, x, pixels) -> dict:
    reps = max(5, args.repeats * 3)
    r = {"latency_torch_ms": 1e3 * torch_latency(x, reps), "latency_ssimjax_ms": 1e3 * jax_latency(pixels, reps)}
    r["latency_ratio"] = r["latency_ssimjax_ms"] / r["latency_torch_ms"]
    print(f"batch-1 latency (ResNet-50 + MLP): ssimjax {r['latency_ssimjax_ms']:.1f} ms, torch "
          f"{r['latency_torch_ms']:.1f} ms", flush=True)
    return r


def _real(args) -> dict:
    costs, images = real_ssim_costs(args.repeats)
    r = {**costs, **prediction_costs(images, args.repeats)}
    for s in SIZES:
        print(f"{s:5d} px: real SSIM {r[f'real_ssim_ms_{s}']:7.1f} ms | predicted, default model "
              f"{r[f'predict_ms_default_b1_{s}']:6.1f} ms (batch 1) {r[f'predict_ms_default_b32_{s}']:6.1f} ms "
              f"(batch 32) | plan model {r[f'predict_ms_plan_b1_{s}']:6.1f} / {r[f'predict_ms_plan_b32_{s}']:6.1f} ms",
              flush=True)
    return r


GOALS = [("e2e_frozen_speedup", ">= 10"), ("e2e_frozen_speedup_warm_cache", ""), ("e2e_default_speedup", ""),
         ("mlp_speedup_vs_torch", ">= 5"), ("mlp_fraction_of_limit", ">= 0.7"), ("extract_ratio_vs_torch", ">= 1.0"),
         ("extract_ratio_vs_torch_bf16", ""), ("extract_ratio_vs_torch_best_dtype", ""),
         ("finetune_ratio_vs_torch", ">= 1.0"), ("finetune_ratio_vs_torch_bf16", ""),
         ("finetune_ratio_vs_torch_best_dtype", ""), ("cv5_over_1fold", "<= 2.0"), ("cv5_over_1fold_cold", ""),
         ("latency_ratio", "<= 1.2")]


def _print_table(r: dict) -> None:
    print("\n| figure | value | goal |\n|---|---|---|")
    for key, goal in GOALS:
        if key in r:
            print(f"| {key} | {r[key]:.2f} | {goal} |")
    print(f"(total {r['total_s']:.0f} s)")
