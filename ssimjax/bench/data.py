"""The benchmark's data: generated logo-like images of 224x224, labelled by the real pipeline and cached; read back and split as a run splits them."""

from __future__ import annotations

from pathlib import Path


def _label_one(args):
    from ssimjax.data.demo import generate_image
    from ssimjax.data.labelling import conversion_ssim

    index, out = args
    img = generate_image(7, index)[0].resize((224, 224))
    name = f"images/bench_{index:04d}.png"
    img.save(Path(out) / name)
    return name, conversion_ssim(img)


def bench_data(cache_dir: Path, count: int) -> Path:
    """``count`` generated logo-like images of 224x224, labelled by the real pipeline; cached."""
    from ssimjax.data.labelling import build_cached, run_jobs

    def build(tmp: Path):
        (tmp / "images").mkdir(parents=True)
        rows = run_jobs(_label_one, [(i, str(tmp)) for i in range(count)])
        (tmp / "labels.csv").write_text("image,ssim\n" + "".join(f"{n},{s:.6f}\n" for n, s in rows))

    return build_cached(cache_dir / "bench" / f"v1-n{count}", build)


def load_split(data: Path, seed: int = 0):
    """Preprocessed uint8 images and labels, split as ssimjax train splits them (80/20, seeded)."""
    import numpy as np

    from ssimjax.data.images import open_image, read_file, resize_224
    from ssimjax.data.manifest import read_manifest, split_indices

    _, rows, _ = read_manifest(data)
    pixels = np.stack([resize_224(open_image(read_file(r.image)[0])) for r in rows])
    y = np.asarray([r.ssim for r in rows], np.float32)
    tr, va = split_indices(len(rows), 0.2, seed)
    return pixels, y, tr, va
