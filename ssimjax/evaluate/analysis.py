"""Robustness, inference speed and feature importance of a trained model (the plan's
``validate_robustness``, ``benchmark_performance`` and ``analyze_feature_importance``).

Each takes the trainer and state of a run and decoded images (PIL) or model inputs; each returns
a plain dict of numbers ready for JSON and the report.
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from ssimjax.evaluate.metrics import correlation
from ssimjax.evaluate.predict import model_inputs, predict_images
from ssimjax.features.stats import STAT_NAMES
from ssimjax.models.mapnet import MAP_SCORE_NAME
from ssimjax.models.quality import PREDICTOR, QualityModel
from ssimjax.train.fit import predict
from ssimjax.train.state import Trainer, TrainState

NOISE_LEVELS = (0.01, 0.05, 0.1)


def add_noise(img: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    """Gaussian noise of std ``sigma`` in [0, 1] pixel space, clipped, back to 8 bits (RGB)."""
    # float32, as the plan's torch.randn_like: a 1024 px image's noise in a third of float64's time.
    x = np.asarray(img.convert("RGB"), np.float32) / np.float32(255.0)
    noisy = np.clip(x + np.float32(sigma) * rng.standard_normal(x.shape, dtype=np.float32), 0.0, 1.0)
    return Image.fromarray(np.round(noisy * np.float32(255.0)).astype(np.uint8))


def validate_robustness(trainer: Trainer, state: TrainState, images: Sequence[Image.Image],
                        noise_levels=NOISE_LEVELS, passes: int = 5, seed: int = 0, batch_size: int = 16,
                        map_model=None, inputs: dict | None = None) -> dict:
    """Predictions under Gaussian pixel noise (applied to the image at its own resolution, before
    anything the model computes from it), their correlation with the clean predictions, and the
    spread of predictions over ``passes`` repeated evaluations of the same inputs. ``inputs``: the
    clean images' model inputs when the caller has them (a run has: computing them again costs a
    quarter of this check)."""
    rng = np.random.default_rng(seed)
    if inputs is None:
        inputs = model_inputs(trainer, images, map_model)
    clean = predict(trainer, state, inputs, batch_size)
    out = {"images": len(images), "noise_levels": list(noise_levels), "clean_mean": float(clean.mean())}
    corrs = []
    for sigma in noise_levels:
        noisy = predict_images(trainer, state, [add_noise(img, sigma, rng) for img in images], batch_size, map_model)
        c = correlation(clean, noisy)
        corrs.append(c)
        out[f"noise_correlation_{sigma}"] = c
        out[f"noise_mean_abs_change_{sigma}"] = float(np.abs(noisy - clean).mean())
    out["avg_noise_correlation"] = float(np.mean(corrs))
    runs = np.stack([predict(trainer, state, inputs, batch_size) for _ in range(passes)]).astype(np.float64)
    out["prediction_consistency"] = float(runs.std(axis=0).mean())  # 0: every pass identical
    out["max_pass_difference"] = float(np.abs(runs - runs[0]).max())
    return out


def _peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 / 1024 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def benchmark_performance(trainer: Trainer, state: TrainState, images: Sequence[Image.Image],
                          batch_size: int = 32, repeats: int = 3, map_model=None) -> dict:
    """Per-image inference time from decoded images (statistics, map score, resize, model), batch by batch
    after one warm-up batch (compilation excluded): mean / std / min / max over the batches, images
    per second, the model's own share (on prepared inputs), and peak memory (the process's peak
    resident set; the device's peak where the backend reports it)."""
    n = len(images)
    batches = [images[i:i + batch_size] for i in range(0, n, batch_size)]
    predict_images(trainer, state, batches[0], batch_size, map_model)  # compile
    per_image, model_per_image = [], []
    for _ in range(repeats):
        for b in batches:
            t0 = time.perf_counter()
            inputs = model_inputs(trainer, b, map_model)
            t1 = time.perf_counter()
            predict(trainer, state, inputs, batch_size)
            t2 = time.perf_counter()
            per_image.append((t2 - t0) / len(b))
            model_per_image.append((t2 - t1) / len(b))
    a, m = np.asarray(per_image), np.asarray(model_per_image)
    out = {
        "images": n, "batch_size": batch_size, "repeats": repeats,
        "avg_inference_time_per_image": float(a.mean()), "std_inference_time": float(a.std()),
        "min_inference_time": float(a.min()), "max_inference_time": float(a.max()),
        "median_inference_time": float(np.median(a)), "images_per_second": float(1.0 / a.mean()),
        "model_time_per_image": float(m.mean()),
        "peak_memory_mb": _peak_rss_mb(), "device": str(jax.devices()[0]),
    }
    stats = getattr(jax.devices()[0], "memory_stats", lambda: None)()
    if stats and "peak_bytes_in_use" in stats:
        out["device_peak_memory_mb"] = stats["peak_bytes_in_use"] / 1024**2
    return out


