"""Build a labelled data set with the real pipeline:
ssimjax make-dataset --out DIR --source icons|generated --count N [--seed S] [--sets NAMES|ROLE] [--recipes 1|2]
    [--vtracer-settings K]"""

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
    p.add_argument("--recipes", type=int, choices=(1, 2, 3),
                   help="how icons are rasterised: 1 (48-512 px, drawn at size; the default) or 2 (24-1024 px, drawn "
                        "larger and downscaled by one of five filters, gradient backgrounds too, JPEG 35-95) or 3 (2, "
                        "drawn at most 1536 px large: the default run's)")
    p.add_argument("--vtracer-settings", type=int, metavar="K",
                   help="icons: convert each logo with K VTracer settings (its defaults first, the others drawn from "
                        "the space docs/data.md describes) and label each conversion (luminance and colour SSIM, SVG "
                        "bytes and paths): writes DIR/settings.csv instead of labels.csv (recipes 2 unless given)")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (default: every core)")
    p.add_argument("--cache-dir", help="where npm packages are cached (default $SSIMJAX_CACHE_DIR or ~/.cache/ssimjax)")
    args = p.parse_args(argv)
    if args.count < 1:
        p.error(f"--count: must be >= 1 (got {args.count})")
    if args.workers is not None and args.workers < 1:
        p.error(f"--workers: must be >= 1 (got {args.workers})")
    if args.vtracer_settings is not None and (args.vtracer_settings < 1 or args.source != "icons"):
        p.error(f"--vtracer-settings: must be >= 1, with --source icons (got {args.vtracer_settings}, {args.source})")
    if args.recipes is None:
        args.recipes = 2 if args.vtracer_settings else 1
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
            if args.vtracer_settings:
                from ssimjax.data.vtsettings import make_settings_dataset

                labels = make_settings_dataset(args.out, args.count, args.vtracer_settings, args.seed, sources,
                                               args.cache_dir, args.recipes, workers=args.workers,
                                               progress=bar.update, log=print)
            elif args.source == "icons":
                labels = make_icon_dataset(args.out, args.count, args.seed, workers=args.workers, progress=bar.update,
                                           sources=sources, cache_dir=args.cache_dir, log=print, recipes=args.recipes)
            else:
                labels = make_dataset(args.out, args.count, args.seed, workers=args.workers, progress=bar.update)
        except PackageError as e:
            _cli.fail(str(e), 1)
    write_checksums(args.out)
    rows = sum(1 for _ in open(labels)) - 1
    what = "labelled conversions" if args.vtracer_settings else "labelled images"
    print(f"wrote {rows} {what} to {labels} in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
