import csv

import numpy as np
from PIL import Image

from ssimjax.train.mapnet import cached_ssim_maps, read_pixels_and_shas
from ssimjax.data.labelling import conversion_ssim_map
from ssimjax.data.wordmarks import draw_wordmark, wordmark_folder


def test_wordmarks_are_reproducible_small_and_varied():
    assert draw_wordmark(0, 3) == draw_wordmark(0, 3)
    drawn = [draw_wordmark(0, i) for i in range(30)]
    assert len({data for _, data, _ in drawn}) == 30
    assert {kind for kind, _, _ in drawn} == {"word", "mark_and_word", "line_art"}
    assert {ext for _, _, ext in drawn} == {"png", "jpg"}
    import io

    sizes = [Image.open(io.BytesIO(data)).size for _, data, _ in drawn]
    assert max(max(s) for s in sizes) <= 400 and min(min(s) for s in sizes) >= 1
    # Letters a few pixels tall are the point: some images are under 24 px high.
    assert any(h < 24 for _, h in sizes)


def test_wordmark_set_is_labelled_by_the_pipeline_and_cached(tmp_path):
    folder = wordmark_folder(tmp_path, 8, seed=3)
    rows = list(csv.DictReader((folder / "labels.csv").open()))
    paths = [folder / r["image"] for r in rows]
    assert 6 <= len(paths) <= 8 and all(p.is_file() for p in paths)
    first = rows[0]
    ssim, ssim_map = conversion_ssim_map(Image.open(paths[0]))
    assert abs(float(first["ssim"]) - ssim) < 1e-5 and first["source"] == "wordmarks"
    # Their SSIM maps are in the cache the map network reads: nothing left to compute.
    pixels, shas = read_pixels_and_shas(paths)
    logs = []
    maps = cached_ssim_maps(paths, shas, tmp_path, log=logs.append)
    assert not logs and np.allclose(maps[0], ssim_map, atol=1e-3)
    # And their statistics, what a run computes from the files.
    from ssimjax.data.images import open_image, read_file
    from ssimjax.features.cache import stats_cache
    from ssimjax.features.stats import image_statistics

    for path, sha in zip(paths, shas):
        np.testing.assert_array_equal(stats_cache(tmp_path).get(sha), image_statistics(open_image(read_file(path)[0])))
    stamp = paths[0].stat().st_mtime_ns
    assert wordmark_folder(tmp_path, 8, seed=3) == folder and paths[0].stat().st_mtime_ns == stamp
    assert wordmark_folder(tmp_path, 0) is None
