"""A run killed at any moment resumes to exactly what an uninterrupted run gives: the SSIM-map
network's training continues from its checkpoints (its crops included), and a run killed before
it wrote anything worth keeping leaves a folder a new run may take."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
TIMINGS = ("epoch_time", "inference_time")


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (72, 56), "white")
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x, y = rng.integers(0, 50, 2)
        draw.ellipse((int(x), int(y), int(x) + 20, int(y) + 14), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return img


def test_map_network_training_continues_from_its_checkpoint_exactly(tmp_path):
    from ssimjax.data.labelling import conversion_ssim_map
    from ssimjax.models.mapnet import MapNet
    from ssimjax.train.checkpoint import MapNetCheckpoints
    from ssimjax.train.mapnet import train_map_net

    images = [_image(s) for s in range(3)]
    pixels = [np.asarray(img) for img in images]
    maps = [conversion_ssim_map(img)[1] for img in images]
    spec = MapNet(channels=4)
    kw = dict(steps=12, batch=4, crop_size=16, micro=2, seed=1)
    whole, whole_losses = train_map_net(pixels, maps, spec, **kw)

    class CutAfter8(MapNetCheckpoints):
        def save(self, step, *args):
            super().save(step, *args)
            if step == 8:
                raise KeyboardInterrupt  # as a kill right after the checkpoint at step 8

    cut = CutAfter8(tmp_path, every=4)
    try:
        train_map_net(pixels, maps, spec, checkpoints=cut, **kw)
        raise AssertionError("the training was not cut")
    except KeyboardInterrupt:
        pass
    finally:
        cut.close()
    assert sorted(int(p.name) for p in (tmp_path / "map_net_checkpoints").iterdir() if p.name.isdigit()) == [4, 8]
    again = MapNetCheckpoints(tmp_path, every=4)
    logged = []
    resumed, resumed_losses = train_map_net(pixels, maps, spec, checkpoints=again, log=logged.append, **kw)
    again.close()
    assert any("continuing from its checkpoint at step 8/12" in line for line in logged)
    assert resumed_losses == whole_losses
    for a, b in zip(whole, resumed):
        for k in a:
            np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))


def _train(out, data, cache, *extra):
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--data", str(data), "--out", str(out),
           "--backbone", "tiny", "--hidden-dims", "32,16", "--batch-size", "8", "--epochs", "40", "--patience",
           "40", "--map-steps", "80", "--map-extra", "24", "--no-report", "--no-export", "--cache-dir", str(cache),
           *extra]
    return cmd


def _in_process(cmd):
    """``cmd``'s command in this test process (tests/inprocess.py; the same results, shown by the
    comparisons below with runs in processes of their own)."""
    from inprocess import run_cli

    return run_cli(Path(cmd[1]).name, *cmd[2:])


def _kill_when(cmd, ready, timeout=300):
    """Starts ``cmd`` and kills it with SIGKILL as soon as ``ready()`` holds (or it ends first)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < timeout:
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    return proc.returncode


def _steps(folder: Path) -> list[int]:
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


@pytest.fixture(scope="module")
def alone(tmp_path_factory, small_dataset):
    """An uninterrupted run, alone on its cache: what every interrupted or concurrent run must give."""
    root = tmp_path_factory.mktemp("alone")
    r = _in_process(_train(root / "run", small_dataset, root / "cache"))
    assert r.returncode == 0, r.stderr
    return root / "run", root / "cache"


def _same_result(whole: Path, run: Path) -> None:
    from ssimjax.config import TrainConfig
    from ssimjax.models.mapnet import map_spec
    from ssimjax.train.checkpoint import load_map_net

    a, b = (json.loads((p / "history.json").read_text()) for p in (whole, run))
    assert len(a["val_loss"]) == 40
    for key in a:
        if key not in TIMINGS:
            assert a[key] == b[key], key
    spec = map_spec(TrainConfig())
    for x, y in zip(load_map_net(whole, spec).params, load_map_net(run, spec).params):
        for k in x:
            np.testing.assert_array_equal(np.asarray(x[k]), np.asarray(y[k]))
    summary = [json.loads((p / "summary.json").read_text())["best_val_metrics"] for p in (whole, run)]
    assert summary[0] == summary[1]


