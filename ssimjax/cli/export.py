"""Export a run's best weights for the PyTorch deployment: ssimjax export --checkpoint RUN_DIR --out FILE"""

from __future__ import annotations

import argparse
import sys

from ssimjax.cli import common as _cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Write the plan's PyTorch checkpoint dict (QualityPredictionModel "
                                "state_dict, config, history, metrics) for a run; loads with weights_only=True.")
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR",
                   help="a run folder written by ssimjax train (a --vtracer-parameters run "
                   "exports its SettingRecommender)")
    p.add_argument("--out", required=True, metavar="FILE", help="the .pth file to write")
    args = p.parse_args(argv)
    _cli.setup_logging(verbose=False)
    try:
        from bridge import ExportError, export_run
    except ImportError as e:
        _cli.fail(f"export needs PyTorch ({e}); install the bridge extra: pip install -e '.[bridge]'")
    from ssimjax.config import ConfigError
    from ssimjax.train.plan import RunError
    from ssimjax.train.settings import SettingsRunError, is_settings_run

    try:
        if is_settings_run(args.checkpoint):  # a settings run: the deployment's SettingRecommender
            from bridge import export_settings_run

            out = export_settings_run(args.checkpoint, args.out)
        else:
            out = export_run(args.checkpoint, args.out)
    except (ConfigError, RunError, ExportError, SettingsRunError) as e:
        _cli.fail(str(e), 1)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
