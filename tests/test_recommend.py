"""Issue 25 as a user meets it: ``ssimjax train --vtracer-parameters`` (its run folder, report and
checkpoints), ``ssimjax recommend`` and its Python function, and the PyTorch SettingRecommender.
Everything is real: the icon sets' stand-ins go through the real npm reader, VTracer, resvg and
Orbax; only the sizes are tiny."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from inprocess import run_cli

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--settings-count", "6", "--settings-k", "3", "--settings-grid-count", "2", "--settings-held-out", "3",
         "--head-epochs", "3", "--cond-map-steps", "60"]


def _train(env, out, *extra):
    """``train.py --vtracer-parameters`` in this process (tests/inprocess.py)."""
    return run_cli("train.py", "--vtracer-parameters", "--out", out, *FLAGS, *extra, env=env)


def _recommend(env, *args):
    return run_cli("recommend.py", *args, env=env)


@pytest.fixture(scope="module")
def settings_run(tmp_path_factory):
    """A tiny settings run from the command line: 5 candidate settings, fake icon sets."""
    from test_icons import publish_every_source

    from ssimjax.data.vtsettings import issue_grid

    tmp = tmp_path_factory.mktemp("settings")
    publish_every_source(tmp / "registry")
    env = {**os.environ, "SSIMJAX_NPM_REGISTRY": (tmp / "registry").as_uri(), "SSIMJAX_CACHE_DIR": str(tmp / "cache")}
    candidates = tmp / "candidates.json"
    candidates.write_text(json.dumps(issue_grid()[:5]))
    r = _train(env, tmp / "run", "--candidates", candidates)
    assert r.returncode == 0, r.stderr[-3000:]
    return dict(tmp=tmp, env=env, run=tmp / "run", stdout=r.stdout, candidates=candidates)


def test_a_settings_run_writes_its_model_report_and_the_deployment_file(settings_run):
    run = settings_run["run"]
    for name in ("settings_model", "settings_model.json", "settings_config.json", "summary.json", "recommender.pth",
                 "report/index.html", "report/fronts.png", "report/settings_eval.json"):
        assert (run / name).exists(), name
    assert not (run / "cond_map_checkpoints").exists() and not (run / "setting_head").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["held_out"]) == {"report", "selection"}
    for m in summary["held_out"].values():
        assert m["logos"] >= 1 and m["settings_per_logo"] == 6  # the 5 candidates and the defaults
        assert 0 <= m["meets"] <= m["meets_within"] <= 1 and m["median_size_ratio"] > 0
        # The search keeps the defaults unless a conversion really met the target: it always meets it.
        assert m["search_meets"] == 1 and 1 <= m["search_mean_conversions"] <= 1 + m["search_tries"]
        assert 0 < m["search_geomean_size_ratio"] <= 1 and 0 < m["oracle_geomean_size_ratio"] <= 1
        assert m["median_recommend_seconds"] > 0
    lines = settings_run["stdout"].splitlines()
    report = next(i for i, line in enumerate(lines) if line.startswith("report sets"))
    assert lines[report + 1].startswith("selection sets") and "within-logo SRCC ssim" in lines[report]
    logos = json.loads((run / "report" / "settings_eval.json").read_text())["report"]["logos"]
    assert all(len(g["real"]["bytes"]) == len(g["predicted"]["bytes"]) == 6 for g in logos)
    assert "fronts.png" in (run / "report" / "index.html").read_text()


def test_a_killed_settings_run_continues_to_the_same_model(settings_run):
    from ssimjax.train.settings import load_settings_model

    env, out = settings_run["env"], settings_run["tmp"] / "killed"
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--vtracer-parameters", "--out", str(out), *FLAGS,
           "--candidates", str(settings_run["candidates"]), "--no-report", "--no-export"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
    deadline = time.time() + 300
    # Killed once its second checkpoint is being written: the first is then complete on disk.
    while len(list((out / "cond_map_checkpoints").glob("[0-9]*"))) < 2 and time.time() < deadline \
            and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "settings_model.json").exists(), "the run ended before it could be killed"
    flags = ["--candidates", settings_run["candidates"], "--no-report", "--no-export"]
    r = _train(env, out, *flags)
    assert r.returncode == 1 and "already holds a settings run; continue it with --resume" in r.stderr
    r = _train(env, out, *flags, "--resume", "--cond-map-steps", "61")
    assert r.returncode == 1 and "--resume cannot change cond_steps" in r.stderr.splitlines()[-1]
    r = _train(env, out, *flags, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "continuing from its checkpoint at step" in r.stderr
    a, b = load_settings_model(settings_run["run"]), load_settings_model(out)
    for x, y in zip(*(np.concatenate([np.ravel(v) for v in __import__("jax").tree_util.tree_leaves(m.cond)])
                      for m in (a, b))):
        assert x == y
    np.testing.assert_array_equal(a.head["head"][0]["w"], b.head["head"][0]["w"])


def test_recommend_chooses_verifies_and_agrees_with_the_python_function(settings_run, tmp_path):
    from ssimjax.evaluate.recommend import recommend

    images = sorted((settings_run["tmp"] / "cache" / "settings").glob("*seed4/images/*"))[:2]
    assert images
    r = _recommend(settings_run["env"], "--checkpoint", settings_run["run"], *images, "--verify", "--json",
                   "--svg-dir", tmp_path / "svg")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert list(out) == [str(p) for p in images]
    for path, res in out.items():
        assert {"params", "predicted_ssim", "predicted_bytes", "ssim", "rgb_ssim", "bytes", "default_ssim",
                "default_rgb_ssim", "default_bytes"} <= set(res) and res["verified"]
        assert 0 < res["ssim"] <= 1 and isinstance(res["bytes"], int) and res["default_bytes"] > 0
        from ssimjax.files import FILE_MODE

        svg_path = tmp_path / "svg" / f"{Path(path).stem}.svg"
        assert svg_path.stat().st_mode & 0o777 == FILE_MODE  # as any new file here, not owner-only
        svg = svg_path.read_text()
        assert svg.startswith("<?xml") or "<svg" in svg[:200]
        assert len(svg.encode()) == res["bytes"]  # the written SVG is the one verified
    same = recommend(settings_run["run"], [str(p) for p in images])
    assert [v["params"] for v in same.values()] == [v["params"] for v in out.values()]
    # Within a size: never bigger than the target when a candidate fits it (predicted).
    small = recommend(settings_run["run"], [str(images[0])], max_bytes=1)
    res = next(iter(small.values()))
    model_bytes = res["predicted_bytes"]
    big = next(iter(recommend(settings_run["run"], [str(images[0])], max_bytes=1e9).values()))
    assert model_bytes <= big["predicted_bytes"]
    text = _recommend(settings_run["env"], "--checkpoint", settings_run["run"], images[0])
    assert text.returncode == 0 and text.stdout.startswith(f"{images[0]}: ") and "predicted: SSIM" in text.stdout


def test_recommend_search_keeps_a_setting_that_really_meets_the_target(settings_run, tmp_path):
    from ssimjax.evaluate.recommend import describe, recommend

    images = sorted((settings_run["tmp"] / "cache" / "settings").glob("*seed4/images/*"))[:2]
    r = _recommend(settings_run["env"], "--checkpoint", settings_run["run"], *images, "--search", "2", "--json",
                   "--min-ssim", "0.9", "--svg-dir", tmp_path / "svg")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for path, res in out.items():
        assert res["verified"] and 1 <= res["conversions"] <= 3
        assert res["ssim"] >= min(0.9, res["default_ssim"]) and res["rgb_ssim"] >= min(0.9, res["default_rgb_ssim"])
        assert res["bytes"] <= res["default_bytes"]
        assert len((tmp_path / "svg" / f"{Path(path).stem}.svg").read_bytes()) == res["bytes"]
    same = recommend(settings_run["run"], [str(p) for p in images], min_ssim=0.9, search=2)
    assert [(v["params"], v["bytes"], v["conversions"]) for v in same.values()] == \
        [(v["params"], v["bytes"], v["conversions"]) for v in out.values()]
    key, res = next(iter(same.items()))
    assert f"real: SSIM {res['ssim']:.4f}" in describe(key, res) and "settings converted" in describe(key, res)


def _error(main, argv, capsys) -> tuple[int, str]:
    """A command run in this process: its exit code and the last line it wrote to stderr."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    return e.value.code, capsys.readouterr().err.strip().splitlines()[-1]


