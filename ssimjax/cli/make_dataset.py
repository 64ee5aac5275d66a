"""Build a labelled data set with the real pipeline:
ssimjax make-dataset --out DIR --source icons|generated --count N [--seed S] [--sets NAMES|ROLE] [--recipes 1|2]"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ssimjax.cli import common as _cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Build labelled images: real logos from public icon sets (icons, fetched "
                                "from the npm registry by pinned version, or read from the cache offline) or "
                                "generated logo-like images (offline); each labelled with the SSIM of its VTracer -> "
                                "resvg round trip. Writes DIR/images/*, DIR/labels.csv, DIR/labels_meta.json and "
                                "DIR/SHA256SUMS; "
                                "a build interrupted halfway continues where it stopped when run again.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--source", choices=("icons", "generated"), default="icons", help="default icons")
    p.add_argument("--count", type=int, required=True, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--sets", default="default",
                   help="icon sets to draw from, evenly: comma-separated names, or a role of the fixed split "
                        "(train, selection, report), or all, or default (the five the default run trains on); "
                        "docs/data.md lists them")
    p.add_argument("--recipes", type=int, choices=(1, 2), default=1,
                   help="how icons are rasterised: 1 (48-512 px, drawn at size; default) or 2 (24-1024 px, drawn "
                        "larger and downscaled by one of five filters, gradient backgrounds too, JPEG 35-95)")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (default: every core)")
    p.add_argument("--cache-dir", help="where npm packages are cached (default $SSIMJAX_CACHE_DIR or ~/.cache/ssimjax)")
    args = p.parse_args(argv)
    if args.count < 1:
        p.error(f"--count: must be >= 1 (got {args.count})")
    if args.workers is not None and args.workers < 1:
        p.error(f"--workers: must be >= 1 (got {args.workers})")
    from ssimjax.data.sets import sources_named

    try:
        sources = sources_named(args.sets)
    except ValueError as e:
        p.error(f"--sets: {e}")
    from tqdm.auto import tqdm

    from ssimjax.data.build import write_checksums
    from ssimjax.data.demo import make_dataset
    from ssimjax.data.logoset import make_icon_dataset
    from ssimjax.data.npm import PackageError

    _cli.setup_logging()
    t0 = time.perf_counter()
    with tqdm(total=args.count, unit="img", disable=None) as bar:
        try:
            if args.source == "icons":
                labels = make_icon_dataset(args.out, args.count, args.seed, workers=args.workers, progress=bar.update,
                                           sources=sources, cache_dir=args.cache_dir, log=print, recipes=args.recipes)
            else:
                labels = make_dataset(args.out, args.count, args.seed, workers=args.workers, progress=bar.update)
        except PackageError as e:
            _cli.fail(str(e), 1)
    write_checksums(args.out)
    rows = sum(1 for _ in open(labels)) - 1
    print(f"wrote {rows} labelled images to {labels} in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
