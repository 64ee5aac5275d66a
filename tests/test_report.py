"""A run's report: figures, training_summary.json, metrics.jsonl, the analyses, and the dashboard
opened in a real browser (headless Chromium)."""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from inprocess import run_cli as run_script  # the script's command in this process
from PIL import Image

from ssimjax.evaluate.analysis import analyze_feature_importance, validate_robustness
from ssimjax.evaluate.predict import model_inputs
from ssimjax.train.fit import fit
from ssimjax.train.run import train_run
from ssimjax.train.state import Trainer, create_train_state

FIGURES = ("training_history.png", "loss_convergence.png", "prediction_analysis.png", "feature_importance.png")


@pytest.fixture(scope="module")
def reported_run(tmp_path_factory, small_dataset):
    from ssimjax.config import TrainConfig

    config = TrainConfig(backbone="tiny", hidden_dims=(32, 16), batch_size=8, epochs=4, scheduler="constant",
                         map_steps=20, map_extra=24)
    out = tmp_path_factory.mktemp("reported") / "run"
    train_run(config, data=small_dataset, out=out)
    return out


def test_run_writes_the_report(reported_run):
    report = reported_run / "report"
    for name in FIGURES:
        with Image.open(report / name) as im:
            assert im.format == "PNG" and im.size[0] > 600
    summary = json.loads((report / "training_summary.json").read_text())
    assert summary["best_epoch"] >= 1 and summary["figures"] == list(summary["figures"])
    val = summary["validation_metrics"]
    for key in ("r2_score", "ranking_accuracy", "srcc", "krcc", "high_quality_samples", "accuracy_15pct"):
        assert key in val
    assert sum(r["count"] for r in summary["validation_error_by_quantile"]) == val["sample_count"]
    assert summary["robustness"]["prediction_consistency"] == 0.0
    assert summary["benchmark"]["images_per_second"] > 0
    assert len(summary["feature_importance"]["top_important_features"]) == 10
    # One metrics.jsonl line per epoch, the same numbers as history.json.
    lines = [json.loads(x) for x in (reported_run / "metrics.jsonl").read_text().splitlines()]
    history = json.loads((reported_run / "history.json").read_text())
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4]
    assert [r["val_loss"] for r in lines] == history["val_loss"]
    assert all("val_ranking_accuracy" in r and "val_srcc" in r for r in lines)


def _chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Chromium for the dashboard test (.ci/run installs it)")
        pytest.skip("no Chromium here (apt-get install chromium)")
    return exe


def _dom(exe, page, profile):
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
           "--dump-dom", page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


def test_dashboard_loads_every_figure_in_a_real_browser(reported_run, tmp_path):
    exe = _chromium()
    report = reported_run / "report"
    page = report / "training_dashboard.html"
    summary = json.loads((report / "training_summary.json").read_text())
    n = len(summary["figures"])
    dom = _dom(exe, page, tmp_path / "profile1")
    assert f"{n} of {n} figures loaded" in dom
    assert '<div class="missing">' not in dom
    corr = summary["validation_metrics"]["correlation"]
    assert re.search(r"validation correlation", dom) and f"{corr:.4g}" in dom
    assert ("meets the 0.90 target" in dom) == (corr >= 0.9)
    # A figure that cannot load is visible on the page, and counted.
    broken = tmp_path / "broken"
    shutil.copytree(report, broken)
    (broken / "loss_convergence.png").unlink()
    dom = _dom(exe, broken / "training_dashboard.html", tmp_path / "profile2")
    assert f"{n - 1} of {n} figures loaded" in dom
    assert '<div class="missing">figure missing: loss_convergence.png</div>' in dom


def test_robustness_and_feature_importance(tiny_config):
    from test_fit import D, synthetic

    config = tiny_config.replace(epochs=30, hidden_dims=(32,), dropout_rate=0.0, learning_rate=3e-3)
    train = synthetic(256)  # the target depends on features 0-7 only
    res = fit(create_train_state(config), config, train, synthetic(32, seed=1))
    imp = analyze_feature_importance(Trainer.from_config(config), res.state, train, num_samples=64)
    assert imp["inputs"] == D and imp["samples"] == 64
    top = {t["index"] for t in imp["top_important_features"]}
    assert len(top & set(range(8))) >= 6, top

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)) for _ in range(6)]
    rob = validate_robustness(Trainer.from_config(tiny_config), create_train_state(tiny_config), images,
                              noise_levels=(0.0, 0.2), passes=3)
    assert rob["noise_correlation_0.0"] == pytest.approx(1.0)
    assert rob["noise_mean_abs_change_0.2"] > 0.0
    assert rob["prediction_consistency"] == 0.0 and rob["images"] == 6
    # A run passes the clean inputs it already has: the same figures without computing them again.
    given = validate_robustness(Trainer.from_config(tiny_config), create_train_state(tiny_config), images,
                                noise_levels=(0.0, 0.2), passes=3,
                                inputs=model_inputs(Trainer.from_config(tiny_config), images))
    assert given == rob


def test_cross_validate_and_analyze_scripts(reported_run, small_dataset, tmp_path):
    r = run_script("cross_validate.py", "--data", small_dataset, "--folds", "3", "--out", tmp_path / "cv",
                   "--backbone", "tiny", "--epochs", "2")
    assert r.returncode == 0, r.stderr
    results = json.loads((tmp_path / "cv" / "validation_results.json").read_text())
    assert len(results["fold_results"]) == 3 and results["summary"]["correlation"]["mean"] == pytest.approx(
        np.mean([f["correlation"] for f in results["fold_results"]]))
    assert (tmp_path / "cv" / "cross_validation.png").stat().st_size > 0
    # Into a run's report: the dashboard gains the figure and the summary.
    r = run_script("cross_validate.py", "--checkpoint", reported_run, "--folds", "2")
    assert r.returncode == 0, r.stderr
    summary = json.loads((reported_run / "report" / "training_summary.json").read_text())
    assert "cross_validation.png" in summary["figures"] and summary["cross_validation"]["folds"] == 2
    # Again on the run's validation rows: the figures the run wrote, its map scores computed after the split.
    ran = json.loads((reported_run / "report" / "robustness.json").read_text())
    r = run_script("analyze.py", "--checkpoint", reported_run)
    assert r.returncode == 0, r.stderr
    again = json.loads((reported_run / "report" / "robustness.json").read_text())
    assert again.keys() == ran.keys() and all(again[k] == pytest.approx(v, rel=1e-5, abs=1e-6) for k, v in ran.items())
    r = run_script("analyze.py", "--checkpoint", reported_run, "--samples", "3")
    assert r.returncode == 0, r.stderr
    assert json.loads((reported_run / "report" / "robustness.json").read_text())["images"] == 3
    # Bad input: one line, no traceback.
    r = run_script("cross_validate.py", "--data", small_dataset, "--folds", "1", "--backbone", "tiny",
                   "--out", tmp_path / "cv1")
    assert r.returncode != 0 and "folds must be" in r.stderr and "Traceback" not in r.stderr
    r = run_script("analyze.py", "--checkpoint", tmp_path / "nope")
    assert r.returncode != 0 and "no such run folder" in r.stderr and "Traceback" not in r.stderr
