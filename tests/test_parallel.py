"""Data parallelism: the same training split over 4 (host) devices gives the same history."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def four_devices(small_dataset, tmp_path_factory):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = tmp_path_factory.mktemp("parallel") / "run"
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "multidevice_check.py"), str(small_dataset), str(out)],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(x for x in r.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_float64_history_is_the_same_on_one_and_four_devices(four_devices):
    assert four_devices["devices"] == 4
    assert four_devices["float64_max_diff"] < 1e-6


def test_float32_first_epoch_matches(four_devices):
    # Later epochs drift apart as any two float32 summation orders do (Adam turns rounding noise
    # into full-size steps), which is why the float64 comparison covers every epoch.
    assert four_devices["float32_first_epoch_loss_diff"] < 1e-5


def test_image_steps_and_feature_extraction_split_over_devices(four_devices):
    assert four_devices["image_step_loss_diff"] < 1e-5
    assert four_devices["features_max_diff"] < 1e-4
    assert four_devices["step_all_reduces"] > 0  # the batch really is split (gradients summed across devices)


def test_batch_size_must_split_evenly(four_devices):
    assert "batch_size 6 does not split evenly over 4 devices" in four_devices["uneven_batch_error"]


def test_run_reports_its_devices(four_devices):
    d = four_devices["summary_devices"]
    assert d["count"] == 4 and d["data_parallel"] is True and d["platform"] == "cpu"
