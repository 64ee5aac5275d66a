#!/usr/bin/env python
"""Time the default job as a new user runs it: python scripts/bench_default_run.py

Runs `python scripts/train.py` twice with every default (ResNet-50, 400 demo images, 50 epochs)
in a fresh cache folder: the first run builds the demo set and computes features, the second
reuses both. Prints wall time and the run's own timings (summary.json) for each.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ssimjax-bench-") as tmp:
        tmp = Path(tmp)
        for label in ("first run (fresh cache)", "second run (cached data and features)"):
            out = tmp / f"run-{int(time.time() * 1000)}"
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--out", str(out),
                                "--cache-dir", str(tmp / "cache")], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if r.returncode != 0:
                print(r.stderr, file=sys.stderr)
                return r.returncode
            summary = json.loads((out / "summary.json").read_text())
            history = json.loads((out / "history.json").read_text())
            t = summary["timings"]
            print(f"{label}: wall {wall:.1f}s | demo build {t.get('demo_build_s', 0):.1f}s | data {t['data_s']:.1f}s | "
                  f"features {t['features_s']:.1f}s ({t['features_computed']} computed) | training {t['training_s']:.1f}s | "
                  f"median epoch {t['median_epoch_s']:.3f}s | epochs {summary['epochs_completed']} | "
                  f"val loss {history['val_loss'][0]:.4f} -> best {summary['best_val_metrics']['loss']:.4f} | "
                  f"val corr at best {summary['best_val_metrics']['correlation']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
