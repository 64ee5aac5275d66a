"""Images: the one read-hash-decode path, and the model's preprocessing.

Preprocessing matches what the PyTorch deployment feeds the model: the image as RGB (transparent
parts composited on white, 16-bit scaled to 8-bit), ``Resize((224, 224))`` exactly as torchvision
does it on a PIL image (PIL bilinear with antialiasing), then ``ToTensor`` and ``Normalize`` with
the ImageNet mean and std, laid out NHWC.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SIZE = 224
IMAGENET_MEAN = np.asarray([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.asarray([0.229, 0.224, 0.225], np.float32)
# Part of every feature-cache key: change it whenever preprocessing changes.
PREPROCESS_VERSION = "rgb-on-white_pil-bilinear-224_imagenet-norm_v1"


class ImageError(ValueError):
    """One image that cannot be read; the message says why."""


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


def array_image(a: np.ndarray, what: str = "array") -> Image.Image:
    """A uint8 pixel array as a PIL image: (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA, at its own
    resolution (transparency is composited on white later, as for files). Raises
    :class:`ImageError` for any other dtype or shape, in one line naming ``what``."""
    a = np.asarray(a)
    if a.dtype != np.uint8:
        raise ImageError(f"{what}: pixels must be uint8 (0-255), not {a.dtype}; a preprocessed float array "
                         "is not an image (pass the image's own pixels, path or PIL image)")
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4))) or 0 in a.shape:
        raise ImageError(f"{what}: shape {a.shape} is not an image; expected (H, W), (H, W, 3) RGB or (H, W, 4) RGBA")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    mode = "L" if a.ndim == 2 else {3: "RGB", 4: "RGBA"}[a.shape[2]]
    return Image.fromarray(np.ascontiguousarray(a), mode)


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


def in_threads(fn, items) -> list:
    """``[fn(x) for x in items]`` on a thread per core: reading, decoding (Pillow) and decompressing
    (zlib) release the GIL, so files are read on every core at once."""
    items = list(items)
    workers = min(os.cpu_count() or 1, len(items))
    if workers < 2:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def rgb_pixels_and_sha(path: str | Path) -> tuple[np.ndarray, str]:
    """``(uint8 (H, W, 3) as the map network sees the file, its sha256)``. Raises :class:`ImageError`."""
    data, sha = read_file(path)
    return rgb_pixels(open_image(data)), sha


def load_image_file(path: str | Path) -> tuple[np.ndarray, str]:
    """``(uint8 (224, 224, 3), sha256 of the file)``. Raises :class:`ImageError`."""
    data, sha = read_file(path)
    return resize_224(open_image(data)), sha




def as_image(item, what: str | None = None) -> Image.Image:
    """A PIL image from a file path, a PIL image or a uint8 array (:func:`array_image`). Raises
    :class:`ImageError` in one line naming the file (or ``what``)."""
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, np.ndarray):
        return array_image(item, what or "array")
    try:
        return open_image(read_file(item)[0])
    except ImageError as e:
        raise ImageError(f"{item}: {e}") from None
