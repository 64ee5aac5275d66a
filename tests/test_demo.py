import csv
import json

import numpy as np
from PIL import Image, ImageDraw

from ssimjax.data.demo import generate_image, make_dataset
from ssimjax.data.labelling import conversion_ssim, render_svg, vectorize


def test_generated_images_are_reproducible_and_varied():
    a, kind = generate_image(0, 5)
    b, _ = generate_image(0, 5)
    c, _ = generate_image(1, 5)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert a.size != c.size or not np.array_equal(np.asarray(a), np.asarray(c))
    kinds = {generate_image(0, i)[1] for i in range(12)}
    assert kinds == {"flat", "text", "gradient", "texture", "noisy", "blurred"}


def test_real_pipeline_scores_flat_logos_high_and_noise_low():
    flat = Image.new("RGB", (120, 90), "white")
    ImageDraw.Draw(flat).ellipse((20, 15, 100, 75), fill=(220, 40, 40))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8))
    s_flat, s_noise = conversion_ssim(flat), conversion_ssim(noise)
    assert s_flat > 0.9 and s_noise < 0.5 and 0 <= s_noise
    svg = vectorize(flat)
    assert svg.lstrip().startswith("<?xml") and "<path" in svg
    assert render_svg(svg, 120, 90).size == (120, 90)


def test_make_dataset_is_the_same_over_one_or_two_processes(tmp_path, small_dataset):
    make_dataset(tmp_path, count=24, seed=3, workers=1)
    one = (tmp_path / "labels.csv").read_text()
    two = (small_dataset / "labels.csv").read_text()
    assert one == two
    rows = list(csv.DictReader((small_dataset / "labels.csv").open()))
    assert len(rows) == 24 and all((small_dataset / r["image"]).is_file() for r in rows)
    labels = [float(r["ssim"]) for r in rows]
    assert all(0 <= v <= 1 for v in labels) and max(labels) - min(labels) > 0.3  # a spread of difficulty
    meta = json.loads((small_dataset / "labels_meta.json").read_text())
    assert meta["vtracer_parameters"]["mode"] == "spline" and meta["versions"]["vtracer"]
    assert meta["ssim"]["sigma"] == 1.5