def test_bad_input_is_one_line_naming_what_is_wrong(settings_run, tmp_path, capsys):
    from ssimjax.cli.recommend import main as recommend_main
    from ssimjax.cli.train import main as train_main

    run = settings_run["run"]
    missing = tmp_path / "missing.png"
    assert _error(recommend_main, ["--checkpoint", run, missing], capsys) == \
        (1, f"error: {missing}: cannot read file (No such file or directory)")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    code, line = _error(recommend_main, ["--checkpoint", run, tmp_path / "broken.png"], capsys)
    assert code == 1 and line.startswith(f"error: {tmp_path / 'broken.png'}: cannot read image")
    code, line = _error(recommend_main, ["--checkpoint", tmp_path, tmp_path / "broken.png"], capsys)
    assert code == 1 and "not a finished settings run; settings_model.json is missing" in line
    code, line = _error(recommend_main, ["--checkpoint", run, "--min-ssim", "2", tmp_path / "broken.png"], capsys)
    assert code == 2 and "--min-ssim: must be in (0, 1]" in line
    code, line = _error(recommend_main, ["--checkpoint", run, "--search", "-1", tmp_path / "broken.png"], capsys)
    assert code == 2 and "--search: must be >= 0" in line
    flags = ["--vtracer-parameters", "--out", tmp_path / "x"]
    code, line = _error(train_main, flags + ["--epochs", "3"], capsys)
    assert code == 2 and "--epochs applies to the SSIM predictor's runs" in line
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"filter_speckle": 4}, {"mode": "curvy"}]))
    code, line = _error(train_main, flags + ["--candidates", bad], capsys)
    assert code == 2 and "setting 1: VTracer parameter mode: must be one of" in line
    code, line = _error(train_main, ["--settings-k", "3"], capsys)
    assert code == 2 and "--settings-k applies to --vtracer-parameters runs only" in line
    # A damaged row of a settings set is named with its file and row.
    from ssimjax.data.vtsettings import read_settings_rows

    folder = next((settings_run["tmp"] / "cache" / "settings").glob("*seed4"))
    copy = tmp_path / "copy"
    copy.mkdir()
    lines = (folder / "settings.csv").read_text().splitlines()
    lines[2] = lines[2].replace(lines[2].split(",")[-2], "-5")
    (copy / "settings.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"copy/settings.csv row 3: ssim and rgb_ssim must lie in \[-1, 1\] and "
                                         r"svg_bytes be > 0"):
        read_settings_rows(copy)


