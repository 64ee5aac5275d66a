"""Time the default job as a new user runs it: ssimjax bench-default-run

Runs `ssimjax train` twice with every default (the real-logo set, its default size, the default
model, the split's selection and report sets held out) in a fresh cache folder: the first run
fetches the icon sets, builds and labels the images and computes their statistics, the second
reuses all of it. Prints wall time, the run's own timings (summary.json) and the held-out sets'
figures (report sets' mean and worst first) for each. With --npm-cache DIR the icon packages are
copied from an earlier cache instead of downloaded; --once runs the first run only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ssimjax.cli import command_line
from ssimjax.cli.train import held_out_lines


def main(argv=None) -> int:
    import argparse
    import shutil

    p = argparse.ArgumentParser(description="Time the default job twice in a fresh cache.")
    p.add_argument("--npm-cache", help="a cache folder whose npm/ packages to reuse (no download)")
    p.add_argument("--once", action="store_true", help="the first run (fresh cache) only")
    args = p.parse_args(argv)
    if args.npm_cache and not (Path(args.npm_cache) / "npm").is_dir():
        p.error(f"--npm-cache {args.npm_cache}: no npm/ folder in it (give a cache folder, e.g. ~/.cache/ssimjax)")
    with tempfile.TemporaryDirectory(prefix="ssimjax-bench-") as tmp:
        tmp = Path(tmp)
        if args.npm_cache:
            shutil.copytree(Path(args.npm_cache) / "npm", tmp / "cache" / "npm")
        labels = ("first run (fresh cache)", "second run (cached data and features)")
        for label in labels[:1] if args.once else labels:
            out = tmp / f"run-{int(time.time() * 1000)}"
            t0 = time.perf_counter()
            cmd, env = command_line("train")
            r = subprocess.run(cmd + ["--out", str(out), "--cache-dir", str(tmp / "cache")], capture_output=True,
                               text=True, env=env)
            wall = time.perf_counter() - t0
            if r.returncode != 0:
                print(r.stderr, file=sys.stderr)
                return r.returncode
            summary = json.loads((out / "summary.json").read_text())
            history = json.loads((out / "history.json").read_text())
            t = summary["timings"]
            print(f"{label}: wall {wall:.1f}s | data build {t.get('data_build_s', 0):.1f}s | data {t['data_s']:.1f}s "
                  f"(statistics {t.get('stats_s', 0):.1f}s) | features {t['features_s']:.1f}s "
                  f"({t['features_computed']} computed) | wordmarks {t.get('synthetic_s', 0):.1f}s | map network "
                  f"{t.get('map_net_train_s', 0):.1f}s training ({t.get('map_net_steps', 'no')} steps), "
                  f"{t.get('map_net_score_s', 0):.1f}s scoring | training {t['training_s']:.1f}s | "
                  f"median epoch {t['median_epoch_s']:.3f}s | epochs {summary['epochs_completed']} | "
                  f"val loss {history['val_loss'][0]:.4f} -> best {summary['best_val_metrics']['loss']:.4f}")
            for line in held_out_lines(summary):
                print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