def test_a_run_killed_at_several_moments_resumes_to_the_uninterrupted_result(tmp_path, small_dataset, alone):
    whole, cache = alone
    run = tmp_path / "cut"
    # (what, when to kill, what must not exist yet: the kill landed inside that stage)
    moments = [
        # With the data cached, the map network starts well under a second after config.json: on
        # a loaded machine this kill may land in its first steps, so only "before it finished".
        ("after config.json, before the map network finished", lambda: (run / "config.json").exists(),
         ("map_net", "checkpoints")),
        ("inside the map network's training", lambda: len(_steps(run / "map_net_checkpoints")) >= 1, ("map_net",)),
        ("inside the MLP's epochs", lambda: len(_steps(run / "checkpoints")) >= 2, ("summary.json",)),
    ]
    for i, (what, ready, not_yet) in enumerate(moments):
        cmd = _train(run, small_dataset, cache, *(["--resume"] if i else []))
        assert _kill_when(cmd, ready) == -signal.SIGKILL, what
        assert not any((run / name).exists() for name in not_yet), f"the kill {what} came too late"
    r = _in_process(_train(run, small_dataset, cache, "--resume"))
    assert r.returncode == 0, r.stderr
    _same_result(whole, run)
    assert not (run / "map_net_checkpoints").exists()  # removed once the network was saved


def test_two_runs_sharing_an_empty_cache_give_what_each_gives_alone(tmp_path, small_dataset, alone):
    cache = tmp_path / "shared-cache"
    runs = [tmp_path / "a", tmp_path / "b"]
    procs = [subprocess.Popen(_train(run, small_dataset, cache), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for run in runs]
    errors = [proc.communicate(timeout=600)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    for run in runs:
        _same_result(alone[0], run)
    # The minutes of shared work were done once: one of the two waited for the other's.
    assert sum("waiting for another process" in e for e in errors) >= 1, errors
    assert not list(cache.rglob("*.tmp")) and not list(cache.rglob("*.partial"))


def _fill(folder: Path) -> Path:
    """A file taking every free byte of ``folder``'s filesystem."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 12):
            try:
                while True:
                    f.write(b"\1" * size)
            except OSError:
                pass
    return filler


def test_a_full_disk_during_the_epochs_is_one_line_and_resume_continues(small_disk, small_dataset, alone):
    whole, cache = alone
    run = small_disk / "run"
    proc = subprocess.Popen(_train(run, small_dataset, cache), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    t0 = time.monotonic()
    while len(_steps(run / "checkpoints")) < 3 and proc.poll() is None and time.monotonic() - t0 < 300:
        time.sleep(0.02)
    filler = _fill(small_disk)
    _, err = proc.communicate(timeout=600)
    lines = err.strip().splitlines()
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    last = lines[-1]
    assert last.startswith("error: cannot write ") and str(run) in last, last
    assert "space left on device" in last.lower(), last
    assert not (run / "summary.json").exists()
    kept = _steps(run / "checkpoints")
    assert kept, "the last good checkpoint is kept"
    filler.unlink()
    r = _in_process(_train(run, small_dataset, cache, "--resume"))
    assert r.returncode == 0, r.stderr
    assert f"resuming after epoch {kept[-1] + 1} " in r.stderr, r.stderr[-2000:]
    _same_result(whole, run)


def test_a_folder_left_before_the_first_checkpoint_is_reused_and_the_log_says_so(tmp_path, small_dataset, caplog):
    import logging

    from ssimjax.config import TrainConfig
    from ssimjax.train.plan import RunError, plan_run
    from ssimjax.train.run import train_run

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "history.json").write_text("{}")
    config = TrainConfig(backbone="tiny", hidden_dims=(16,), batch_size=8, epochs=2, map_net=False)
    with caplog.at_level(logging.INFO, logger="ssimjax"):
        train_run(config, data=small_dataset, out=out, report=False)
    assert any("stopped before its first checkpoint left config.json, history.json" in m for m in caplog.messages)
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 2
    # A folder holding checkpoints holds work: only --resume may continue it.
    try:
        plan_run({}, out=out)
        raise AssertionError("a folder with checkpoints was taken")
    except RunError as e:
        assert "already holds a run; pass --resume" in str(e)