def test_the_pytorch_recommender_equals_the_jax_model(settings_run):
    import torch

    from bridge import QualityPredictionModel, SettingRecommender
    from ssimjax.evaluate.recommend import recommend
    from ssimjax.train.settings import load_settings_model

    run = settings_run["run"]
    jax_model = load_settings_model(run)
    torch_model = SettingRecommender.load_checkpoint(run / "recommender.pth")
    images = sorted((settings_run["tmp"] / "cache" / "settings").glob("*seed2/images/*"))[:3]
    for path in images:
        a, b = jax_model.predict(str(path)), torch_model.predict_settings(str(path))
        for k in ("ssim", "rgb_ssim", "bytes"):
            np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-6)
        params, figures = torch_model.recommend(str(path))
        assert params == recommend(run, [str(path)])[str(path)]["params"] and set(figures) == {"ssim", "rgb_ssim",
                                                                                               "bytes"}
    with pytest.raises(ValueError, match="not a SettingRecommender checkpoint"):
        bogus = settings_run["tmp"] / "model.pth"
        torch.save({"model_state_dict": {}}, bogus)
        SettingRecommender.load_checkpoint(bogus)
    assert QualityPredictionModel is not SettingRecommender  # the plan's class stays as it is


def test_the_evaluation_judges_a_choice_by_its_real_figures():
    from ssimjax.evaluate.settings_eval import judge_choice

    ssim = np.asarray([0.97, 0.96, 0.948, 0.90])
    rgb = np.asarray([0.96, 0.97, 0.96, 0.99])
    size = np.asarray([100.0, 50.0, 20.0, 5.0])
    j = judge_choice(ssim, rgb, size, default=0, chosen=1, min_ssim=0.95)
    assert j["meets"] and j["meets_within"] and j["size_ratio"] == 0.5
    assert j["oracle"] == 2 and j["oracle_size_ratio"] == 0.2 and j["size_regret"] == 2.5  # 0.948 is within 0.005
    j = judge_choice(ssim, rgb, size, default=0, chosen=2, min_ssim=0.95)
    assert not j["meets"] and j["meets_within"] and j["ssim_regret"] == 0
    j = judge_choice(ssim, rgb, size, default=0, chosen=3, min_ssim=0.95)
    assert not j["meets_within"] and j["size_ratio"] == 0.05


def test_the_search_converts_the_most_promising_few_and_keeps_one_that_really_meets_the_target():
    from ssimjax.models.setting_head import search_setting

    # Real figures of five settings, the defaults (0) first; predictions 0.01 too high on every one.
    real_ssim = np.asarray([0.96, 0.935, 0.955, 0.97, 0.951])
    real_rgb = np.asarray([0.96, 0.99, 0.99, 0.99, 0.99])
    real_size = np.asarray([100.0, 10.0, 30.0, 60.0, 20.0])
    pred_ssim, pred_size = real_ssim + 0.01, real_size * 1.1
    asked = []

    def real(i):
        asked.append(i)
        return real_ssim[i], real_rgb[i], real_size[i]

    # Anchored on the defaults' real SSIM the offset vanishes: setting 1 (0.935) lies beyond the
    # slack, 4 is the smallest left and really meets 0.95, so the search stops there.
    found, converted = search_setting(pred_ssim, real_rgb, pred_size, 0, real, tries=3, min_ssim=0.95)
    assert (found, converted, asked) == (4, [0, 4], [0, 4])
    # With a wider slack 1 is tried first, misses, and 4 is kept; one try only keeps the defaults.
    assert search_setting(pred_ssim, real_rgb, pred_size, 0, real, 3, min_ssim=0.95, slack=0.02) == (4, [0, 1, 4])
    assert search_setting(pred_ssim, real_rgb, pred_size, 0, real, 1, min_ssim=0.95, slack=0.02) == (0, [0, 1])
    # The target is capped at the defaults': at 0.99 the smallest one at least as good as them.
    assert search_setting(pred_ssim, real_rgb, pred_size, 0, real, 5, min_ssim=0.99)[0] == 3
    # Within a size: the best real quality among those really within it.
    assert search_setting(pred_ssim, real_rgb, pred_size, 0, real, 5, max_bytes=25)[0] == 4
    assert search_setting(pred_ssim, real_rgb, pred_size, 0, real, 5, max_bytes=5)[0] == 1  # none fits: smallest
