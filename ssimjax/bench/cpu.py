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
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ssimjax.cli import command_line
from ssimjax.cli import common as _cli

SIZES = (128, 256, 512, 1024)


def median_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# -- data ------------------------------------------------------------------------------------
def _label_one(args):
    from ssimjax.data.demo import generate_image
    from ssimjax.data.labelling import conversion_ssim

    index, out = args
    img = generate_image(7, index)[0].resize((224, 224))
    name = f"images/bench_{index:04d}.png"
    img.save(Path(out) / name)
    return name, conversion_ssim(img)


def bench_data(cache_dir: Path, count: int) -> Path:
    """``count`` generated logo-like images of 224x224, labelled by the real pipeline; cached."""
    from ssimjax.data.labelling import build_cached, run_jobs

    def build(tmp: Path):
        (tmp / "images").mkdir(parents=True)
        rows = run_jobs(_label_one, [(i, str(tmp)) for i in range(count)])
        (tmp / "labels.csv").write_text("image,ssim\n" + "".join(f"{n},{s:.6f}\n" for n, s in rows))

    return build_cached(cache_dir / "bench" / f"v1-n{count}", build)


def load_split(data: Path, seed: int = 0):
    """Preprocessed uint8 images and labels, split as train.py splits them (80/20, seeded)."""
    import numpy as np

    from ssimjax.data.images import open_image, read_file, resize_224
    from ssimjax.data.manifest import read_manifest, split_indices

    _, rows, _ = read_manifest(data)
    pixels = np.stack([resize_224(open_image(read_file(r.image)[0])) for r in rows])
    y = np.asarray([r.ssim for r in rows], np.float32)
    tr, va = split_indices(len(rows), 0.2, seed)
    return pixels, y, tr, va


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


# PyTorch's variants: float32 in both memory layouts, and its CPU mixed precision (autocast to
# bfloat16, oneDNN's AVX-512 BF16 kernels) in its faster layout, against ssimjax's bfloat16.
TORCH_VARIANTS = ("contiguous", "channels_last", "channels_last_bf16")


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


# -- ssimjax ---------------------------------------------------------------------------------
def ssimjax_e2e(data: Path, epochs: int, batch: int, plan: bool, map_steps: int | None = None,
                attempts: tuple = ("cold", "warm")) -> dict:
    """`ssimjax train` in a fresh process with an empty feature cache: first with an empty
    persistent compilation cache (cold: every compilation is timed), then again with the features
    removed but the compilation cache the first run left (warm: a user's second run).
    ``attempts=("cold",)`` leaves the second out."""
    import shutil

    with tempfile.TemporaryDirectory(prefix="ssimjax-e2e-") as tmp:
        cache = Path(tmp) / "cache"
        out = {}
        for attempt in attempts:
            for child in cache.glob("*") if cache.exists() else []:
                if child.name != "jax-compilation":
                    shutil.rmtree(child)  # the feature cache starts empty every time
            run = Path(tmp) / f"run-{attempt}"
            env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "SSIMJAX_COMPILATION_CACHE")}
            cmd, env = command_line("train", env)
            cmd += ["--data", str(data), "--epochs", str(epochs), "--batch-size", str(batch), "--patience",
                    str(epochs + 1), "--no-report", "--no-export", "--cache-dir", str(cache), "--out", str(run)]
            cmd += ["--plan-model"] if plan else ["--map-steps", str(map_steps)] if map_steps else []
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            seconds = time.perf_counter() - t0
            if r.returncode != 0:
                raise RuntimeError(f"train.py failed: {r.stderr[-2000:]}")
            summary = json.loads((run / "summary.json").read_text())
            out[attempt] = {"seconds": seconds, "timings": summary["timings"],
                            "final_val_correlation": summary["best_val_metrics"]["correlation"]}
    out["seconds"] = out["cold"]["seconds"]
    return out


