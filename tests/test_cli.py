"""The command-line scripts end to end, as a user runs them, on a small made data set."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from inprocess import run_cli as run  # the script's command in this process

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--backbone", "tiny", "--hidden-dims", "32,16", "--batch-size", "8", "--map-steps", "20",
        "--map-extra", "24"]  # the map network: 20 steps, 24 synthetic wordmarks (not 1,200)


def run_process(script, *args):
    """The script in a process of its own, as a user starts it (nothing else on stderr)."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def test_train_then_predict(tmp_path, small_dataset):
    out = tmp_path / "run"
    # (the report: test_report)
    r = run("train.py", "--data", small_dataset, "--out", out, "--epochs", "3", "--no-report", *TINY)
    assert r.returncode == 0, r.stderr
    assert "best epoch" in r.stdout
    assert "Epoch   1/3 | Train Loss:" in r.stderr  # one log line per epoch, as the plan
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["epochs"] == 3 and config["train"]["hidden_dims"] == [32, 16]
    assert config["data"]["valid_rows"] == 24 and config["data"]["train_rows"] + config["data"]["val_rows"] == 24
    history = json.loads((out / "history.json").read_text())
    assert set(history) >= {"train_loss", "train_mae", "train_correlation", "val_loss", "val_mae",
                            "val_correlation", "val_r2", "learning_rate", "epoch_time", "inference_time",
                            "val_accuracy_5pct", "val_accuracy_10pct"}
    assert len(history["val_loss"]) == 3
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == ["0", "1", "2"]

    images = sorted((small_dataset / "images").glob("*.png"))[:3]
    r = run("predict.py", "--checkpoint", out, *images, "--json")
    assert r.returncode == 0, r.stderr
    preds = json.loads(r.stdout)
    assert list(preds) == [str(p) for p in images] and all(0 < v < 1 for v in preds.values())
    r = run("predict.py", "--checkpoint", out, images[0])
    assert r.returncode == 0 and r.stdout.startswith(f"{images[0]}\t")
    assert float(r.stdout.split("\t")[1]) == pytest.approx(preds[str(images[0])], abs=1e-4)

    # (A second run reusing the cached statistics and features: tests/test_storage.py.)

    # Resume with a different learning rate is refused; with more epochs it continues.
    r = run("train.py", "--out", out, "--resume", "--learning-rate", "0.5", "--data", small_dataset)
    assert r.returncode == 2 and "--learning-rate (run has 0.001)" in r.stderr
    r = run("train.py", "--out", out, "--resume", "--epochs", "4", "--no-report")  # the run's own data by default
    assert r.returncode == 0, r.stderr
    assert len(json.loads((out / "history.json").read_text())["val_loss"]) == 4

    # A run whose model reads other image statistics (an older ssimjax's) is refused by name.
    config = json.loads((out / "config.json").read_text())
    config["data"]["image_stats"] = "stats-v2"
    (out / "config.json").write_text(json.dumps(config))
    r = run("predict.py", "--checkpoint", out, images[0])
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "trained on image statistics stats-v2, but this ssimjax computes stats-v3" in r.stderr


@pytest.mark.parametrize("args,message", [
    (["--epochs", "-1"], "--epochs: must be a whole number >= 1 (got -1)"),
    (["--batch-size", "0"], "--batch-size: must be a whole number >= 2"),
    (["--learning-rate", "nan"], "--learning-rate: must be a finite number > 0 (got nan)"),
    (["--validation-split", "1.5"], "--validation-split: must be a number strictly between 0 and 1"),
    (["--hidden-dims", "a,b"], "expected whole numbers"),
    (["--map-crop", "33"], "--map-crop: must be an even whole number >= 2"),
    (["--map-extra", "-1"], "--map-extra: must be a whole number >= 0"),
])
def test_bad_flag_values_are_clear_errors(args, message, capsys):
    # In process (the command's own main, as `ssimjax train` calls it): a subprocess each costs the
    # library's import for an argparse check.
    from ssimjax.cli import run_command

    with pytest.raises(SystemExit) as e:
        run_command("train", list(args))
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err, err


def test_invalid_rows_fail_listing_them_or_are_skipped(tmp_path, small_dataset):
    rows = (small_dataset / "labels.csv").read_text().splitlines()
    bad = rows + ["images/demo_00000.png,1.7", "images/nope.png,0.5", "broken.png,0.5"]
    manifest = small_dataset / "bad.csv"  # beside the images, so paths resolve
    manifest.write_text("\n".join(bad) + "\n")
    broken = small_dataset / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    try:
        r = run("train.py", "--data", manifest, "--out", tmp_path / "r1", "--epochs", "1", "--no-report", *TINY)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert "bad.csv: 3 invalid rows" in r.stderr
        for line in ("line 26 (images/demo_00000.png): ssim 1.7 is outside [0, 1]",
                     "line 27 (images/nope.png): image file not found", "line 28", "cannot read image"):
            assert line in r.stderr, r.stderr
        r = run("train.py", "--data", manifest, "--out", tmp_path / "r2", "--epochs", "1", "--skip-invalid",
                "--no-report", *TINY)
        assert r.returncode == 0, r.stderr
        assert "skipped 3 invalid rows, training on 24 valid ones" in r.stderr
        data = json.loads((tmp_path / "r2" / "config.json").read_text())["data"]
        assert (data["rows"], data["valid_rows"], data["skipped_rows"]) == (27, 24, 3)
    finally:
        manifest.unlink()
        broken.unlink()


def test_predict_errors_are_one_line(tmp_path):
    r = run("predict.py", "--checkpoint", tmp_path, "x.png")
    assert r.returncode == 1 and r.stderr.strip().startswith("error:") and "config.json: no such file" in r.stderr


def test_make_dataset_script(tmp_path):
    r = run("make_dataset.py", "--out", tmp_path / "d", "--source", "generated", "--count", "6", "--seed", "1")
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "d" / "labels.csv").read_text().splitlines()
    assert lines[0] == "image,ssim,kind" and len(lines) == 7
    r = run("make_dataset.py", "--out", tmp_path / "e", "--count", "0")
    assert r.returncode == 2 and "--count: must be >= 1" in r.stderr


def test_predict_given_something_that_is_not_a_run_says_so_in_one_line(tmp_path):
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (20, 20), "white").save(image)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "config.json").write_text("{not json")
    cases = [(image, "not a run folder"), (tmp_path / "nowhere", "no such run folder"),
             (tmp_path / "plain", "not a valid ssimjax config.json")]
    for checkpoint, message in cases:
        r = run_process("predict.py", "--checkpoint", checkpoint, image)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
