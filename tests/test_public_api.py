"""The public API: every name in ``ssimjax.__all__`` imports from ``ssimjax`` and is the object its
stage's module defines; the ``ssimjax`` command lists its commands and runs them."""

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import ssimjax

ROOT = Path(__file__).resolve().parent.parent

# name -> the module that defines it (the layout the README's table shows)
WHERE = {
    "ConfigError": "ssimjax.config", "TrainConfig": "ssimjax.config",
    "conversion_ssim": "ssimjax.data.labelling", "conversion_ssim_map": "ssimjax.data.labelling",
    "build_inputs": "ssimjax.features.inputs", "image_statistics": "ssimjax.features.stats",
    "BACKBONE": "ssimjax.models.quality", "PREDICTOR": "ssimjax.models.quality", "Predictor": "ssimjax.models.quality",
    "QualityModel": "ssimjax.models.quality", "make_model": "ssimjax.models.quality",
    "merge_backbone": "ssimjax.models.quality", "split_backbone": "ssimjax.models.quality",
    "ResNet": "ssimjax.models.resnet", "BatchNorm": "ssimjax.models.layers", "init_variables": "ssimjax.models.init",
    "MapNet": "ssimjax.models.mapnet", "map_scores": "ssimjax.models.mapnet",
    "LossSpec": "ssimjax.train.losses", "adaptive_loss": "ssimjax.train.losses", "combined_loss": "ssimjax.train.losses",
    "get_loss": "ssimjax.train.losses", "huber_loss": "ssimjax.train.losses", "mae_loss": "ssimjax.train.losses",
    "mse_loss": "ssimjax.train.losses", "quality_aware_loss": "ssimjax.train.losses",
    "ranking_loss": "ssimjax.train.losses",
    "TrainState": "ssimjax.train.state", "Trainer": "ssimjax.train.state", "create_train_state": "ssimjax.train.state",
    "train_step": "ssimjax.train.steps", "eval_step": "ssimjax.train.steps", "train_epoch": "ssimjax.train.steps",
    "extract_features": "ssimjax.train.steps", "epoch_batches": "ssimjax.train.steps",
    "make_optimizer": "ssimjax.train.optim", "advance_learning_rate": "ssimjax.train.optim",
    "fit": "ssimjax.train.fit", "train_run": "ssimjax.train.run", "train_map_net": "ssimjax.train.mapnet",
    "quality_metrics": "ssimjax.evaluate.metrics", "comprehensive_metrics": "ssimjax.evaluate.metrics",
    "regression_metrics": "ssimjax.evaluate.metrics", "ranking_accuracy": "ssimjax.evaluate.metrics",
    "cross_validate": "ssimjax.evaluate.cross_validation", "load_run": "ssimjax.evaluate.predict",
    "predict_files": "ssimjax.evaluate.predict", "write_report": "ssimjax.evaluate.report",
    "SettingsModel": "ssimjax.models.setting_head", "SettingsRunConfig": "ssimjax.train.settings",
    "train_settings_run": "ssimjax.train.settings", "load_settings_model": "ssimjax.train.settings",
    "recommend": "ssimjax.evaluate.recommend", "evaluate_settings_model": "ssimjax.evaluate.settings_eval",
}


def test_every_public_name_is_the_object_its_module_defines():
    assert len(ssimjax.__all__) == len(set(ssimjax.__all__)), "a name is listed twice"
    assert set(ssimjax.__all__) == set(WHERE)
    for name, module in WHERE.items():
        obj = getattr(importlib.import_module(module), name)
        assert getattr(ssimjax, name) is obj, f"ssimjax.{name} is not {module}.{name}"
        if callable(obj):
            assert obj.__module__ == module, f"{name} is defined in {obj.__module__}, not {module}"
            assert (obj.__doc__ or "").strip(), f"{name} has no docstring"
    namespace = {}
    exec("from ssimjax import *", namespace)
    assert set(WHERE) <= set(namespace)


def test_the_pure_steps_are_the_jittable_functions_not_wrappers():
    from ssimjax.train import steps

    assert ssimjax.train_step is steps.train_step and ssimjax.eval_step is steps.eval_step
    assert steps.jit_train_step is not steps.train_step  # the jitted one is a separate entry point


def test_the_ssimjax_command_lists_and_dispatches():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"ssimjax": "ssimjax.cli:main"}
    r = subprocess.run([sys.executable, "-m", "ssimjax", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    for command in ("train", "predict", "evaluate", "export", "cross-validate", "benchmark"):
        assert f"  {command} " in r.stdout
    r = subprocess.run([sys.executable, "-m", "ssimjax", "evaluate", "--help"], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 0 and r.stdout.startswith("usage: ssimjax evaluate"), r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "ssimjax", "trian"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "unknown command 'trian'" in r.stderr
