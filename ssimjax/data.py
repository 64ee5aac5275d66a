"""Manifests of labelled images, their validation, and the model's image preprocessing.

Preprocessing matches what the PyTorch deployment feeds the model: the image as RGB (transparent
parts composited on white, 16-bit scaled to 8-bit), ``Resize((224, 224))`` exactly as torchvision
does it on a PIL image (PIL bilinear with antialiasing), then ``ToTensor`` and ``Normalize`` with
the ImageNet mean and std, laid out NHWC.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

IMAGE_SIZE = 224
IMAGENET_MEAN = np.asarray([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.asarray([0.229, 0.224, 0.225], np.float32)
# Part of every feature-cache key: change it whenever preprocessing changes.
PREPROCESS_VERSION = "rgb-on-white_pil-bilinear-224_imagenet-norm_v1"
MANIFEST_NAMES = ("labels.csv", "labels.json")


class DataError(ValueError):
    """Input data that cannot be used; the message names the file and rows."""


class ImageError(ValueError):
    """One image that cannot be read; the message says why."""


@dataclasses.dataclass(frozen=True)
class Row:
    """One manifest entry. ``where`` names it for messages, e.g. ``labels.csv line 4``."""

    image: Path
    ssim: float
    where: str
    source: str | None = None  # the manifest's optional ``source`` column (e.g. the icon set)


@dataclasses.dataclass(frozen=True)
class Problem:
    where: str
    image: str
    reason: str

    def __str__(self):
        return f"{self.where} ({self.image}): {self.reason}"


def find_manifest(data: str | Path) -> Path:
    path = Path(data)
    if path.is_dir():
        for name in MANIFEST_NAMES:
            if (path / name).is_file():
                return path / name
        raise DataError(f"{path}: folder has no {' or '.join(MANIFEST_NAMES)}")
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.suffix.lower() not in (".csv", ".json"):
        raise DataError(f"{path}: expected a .csv or .json manifest, or a folder holding one")
    return path


def _parse_label(value) -> tuple[float | None, str | None]:
    if isinstance(value, bool) or value is None:
        return None, f"ssim {value!r} is not a number"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None, f"ssim {value!r} is not a number"
    if not math.isfinite(v):
        return None, f"ssim {value!r} is not finite"
    if not 0.0 <= v <= 1.0:
        return None, f"ssim {v} is outside [0, 1]"
    return v, None


def read_manifest(data: str | Path) -> tuple[Path, list[Row], list[Problem]]:
    """Parses a CSV (header ``image,ssim``) or JSON (list of ``{"image", "ssim"}``) manifest.

    Returns the manifest path, the rows whose label is valid and whose image file exists, and a
    problem per other row. Image paths resolve against the manifest's folder.
    """
    manifest = find_manifest(data)
    base = manifest.parent
    entries: list[tuple[str, object, object, object]] = []
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{manifest}: cannot read manifest ({e})") from None
    if manifest.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        header = [h.strip() for h in (reader.fieldnames or [])]
        if "image" not in header or "ssim" not in header:
            raise DataError(f"{manifest}: header must name columns 'image' and 'ssim' (got {header or 'nothing'})")
        reader.fieldnames = header
        for row in reader:
            entries.append((f"{manifest.name} line {reader.line_num}", row.get("image"), row.get("ssim"),
                            row.get("source")))
    else:
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{manifest}: not valid JSON ({e})") from None
        if not isinstance(items, list):
            raise DataError(f"{manifest}: expected a JSON list of {{\"image\", \"ssim\"}} objects")
        for i, item in enumerate(items):
            where = f"{manifest.name} item {i}"
            if not isinstance(item, dict):
                entries.append((where, None, None, None))
            else:
                entries.append((where, item.get("image"), item.get("ssim"), item.get("source")))
    if not entries:
        raise DataError(f"{manifest}: no rows")

    rows, problems = [], []
    for where, image, label, source in entries:
        if not isinstance(image, str) or not image.strip():
            problems.append(Problem(where, repr(image), "no image path"))
            continue
        ssim, why = _parse_label(label.strip() if isinstance(label, str) else label)
        path = (base / image.strip()).resolve()
        if why is None and not path.is_file():
            why = "image file not found"
        if why is not None:
            problems.append(Problem(where, image, why))
        else:
            rows.append(Row(path, ssim, where, str(source).strip() or None if source is not None else None))
    return manifest, rows, problems


def raise_for_problems(manifest: Path, problems: Sequence[Problem], valid: int, skip_invalid: bool, log=None):
    """One error listing every invalid row, or (with ``skip_invalid``) a note of how many were skipped."""
    if not problems:
        return
    if skip_invalid:
        if log is not None:
            log(f"{manifest}: skipped {len(problems)} invalid rows, training on {valid} valid ones")
        return
    lines = "\n".join(f"  {p}" for p in problems)
    raise DataError(
        f"{manifest}: {len(problems)} invalid rows (use --skip-invalid to train on the {valid} valid ones):\n{lines}"
    )


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB as the model sees it: transparency composited on white, 16-bit scaled to 8-bit."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if img.mode == "F":
            scale = 1 / 255 if a.size and np.nanmax(a) <= 1.0 else 1.0
        else:
            scale = 257.0 if (img.mode.startswith("I;16") or (a.size and a.max() > 255)) else 1.0
        a8 = np.clip(np.rint(np.nan_to_num(a) / scale), 0, 255).astype(np.uint8)
        return Image.fromarray(a8, "L").convert("RGB")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def rgb_pixels(img: Image.Image) -> np.ndarray:
    """uint8 RGB (H, W, 3) at the image's own resolution, as :func:`to_rgb` composes it (what the
    pipeline's SSIM, the statistics and the map network see)."""
    return np.asarray(to_rgb(img), np.uint8)


