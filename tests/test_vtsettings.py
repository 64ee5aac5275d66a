"""Issue 25's data: logos converted by the real VTracer with settings drawn from a documented space,
each conversion labelled by the real renderer (luminance and colour SSIM, the SVG's size)."""

import csv
import json

import numpy as np
import pytest
from test_icons import SOURCES, registry  # noqa: F401  (the fixture: a registry laid out on disk)

from ssimjax.data.vtsettings import (
    PARAMETER_SPACE,
    check_setting,
    conversion_labels,
    convert,
    default_setting,
    load_settings_map,
    make_settings_dataset,
    sample_settings,
    settings_dataset,
)


def test_settings_are_seeded_distinct_in_the_space_and_start_with_the_defaults():
    a, b = sample_settings(3, 7, 12), sample_settings(3, 7, 12)
    assert a == b and a != sample_settings(3, 8, 12)
    assert a[0] == default_setting() and default_setting()["filter_speckle"] == 4
    assert len({json.dumps(s, sort_keys=True) for s in a}) == 12
    for s in a:
        assert set(s) == set(PARAMETER_SPACE) and all(s[k] in PARAMETER_SPACE[k] for k in s)
    many = [s for i in range(40) for s in sample_settings(0, i, 8)[1:]]
    assert {s["mode"] for s in many} == {"spline", "polygon", "none"}
    assert {s["colormode"] for s in many} == {"color", "binary"}
    with pytest.raises(ValueError, match="unknown VTracer parameter\\(s\\) speckle"):
        check_setting({"speckle": 4})
    with pytest.raises(ValueError, match="parameter mode: must be one of spline, polygon, none \\(got 'curvy'\\)"):
        check_setting({"mode": "curvy"})
    with pytest.raises(ValueError, match="VTracer parameter filter_speckle: must be a number in \\[0, 32\\]"):
        check_setting({"filter_speckle": 99})


def test_a_conversion_is_labelled_by_the_real_pipeline():
    from ssimjax.data.demo import generate_image
    from ssimjax.data.labelling import conversion_ssim

    img = generate_image(0, 3)[0]
    labels, ssim_map = conversion_labels(img, default_setting())
    # VTracer's defaults are the labels every other set carries.
    assert labels["ssim"] == pytest.approx(conversion_ssim(img), abs=1e-9)
    assert ssim_map.shape == (img.height, img.width) and 0 < labels["rgb_ssim"] <= 1
    svg = convert(img.convert("RGB"), default_setting())
    assert labels["svg_bytes"] == len(svg.encode()) and labels["svg_paths"] == svg.count("<path") > 0
    # Coarser coordinates make a smaller file; a binary tracing of a colour logo loses SSIM.
    coarse, _ = conversion_labels(img, {"path_precision": 1})
    assert coarse["svg_bytes"] < labels["svg_bytes"] and coarse["svg_paths"] == labels["svg_paths"]
    binary, _ = conversion_labels(img, {"colormode": "binary"})
    assert binary["rgb_ssim"] < labels["rgb_ssim"]
    # The search's shortcut: a conversion whose luminance SSIM misses the floor gets no colour SSIM.
    from ssimjax.data.vtsettings import svg_labels

    above, _ = svg_labels(img.convert("RGB"), svg, min_ssim=labels["ssim"] - 0.01)
    assert above == labels
    missed, _ = svg_labels(img.convert("RGB"), svg, min_ssim=labels["ssim"] + 0.01)
    assert missed["ssim"] == labels["ssim"] and np.isnan(missed["rgb_ssim"])


