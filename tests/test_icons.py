"""Real-logo data: npm packages fetched by name and pinned version with their integrity verified and
cached, icon sets rasterised and labelled by the real pipeline. A registry is laid out on disk by
the test (file:// URLs); one test fetches the real default packages and skips when offline."""

import base64
import csv
import hashlib
import io
import json
import tarfile
import urllib.request

import numpy as np
import pytest

from ssimjax.data.icons import Source, draw_recipe, iconify_svgs, rasterise
from ssimjax.data.logoset import make_icon_dataset
from ssimjax.data.npm import PackageError, cache_path, fetch_tarball, package_files

SQUARE = '<path fill="#e33" d="M2 2h12v12H2z"/>'
RING = '<circle cx="8" cy="8" r="6" fill="none" stroke="#1565c0" stroke-width="1.5"/>'
STRIPES = '<path fill="#222" d="M0 0h16v2H0zm0 4h16v2H0zm0 4h16v2H0zm0 4h16v2H0z"/>'


def tarball(files: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def publish(registry, name, version, files, corrupt=None):
    """Lays out ``name@version`` as the npm registry serves it: metadata JSON and a tarball."""
    data = tarball(files)
    path = registry / "tarballs" / f"{name.replace('/', '_')}-{version}.tgz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(corrupt(data) if corrupt else data)
    meta = registry / name / version
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"name": name, "version": version,
                                "dist": {"tarball": path.as_uri(), "integrity": integrity(data)}}))
    return data


@pytest.fixture
def registry(tmp_path):
    reg = tmp_path / "registry"
    icons = {"prefix": "t", "width": 16, "height": 16, "icons": {
        "square": {"body": SQUARE}, "ring": {"body": RING}, "stripes": {"body": STRIPES},
        "wide": {"body": SQUARE, "width": 32}, "hidden": {"body": SQUARE, "hidden": True},
        "broken": {"body": '<path d="M0 0"/>'},  # draws nothing: skipped and counted
    }, "aliases": {"box": {"parent": "square"}}}
    publish(reg, "@iconify-json/tiny", "1.0.0", {"icons.json": json.dumps(icons).encode(), "package.json": b"{}"})
    brands = [{"title": "Acme", "slug": "acme", "hex": "0A7E3F"}, {"title": "Dot", "slug": "dot", "hex": "FF0000"}]
    publish(reg, "simple-tiny", "2.0.0", {
        "data/simple-icons.json": json.dumps(brands).encode(),
        "icons/acme.svg": '<svg role="img" viewBox="0 0 24 24" xmlns="http://www.w3.org/2000/svg"><path d="M3 3h18v8H3z"/></svg>'.encode(),
        "icons/dot.svg": b'<svg role="img" viewBox="0 0 24 24" xmlns="http://www.w3.org/2000/svg"><circle cx="12" cy="12" r="9"/></svg>',
    })
    return reg


SOURCES = (Source("tiny", "@iconify-json/tiny", "1.0.0", "iconify"), Source("brands", "simple-tiny", "2.0.0", "simple-icons"))


def test_packages_are_verified_cached_and_read_offline(registry, tmp_path):
    cache = tmp_path / "cache"
    url = registry.as_uri()
    files = package_files("@iconify-json/tiny", "1.0.0", cache, registry=url)
    assert set(files) == {"icons.json", "package.json"}
    assert cache_path(cache, "@iconify-json/tiny", "1.0.0").is_file()
    # Offline (no registry at all): the cache serves it, re-verified.
    offline = (tmp_path / "nowhere").as_uri()
    assert package_files("@iconify-json/tiny", "1.0.0", cache, registry=offline) == files
    # Neither cache nor registry: one clear line.
    with pytest.raises(PackageError, match=r"simple-tiny@2.0.0: not in the cache .* cannot reach the npm registry"):
        fetch_tarball("simple-tiny", "2.0.0", cache, registry=offline)



@pytest.mark.parametrize("damage", [lambda d: d[:-10], lambda d: d[:40] + bytes([d[40] ^ 1]) + d[41:]],
                         ids=["truncated", "same-size-changed-byte"])
def test_a_damaged_cached_tarball_is_reported_and_fetched_again(registry, tmp_path, caplog, damage):
    cache = tmp_path / "cache"
    good = fetch_tarball("@iconify-json/tiny", "1.0.0", cache, registry=registry.as_uri())
    path = cache_path(cache, "@iconify-json/tiny", "1.0.0")
    path.write_bytes(damage(path.read_bytes()))
    # Offline, a damaged copy is never used: one clear line, and nothing returned.
    with caplog.at_level("WARNING", logger="ssimjax"):
        with pytest.raises(PackageError, match="not in the cache .* cannot reach the npm registry"):
            fetch_tarball("@iconify-json/tiny", "1.0.0", cache, registry=(tmp_path / "nowhere").as_uri())
    assert [r.getMessage() for r in caplog.records if "damaged cache entry" in r.getMessage()] == [
        f"damaged cache entry {path} ({len(damage(good))} bytes: its sha512 does not match the integrity recorded "
        "with it); removed, fetching it again"]
    path.write_bytes(damage(good))
    # With the registry there, it is fetched again and cached whole.
    assert fetch_tarball("@iconify-json/tiny", "1.0.0", cache, registry=registry.as_uri()) == good
    assert path.read_bytes() == good


