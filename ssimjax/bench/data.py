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
    return index, [name, conversion_ssim(img)], [name]


def bench_data(cache_dir: Path, count: int) -> Path:
    """``count`` generated logo-like images of 224x224, labelled by the real pipeline; cached."""
    from ssimjax.data.build import build_cached, resumable_jobs
    from ssimjax.files import write_text_atomic

    def build(folder: Path):
        (folder / "images").mkdir(parents=True, exist_ok=True)
        jobs = {i: (i, str(folder)) for i in range(count)}
        rows = resumable_jobs(folder, _label_one, jobs, {"kind": "bench", "count": count})
        write_text_atomic(folder / "labels.csv", "image,ssim\n" + "".join(f"{n},{s:.6f}\n" for _, (n, s) in rows))

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
