"""Each image statistic measures what its name says, at the image's own resolution."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ssimjax.features.stats import LOGGED, STAT_NAMES, image_statistics


def stats_of(img):
    values = image_statistics(img)
    assert values.dtype == np.float32 and values.shape == (len(STAT_NAMES),) and np.isfinite(values).all()
    return {n: (np.exp(v) - 1e-3 if n in LOGGED else float(v)) for n, v in zip(STAT_NAMES, values)}


def flat(size=(64, 48), color=(30, 120, 200), mode="RGB"):
    return Image.new(mode, size, color)


def shapes(size=(128, 128)):
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    d.rectangle((20, 20, 70, 90), fill=(200, 20, 20))
    d.ellipse((60, 40, 110, 110), fill=(20, 60, 200))
    return img


def noise(size=(128, 128), seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, size + (3,), dtype=np.uint8))


def test_size_and_aspect():
    s = stats_of(flat((64, 16)))
    assert s["log_pixels"] == pytest.approx(np.log(64 * 16)) and s["log_aspect"] == pytest.approx(np.log(4))


def test_a_flat_image_has_no_gradient_edges_texture_or_speckle():
    s = stats_of(flat())
    for name in ("grad_abs", "grad_abs_half", "grad_sq", "hf_residual_1", "hf_residual_2", "edge_density",
                 "lum_std", "speckle_share", "alpha_partial", "alpha_transparent"):
        assert s[name] == pytest.approx(0.0, abs=1e-6), name
    assert s["flat_share"] == 1.0 and s["dominant_share"] == 1.0 and s["color_entropy"] == pytest.approx(0.0, abs=1e-9)
    assert s["log_colors"] == pytest.approx(np.log(2))  # one colour


def test_gradient_edges_and_texture_grow_from_shapes_to_noise():
    a, b, c = stats_of(flat((128, 128))), stats_of(shapes()), stats_of(noise())
    for name in ("grad_abs", "grad_abs_half", "grad_sq", "hf_residual_1", "hf_residual_2", "edge_density",
                 "color_entropy", "log_colors"):
        assert a[name] < b[name] < c[name], name
    # Drawn shapes have no specks; noise is mostly specks.
    assert a["speckle_share"] == pytest.approx(0, abs=1e-6) and b["speckle_share"] == pytest.approx(0, abs=1e-6)
    assert c["speckle_share"] > 0.5
    assert a["flat_share"] > b["flat_share"] > c["flat_share"]
    assert b["dominant_share"] > c["dominant_share"]


def test_sharper_detail_at_native_resolution_shows_in_the_half_scale_difference():
    # 1-px stripes vanish at half resolution (box filter), 8-px stripes do not.
    fine = Image.fromarray(np.tile((np.arange(128) % 2 * 255).astype(np.uint8), (128, 1)))
    coarse = Image.fromarray(np.tile(((np.arange(128) // 8) % 2 * 255).astype(np.uint8), (128, 1)))
    f, c = stats_of(fine), stats_of(coarse)
    assert f["grad_abs"] > 0.9 and f["grad_abs_half"] < 0.01
    assert c["grad_abs_half"] > c["grad_abs"]


def test_two_colours_half_and_half():
    img = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(img).rectangle((0, 0, 31, 63), fill="black")
    s = stats_of(img)
    assert s["log_colors"] == pytest.approx(np.log(3)) and s["color_entropy"] == pytest.approx(1.0)
    assert s["dominant_share"] == pytest.approx(0.5) and s["lum_std"] == pytest.approx(0.5, abs=1e-3)


def test_alpha_coverage():
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    px = img.load()
    for x in range(10):
        px[x, 0] = (255, 0, 0, 255)  # opaque row
        px[x, 1] = (255, 0, 0, 128)  # half-transparent row
    s = stats_of(img)
    assert s["alpha_transparent"] == pytest.approx(0.8) and s["alpha_partial"] == pytest.approx(0.1, rel=1e-3)


def test_jpeg_blockiness_is_higher_than_the_png_of_the_same_image():
    img = shapes((256, 256))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=20)
    jpeg = Image.open(io.BytesIO(buf.getvalue()))
    assert stats_of(jpeg)["blockiness"] > stats_of(img)["blockiness"] + 0.2


def test_speckle_counts_isolated_pixels():
    img = flat((32, 32), (255, 255, 255))
    img.putpixel((10, 10), (0, 0, 0))
    img.putpixel((20, 5), (0, 0, 0))
    assert stats_of(img)["speckle_share"] == pytest.approx(2 / 1024, rel=1e-3)
    checker = Image.fromarray(((np.indices((32, 32)).sum(0) % 2) * 255).astype(np.uint8))
    # Every interior pixel of a checkerboard is a speck (the border is compared with its own copy).
    assert stats_of(checker)["speckle_share"] == pytest.approx(30 * 30 / 1024, rel=1e-4)


def test_the_statistics_of_a_file_do_not_depend_on_how_it_is_opened(tmp_path):
    path = tmp_path / "x.png"
    shapes().convert("P").save(path)
    a = image_statistics(Image.open(path))
    b = image_statistics(Image.open(path).convert("RGB"))
    assert np.array_equal(a, b)


def test_thumb_ssim_is_the_real_pipelines_ssim_on_a_thumbnail_of_the_image():
    from ssimjax.data.labelling import conversion_ssim
    from ssimjax.features.stats import THUMB_SIDE

    small = shapes((THUMB_SIDE - 8, THUMB_SIDE - 20))  # already that small: the conversion's own SSIM
    assert stats_of(small)["thumb_ssim"] == pytest.approx(conversion_ssim(small), abs=1e-6)
    big = shapes((4 * THUMB_SIDE, 2 * THUMB_SIDE))
    thumb = big.resize((THUMB_SIDE, THUMB_SIDE // 2), Image.LANCZOS)
    assert stats_of(big)["thumb_ssim"] == pytest.approx(conversion_ssim(thumb), abs=1e-6)
    # Noise is what VTracer loses most of; a flat image it keeps whole.
    assert stats_of(noise((256, 256)))["thumb_ssim"] < 0.5 < stats_of(big)["thumb_ssim"] < 1.0
    assert stats_of(flat((256, 256)))["thumb_ssim"] == pytest.approx(1.0, abs=1e-6)
    # A data build passes the label it has just computed: the same statistics, one conversion fewer.
    from ssimjax.data.labelling import conversion_ssim_map
    from ssimjax.features.stats import image_statistics

    label = conversion_ssim_map(small)[0]
    np.testing.assert_array_equal(image_statistics(small, conversion=label), image_statistics(small))
    # ... used only where the thumbnail is the image itself.
    assert image_statistics(big, conversion=0.5)[-1] == pytest.approx(conversion_ssim(thumb), abs=1e-6)


def test_a_long_thin_image_keeps_ssims_window_in_its_thumbnail_and_a_tinier_one_scores_one():
    strip = shapes((1000, 30))  # 64 x 2 at the long side's scale: widened to SSIM's 11 px instead
    assert 0.0 < stats_of(strip)["thumb_ssim"] <= 1.0
    assert stats_of(flat((40, 6)))["thumb_ssim"] == 1.0