def open_image(data: bytes) -> Image.Image:
    """Decodes image bytes fully, refusing decompression bombs. Raises :class:`ImageError`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"refused as a decompression bomb ({e})") from None
    except Exception as e:  # PIL raises many types for corrupt files
        raise ImageError(f"cannot read image ({type(e).__name__}: {e})") from None
    if img.width < 1 or img.height < 1:
        raise ImageError("image has no pixels")
    return img


def resize_224(img: Image.Image) -> np.ndarray:
    """uint8 (224, 224, 3): RGB, resized as torchvision's ``Resize((224, 224))`` on a PIL image."""
    rgb = to_rgb(img)
    return np.asarray(rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR), dtype=np.uint8)


def normalize(images_uint8: np.ndarray) -> np.ndarray:
    """float32 NHWC, as ``ToTensor`` then ``Normalize(ImageNet mean, std)`` compute it."""
    x = np.asarray(images_uint8).astype(np.float32) / np.float32(255.0)
    return (x - IMAGENET_MEAN) / IMAGENET_STD


def read_file(path: str | Path) -> tuple[bytes, str]:
    """``(the file's bytes, their sha256)``: the one place an image file is read. Raises :class:`ImageError`."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ImageError(f"cannot read file ({e.strerror or e})") from None
    return data, hashlib.sha256(data).hexdigest()


def load_image_file(path: str | Path) -> tuple[np.ndarray, str]:
    """``(uint8 (224, 224, 3), sha256 of the file)``. Raises :class:`ImageError`."""
    data, sha = read_file(path)
    return resize_224(open_image(data)), sha


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def split_indices(n: int, validation_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded shuffle split into (train, val) index arrays; both keep at least two rows."""
    n_val = int(round(n * validation_split))
    n_val = min(max(n_val, 2), n - 2)
    if n < 4:
        raise DataError(f"need at least 4 valid rows to split into training and validation (got {n})")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def split_rows(sources: np.ndarray, validation_split: float, seed: int,
               test_source: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train, val, test)`` row indices: the rows of ``test_source`` (a whole icon set, never
    trained on nor used to stop training) are the test set; the rest split as :func:`split_indices`."""
    sources = np.asarray(sources, dtype=object)
    test = np.zeros(0, np.int64)
    rest = np.arange(len(sources))
    if test_source is not None:
        test = np.flatnonzero(sources == test_source)
        if test.size == 0:
            known = sorted({s for s in sources if s}) or ["none: the manifest has no 'source' column"]
            raise DataError(f"test source {test_source!r} has no rows (sources: {', '.join(known)})")
        rest = np.flatnonzero(sources != test_source)
    train, val = split_indices(len(rest), validation_split, seed)
    return rest[train], rest[val], test
