"""What survives a damaged cache, a full disk, an interrupted data build and a second process:
damaged entries are reported in one line and rebuilt, a refused write is one line and loses nothing,
an interrupted build continues to the files an uninterrupted one writes, and two processes building
the same set build it once."""

import hashlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:  # the same size, one byte changed
        i = len(data) - 7
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x55]) + data[i + 1:])


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _damaged_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]


@pytest.mark.parametrize("how", ["truncated", "changed"])
def test_a_damaged_statistics_entry_is_reported_and_recomputed(small_dataset, tmp_path, caplog, how):
    from ssimjax.config import TrainConfig
    from ssimjax.features.cache import stats_cache
    from ssimjax.features.inputs import build_inputs
    from ssimjax.train.state import Trainer, create_train_state

    config = TrainConfig(backbone="tiny", hidden_dims=(16,), map_net=False)
    trainer, state = Trainer.from_config(config), create_train_state(config)
    first, _, _ = build_inputs(trainer, state.variables, small_dataset, tmp_path, False)
    entries = sorted(stats_cache(tmp_path).dir.rglob("*.entry"))
    assert len(entries) == len(first["stats"]) == 24
    _damage(entries[3], how)
    with caplog.at_level(logging.INFO, logger="ssimjax"):
        again, _, _ = build_inputs(trainer, state.variables, small_dataset, tmp_path, False)
    assert len(_damaged_lines(caplog)) == 1
    assert str(entries[3]) in _damaged_lines(caplog)[0] and "it will be rebuilt" in _damaged_lines(caplog)[0]
    assert "image statistics: 1 computed, 23 from the cache" in caplog.messages
    np.testing.assert_array_equal(again["stats"], first["stats"])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ssimjax"):
        build_inputs(trainer, state.variables, small_dataset, tmp_path, False)
    assert not _damaged_lines(caplog)  # the recomputed entry was written back whole
    assert "image statistics: 0 computed, 24 from the cache" in caplog.messages


def test_statistics_computed_over_both_cores_equal_those_computed_in_process(small_dataset, tmp_path, monkeypatch):
    import ssimjax.features.inputs as inputs
    from ssimjax.config import TrainConfig
    from ssimjax.data.images import open_image, read_file
    from ssimjax.features.stats import image_statistics
    from ssimjax.train.state import Trainer, create_train_state

    config = TrainConfig(backbone="tiny", hidden_dims=(16,), map_net=False)
    trainer, state = Trainer.from_config(config), create_train_state(config)
    monkeypatch.setattr(inputs, "PARALLEL_STATS_MIN", 2)  # 24 images: over two worker processes
    got, _, _ = inputs.build_inputs(trainer, state.variables, small_dataset, tmp_path, False)
    expected = np.stack([image_statistics(open_image(read_file(p)[0])) for p in got["path"]])
    np.testing.assert_array_equal(got["stats"], expected)


def test_backbone_features_are_cached_and_a_damaged_one_extracted_again(small_dataset, tmp_path, caplog):
    from ssimjax.config import TrainConfig
    from ssimjax.features.inputs import build_inputs
    from ssimjax.train.state import Trainer, create_train_state

    config = TrainConfig.plan_model(backbone="tiny", hidden_dims=(16,))
    trainer, state = Trainer.from_config(config), create_train_state(config)
    first, _, _ = build_inputs(trainer, state.variables, small_dataset, tmp_path, False)
    entries = sorted((tmp_path / "features").rglob("*.entry"))
    assert len(entries) == 24
    _damage(entries[0], "changed")
    with caplog.at_level(logging.INFO, logger="ssimjax"):
        again, _, _ = build_inputs(trainer, state.variables, small_dataset, tmp_path, False)
    assert len(_damaged_lines(caplog)) == 1 and str(entries[0]) in _damaged_lines(caplog)[0]
    assert "computing backbone features for 1 images (23 cached)" in caplog.messages
    np.testing.assert_allclose(again["features"], first["features"], rtol=1e-6, atol=1e-6)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ssimjax"):
        build_inputs(trainer, state.variables, small_dataset, tmp_path, False)
    assert "all 24 backbone features found in the cache" in caplog.messages


