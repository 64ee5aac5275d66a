"""K-fold cross-validation: ssimjax cross-validate --data DATA --folds K --out DIR

Trains the model afresh on each fold (min(20, epochs) epochs; stratified by quality band with
scikit-learn's StratifiedKFold, shuffled, seed 42) and writes DIR/validation_results.json (each
fold's metrics and a summary: mean, std, min, max, median per metric) and
DIR/cross_validation.png. With cached inputs (frozen backbone) the folds train together in one
vectorised program. ``--checkpoint RUN`` takes the run's configuration and adds the results to
RUN's report (RUN/report/, dashboard rebuilt).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ssimjax.cli import common as _cli
from ssimjax.config import DEFAULT_DEMO_COUNT, DEFAULT_ICON_COUNT, ConfigError, TrainConfig
from ssimjax.data.manifest import DataError
from ssimjax.data.npm import PackageError
from ssimjax.evaluate.cross_validation import ValidationError, cross_validate
from ssimjax.evaluate.figures import plot_cross_validation
from ssimjax.evaluate.predict import load_run
from ssimjax.evaluate.report import write_report
from ssimjax.features.cache import default_cache_dir
from ssimjax.features.inputs import build_inputs
from ssimjax.models.quality import merge_backbone, split_backbone
from ssimjax.train.losses import LOSSES
from ssimjax.train.plan import RunError, resolve_data
from ssimjax.train.state import Trainer, create_train_state


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    _cli.enable_compilation_cache(args.cache_dir)
    _cli.setup_logging()
    try:
        config, base, inputs, facts = _inputs(args)
    except (ConfigError, DataError, RunError, PackageError) as e:
        _cli.fail(str(e), 1)
    out = Path(args.out) if args.out else (Path(args.checkpoint) / "report" if args.checkpoint
                                           else Path("runs") / time.strftime("cv-%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        results = cross_validate(config, inputs, args.folds, args.stratify, base_variables=base)
        if args.compare_one_fold:
            one = cross_validate(config, inputs, args.folds, args.stratify, base_variables=base, fold_subset=[0])
            results["one_fold_time_s"] = one["total_time_s"]
            results["all_folds_over_one_fold"] = results["total_time_s"] / one["total_time_s"]
    except ValidationError as e:
        _cli.fail(str(e), 1)
    results.update(data=facts["manifest"], config=config.to_dict(),
                   written=time.strftime("%Y-%m-%d %H:%M:%S"))
    (out / "validation_results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot_cross_validation(results, out / "cross_validation.png")
    if args.checkpoint:
        write_report(args.checkpoint)
    _print_results(results, args.folds, out)
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].split(": ", 1)[0])
    p.add_argument("--data", help="a manifest, a folder holding one, or icons / generated (default: the --checkpoint "
                   "run's data, else icons)")
    p.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    p.add_argument("--out", help="output folder (default: RUN/report with --checkpoint, else runs/cv-TIMESTAMP)")
    p.add_argument("--checkpoint", metavar="RUN_DIR", help="cross-validate this run's configuration and add the "
                   "results to its report")
    p.add_argument("--no-stratify", dest="stratify", action="store_false", help="plain shuffled KFold")
    p.add_argument("--epochs", type=int, help="epochs per fold: min(20, this) (default: the configuration's)")
    p.add_argument("--loss", choices=LOSSES)
    p.add_argument("--backbone", choices=("resnet50", "tiny"))
    p.add_argument("--plan-model", action="store_true", help="the plan's model (2048 backbone features, no statistics)")
    p.add_argument("--seed", type=int, help="model seed (the split's seed is the plan's 42)")
    p.add_argument("--test-source", help="leave this manifest source out of the folds entirely")
    p.add_argument("--compare-one-fold", action="store_true",
                   help="also train the first fold alone and report the time ratio")
    p.add_argument("--skip-invalid", action="store_true")
    p.add_argument("--cache-dir", help="feature cache and built-in sets (default $SSIMJAX_CACHE_DIR or ~/.cache/ssimjax)")
    p.add_argument("--demo-count", type=int, default=DEFAULT_DEMO_COUNT)
    p.add_argument("--icon-count", type=int, default=DEFAULT_ICON_COUNT)
    return p


def _inputs(args) -> tuple:
    """``(configuration, base variables, inputs, data facts)``: a run's configuration and backbone
    (``--checkpoint``) or a fresh one, with the flags' changes, and the data's cached inputs."""
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    changes = {k: v for k, v in (("epochs", args.epochs), ("loss", args.loss), ("backbone", args.backbone),
                                 ("seed", args.seed)) if v is not None}
    if args.checkpoint:
        run = load_run(args.checkpoint)
        config, data = run.config.replace(**changes), args.data or run.facts["data"]["manifest"]
        base = run.state.variables  # the run's backbone (pretrained or seeded), so cached features match
    else:
        config = (TrainConfig.plan_model if args.plan_model else TrainConfig)(**changes)
        data, base = args.data or "icons", None
    if config.map_net:
        # The map network trains once per run, on its training rows: its scores would leak
        # into folds it saw, and one per fold costs minutes. Folds compare the MLP alone.
        print("cross-validating the statistics MLP without the map score (the map network is not "
              "retrained per fold)")
        config = config.replace(map_net=False)
        if base is not None:  # the run's backbone, under an MLP of the narrower input
            base = merge_backbone(create_train_state(config).variables, split_backbone(base)[0])
    trainer = Trainer.from_config(config)
    if base is None:
        base = create_train_state(config).variables
    data = resolve_data(data, cache_dir, args.demo_count, args.icon_count, log=print)
    inputs, facts, _ = build_inputs(trainer, base, data, cache_dir, args.skip_invalid)
    sources = inputs.pop("source").astype(str)
    inputs.pop("path")
    if args.test_source:
        keep = sources != args.test_source
        if keep.all():
            _cli.fail(f"--test-source {args.test_source!r}: no such source in {facts['manifest']}", 1)
        inputs = {k: v[keep] for k, v in inputs.items()}
    return config, base, inputs, facts


def _print_results(results: dict, folds: int, out: Path) -> None:
    s = results["summary"]
    print(f"{results['folds']}-fold cross-validation on {results['rows']} rows ({results['strata']}), "
          f"{results['epochs']} epochs per fold, {results['total_time_s']:.1f} s"
          f"{' (vectorised)' if results['vectorised'] else ''}")
    print(f"{'metric':18s} {'mean':>8s} {'std':>8s} {'min':>8s} {'max':>8s} {'median':>8s}")
    for k in ("correlation", "srcc", "krcc", "mae", "rmse", "r2_score", "ranking_accuracy", "accuracy_5pct"):
        v = s[k]
        print(f"{k:18s} {v['mean']:8.4f} {v['std']:8.4f} {v['min']:8.4f} {v['max']:8.4f} {v['median']:8.4f}")
    if "all_folds_over_one_fold" in results:
        print(f"time: {folds} folds {results['total_time_s']:.2f} s, one fold {results['one_fold_time_s']:.2f} s, "
              f"ratio {results['all_folds_over_one_fold']:.2f}")
    print(f"wrote {out / 'validation_results.json'} and {out / 'cross_validation.png'}")
