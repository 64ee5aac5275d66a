"""Robustness, inference benchmark and feature importance of a trained run: ssimjax analyze --checkpoint RUN_DIR [--data DATA]

Writes RUN/report/robustness.json, benchmark.json and feature_importance.json and rebuilds the
run's report (figures, training_dashboard.html, training_summary.json). Without --data the run's
own validation rows are analysed (what ssimjax train does at the end of a run); with it, every row
of DATA.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssimjax.cli import common as _cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].split(": ", 1)[0])
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR", help="a run folder written by ssimjax train")
    p.add_argument("--data", help="a manifest, a folder holding one, or icons / generated (default: the run's "
                   "validation rows)")
    p.add_argument("--samples", type=int, default=100, help="images analysed, a seeded choice (default 100)")
    p.add_argument("--skip-invalid", action="store_true")
    p.add_argument("--cache-dir", help="feature cache and built-in sets (default $SSIMJAX_CACHE_DIR or ~/.cache/ssimjax)")
    args = p.parse_args(argv)
    _cli.enable_compilation_cache(args.cache_dir)
    if args.samples < 1:
        p.error(f"--samples: must be >= 1 (got {args.samples})")
    _cli.setup_logging()
    from ssimjax.config import DEFAULT_DEMO_COUNT, DEFAULT_ICON_COUNT
    from ssimjax.data.manifest import DataError, split_rows
    from ssimjax.data.npm import PackageError
    from ssimjax.evaluate.analysis import run_analyses
    from ssimjax.evaluate.predict import load_run
    from ssimjax.evaluate.report import write_report
    from ssimjax.features.cache import default_cache_dir
    from ssimjax.features.inputs import build_inputs
    from ssimjax.models.mapnet import with_map_scores
    from ssimjax.train.plan import RunError, resolve_data

    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    try:
        run = load_run(args.checkpoint)
        data = args.data or run.facts["data"]["manifest"]
        data = resolve_data(data, cache_dir, DEFAULT_DEMO_COUNT, DEFAULT_ICON_COUNT)
        inputs, facts, _ = build_inputs(run.trainer, run.state.variables, data, cache_dir, args.skip_invalid)
    except (DataError, RunError, PackageError) as e:
        _cli.fail(str(e), 1)
    sources, paths = inputs.pop("source"), inputs.pop("path")
    if args.data is None:  # the run's own validation rows, split as ssimjax train split them
        c = run.config
        _, val_idx, _ = split_rows(sources, c.validation_split, c.seed, c.test_source)
        inputs, paths = {k: v[val_idx] for k, v in inputs.items()}, paths[val_idx]
    if run.map_model is not None:  # scored after the split: the map network is most of the cost
        inputs["stats"] = with_map_scores(inputs["stats"], list(paths), run.map_model)
    out = Path(args.checkpoint) / "report"
    results = run_analyses(run.trainer, run.state, list(paths), inputs, out, samples=args.samples,
                           batch_size=run.config.batch_size, seed=run.config.seed, map_model=run.map_model)
    written = write_report(args.checkpoint)
    r, b, f = results["robustness"], results["benchmark"], results["feature_importance"]
    print(f"robustness ({r['images']} images): correlation with clean predictions under noise "
          + ", ".join(f"{s}: {r[f'noise_correlation_{s}']:.4f}" for s in r["noise_levels"])
          + f"; spread over repeated passes {r['prediction_consistency']:.2e}")
    print(f"benchmark: {b['avg_inference_time_per_image'] * 1e3:.2f} ms per image from decoded image "
          f"({b['model_time_per_image'] * 1e3:.3f} ms in the model), {b['images_per_second']:.0f} images/s, "
          f"peak memory {b['peak_memory_mb']:.0f} MB")
    print("most important inputs: " + ", ".join(t["name"] for t in f["top_important_features"][:5]))
    print(f"report: {written['dashboard']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