@pytest.mark.parametrize("how", ["truncated", "changed"])
def test_a_damaged_ssim_map_is_reported_and_computed_again(small_dataset, tmp_path, caplog, how):
    from ssimjax.data.images import read_file
    from ssimjax.data.labelling import ssim_map_path
    from ssimjax.data.manifest import read_manifest
    from ssimjax.train.mapnet import cached_ssim_maps

    _, rows, _ = read_manifest(small_dataset)
    paths = [r.image for r in rows[:4]]
    shas = [read_file(p)[1] for p in paths]
    first = cached_ssim_maps(paths, shas, tmp_path)
    _damage(ssim_map_path(tmp_path, shas[1]), how)
    logged = []
    with caplog.at_level(logging.WARNING, logger="ssimjax"):
        again = cached_ssim_maps(paths, shas, tmp_path, log=logged.append)
    assert len(_damaged_lines(caplog)) == 1 and str(ssim_map_path(tmp_path, shas[1])) in _damaged_lines(caplog)[0]
    assert logged and logged[-1].startswith("SSIM maps of 1 images computed")  # only the damaged one
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("how", ["truncated", "changed"])
def test_a_damaged_file_of_a_cached_set_is_reported_and_only_its_image_relabelled(tmp_path, caplog, how):
    from ssimjax.data.demo import demo_dataset

    folder = demo_dataset(tmp_path, count=6, seed=2)
    built = _tree(folder)
    assert "SHA256SUMS" in built and ".progress.jsonl" in built
    _damage(folder / "images" / "demo_00004.png", how)
    _damage(folder / "labels.csv", how)
    logged = []
    with caplog.at_level(logging.INFO, logger="ssimjax"):
        again = demo_dataset(tmp_path, count=6, seed=2, log=logged.append)
    assert again == folder and _tree(again) == built
    assert logged == [f"{folder}: 2 damaged file(s) (images/demo_00004.png, labels.csv: checksum mismatch or "
                      "missing); rebuilding them"]
    assert any("(5 of 6 done, 1 to go)" in r.getMessage() for r in caplog.records)


def _make_dataset(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ssimjax", "make-dataset", "--out", str(out), "--source", "generated",
            "--count", "40", "--seed", "5", "--workers", "2", *extra]


def _records(out: Path) -> int:
    try:
        return len((out / ".progress.jsonl").read_text().splitlines()) - 1
    except FileNotFoundError:
        return 0


def test_a_data_build_killed_halfway_continues_to_the_uninterrupted_files(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run(_make_dataset(whole), env=env, check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(_make_dataset(cut), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while _records(cut) < 12 and proc.poll() is None and time.monotonic() - t0 < 300:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _records(cut)
    assert 12 <= done < 40 and not (cut / "labels.csv").exists(), done
    r = subprocess.run(_make_dataset(cut), env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"continuing an interrupted build ({done} of 40 done, {40 - done} to go)" in r.stderr
    assert _tree(cut) == _tree(whole)
    assert (cut / "SHA256SUMS").is_file()


def _build_wordmarks(cache: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ssimjax.data.wordmarks import wordmark_folder

    wordmark_folder(cache, count=16, seed=4, log=logging.getLogger("ssimjax").info)


def test_two_processes_building_the_same_set_build_it_once(tmp_path):
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r}); " \
           f"from test_storage import _build_wordmarks; _build_wordmarks({str(tmp_path)!r})"
    first = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()  # the second starts once the first holds the lock and builds
    while not (tmp_path / "wordmarks" / "v1-n16-seed4.partial").exists() and time.monotonic() - t0 < 120:
        time.sleep(0.01)
    procs = [first, subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)]
    logs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert sum("waiting for another process building v1-n16-seed4" in log for log in logs) == 1, logs
    folder = tmp_path / "wordmarks" / "v1-n16-seed4"
    # Each image was labelled once: one record per job, no leftovers of a second build.
    keys = [line for line in (folder / ".progress.jsonl").read_text().splitlines()[1:]]
    assert len(keys) == 16
    assert sorted(p.name for p in folder.parent.iterdir()) == ["v1-n16-seed4", "v1-n16-seed4.lock"]


def _fill(folder: Path, leave: int = 0) -> Path:
    """A file taking every free byte of ``folder``'s filesystem but about ``leave``."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        while os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize > leave + 4096:
            try:
                f.write(b"\1" * 4096)
            except OSError:
                break
    return filler


def test_a_full_disk_refuses_cache_writes_and_data_builds_in_one_line_and_loses_nothing(small_disk, tmp_path):
    from ssimjax.data.demo import demo_dataset
    from ssimjax.features.cache import stats_cache
    from ssimjax.files import StorageError

    cache = stats_cache(small_disk)
    kept = np.arange(12, dtype=np.float32)
    cache.put("ab" * 32, kept)
    filler = _fill(small_disk)
    with pytest.raises(StorageError) as e:
        cache.put("cd" * 32, np.zeros(100_000, np.float32))
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"cannot write {cache.dir}/cd/") and "No space left" in message
    np.testing.assert_array_equal(cache.get("ab" * 32), kept)  # what was there stays usable
    assert cache.get("cd" * 32) is None and not list(small_disk.rglob("*.tmp"))

    # A data build the disk stops partway: one line; once there is space, it continues.
    filler.unlink()
    filler = _fill(small_disk, leave=60_000)
    with pytest.raises(StorageError, match=r"^cannot write .*demo/v1-n24-seed6\.partial/.*No space left on device"):
        demo_dataset(small_disk, count=24, seed=6)
    filler.unlink()
    folder = demo_dataset(small_disk, count=24, seed=6)
    assert _tree(folder) == _tree(demo_dataset(tmp_path, count=24, seed=6))