@pytest.mark.parametrize("corrupt", [lambda d: d[: len(d) // 2], lambda d: d[:-1] + bytes([d[-1] ^ 1])],
                         ids=["truncated", "flipped-byte"])
def test_a_bad_download_is_refused_and_nothing_is_cached(tmp_path, corrupt):
    reg, cache = tmp_path / "registry", tmp_path / "cache"
    publish(reg, "bad-pkg", "0.1.0", {"icons.json": b"{}"}, corrupt=corrupt)
    with pytest.raises(PackageError, match="bad-pkg@0.1.0: integrity check failed"):
        fetch_tarball("bad-pkg", "0.1.0", cache, registry=reg.as_uri())
    assert not (cache / "npm").exists() or not any((cache / "npm").iterdir())


def test_iconify_svgs_keep_size_flips_and_skip_aliases_and_hidden():
    svgs = iconify_svgs({"width": 16, "height": 16, "icons": {
        "a": {"body": SQUARE}, "b": {"body": SQUARE, "width": 32, "hFlip": True}, "h": {"body": SQUARE, "hidden": True},
    }, "aliases": {"c": {"parent": "a"}}})
    assert sorted(svgs) == ["a", "b"]
    assert 'viewBox="0 0 16 16"' in svgs["a"] and 'viewBox="0 0 32 16"' in svgs["b"]
    assert "scale(-1 1)" in svgs["b"]


def test_recipes_cover_sizes_backgrounds_and_jpeg_and_are_seeded():
    recipes = [draw_recipe(0, i) for i in range(300)]
    assert recipes[:5] == [draw_recipe(0, i) for i in range(5)] and recipes[:5] != [draw_recipe(1, i) for i in range(5)]
    sides = [r["long_side"] for r in recipes]
    assert 48 <= min(sides) < 70 and 400 < max(sides) <= 512
    assert {r["background"] for r in recipes} == {"white", "transparent", "color"}
    jpeg = [r for r in recipes if r["format"] == "jpeg"]
    assert 0.2 < len(jpeg) / len(recipes) < 0.4 and all(60 <= r["quality"] <= 95 for r in jpeg)


def test_version_2_recipes_look_like_users_files():
    recipes = [draw_recipe(0, i, 2) for i in range(600)]
    assert recipes[:5] == [draw_recipe(0, i, 2) for i in range(5)]
    assert recipes[:5] != [draw_recipe(0, i) for i in range(5)]
    sides = [r["long_side"] for r in recipes]
    assert 24 <= min(sides) < 30 and 900 < max(sides) <= 1024
    assert {r["background"] for r in recipes} == {"white", "transparent", "color", "gradient"}
    assert {r["resample"] for r in recipes} == {"box", "bilinear", "bicubic", "lanczos", "nearest"}
    assert {r["supersample"] for r in recipes} == {1, 2, 4}
    jpeg = [r for r in recipes if r["format"] == "jpeg"]
    assert {r["quality"] < 50 for r in jpeg} == {True, False} and all(35 <= r["quality"] <= 95 for r in jpeg)
    with pytest.raises(ValueError, match="unknown recipe version 4"):
        draw_recipe(0, 0, 4)
    # Version 3 (the default run's): version 2's recipes, no drawing larger than 1536 px.
    v3 = [draw_recipe(0, i, 3) for i in range(600)]
    assert all(r["long_side"] * r["supersample"] <= 1536 or r["supersample"] == 1 for r in v3)
    changed = [(a, b) for a, b in zip(recipes, v3) if a != b]
    assert 0.05 < len(changed) / len(v3) < 0.2
    assert all(dict(a, supersample=0) == dict(b, supersample=0) and b["supersample"] < a["supersample"]
               for a, b in changed)
    # Drawn 4x larger and downscaled: nearest keeps hard edges, box averages them into grey.
    svg = iconify_svgs({"width": 16, "height": 16, "icons": {"d": {"body": '<circle cx="8" cy="8" r="7"/>'}}})["d"]
    base = dict(long_side=31, padding=0.0, supersample=4, background="white", color=None, format="png", quality=None)
    near = np.asarray(rasterise(svg, dict(base, resample="nearest"))[0].convert("L"))
    box = np.asarray(rasterise(svg, dict(base, resample="box"))[0].convert("L"))
    assert near.shape == box.shape == (31, 31)
    assert len(np.unique(near)) < len(np.unique(box)) and not np.array_equal(near, box)
    grad = dict(base, background="gradient", color="#000000", color2="#ffffff", angle=0.0, resample="lanczos")
    row = np.asarray(rasterise(svg, dict(grad, padding=0.25, long_side=64))[0].convert("L"))[1]
    assert row[0] < 20 and row[-1] > 235 and np.all(np.diff(row.astype(int)) >= 0)  # dark to light, left to right


def test_rasterise_keeps_aspect_pads_and_applies_the_background():
    svg = iconify_svgs({"width": 32, "height": 16, "icons": {"w": {"body": SQUARE}}})["w"]
    recipe = dict(long_side=200, padding=0.1, background="transparent", color=None, format="png", quality=None)
    img, data = rasterise(svg, recipe)
    assert img.mode == "RGBA" and img.size == (200, 120) and data[:4] == b"\x89PNG"  # 160x80 + 20 px each side
    assert img.getpixel((0, 0))[3] == 0  # padding stays transparent
    recipe = dict(recipe, background="color", color="#102030", format="jpeg", quality=80)
    img, data = rasterise(svg, recipe)
    assert img.format == "JPEG" and data[:2] == b"\xff\xd8"
    assert np.abs(np.asarray(img.convert("RGB").getpixel((1, 1)), int) - [16, 32, 48]).max() < 12


def test_icon_dataset_is_labelled_reproducible_and_counts_what_it_skips(registry, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SSIMJAX_NPM_REGISTRY", registry.as_uri())
    labels = make_icon_dataset(tmp_path / "a", 14, seed=5, workers=2, sources=SOURCES, cache_dir=cache)
    make_icon_dataset(tmp_path / "b", 14, seed=5, workers=1, sources=SOURCES, cache_dir=cache)
    rows = list(csv.DictReader(open(labels)))
    meta = json.loads((tmp_path / "a" / "labels_meta.json").read_text())
    assert meta["written"] == len(rows) and meta["count"] == 14
    assert meta["written"] + sum(meta["skipped"].values()) == 14
    assert {r["source"] for r in rows} == {"tiny", "brands"}
    assert all(0.0 <= float(r["ssim"]) <= 1.0 for r in rows)
    assert not any(r["icon"] == "broken" for r in rows) and meta["skipped"]  # it cannot be drawn
    recipe = json.loads(rows[0]["recipe"])
    assert set(recipe) == {"long_side", "padding", "background", "color", "format", "quality"}
    # The same set whatever the number of workers: same labels, same image bytes.
    assert (tmp_path / "b" / "labels.csv").read_text() == labels.read_text()
    for r in rows:
        assert (tmp_path / "a" / r["image"]).read_bytes() == (tmp_path / "b" / r["image"]).read_bytes()
    # Each label's SSIM map is cached as it is computed: what the map network will train on.
    from ssimjax.data.images import open_image, read_file
    from ssimjax.data.labelling import SSIM_MAP_BORDER, conversion_ssim_map
    from ssimjax.train.mapnet import cached_ssim_maps

    files = [read_file(tmp_path / "a" / r["image"]) for r in rows]
    maps = cached_ssim_maps([None] * len(rows), [sha for _, sha in files], cache)  # no path: none recomputed
    b = SSIM_MAP_BORDER
    for r, m, (raw, _) in zip(rows, maps, files):
        assert abs(float(m[b:-b, b:-b].astype(np.float64).mean()) - float(r["ssim"])) < 2e-3  # float16 map
        np.testing.assert_allclose(m, conversion_ssim_map(open_image(raw))[1], atol=1e-3)
    # And each file's statistics, exactly what a run would compute from the file.
    from ssimjax.features.cache import stats_cache
    from ssimjax.features.stats import image_statistics

    for raw, sha in files:
        np.testing.assert_array_equal(stats_cache(cache).get(sha), image_statistics(open_image(raw)))


def test_the_default_packages_download_with_their_published_integrity(tmp_path):
    try:
        urllib.request.urlopen("https://registry.npmjs.org/simple-icons/16.37.0", timeout=10).read(1)
    except Exception as e:  # offline: this one test cannot run
        pytest.skip(f"npm registry not reachable ({e})")
    files = package_files("@iconify-json/flag", "1.2.12", tmp_path)
    assert json.loads(files["icons.json"])["prefix"] == "flag"


def publish_every_source(registry):
    """Tiny stand-ins published under every known set's package name and pinned version."""
    from ssimjax.data.sets import ALL_SOURCES

    bodies = [SQUARE, RING, STRIPES, '<path fill="#0a0" d="M8 1l7 14H1z"/>']
    for k, source in enumerate(ALL_SOURCES):
        if source.kind == "simple-icons":
            brands = [{"title": f"B{i}", "slug": f"b{i}", "hex": f"{40 * i:02X}30C0"} for i in range(4)]
            files = {"data/simple-icons.json": json.dumps(brands).encode()}
            for i in range(4):
                files[f"icons/b{i}.svg"] = (f'<svg viewBox="0 0 24 24" xmlns="http://www.w3.org/2000/svg">'
                                            f'<circle cx="12" cy="12" r="{4 + 2 * i}"/></svg>').encode()
        else:
            icons = {"width": 16, "height": 16 - k % 6, "icons": {f"i{i}": {"body": b} for i, b in enumerate(bodies)}}
            files = {"icons.json": json.dumps(icons).encode()}
        publish(registry, source.package, source.version, files)


def test_default_run_trains_on_the_training_sets_scores_the_held_out_ones_and_evaluate_agrees(tmp_path):
    import os
    from pathlib import Path

    from inprocess import run_cli

    publish_every_source(tmp_path / "registry")
    env = {**os.environ, "SSIMJAX_NPM_REGISTRY": (tmp_path / "registry").as_uri(),
           "SSIMJAX_CACHE_DIR": str(tmp_path / "cache")}

    def script(name, *args):  # in this process (tests/inprocess.py)
        return run_cli(name, *args, env=env)

    from ssimjax.data.sets import split_sets

    split = split_sets()
    out = tmp_path / "run"
    r = script("train.py", "--icon-count", 44, "--held-out-per-set", 2, "--backbone", "tiny", "--hidden-dims", "16",
               "--batch-size", "8", "--epochs", "2", "--map-steps", "20", "--map-extra", "24", "--no-report",
               "--out", out)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    config = json.loads((out / "config.json").read_text())
    held_out = split["selection"] + split["report"]
    # Four of each training set's images train; two of each selection and report set are held out.
    assert config["data"]["sources"] == {**{s: 4 for s in split["train"]}, **{s: 2 for s in held_out}}
    assert config["data"]["train_rows"] + config["data"]["val_rows"] == 44
    assert summary["test_source"] == "selection,report" and summary["test_metrics"]["count"] == 2 * len(held_out)
    assert set(summary["test_per_set"]) == set(held_out)
    report = summary["test_roles"]["report"]
    assert report["sets"] == len(split["report"]) and report["worst_set"] in split["report"]
    assert report["worst_srcc"] == min(summary["test_per_set"][s]["srcc"] for s in split["report"])
    assert f"report sets ({len(split['report'])}, never trained or chosen on): mean SRCC" in r.stdout
    assert f"selection sets ({len(split['selection'])}, designs are chosen on these)" in r.stdout
    # The held-out images by long side, each counted once.
    assert sum(v["count"] for v in summary["test_per_size"].values()) == 2 * len(held_out)
    assert "by long side: " in r.stdout
    # The synthetic wordmarks the map network trains on are training rows of the MLP too, at most
    # one for every three real ones.
    assert config["data"]["synthetic_train_rows"] == config["data"]["train_rows"] // 3 > 0

    r = script("evaluate.py", "--checkpoint", out, "--data", Path(config["data"]["manifest"]).parent, "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert set(result["per_source"]) == set(split["train"] + held_out)
    assert result["overall"]["count"] == 44 + 2 * len(held_out)
    assert {"srcc", "plcc", "krcc", "mae", "rmse"} <= set(result["overall"])
    assert sum(m["count"] for m in result["per_size"].values()) == result["overall"]["count"]
    for name in held_out:
        assert result["per_source"][name]["srcc"] == pytest.approx(summary["test_per_set"][name]["srcc"], abs=1e-6)
    r = script("evaluate.py", "--checkpoint", out, "--data", Path(config["data"]["manifest"]).parent)
    assert r.returncode == 0 and r.stdout.splitlines()[0].split() == ["set", "n", "SRCC", "PLCC", "KRCC", "MAE", "RMSE"]
    assert any(line.startswith("long side ") for line in r.stdout.splitlines())

    # An unknown held-out source, and no registry and no cache: one clear line each.
    r = script("train.py", "--icon-count", 44, "--held-out-per-set", 2, "--backbone", "tiny", "--test-source",
               "logos,emoji", "--out", tmp_path / "x")
    assert r.returncode == 1 and "test source 'emoji' has no rows (sources: catppuccin," in r.stderr, r.stderr
    env["SSIMJAX_NPM_REGISTRY"] = (tmp_path / "offline").as_uri()
    env["SSIMJAX_CACHE_DIR"] = str(tmp_path / "empty-cache")
    r = script("train.py", "--icon-count", 40, "--backbone", "tiny", "--out", tmp_path / "y")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "not in the cache" in r.stderr and "cannot reach the npm registry" in r.stderr
