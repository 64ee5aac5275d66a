"""The simulation of VTracer's colour clustering (ssimjax.features.vtsim) against the real VTracer,
resvg and SSIM, and the cap it puts on the settings model's predictions."""

import dataclasses

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ssimjax.data.vtsettings import convert, default_setting, svg_labels
from ssimjax.features.vtsim import simulate_settings
from ssimjax.models.setting_head import cap_by_simulation


def _logo() -> Image.Image:
    """A blue square, a light grey panel (75 from white, summed over R, G, B) and a 3x3 red speckle."""
    im = Image.new("RGB", (64, 64), "white")
    d = ImageDraw.Draw(im)
    d.rectangle([8, 8, 30, 30], fill=(30, 60, 200))
    d.rectangle([36, 10, 58, 30], fill=(230, 230, 230))
    d.rectangle([44, 44, 46, 46], fill=(220, 30, 30))
    return im


def test_the_simulation_loses_what_vtracer_loses_as_filter_speckle_and_layer_difference_grow():
    im, base = _logo(), default_setting()
    settings = [{**base, "filter_speckle": 2},  # keeps the speckle (9 px > 2 x 2)
                {**base, "filter_speckle": 4},  # drops it (9 px < 4 x 4)
                {**base, "filter_speckle": 4, "layer_difference": 128}]  # and merges the grey panel into white
    sim = simulate_settings(im, settings)
    real = [svg_labels(im, convert(im, s))[0] for s in settings]
    assert [r["svg_paths"] for r in real] == [4, 3, 2] == sim["shapes"].tolist()
    np.testing.assert_allclose(sim["ssim"], [r["ssim"] for r in real], atol=0.002)
    assert sim["ssim"][0] > sim["ssim"][1] + 0.02 > sim["ssim"][2] + 0.05


def test_on_anti_aliased_shapes_the_simulation_keeps_as_many_shapes_as_vtracer_writes_paths():
    big = Image.new("RGB", (320, 320), "white")
    d = ImageDraw.Draw(big)
    d.ellipse([20, 20, 200, 200], fill=(240, 120, 20))
    d.ellipse([150, 150, 300, 300], fill=(20, 120, 200))
    d.line([(30, 290), (290, 30)], fill=(40, 40, 40), width=6)
    d.rectangle([250, 40, 262, 52], fill=(200, 30, 120))
    im = big.resize((80, 80), Image.LANCZOS)  # soft edges: many one-pixel clusters along them
    base = default_setting()
    settings = [base, {**base, "filter_speckle": 8, "mode": "polygon"},
                {**base, "color_precision": 4, "layer_difference": 64}, {**base, "color_precision": 8}]
    sim = simulate_settings(im, settings)
    assert sim["shapes"].tolist() == [svg_labels(im, convert(im, s))[0]["svg_paths"] for s in settings]


def test_the_simulation_is_deterministic_and_leaves_binary_mode_unsimulated():
    im = _logo()
    settings = [default_setting(), {**default_setting(), "colormode": "binary"}]
    a, b = simulate_settings(im, settings), simulate_settings(im.copy(), settings)
    np.testing.assert_array_equal(a["ssim"], b["ssim"])
    assert np.isfinite(a["ssim"][0]) and np.isnan(a["ssim"][1]) and np.isnan(a["shapes"][1])


def test_a_large_image_is_simulated_at_the_working_size_with_filter_speckle_scaled():
    big = _logo().resize((512, 512), Image.NEAREST)  # the speckle is 24 x 24 px here
    settings = [{**default_setting(), "filter_speckle": f} for f in (16, 32)]
    sim = simulate_settings(big, settings)
    assert sim["shapes"].tolist() == [4, 3]  # kept at 16 (576 > 256 px), dropped at 32 (576 < 1024 px)


def test_the_cap_lowers_only_the_settings_the_simulation_sees_losing_detail():
    predicted = np.asarray([0.93, 0.94, 0.95, 0.92], np.float32)
    simulated = np.asarray([0.90, 0.80, 0.95, np.nan])  # setting 1 wipes something out; 3 is not simulated
    capped = cap_by_simulation(predicted, simulated, default=0, cap=0.005)
    np.testing.assert_allclose(capped, [0.93, 0.93 - 0.10 + 0.005, 0.95, 0.92], rtol=1e-6)


