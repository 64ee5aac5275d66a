"""Score a trained run on any labelled set: ssimjax evaluate --checkpoint RUN_DIR --data DATA [--json]

Prints SRCC, PLCC, KRCC, MAE and RMSE overall, per source when the manifest has a ``source`` column,
and by the image's long side (<48, 48-95, 96-255, >=256 px) when the model reads image statistics.
DATA is a manifest (CSV or JSON), a folder holding one, or a built-in set (icons, generated).
"""

from __future__ import annotations

import argparse
import json
import sys

from ssimjax.cli import common as _cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].split(": ", 1)[0])
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR", help="a run folder written by ssimjax train")
    p.add_argument("--data", required=True, help="a manifest, a folder holding labels.csv/labels.json, or icons/generated")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("--skip-invalid", action="store_true", help="score the valid rows, skipping invalid ones")
    p.add_argument("--cache-dir", help="feature cache and built-in sets (default $SSIMJAX_CACHE_DIR or ~/.cache/ssimjax)")
    args = p.parse_args(argv)
    _cli.enable_compilation_cache(args.cache_dir)
    _cli.setup_logging(verbose=False)
    from pathlib import Path

    from ssimjax.config import DEFAULT_DEMO_COUNT, DEFAULT_ICON_COUNT
    from ssimjax.data.manifest import DataError
    from ssimjax.data.npm import PackageError
    from ssimjax.evaluate.metrics import quality_metrics, rows_by_size
    from ssimjax.evaluate.predict import load_run
    from ssimjax.features.cache import default_cache_dir
    from ssimjax.features.inputs import build_inputs
    from ssimjax.train.fit import predict
    from ssimjax.train.plan import RunError, resolve_data

    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    try:
        run = load_run(args.checkpoint)
        data = resolve_data(args.data, cache_dir, DEFAULT_DEMO_COUNT, DEFAULT_ICON_COUNT)
        inputs, facts, _ = build_inputs(run.trainer, run.state.variables, data, cache_dir, args.skip_invalid,
                                        map_model=run.map_model)
    except (DataError, RunError, PackageError) as e:
        _cli.fail(str(e), 1)
    sources = inputs.pop("source").astype(str)
    inputs.pop("path")
    pred = predict(run.trainer, run.state, inputs, run.config.eval_batch_size)
    result = {"checkpoint": str(args.checkpoint), "data": facts["manifest"], "overall": quality_metrics(pred, inputs["ssim"]),
              "per_source": {s: quality_metrics(pred[sources == s], inputs["ssim"][sources == s])
                             for s in sorted(set(sources) - {""})}}
    per_size = rows_by_size(pred, inputs)
    if per_size:
        result["per_size"] = per_size
    trained = run.facts.get("data", {})
    if trained.get("manifest_sha256") == facts["manifest_sha256"]:
        result["note"] = "this is the data the run trained on: only its test source, if any, was never seen"
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'set':22s} {'n':>6s} {'SRCC':>7s} {'PLCC':>7s} {'KRCC':>7s} {'MAE':>7s} {'RMSE':>7s}")
    rows = [("overall", result["overall"]), *result["per_source"].items(),
            *((f"long side {band}", m) for band, m in result.get("per_size", {}).items())]
    for name, m in rows:
        print(f"{name:22s} {m['count']:6d} {m['srcc']:7.4f} {m['plcc']:7.4f} {m['krcc']:7.4f} {m['mae']:7.4f} "
              f"{m['rmse']:7.4f}")
    if "note" in result:
        print(f"note: {result['note']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
