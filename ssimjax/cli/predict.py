"""Predict the SSIM a VTracer conversion will reach: ssimjax predict --checkpoint RUN_DIR IMAGE... [--json]"""

from __future__ import annotations

import argparse
import json
import sys

from ssimjax.cli import common as _cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Predict SSIM per image with the best weights of a training run.")
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR", help="a run folder written by ssimjax train")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="print one JSON object mapping each path to its prediction")
    args = p.parse_args(argv)
    _cli.enable_compilation_cache()
    _cli.setup_logging(verbose=False)

    from ssimjax.data.manifest import DataError
    from ssimjax.evaluate.predict import load_run, predict_files
    from ssimjax.train.plan import RunError

    try:
        preds = predict_files(load_run(args.checkpoint), args.images)
    except (DataError, RunError) as e:
        _cli.fail(str(e), 1)
    if args.json:
        print(json.dumps({path: float(v) for path, v in zip(args.images, preds)}))
    else:
        for path, v in zip(args.images, preds):
            print(f"{path}\t{float(v):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