def test_the_settings_model_applies_the_cap_and_the_pytorch_recommender_agrees(tmp_path):
    torch = pytest.importorskip("torch")
    from bridge import SettingRecommender
    from bridge.recommender import export_settings_run
    from ssimjax.features.stats import SETTINGS_STATS
    from ssimjax.models.mapnet import MapNet
    from ssimjax.models.setting_head import TARGETS, SettingsModel, init_conditioned_map_net, init_setting_model
    from ssimjax.train.settings import load_settings_model, save_settings_model

    base = default_setting()
    candidates = (base, {**base, "filter_speckle": 8}, {**base, "layer_difference": 128, "mode": "polygon"})
    spec, n = MapNet(), len(TARGETS)
    model = SettingsModel(spec, init_setting_model(SETTINGS_STATS), init_conditioned_map_net(spec),
                          np.zeros(SETTINGS_STATS, np.float32), np.ones(SETTINGS_STATS, np.float32),
                          np.asarray([0.9, 0.9, 8.0], np.float32), np.full(n, 0.1, np.float32), candidates, sim_cap=0.0)
    im = _logo()
    free = dataclasses.replace(model, sim_cap=None).predict(im)
    capped = model.predict(im)
    sim = simulate_settings(im, list(candidates))["ssim"]
    np.testing.assert_allclose(capped["ssim"], np.minimum(free["ssim"], free["ssim"][0] + sim - sim[0]), atol=1e-6)
    assert capped["ssim"][2] < free["ssim"][0] - 0.05  # merging the grey panel away costs at least that
    # Asked for some settings without the defaults, the cap still reads the defaults' prediction.
    np.testing.assert_allclose(model.predict(im, list(candidates[1:]))["ssim"], capped["ssim"][1:], atol=1e-6)
    save_settings_model(tmp_path / "run", model)
    assert load_settings_model(tmp_path / "run").sim_cap == 0.0
    recommender = SettingRecommender.load_checkpoint(export_settings_run(tmp_path / "run", tmp_path / "r.pth"))
    with torch.no_grad():
        np.testing.assert_allclose(recommender.predict_settings(im)["ssim"], capped["ssim"], atol=1e-5)
        np.testing.assert_allclose(recommender.predict_settings(im, list(candidates[1:]))["ssim"], capped["ssim"][1:],
                                   atol=1e-5)


def test_the_sim_cap_flag_takes_a_number_or_off():
    from ssimjax.cli.train_settings import build_parser, config_from

    def cfg(*argv):
        return config_from(build_parser().parse_args(list(argv)))

    assert cfg().sim_cap is None and cfg("--sim-cap", "off").sim_cap is None
    assert cfg("--sim-cap", "0.02").sim_cap == 0.02
    with pytest.raises(ValueError, match=r"sim_cap: must be in \[0, 1\] or None \(got -1.0\)"):
        cfg("--sim-cap", "-1")


def test_the_simulation_scores_ssim_as_scikit_image_does():
    from skimage.metrics import structural_similarity

    from ssimjax.features.vtsim import SSIMReference

    rng = np.random.default_rng(0)
    x = rng.random((40, 52))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    expected = structural_similarity(x, y, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    assert SSIMReference(x)(y) == pytest.approx(expected, abs=1e-9)


def test_transparency_is_simulated_on_white_as_vtracer_is_given_it_and_a_blank_image_is_one_shape():
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # transparent black: white once composited
    ImageDraw.Draw(rgba).rectangle([10, 10, 29, 29], fill=(200, 40, 40, 255))
    flat = Image.new("RGB", (40, 40), "white")
    ImageDraw.Draw(flat).rectangle([10, 10, 29, 29], fill=(200, 40, 40))
    settings = [default_setting()]
    assert simulate_settings(rgba, settings)["shapes"][0] == simulate_settings(flat, settings)["shapes"][0] == 2
    blank = simulate_settings(Image.new("RGB", (1, 1), "white"), settings)
    assert blank["shapes"][0] == 1 and np.isfinite(blank["ssim"][0])
