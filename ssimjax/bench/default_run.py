"""Time the default job as a new user runs it: ssimjax bench-default-run

Runs `ssimjax train` twice with every default (the real-logo set, its default size,
the default model, `logos` held out) in a fresh cache folder: the first run fetches the icon sets,
builds and labels the images and computes their statistics, the second reuses all of it. Prints
wall time, the run's own timings (summary.json) and the held-out icon set's SRCC / PLCC for each.
With --npm-cache DIR the icon packages are copied from an earlier cache instead of downloaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ssimjax.cli import command_line


def main(argv=None) -> int:
    import argparse
    import shutil

    p = argparse.ArgumentParser(description="Time the default job twice in a fresh cache.")
    p.add_argument("--npm-cache", help="a cache folder whose npm/ packages to reuse (no download)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ssimjax-bench-") as tmp:
        tmp = Path(tmp)
        if args.npm_cache:
            shutil.copytree(Path(args.npm_cache) / "npm", tmp / "cache" / "npm")
        for label in ("first run (fresh cache)", "second run (cached data and features)"):
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
            test = summary.get("test_metrics") or {}
            print(f"{label}: wall {wall:.1f}s | data build {t.get('data_build_s', 0):.1f}s | data {t['data_s']:.1f}s "
                  f"(statistics {t.get('stats_s', 0):.1f}s) | features {t['features_s']:.1f}s "
                  f"({t['features_computed']} computed) | map network {t.get('map_net_train_s', 0):.1f}s training, "
                  f"{t.get('map_net_score_s', 0):.1f}s scoring | training {t['training_s']:.1f}s | "
                  f"median epoch {t['median_epoch_s']:.3f}s | epochs {summary['epochs_completed']} | "
                  f"val loss {history['val_loss'][0]:.4f} -> best {summary['best_val_metrics']['loss']:.4f} | "
                  f"held-out {summary.get('test_source')}: SRCC {test.get('srcc', float('nan')):.4f} "
                  f"PLCC {test.get('plcc', float('nan')):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
