"""The ssimjax side of the CPU benchmark: end-to-end runs in a fresh process, backbone extraction, fine-tuning, the MLP on cached features, cross-validation and batch-1 latency."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from ssimjax.bench.timing import median_time
from ssimjax.cli import command_line


# -- ssimjax ---------------------------------------------------------------------------------
def ssimjax_e2e(data: Path, epochs: int, batch: int, plan: bool, map_steps: int | None = None,
                attempts: tuple = ("cold", "warm"), map_extra: int | None = None) -> dict:
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
                if child.is_dir() and child.name != "jax-compilation":
                    shutil.rmtree(child)  # the feature cache starts empty every time
            run = Path(tmp) / f"run-{attempt}"
            env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "SSIMJAX_COMPILATION_CACHE")}
            cmd, env = command_line("train", env)
            cmd += ["--data", str(data), "--epochs", str(epochs), "--batch-size", str(batch), "--patience",
                    str(epochs + 1), "--no-report", "--no-export", "--cache-dir", str(cache), "--out", str(run)]
            cmd += ["--plan-model"] if plan else ["--map-steps", str(map_steps)] if map_steps else []
            cmd += ["--map-extra", str(map_extra)] if map_extra is not None and not plan else []
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            seconds = time.perf_counter() - t0
            if r.returncode != 0:
                raise RuntimeError(f"ssimjax train failed: {r.stderr[-2000:]}")
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


def finetune_cost(batch_size: int = 16, steps: int = 3) -> float:
    """Seconds per image of one full fine-tuning step of ResNet-50 + MLP (backbone unfrozen)."""
    import jax.numpy as jnp
    import numpy as np

    from ssimjax.config import TrainConfig
    from ssimjax.train.state import Trainer, create_train_state

    config = TrainConfig(freeze_backbone=False, image_stats=False, map_net=False, backbone_features=True,
                         batch_size=batch_size)
    state, trainer = create_train_state(config), Trainer.from_config(config)
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.integers(0, 256, (batch_size, 224, 224, 3), dtype=np.uint8)),
             "ssim": jnp.asarray(rng.uniform(0.8, 1.0, batch_size), jnp.float32), "mask": jnp.ones(batch_size, bool)}
    state, m = trainer.train_step(state, batch)  # compile
    m["loss"].block_until_ready()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, m = trainer.train_step(state, batch)
        m["loss"].block_until_ready()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) / batch_size
