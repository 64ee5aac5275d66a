#!/usr/bin/env python
"""Build a labelled data set with the real pipeline: python scripts/make_dataset.py --out DIR --count N [--seed S]"""

from __future__ import annotations

import argparse
import os
import sys
import time

import _cli  # noqa: F401  (puts the checkout on sys.path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Generate logo-like images and label each with the SSIM of its "
                                "VTracer -> resvg round trip. Writes DIR/images/*.png and DIR/labels.csv.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--count", type=int, required=True, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (default: every core)")
    args = p.parse_args(argv)
    if args.count < 1:
        p.error(f"--count: must be >= 1 (got {args.count})")
    if args.workers is not None and args.workers < 1:
        p.error(f"--workers: must be >= 1 (got {args.workers})")
    from tqdm.auto import tqdm

    from ssimjax.demo import make_dataset

    t0 = time.perf_counter()
    with tqdm(total=args.count, unit="img", disable=None) as bar:
        labels = make_dataset(args.out, args.count, args.seed, workers=args.workers, progress=bar.update)
    print(f"wrote {args.count} labelled images to {labels} in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
