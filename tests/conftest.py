import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

# Tests compare numbers exactly or to tight tolerances: ask for full fp32 matmuls everywhere.
jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Every test session gets its own demo/feature cache, never the user's."""
    path = tmp_path_factory.mktemp("ssimjax-cache")
    os.environ["SSIMJAX_CACHE_DIR"] = str(path)
    # Tests compile the same tiny steps again and again (a new Trainer, a new process): one JAX
    # persistent compilation cache for the session, this process's and every command's it starts,
    # so that each later test loads the executable instead of compiling it again.
    # Under pytest-xdist (`-n 2`) the workers share it too: their session folders sit side by side
    # under one base folder. JAX reads a half-written entry as a miss (a warning) and compiles.
    shared = tmp_path_factory.getbasetemp().parent if os.environ.get("PYTEST_XDIST_WORKER") else path
    compiled = shared / "jax-compilation"
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(compiled)
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
    jax.config.update("jax_compilation_cache_dir", str(compiled))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    return path


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """24 images labelled by the real VTracer -> resvg -> SSIM pipeline, over two processes."""
    from ssimjax.data.demo import make_dataset

    out = tmp_path_factory.mktemp("small-data")
    make_dataset(out, count=24, seed=3, workers=2)
    return out


@pytest.fixture
def tiny_config():
    from ssimjax.config import TrainConfig

    return TrainConfig.plan_model(backbone="tiny", hidden_dims=(32, 16), batch_size=8, epochs=4, scheduler="constant")


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs of its own that the test may fill (skipped where one cannot be mounted)."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)