def feature_names(trainer: Trainer, num_features: int) -> list[str]:
    stats = (list(STAT_NAMES) + [MAP_SCORE_NAME])[:trainer.model.num_stats]
    return [f"backbone_{i}" for i in range(num_features)] + stats


def analyze_feature_importance(trainer: Trainer, state: TrainState, inputs: dict, num_samples: int = 100,
                               top: int = 10) -> dict:
    """Gradients of each prediction with respect to the MLP's inputs (``jax.grad``): the backbone
    features (computed from ``inputs['image']`` when there are no cached ones) and, for image
    statistics, their standardised values (what the MLP reads after its input normalisation, so
    statistics of different scales compare). Per input: mean / std / max
    absolute gradient over ``num_samples`` rows; the ``top`` inputs by mean absolute gradient."""
    n = min(num_samples, int(np.shape(inputs["ssim"])[0]))
    if "features" in inputs:
        feats = jnp.asarray(inputs["features"][:n])
    else:  # a training backbone: its features for these images, in inference mode
        from ssimjax.features.inputs import extract_features

        feats = jnp.asarray(extract_features(trainer, state.variables, inputs["image"][:n]))
    stats = jnp.asarray(inputs["stats"][:n]) if "stats" in inputs else None

    def total(feats, stats):
        # Inference mode: each row's prediction depends on its own inputs only, so the gradient of
        # the sum is every row's gradient at once.
        pred = trainer.model.apply(state.variables, feats, stats, method=QualityModel.predict_from_features)
        return jnp.sum(pred)

    g_feats, g_stats = jax.jit(jax.grad(total, argnums=(0, 1)))(feats, stats)
    parts = [np.asarray(g_feats)]
    if stats is not None:
        norm_std = np.asarray(state.batch_stats[PREDICTOR]["input_norm"]["std"])
        parts.append(np.asarray(g_stats) * norm_std)
    grads = np.concatenate(parts, axis=1)
    names = feature_names(trainer, grads.shape[1] - (0 if stats is None else stats.shape[1]))
    mean_abs = np.abs(grads).mean(axis=0)
    order = np.argsort(-mean_abs, kind="stable")[:top]
    return {
        "samples": n, "inputs": len(names),
        "top_important_features": [{"index": int(i), "name": names[i], "mean_abs_gradient": float(mean_abs[i])}
                                   for i in order],
        "importance_stats": {
            "mean_abs_gradients": mean_abs.tolist(),
            "std_gradients": grads.std(axis=0).tolist(),
            "max_gradients": np.abs(grads).max(axis=0).tolist(),
            "names": names,
        },
    }


def run_analyses(trainer: Trainer, state: TrainState, paths: Sequence[str], inputs: dict, out_dir,
                 samples: int = 100, batch_size: int = 32, seed: int = 0, map_model=None) -> dict:
    """Robustness and the inference benchmark on up to ``samples`` of the image files ``paths``
    (a seeded choice), and feature importance on the matching rows of ``inputs``; each written to
    ``out_dir`` as JSON (``robustness.json``, ``benchmark.json``, ``feature_importance.json``)."""
    import json
    from pathlib import Path

    from ssimjax.data.images import open_image, read_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(paths)
    pick = np.sort(np.random.default_rng(seed).permutation(n)[:min(samples, n)])
    images = [open_image(read_file(paths[i])[0]) for i in pick]
    picked = {k: v[pick] for k, v in inputs.items()}
    results = {
        "robustness": validate_robustness(trainer, state, images, seed=seed, batch_size=batch_size,
                                          map_model=map_model, inputs=picked),
        # One timed pass after the warm-up batch: each pass computes every image's statistics and
        # map score again, and three of them cost a default run about 10 s more.
        "benchmark": benchmark_performance(trainer, state, images, batch_size=batch_size, repeats=1,
                                           map_model=map_model),
        "feature_importance": analyze_feature_importance(trainer, state, picked, num_samples=len(pick)),
    }
    for name, result in results.items():
        (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    return results
