"""The learned SSIM-map network: targets that average to the real label, tiling that changes
nothing, and training that learns."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ssimjax.data.labelling import SSIM_MAP_BORDER, conversion_ssim, conversion_ssim_map
from ssimjax.models.mapnet import (
    MapNet,
    cell_targets,
    init_map_net,
    map_net_apply,
    map_scores,
    predict_maps,
    tile_size_for,
)
from ssimjax.train.mapnet import map_loss, map_loss_and_grad, train_map_net


def logo(seed: int, size=(61, 44)) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(150, 256, 3)))
    d = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = rng.integers(0, size[0] - 8), rng.integers(0, size[1] - 8)
        d.ellipse([x0, y0, x0 + rng.integers(3, 20), y0 + rng.integers(3, 20)],
                  fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return img


def test_map_and_cells_average_to_the_pipeline_label():
    img = logo(0)
    ssim, full = conversion_ssim_map(img)
    assert ssim == conversion_ssim(img)
    assert full.shape == (img.height, img.width)
    b = SSIM_MAP_BORDER
    assert abs(full[b:-b, b:-b].astype(np.float64).mean() - ssim) < 1e-6
    target, weight = cell_targets(full)
    assert target.shape == ((img.height + 1) // 2, (img.width + 1) // 2)
    assert weight.sum() == (img.height - 2 * b) * (img.width - 2 * b)
    assert abs((target * weight).sum() / weight.sum() - ssim) < 1e-6
    target4, weight4 = cell_targets(full, 4)
    assert target4.shape == (-(-img.height // 4), -(-img.width // 4))
    assert abs((target4 * weight4).sum() / weight4.sum() - ssim) < 1e-6


@pytest.mark.parametrize("cell", [2, 4])
def test_tiled_prediction_equals_the_whole_image(cell):
    spec = MapNet(channels=4, dilations=(1, 2, 1), cell=cell)
    params = init_map_net(spec, seed=3)
    # Make the output depend on the input (the last layer starts near zero).
    params[-1]["w"] = params[-1]["w"] * 100
    img = np.asarray(logo(1, (75, 53)))
    tiled = predict_maps(params, spec, [img], tile=16, batch=5)[0]
    h, w = img.shape[:2]
    even = np.pad(img, ((0, -h % cell), (0, -w % cell), (0, 0)), mode="edge")
    m = spec.margin
    x = np.pad(even, ((m, m), (m, m), (0, 0)), mode="edge")[None] / 255.0
    whole = np.asarray(map_net_apply(params, spec, x))[0]
    assert tiled.shape == whole.shape == (-(-h // cell), -(-w // cell))
    assert np.abs(tiled - whole).max() < 1e-5
    assert whole.std() > 1e-3


def test_tiles_of_each_images_own_size_give_the_whole_images_map():
    """Each image cut into the tile size that costs least (one run mixes sizes): every map equals
    the whole image's."""
    spec = MapNet(channels=4, dilations=(1, 2, 1))
    params = init_map_net(spec, seed=5)
    params[-1]["w"] = params[-1]["w"] * 100
    sizes = [(9, 14), (40, 33), (75, 53), (130, 300), (600, 410)]
    images = [np.asarray(logo(i, size)) for i, size in enumerate(sizes)]
    assert len({tile_size_for(*img.shape[:2], spec.margin) for img in images}) >= 3
    m = spec.margin
    for img, tiled in zip(images, predict_maps(params, spec, images)):
        h, w = img.shape[:2]
        even = np.pad(img, ((0, -h % 2), (0, -w % 2), (0, 0)), mode="edge")
        x = np.pad(even, ((m, m), (m, m), (0, 0)), mode="edge")[None] / 255.0
        np.testing.assert_allclose(tiled, np.asarray(map_net_apply(params, spec, x))[0], atol=1e-5)
    # The default network's margin (20 px): a small logo takes one 32 px tile, a large one 256 px
    # tiles, a 1024 px square one tile of its size (fewer margin pixels than sixteen 256 px tiles).
    assert tile_size_for(24, 24, MapNet().margin) == 32
    assert tile_size_for(1024, 700, MapNet().margin) == 256
    assert tile_size_for(1024, 1024, MapNet().margin) == 1024


def test_micro_batches_give_the_whole_batch_gradient():
    import jax

    spec = MapNet(channels=8)
    params = init_map_net(spec, 1)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 16 + 2 * spec.margin, 16 + 2 * spec.margin, 3)).astype(np.uint8)
    t = rng.uniform(0.7, 1.0, (8, 8, 8)).astype(np.float32)
    w = rng.integers(0, 5, (8, 8, 8)).astype(np.float32)
    whole, grads = jax.value_and_grad(map_loss)(params, spec, x, t, w)
    parts, part_grads = map_loss_and_grad(params, spec, x, t, w, micro=2)
    assert abs(float(parts) - float(whole)) < 1e-6 * float(whole)
    for a, b in zip(jax.tree_util.tree_leaves(part_grads), jax.tree_util.tree_leaves(grads)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="multiple of the micro-batch"):
        map_loss_and_grad(params, spec, x, t, w, micro=3)