def jax_models(compute_dtype: str = "float32", freeze: bool = True):
    from ssimjax.config import TrainConfig
    from ssimjax.train.state import Trainer, create_train_state

    config = TrainConfig.plan_model(compute_dtype=compute_dtype, freeze_backbone=freeze)
    return config, Trainer.from_config(config), create_train_state(config)


def jax_extract(pixels, batch: int, repeats: int, compute_dtype: str) -> float:
    import jax

    from ssimjax.train.steps import jit_extract_features

    _, trainer, state = jax_models(compute_dtype)
    xb = jax.device_put(pixels[:batch])
    t = median_time(lambda: jit_extract_features(state.variables, xb, trainer=trainer).block_until_ready(), repeats)
    return batch / t


def jax_finetune(pixels, y, batch: int, repeats: int, compute_dtype: str) -> float:
    import jax
    import numpy as np

    config, trainer, state = jax_models(compute_dtype, freeze=False)
    b = {"image": jax.device_put(pixels[:batch]), "ssim": jax.device_put(y[:batch]), "mask": np.ones(batch, bool)}
    holder = {"state": state}

    def step():
        holder["state"], m = trainer.train_step(holder["state"], b)
        m["loss"].block_until_ready()

    return batch / median_time(step, repeats)


def jax_mlp(features, y, batch: int, epochs: int) -> float:
    import jax
    import jax.numpy as jnp

    _, trainer, state = jax_models()
    f, t = jnp.asarray(features), jnp.asarray(y)
    holder = {"state": state, "epoch": 0}

    def epoch():
        holder["state"], m = trainer.train_epoch(holder["state"], f, t, holder["epoch"], batch_size=batch)
        jax.block_until_ready(m["loss"])
        holder["epoch"] += 1

    return len(features) / median_time(epoch, epochs)


def jax_cv(features, y, folds: int) -> dict:
    from ssimjax.config import TrainConfig
    from ssimjax.evaluate.cross_validation import cross_validate

    config = TrainConfig.plan_model(epochs=20)
    inputs = {"features": features, "ssim": y}
    out = {}
    for name, subset in (("all", None), ("one", [0])):
        cold = cross_validate(config, inputs, folds, fold_subset=subset)["total_time_s"]
        warm = cross_validate(config, inputs, folds, fold_subset=subset)["total_time_s"]
        out[name] = {"cold_s": cold, "warm_s": warm}
    return out


