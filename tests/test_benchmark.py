"""scripts/benchmark.py runs end to end on a tiny set and writes every key it promises; the
PyTorch reference trainer trains."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parent.parent


def test_reference_trainer_trains_the_plans_model():
    from bridge.reference import plan_model, train_plan

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(10, 3, 64, 64)).astype(np.float32))
    y = torch.from_numpy(rng.uniform(0.5, 1, 10).astype(np.float32))
    model = plan_model()
    before = model.predictor.mlp[0].weight.detach().clone()
    out = train_plan(model, x[:8], y[:8], x[8:], y[8:], epochs=2, batch_size=4)
    assert len(out["history"]["val_loss"]) == 2 and out["seconds"] > 0
    assert not torch.equal(before, model.predictor.mlp[0].weight)
    # Frozen backbone: its weights never change.
    assert all(not p.requires_grad for p in model.feature_extractor.parameters())


def test_reference_step_in_pytorchs_mixed_precision_trains_and_keeps_float32_weights():
    from bridge.reference import plan_model, plan_optimizer, train_step

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(4, 3, 64, 64)).astype(np.float32))
    y = torch.from_numpy(rng.uniform(0.5, 1, 4).astype(np.float32))
    model = plan_model(freeze_backbone=False).train()
    opt = plan_optimizer(model)
    conv = model.feature_extractor.backbone[0].weight
    before = conv.detach().clone()
    seen = []
    hook = model.feature_extractor.backbone[0].register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    loss = train_step(model, opt, x, y, autocast_bf16=True)
    hook.remove()
    assert np.isfinite(loss) and seen == [torch.bfloat16]
    assert conv.dtype == torch.float32 and not torch.equal(before, conv)


def test_benchmark_script_writes_its_keys(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "scripts/benchmark.py", "--images", "8", "--epochs", "1", "--repeats", "1",
                        "--map-steps", "10", "--map-extra", "12",
                        "--cv-rows", "40", "--skip", "extract,finetune,mlp,latency,real,bf16,warm", "--default-e2e",
                        "--json", str(out),
                        "--cache-dir", str(tmp_path / "cache")],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())
    for key in ("e2e_frozen_speedup", "e2e_default_speedup", "cv5_over_1fold", "matmul_peak_gflops", "machine"):
        assert key in result, key
    assert result["e2e_torch"]["seconds"] > 0 and result["e2e_ssimjax_plan"]["seconds"] > 0
    assert "| e2e_frozen_speedup |" in r.stdout
    assert "e2e_frozen_speedup_warm_cache" not in result  # --skip warm: the second run left out


def test_gpu_benchmark_script_runs_here_and_writes_its_keys(tmp_path):
    """scripts/benchmark_gpu.py on whatever device there is (this CPU in CI), at a tiny batch of 64x64 images."""
    out = tmp_path / "gpu.json"
    r = subprocess.run([sys.executable, "scripts/benchmark_gpu.py", "--batches", "2", "--dtypes", "bfloat16",
                        "--steps", "1", "--windows", "1", "--skip", "extract", "--size", "64", "--json", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())
    step = result["finetune_ssimjax"]["bfloat16_b2"]
    assert step["img_per_s"] > 0 and step["loss_finite"]
    assert set(result["finetune_torch"]) == {"amp_bf16_b2", "float32_b2"}
    assert result["finetune_bf16_best_img_per_s"] == step["img_per_s"]
    assert "best ssimjax bfloat16 fine-tuning" in r.stdout


def test_float32_goal_ratios_ignore_pytorchs_mixed_precision():
    """The goals' ratios compare float32 with PyTorch's faster float32 layout; PyTorch's autocast
    bfloat16 is compared with ssimjax's bfloat16 and in the best-against-best figure only."""
    from ssimjax.bench.cpu import dtype_ratios

    torch_rates = {"contiguous": 4.0, "channels_last": 5.0, "channels_last_bf16": 10.0}
    r = dtype_ratios("finetune", {"float32": 4.0, "bfloat16": 6.0}, torch_rates)
    assert r == {"finetune_ratio_vs_torch": 0.8, "finetune_ratio_vs_torch_bf16": 0.6,
                 "finetune_ratio_vs_torch_best_dtype": 0.6}
    # --skip bf16: float32 on both sides, no mixed-precision ratio
    r = dtype_ratios("extract", {"float32": 6.0}, {"contiguous": 4.0, "channels_last": 5.0})
    assert r == {"extract_ratio_vs_torch": 1.2, "extract_ratio_vs_torch_best_dtype": 1.2}


def test_compare_models_ridge_baseline_chooses_its_penalty_on_the_validation_rows():
    """The comparison's baseline (candidate e) recovers a linear relation, and a noisy one is
    shrunk more when the validation rows say so."""
    from ssimjax.bench.compare import ridge_fit_predict

    rng = np.random.default_rng(0)
    w = np.array([0.03, -0.02, 0.01])
    x = rng.normal(size=(300, 3))
    y = 0.9 + x @ w
    pred = ridge_fit_predict(x[:200], y[:200], x[200:250], y[200:250], x[250:])
    assert np.abs(pred - y[250:]).max() < 2e-3
    # 40 inputs unrelated to the label, 60 training rows: the least penalty overfits, the chosen one
    # shrinks the prediction towards the mean
    noise = rng.normal(size=(300, 40))
    args = (noise[:60], y[:60], noise[200:250], y[200:250], noise[250:])
    chosen, least = ridge_fit_predict(*args), ridge_fit_predict(*args, alphas=[1e-3])
    assert np.std(chosen) < 0.5 * np.std(least)