def test_a_settings_set_is_reproducible_over_workers_cached_and_keeps_each_map(registry, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SSIMJAX_NPM_REGISTRY", registry.as_uri())
    cache = tmp_path / "cache"
    folder = settings_dataset(cache, 5, 3, seed=1, sources=SOURCES)  # over every core, into the cache
    path = folder / "settings.csv"
    make_settings_dataset(tmp_path / "b", 5, 3, seed=1, sources=SOURCES, cache_dir=cache, workers=1)
    assert (tmp_path / "b" / "settings.csv").read_text() == path.read_text()
    rows = list(csv.DictReader(open(path)))
    meta = json.loads((folder / "labels_meta.json").read_text())
    assert len(rows) == 3 * meta["written"] and meta["written"] + sum(meta["skipped"].values()) == 5
    assert meta["parameter_space"]["mode"] == ["spline", "polygon", "none"] and meta["defaults"] == default_setting()
    by_image = {}
    for r in rows:
        by_image.setdefault(r["image"], []).append(r)
    for image, group in by_image.items():
        assert [int(r["setting"]) for r in group] == [0, 1, 2]
        assert json.loads(group[0]["params"]) == default_setting()
        for r in group:
            assert 0 <= float(r["ssim"]) <= 1 and int(r["svg_bytes"]) > 0
            from ssimjax.files import sha256_file

            m = load_settings_map(cache, sha256_file(folder / image), json.loads(r["params"]))
            assert m is not None and abs(float(m[5:-5, 5:-5].astype(np.float64).mean()) - float(r["ssim"])) < 2e-3
    # Built once into the cache, checksummed, then found there.
    assert (folder / "SHA256SUMS").is_file() and settings_dataset(cache, 5, 3, seed=1, sources=SOURCES) == folder


def test_make_dataset_builds_a_settings_set_from_the_command_line(tmp_path):
    from inprocess import run_cli
    from test_icons import publish_every_source

    publish_every_source(tmp_path / "registry")
    env = {"SSIMJAX_NPM_REGISTRY": (tmp_path / "registry").as_uri()}
    cmd = ["--out", tmp_path / "set", "--count", "2", "--sets", "unjs", "--cache-dir", tmp_path / "cache"]
    r = run_cli("make-dataset", *cmd, "--vtracer-settings", "3", env=env)
    assert r.returncode == 0, r.stderr
    assert "wrote 6 labelled conversions to" in r.stdout
    rows = list(csv.DictReader(open(tmp_path / "set" / "settings.csv")))
    assert [r["setting"] for r in rows] == ["0", "1", "2"] * 2 and {r["source"] for r in rows} == {"unjs"}
    assert json.loads((tmp_path / "set" / "labels_meta.json").read_text())["recipes"] == 2
    r = run_cli("make-dataset", *cmd, "--vtracer-settings", "0", env=env)
    assert r.returncode == 2 and "--vtracer-settings: must be >= 1" in r.stderr.splitlines()[-1]


def test_the_setting_model_reads_the_image_once_and_each_setting_through_its_head():
    from ssimjax.models.setting_head import (
        ENCODING,
        TARGETS,
        encode_settings,
        head_apply,
        image_embedding,
        init_setting_model,
        setting_model_apply,
    )

    settings = sample_settings(0, 0, 5)
    enc = encode_settings(settings)
    assert enc.shape == (5, len(ENCODING)) and enc.min() >= 0 and enc.max() <= 1
    assert enc[0, ENCODING.index("spline")] == 1 and enc[0, ENCODING.index("binary")] == 0
    assert not np.array_equal(enc[0], enc[1])
    params = init_setting_model(17, seed=0)
    stats = np.random.default_rng(0).normal(size=(1, 17)).astype(np.float32)
    emb = image_embedding(params, stats)
    per_setting = np.asarray(head_apply(params, np.repeat(np.asarray(emb), 5, 0), enc))
    assert per_setting.shape == (5, len(TARGETS)) and len(set(per_setting[:, 0].round(6))) == 5
    np.testing.assert_allclose(per_setting, setting_model_apply(params, np.repeat(stats, 5, 0), enc), rtol=1e-5)


def test_a_grid_converts_every_logo_with_every_setting(registry, tmp_path, monkeypatch):  # noqa: F811
    from ssimjax.data.vtsettings import candidate_grid, issue_grid, setting_key
    from ssimjax.train.settings import SettingsRunConfig

    grid = issue_grid()
    assert len(grid) == 54 and default_setting() in grid
    pairs = {(f, m) for f in (2, 4, 8) for m in ("spline", "polygon")}
    assert {(g["filter_speckle"], g["mode"]) for g in grid} == pairs
    candidates = candidate_grid()  # what a settings run chooses among: the grid, then coarser polygons
    assert candidates[:54] == grid and len({setting_key(c) for c in candidates}) == 84
    assert all(c["mode"] == "polygon" and c["layer_difference"] >= 64 for c in candidates[54:])
    assert SettingsRunConfig().candidates == tuple(check_setting(c) for c in candidates)
    monkeypatch.setenv("SSIMJAX_NPM_REGISTRY", registry.as_uri())
    folder = settings_dataset(tmp_path / "cache", 3, 0, seed=2, sources=SOURCES, grid=grid[:4])
    rows = list(csv.DictReader(open(folder / "settings.csv")))
    assert "-grid" in folder.name and len(rows) == 4 * json.loads((folder / "labels_meta.json").read_text())["written"]
    for i in range(0, len(rows), 4):
        assert [json.loads(r["params"]) for r in rows[i:i + 4]] == grid[:4]


def test_the_choice_meets_the_target_capped_at_the_defaults_at_the_smallest_size():
    from ssimjax.models.setting_head import choose_setting

    ssim = [0.96, 0.97, 0.951, 0.90, 0.99]
    rgb = [0.95, 0.96, 0.96, 0.99, 0.90]
    size = [100, 80, 40, 10, 20]
    assert choose_setting(ssim, rgb, size, default=0, min_ssim=0.95) == 2  # 3 and 4 miss on one channel
    assert choose_setting(ssim, rgb, size, default=0, min_ssim=0.95, margin=0.005) == 1  # 2 is too close
    assert choose_setting(ssim, rgb, size, default=0, min_ssim=0.99, margin=0.5) == 0  # the defaults always do
    # A target above what the defaults reach is capped at the defaults' figures.
    assert choose_setting([0.8, 0.8, 0.79], [0.8, 0.81, 0.9], [50, 30, 5], default=0, min_ssim=0.95) == 1
    assert choose_setting(ssim, rgb, size, default=0, max_bytes=50) == 2
    assert choose_setting(ssim, rgb, size, default=0, max_bytes=5) == 3  # none fits: the smallest
    with pytest.raises(ValueError, match="give one of min_ssim and max_bytes"):
        choose_setting(ssim, rgb, size)


def test_the_conditioned_map_network_reads_the_image_once_and_scores_each_setting_from_its_cells():
    from ssimjax.models.mapnet import MapNet, crop, score_from_cells
    from ssimjax.models.setting_head import (
        cells_for_setting,
        conditioned_scores,
        encode_settings,
        init_conditioned_map_net,
        trunk_apply,
    )

    spec = MapNet()
    params = init_conditioned_map_net(spec, seed=0)
    params["film"]["w"] = params["film"]["w"] * 100  # an untrained FiLM barely moves the cells
    enc = encode_settings(sample_settings(0, 0, 3))
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    scores = conditioned_scores(params, spec, image, enc, tile=64)
    assert scores.shape == (3,) and len(set(scores.round(6))) == 3
    # Tiled scoring equals scoring the whole image at once (edge pixels extended beyond it).
    hidden = trunk_apply(params, spec, crop(image, 0, 0, 64, spec.margin)[None])
    for j in range(3):
        cells = np.asarray(cells_for_setting(params, hidden, enc[j:j + 1]))[0, :20, :30]
        assert scores[j] == pytest.approx(score_from_cells(cells, 40, 60, 2), abs=1e-6)