def jax_latency(pixels, repeats: int) -> float:
    import jax

    from ssimjax.train.steps import jit_eval_step

    _, trainer, state = jax_models()
    xb = {"image": jax.device_put(pixels[:1])}
    return median_time(lambda: jit_eval_step(state, xb, trainer=trainer).block_until_ready(), repeats, warmup=2)


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
    p.add_argument("--cv-rows", type=int, default=1024, help="cached-feature rows of the cross-validation timing "
                   "(default 1024)")
    p.add_argument("--skip", default="", help="comma-separated parts to leave out: e2e,extract,finetune,mlp,cv,"
                   "latency,real,bf16")
    p.add_argument("--cache-dir", help="where the labelled benchmark set is cached (default $SSIMJAX_CACHE_DIR or "
                   "~/.cache/ssimjax)")
    args = p.parse_args(argv)
    _cli.setup_logging(verbose=False)
    import jax
    import numpy as np
    import torch

    from ssimjax.features.inputs import default_cache_dir

    skip = set(filter(None, args.skip.split(",")))
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    started = time.perf_counter()
    r = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "device": str(jax.devices()[0]),
                     "jax": jax.__version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
         "repeats": args.repeats}
    print(f"machine: {r['machine']}", flush=True)
    data = bench_data(cache_dir, args.images)
    pixels, y, tr, va = load_split(data)
    x = torch_tensors(pixels)

    r["matmul_peak_gflops"] = torch_matmul_peak(args.repeats)
    print(f"fp32 matmul peak (torch, 4096^3): {r['matmul_peak_gflops']:.0f} GFLOP/s", flush=True)

    if "e2e" not in skip:
        r["e2e_torch"] = torch_e2e(data, args.epochs, 32)
        print(f"e2e PyTorch plan loop: {r['e2e_torch']['seconds']:.1f} s", flush=True)
        r["e2e_ssimjax_plan"] = ssimjax_e2e(data, args.epochs, 32, plan=True)
        print(f"e2e ssimjax --plan-model: {r['e2e_ssimjax_plan']['cold']['seconds']:.1f} s cold, "
              f"{r['e2e_ssimjax_plan']['warm']['seconds']:.1f} s with a warm compilation cache", flush=True)
        # Once, cold: most of it is training the SSIM-map network, which a warm compilation cache
        # hardly shortens, and a second run would take the benchmark past 15 minutes.
        r["e2e_frozen_speedup"] = r["e2e_torch"]["seconds"] / r["e2e_ssimjax_plan"]["cold"]["seconds"]
        r["e2e_frozen_speedup_warm_cache"] = r["e2e_torch"]["seconds"] / r["e2e_ssimjax_plan"]["warm"]["seconds"]
        if args.default_e2e:
            r["e2e_ssimjax_default"] = ssimjax_e2e(data, args.epochs, 32, plan=False, map_steps=args.map_steps,
                                                   attempts=("cold",))
            print(f"e2e ssimjax default model: {r['e2e_ssimjax_default']['cold']['seconds']:.1f} s cold", flush=True)
            r["e2e_default_speedup"] = r["e2e_torch"]["seconds"] / r["e2e_ssimjax_default"]["cold"]["seconds"]
        r["persistent_compilation_cache"] = ("e2e_frozen_speedup: empty (cold, every compilation timed); "
                                             "e2e_frozen_speedup_warm_cache: warm from the run before")

    if "mlp" not in skip:
        rng = np.random.default_rng(0)
        feats = rng.normal(size=(4096, 2048)).astype(np.float32)
        ty = rng.uniform(0.5, 1.0, 4096).astype(np.float32)
        r["mlp_torch_samples_per_s"] = torch_mlp(feats, ty, 32, args.repeats)
        r["mlp_ssimjax_samples_per_s"] = jax_mlp(feats, ty, 32, args.repeats)
        macs = 2048 * 1024 + 1024 * 512 + 512 * 256 + 256 * 128 + 128
        r["mlp_flops_per_sample"] = 6 * macs  # forward 2 MACs' worth, backward twice that
        r["mlp_limit_samples_per_s"] = r["matmul_peak_gflops"] * 1e9 / r["mlp_flops_per_sample"]
        r["mlp_speedup_vs_torch"] = r["mlp_ssimjax_samples_per_s"] / r["mlp_torch_samples_per_s"]
        r["mlp_fraction_of_limit"] = r["mlp_ssimjax_samples_per_s"] / r["mlp_limit_samples_per_s"]
        print(f"MLP head: ssimjax {r['mlp_ssimjax_samples_per_s']:.0f} samples/s, torch "
              f"{r['mlp_torch_samples_per_s']:.0f}, limit {r['mlp_limit_samples_per_s']:.0f}", flush=True)

    if "extract" not in skip:
        r["extract_torch_img_per_s"] = torch_extract(x, 32, args.repeats, bf16="bf16" not in skip)
        r["extract_ssimjax_img_per_s"] = {"float32": jax_extract(pixels, 32, args.repeats, "float32")}
        if "bf16" not in skip:
            r["extract_ssimjax_img_per_s"]["bfloat16"] = jax_extract(pixels, 32, args.repeats, "bfloat16")
        r.update(dtype_ratios("extract", r["extract_ssimjax_img_per_s"], r["extract_torch_img_per_s"]))
        print(f"extraction (batch 32): ssimjax {r['extract_ssimjax_img_per_s']}, torch {r['extract_torch_img_per_s']}",
              flush=True)

    if "finetune" not in skip:
        reps = max(2, args.repeats - 1)
        r["finetune_torch_img_per_s"] = torch_finetune(x, y, 16, reps, bf16="bf16" not in skip)
        r["finetune_ssimjax_img_per_s"] = {"float32": jax_finetune(pixels, y, 16, reps, "float32")}
        if "bf16" not in skip:
            r["finetune_ssimjax_img_per_s"]["bfloat16"] = jax_finetune(pixels, y, 16, reps, "bfloat16")
        r.update(dtype_ratios("finetune", r["finetune_ssimjax_img_per_s"], r["finetune_torch_img_per_s"]))
        print(f"fine-tuning (batch 16): ssimjax {r['finetune_ssimjax_img_per_s']}, torch "
              f"{r['finetune_torch_img_per_s']}", flush=True)

    if "cv" not in skip:
        rng = np.random.default_rng(1)
        feats = rng.normal(size=(args.cv_rows, 2048)).astype(np.float32)
        cy = (1 / (1 + np.exp(-feats[:, :8].sum(1) / 3))).astype(np.float32)
        cv = jax_cv(feats, cy, 5)
        r["cv"] = cv
        r["cv5_over_1fold"] = cv["all"]["warm_s"] / cv["one"]["warm_s"]
        r["cv5_over_1fold_cold"] = cv["all"]["cold_s"] / cv["one"]["cold_s"]
        print(f"cross-validation ({args.cv_rows} rows, 20 epochs): 5 folds {cv['all']['warm_s']:.2f} s, one fold "
              f"{cv['one']['warm_s']:.2f} s (compiled; cold {cv['all']['cold_s']:.2f} / {cv['one']['cold_s']:.2f})",
              flush=True)

    if "latency" not in skip:
        reps = max(5, args.repeats * 3)
        r["latency_torch_ms"] = 1e3 * torch_latency(x, reps)
        r["latency_ssimjax_ms"] = 1e3 * jax_latency(pixels, reps)
        r["latency_ratio"] = r["latency_ssimjax_ms"] / r["latency_torch_ms"]
        print(f"batch-1 latency (ResNet-50 + MLP): ssimjax {r['latency_ssimjax_ms']:.1f} ms, torch "
              f"{r['latency_torch_ms']:.1f} ms", flush=True)

    if "real" not in skip:
        costs, images = real_ssim_costs(args.repeats)
        r.update(costs)
        r.update(prediction_costs(images, args.repeats))
        for s in SIZES:
            print(f"{s:5d} px: real SSIM {r[f'real_ssim_ms_{s}']:7.1f} ms | predicted, default model "
                  f"{r[f'predict_ms_default_b1_{s}']:6.1f} ms (batch 1) {r[f'predict_ms_default_b32_{s}']:6.1f} ms "
                  f"(batch 32) | plan model {r[f'predict_ms_plan_b1_{s}']:6.1f} / {r[f'predict_ms_plan_b32_{s}']:6.1f} ms",
                  flush=True)

    r["total_s"] = time.perf_counter() - started
    print("\n| figure | value | goal |\n|---|---|---|")
    goals = [("e2e_frozen_speedup", ">= 10"), ("e2e_frozen_speedup_warm_cache", ""), ("e2e_default_speedup", ""), ("mlp_speedup_vs_torch", ">= 5"),
             ("mlp_fraction_of_limit", ">= 0.7"), ("extract_ratio_vs_torch", ">= 1.0"),
             ("extract_ratio_vs_torch_bf16", ""), ("extract_ratio_vs_torch_best_dtype", ""),
             ("finetune_ratio_vs_torch", ">= 1.0"), ("finetune_ratio_vs_torch_bf16", ""),
             ("finetune_ratio_vs_torch_best_dtype", ""), ("cv5_over_1fold", "<= 2.0"), ("cv5_over_1fold_cold", ""),
             ("latency_ratio", "<= 1.2")]
    for key, goal in goals:
        if key in r:
            print(f"| {key} | {r[key]:.2f} | {goal} |")
    print(f"(total {r['total_s']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