def test_training_learns_the_maps_deterministically():
    imgs = [logo(s, (48 + 6 * s, 40)) for s in range(6)]
    arrays = [np.asarray(i) for i in imgs]
    maps = [conversion_ssim_map(i)[1] for i in imgs]
    spec = MapNet(channels=8, dilations=(1, 2, 1))
    kw = dict(steps=150, batch=8, crop_size=32, learning_rate=3e-3, seed=0)
    params, losses = train_map_net(arrays, maps, spec, **kw)
    assert train_map_net(arrays, maps, spec, **kw)[1] == losses
    # On the whole images, the learned map beats the best constant map clearly.
    targets = [cell_targets(m) for m in maps]
    t = np.concatenate([a[w > 0] for a, w in targets])
    w = np.concatenate([w[w > 0] for _, w in targets])
    constant = np.average((t - np.average(t, weights=w)) ** 2, weights=w)
    predicted = predict_maps(params, spec, arrays, tile=32, batch=4)
    learned = sum(((p - a) ** 2 * w).sum() for p, (a, w) in zip(predicted, targets)) / sum(w.sum() for _, w in targets)
    assert learned < 0.8 * constant
    scores = map_scores(params, spec, arrays, tile=32, batch=4)
    assert scores.shape == (6,) and np.all((scores > 0.5) & (scores < 1.1))
    with pytest.raises(ValueError, match="multiple of the cell"):
        train_map_net(arrays, maps, spec, steps=1, crop_size=33)


def test_compare_models_runs_the_map_candidate(small_dataset, tmp_path):
    """(g) end to end on a tiny two-source set: maps computed once and cached, a score per source."""
    import csv
    import json

    with open(small_dataset / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    manifest = tmp_path / "labels.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "ssim", "source"])
        for i, r in enumerate(rows):
            w.writerow([str(small_dataset / r["image"]), r["ssim"], "ab"[i % 2]])
    from inprocess import run_cli

    cache = tmp_path / "cache"  # its own: other tests' runs cache maps of these images too
    r = run_cli("compare_models.py", "--data", manifest, "--candidates", "e,g", "--map-steps", "4",
                "--map-channels", "4", "--map-extra", "5", "--mlp-variants", "16", "--json", tmp_path / "out.json",
                "--cache-dir", cache)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"SSIM maps of {len(rows)} images computed" in r.stdout
    # A variant's MLP reads the same map network's scores: it is trained once per held-out set.
    assert r.stdout.count("map network: trained") == 2
    out = json.loads((tmp_path / "out.json").read_text())
    assert set(out["candidates"]["g"]["per_source"]) == {"a", "b"}
    assert all(np.isfinite(m["srcc"]) for m in out["candidates"]["g"]["per_source"].values())
    variant = out["candidates"]["g-mlp-16"]["per_source"]
    assert set(variant) == {"a", "b"} and variant != out["candidates"]["g"]["per_source"]
    # The set's maps and those of the synthetic wordmarks the map network also trains on.
    wordmarks = list(csv.DictReader(open(cache / "wordmarks" / "v1-n5-seed0" / "labels.csv")))
    assert 1 <= len(wordmarks) <= 5
    assert len(list((cache / "ssim-maps").glob("*.npz.entry"))) == len(rows) + len(wordmarks)


def test_torch_map_net_predicts_what_the_jax_one_predicts():
    torch = pytest.importorskip("torch")
    import jax

    from bridge.convert import map_net_to_torch
    from bridge.model import MapNet as TorchMapNet

    spec = MapNet(channels=8)
    # Biases and head away from their init, so every parameter's placement matters.
    params = jax.tree_util.tree_map(lambda a: a + 0.05 * np.sin(np.arange(a.size).reshape(a.shape) + 1.0),
                                    init_map_net(spec, 2))
    rng = np.random.default_rng(3)
    images = [np.asarray(logo(i, size), np.uint8) for i, size in enumerate([(61, 44), (9, 130), (200, 97)])]
    images += [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(33, 35, 3), (1, 1, 3), (3, 70, 3)]]
    net = TorchMapNet(spec.channels, spec.dilations, spec.cell)
    net.load_state_dict({k.removeprefix("map_net."): v for k, v in map_net_to_torch(params).items()}, strict=True)
    ours = predict_maps(params, spec, images, tile=32)
    for img, cells in zip(images, ours):
        with torch.no_grad():
            theirs = net.cells(img).numpy()
        assert theirs.shape == cells.shape
        np.testing.assert_allclose(theirs, cells, atol=2e-5)
    np.testing.assert_allclose(net.score(images), map_scores(params, spec, images, tile=32), atol=2e-6)


def test_images_the_pipeline_cannot_convert_are_left_out_of_map_training(tmp_path):
    from ssimjax.data.manifest import DataError
    from ssimjax.train.mapnet import fit_map_model

    paths = []
    for i, size in enumerate([(61, 44), (5, 5), (40, 33)]):
        paths.append(tmp_path / f"{i}.png")
        logo(i, size).save(paths[-1]) if min(size) > 8 else Image.new("RGB", size, (9, 9, 9)).save(paths[-1])
    logs = []
    model = fit_map_model(paths, MapNet(channels=4), tmp_path / "cache", steps=3, log=logs.append)
    assert any("1 training images the pipeline cannot convert" in line for line in logs)
    assert np.isfinite(model.score([np.asarray(logo(5), np.uint8)])).all()
    with pytest.raises(DataError, match="nothing to train on"):
        fit_map_model(paths[1:2], MapNet(channels=4), tmp_path / "cache", steps=3)
