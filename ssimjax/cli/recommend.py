"""The VTracer setting to convert each logo with:
ssimjax recommend --checkpoint RUN_DIR IMAGE... [--min-ssim X | --max-bytes N] [--verify] [--search N] [--json]
                  [--svg-dir DIR]"""

from __future__ import annotations

import argparse
import json
import sys

from ssimjax.cli import common as _cli

JSON_KEYS = ("params", "predicted_ssim", "predicted_bytes", "ssim", "rgb_ssim", "bytes", "default_ssim",
             "default_rgb_ssim", "default_bytes")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Choose VTracer's parameters for each image with a settings run "
                                "(ssimjax train --vtracer-parameters): the setting that keeps the target quality "
                                "at the smallest predicted SVG, or the best quality within a size.")
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR", help="a settings run folder")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--min-ssim", type=float, metavar="X",
                        help="luminance and colour SSIM to keep, capped at what the defaults reach (default 0.95)")
    target.add_argument("--max-bytes", type=float, metavar="N", help="the best quality whose SVG is at most N bytes")
    p.add_argument("--verify", action="store_true",
                   help="convert with the chosen setting and with the defaults and report the real figures")
    p.add_argument("--search", type=int, default=0, metavar="N",
                   help="convert the defaults and up to N candidates, most promising first, and keep the smallest "
                   "SVG that really meets the target (or the best really within --max-bytes); implies --verify")
    p.add_argument("--svg-dir", metavar="DIR", help="write each image's SVG converted with its setting here")
    p.add_argument("--json", action="store_true", help="print one JSON object mapping each path to its result")
    args = p.parse_args(argv)
    if args.min_ssim is not None and not 0 < args.min_ssim <= 1:
        p.error(f"--min-ssim: must be in (0, 1] (got {args.min_ssim})")
    if args.max_bytes is not None and args.max_bytes <= 0:
        p.error(f"--max-bytes: must be > 0 (got {args.max_bytes})")
    if args.search < 0:
        p.error(f"--search: must be >= 0 (got {args.search})")
    _cli.enable_compilation_cache()
    _cli.setup_logging(verbose=False)

    from ssimjax.evaluate.recommend import describe, recommend
    from ssimjax.train.settings import SettingsRunError

    try:
        results = recommend(args.checkpoint, args.images, min_ssim=args.min_ssim, max_bytes=args.max_bytes,
                            verify=args.verify, svg_dir=args.svg_dir, search=args.search)
    except (SettingsRunError, ValueError) as e:
        _cli.fail(str(e), 1)
    if args.json:
        print(json.dumps({k: {**{f: r[f] for f in JSON_KEYS}, "predicted_rgb_ssim": r["predicted_rgb_ssim"],
                              "verified": r["verified"], **({"conversions": r["conversions"]} if args.search else {})}
                          for k, r in results.items()}))
    else:
        for key, r in results.items():
            print(describe(key, r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
