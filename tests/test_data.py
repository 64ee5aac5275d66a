import json

import numpy as np
import pytest
from PIL import Image

from ssimjax.data.manifest import DataError, raise_for_problems, read_manifest, split_indices
from ssimjax.data.images import ImageError, load_image_file, normalize, open_image, resize_224, to_rgb


def write_png(path, size=(40, 30), color=(200, 30, 30), mode="RGB"):
    Image.new(mode, size, color).save(path)
    return path


def test_csv_json_and_folder_manifests_resolve_paths_against_the_manifest(tmp_path):
    (tmp_path / "imgs").mkdir()
    write_png(tmp_path / "imgs" / "a.png")
    write_png(tmp_path / "imgs" / "b.png")
    (tmp_path / "labels.csv").write_text("image,ssim\nimgs/a.png,0.5\nimgs/b.png,1\n")
    manifest, rows, problems = read_manifest(tmp_path)
    assert manifest.name == "labels.csv" and not problems
    assert [r.ssim for r in rows] == [0.5, 1.0] and rows[0].image == (tmp_path / "imgs" / "a.png").resolve()

    other = tmp_path / "other"
    other.mkdir()
    (other / "labels.json").write_text(json.dumps([{"image": "../imgs/a.png", "ssim": 0.25}]))
    _, rows, problems = read_manifest(other)
    assert rows[0].ssim == 0.25 and rows[0].image.is_file() and not problems
    _, rows, _ = read_manifest(other / "labels.json")
    assert len(rows) == 1


def test_every_invalid_row_is_listed_in_one_error(tmp_path):
    write_png(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"this is not a png")
    # A real decompression bomb: tiny file, over PIL's pixel limit.
    Image.new("1", (10_000, 10_000)).save(tmp_path / "bomb.png")
    (tmp_path / "labels.csv").write_text(
        "image,ssim\nok.png,0.9\nmissing.png,0.5\nok.png,nan\nok.png,1.5\nok.png,abc\nbroken.png,0.4\nbomb.png,0.3\n"
    )
    manifest, rows, problems = read_manifest(tmp_path)
    # Unreadable images are found when they are decoded; the training pipeline adds them.
    for row in list(rows):
        try:
            load_image_file(row.image)
        except ImageError as e:
            from ssimjax.data.manifest import Problem
            problems.append(Problem(row.where, row.image.name, str(e)))
    with pytest.raises(DataError) as info:
        raise_for_problems(manifest, problems, valid=1, skip_invalid=False)
    msg = str(info.value)
    assert "6 invalid rows" in msg and "--skip-invalid" in msg
    for expected in ("line 3 (missing.png): image file not found", "line 4 (ok.png): ssim 'nan' is not finite",
                     "line 5 (ok.png): ssim 1.5 is outside [0, 1]", "line 6 (ok.png): ssim 'abc' is not a number",
                     "line 7 (broken.png): cannot read image", "line 8 (bomb.png): refused as a decompression bomb"):
        assert expected in msg, msg
    notes = []
    raise_for_problems(manifest, problems, valid=1, skip_invalid=True, log=notes.append)
    assert "skipped 6 invalid rows" in notes[0]


def test_bad_manifests_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no labels.csv or labels.json"):
        read_manifest(tmp_path)
    (tmp_path / "x.csv").write_text("path,score\na.png,0.5\n")
    with pytest.raises(DataError, match="x.csv: header must name columns 'image' and 'ssim'"):
        read_manifest(tmp_path / "x.csv")
    (tmp_path / "y.json").write_text("{\"image\": 1}")
    with pytest.raises(DataError, match="y.json: expected a JSON list"):
        read_manifest(tmp_path / "y.json")
    with pytest.raises(DataError, match="nope.csv: no such file"):
        read_manifest(tmp_path / "nope.csv")


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "LA", "1", "RGB"])
def test_every_image_mode_becomes_rgb_224(tmp_path, mode):
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))
    if mode == "I;16":
        img = Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257).astype(np.uint16))
        assert img.mode == "I;16"
    elif mode == "P":
        img = rgb.convert("P")
    else:
        img = rgb.convert(mode)
    img.save(tmp_path / "x.png" if mode != "CMYK" else tmp_path / "x.jpg")
    arr, sha = load_image_file(tmp_path / ("x.png" if mode != "CMYK" else "x.jpg"))
    assert arr.shape == (224, 224, 3) and arr.dtype == np.uint8 and len(sha) == 64
    if mode == "I;16":  # 16-bit scaled down, not clipped to white
        expected = resize_224(rgb.convert("L"))
        assert np.abs(arr.astype(int) - expected.astype(int)).max() <= 1


def test_transparency_is_composited_on_white():
    img = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    assert np.all(np.asarray(to_rgb(img)) == 255)
    half = Image.new("RGBA", (10, 10), (0, 0, 0, 128))
    assert np.all(np.abs(np.asarray(to_rgb(half)).astype(int) - 127) <= 1)


def test_preprocessing_is_torchvisions(tmp_path):
    pytest.importorskip("torch")
    from torchvision import transforms

    rng = np.random.default_rng(1)
    tv = transforms.Compose([
        transforms.Resize((224, 224)), transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    for size in [(640, 480), (97, 301), (224, 224), (50, 50)]:
        img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        ours = normalize(resize_224(img)[None])[0]
        ref = tv(img).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(ours, ref)


def test_open_image_rejects_empty_and_truncated_files():
    with pytest.raises(ImageError, match="cannot read image"):
        open_image(b"")


def test_split_is_seeded_and_disjoint():
    a_tr, a_va = split_indices(100, 0.2, 0)
    b_tr, b_va = split_indices(100, 0.2, 0)
    c_tr, _ = split_indices(100, 0.2, 1)
    assert np.array_equal(a_tr, b_tr) and not np.array_equal(a_tr, c_tr)
    assert len(a_va) == 20 and not set(a_tr) & set(a_va) and len(set(a_tr) | set(a_va)) == 100
    with pytest.raises(DataError, match="at least 4 valid rows"):
        split_indices(3, 0.2, 0)
