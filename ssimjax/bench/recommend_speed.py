"""A recommendation against converting every candidate setting, at one size (issue 25's speed goal).

python -m ssimjax.bench.recommend_speed --checkpoint RUN [--size 512] [--count 10] [--sim-cap C|off] [IMAGE...]

Each image (default: ``--count`` held-out report logos of the run's settings sets) is resized so
its long side is ``--size`` px. Per image, in one process on this machine: the recommendation
(decode, statistics, the map trunk once, every candidate scored, the choice), median of 3 after a
warm-up, and of it the simulated clustering that caps the predictions (when the model has
``sim_cap``; ``--sim-cap`` overrides the run's); converting it with every setting of issue 25's
54-setting grid (the goal's yardstick; the run may choose among more) by VTracer alone (what
finding the best by conversion costs at the least), and with rendering and SSIM too (what it costs
to know which is best); and the search (``recommend --search N``, default 3: the recommendation,
then the defaults and up to N candidates converted, rendered and scored), once. Prints the medians
over images and their ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _resized(paths, size: int, folder: Path) -> list[Path]:
    from ssimjax.data.images import open_image, read_file, to_rgb

    out = []
    for i, p in enumerate(paths):
        img = to_rgb(open_image(read_file(p)[0]))
        scale = size / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
        dst = folder / f"{i:03d}.png"
        img.save(dst)
        out.append(dst)
    return out


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, metavar="RUN", help="a settings run folder")
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.add_argument("--size", type=int, default=512, help="long side in pixels (default 512)")
    p.add_argument("--count", type=int, default=10, help="report logos when no IMAGE is given (default 10)")
    p.add_argument("--search", type=int, default=3, metavar="N", help="candidates the search may convert (default 3)")
    p.add_argument("--sim-cap", help="cap by the simulated clustering: a number, or off (default: the run's)")
    p.add_argument("--cache-dir")
    args = p.parse_args(argv)
    from ssimjax.data.images import open_image, read_file
    from ssimjax.data.vtsettings import conversion_labels, convert, issue_grid
    from ssimjax.evaluate.recommend import recommend
    from ssimjax.features.vtsim import simulate_settings
    from ssimjax.train.settings import SettingsRunConfig, held_out_rows, load_settings_model

    run = Path(args.checkpoint)
    model = load_settings_model(run)
    if args.sim_cap is not None:
        model = dataclasses.replace(model, sim_cap=None if args.sim_cap == "off" else float(args.sim_cap))
    paths = args.images
    if not paths:
        cfg = json.loads((run / "settings_config.json").read_text())
        rows = held_out_rows(SettingsRunConfig(held_out_count=cfg["held_out_count"],
                                               candidates=tuple(cfg["candidates"])), "report", args.cache_dir)
        paths = list(dict.fromkeys(rows["image"]))[:args.count]
    rec, sim, conv, full, found, converted = [], [], [], [], [], []
    grid = issue_grid()
    with tempfile.TemporaryDirectory() as tmp:
        files = _resized(paths, args.size, Path(tmp))
        recommend(model, [str(files[0])])  # compiles the trunk and the per-setting layers once
        for f in files:
            rec.append(_median_time(lambda: recommend(model, [str(f)]), 3))
            img = open_image(read_file(f)[0]).convert("RGB")
            sim.append(_median_time(lambda: simulate_settings(img, model.candidates), 3) if model.sim_cap is not None
                       else 0.0)
            conv.append(_median_time(lambda: [convert(img, s) for s in grid], 1))
            full.append(_median_time(lambda: [conversion_labels(img, s) for s in grid], 1))
            t = time.perf_counter()
            converted.append(recommend(model, [str(f)], search=args.search)[str(f)]["conversions"])
            found.append(time.perf_counter() - t)
            print(f"{paths[files.index(f)]}: recommendation {rec[-1]:.3f} s (simulation {sim[-1]:.3f} s), "
                  f"converting the {len(grid)} grid "
                  f"settings {conv[-1]:.2f} s (with rendering and SSIM {full[-1]:.2f} s); --search {args.search} "
                  f"{found[-1]:.2f} s ({converted[-1]} settings converted)", flush=True)
    r, c, f_, s = np.median(rec), np.median(conv), np.median(full), np.median(found)
    print(f"at {args.size} px over {len(files)} images ({len(model.candidates)} candidate settings, sim cap "
          f"{model.sim_cap}): recommendation median {r:.3f} s (the simulation {np.median(sim):.3f} s); converting "
          f"every setting of issue 25's {len(grid)}-setting grid median {c:.2f} s "
          f"({c / r:.1f}x the recommendation), with "
          f"rendering and SSIM {f_:.2f} s ({f_ / r:.1f}x); per-image ratios (conversion only) "
          f"{np.min(np.asarray(conv) / rec):.1f}-{np.max(np.asarray(conv) / rec):.1f}x")
    print(f"--search {args.search}: median {s:.2f} s, {np.mean(converted):.1f} settings converted on average; "
          f"converting, rendering and scoring every grid setting takes {f_ / s:.1f}x as long")
    return 0


if __name__ == "__main__":
    sys.exit(main())
