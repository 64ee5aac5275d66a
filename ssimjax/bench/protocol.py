"""Issue 24's selection protocol: train on the training sets, choose on the selection sets, report
the report sets (:mod:`ssimjax.data.sets` splits them once).

``protocol_data`` builds (cached) three labelled sets, one per role, and a manifest joining them
whose ``source`` column names each row's icon set. ``protocol_split`` gives a seed's rows: training
and validation from the training sets only, every selection and report row held out.
``protocol_table`` scores held-out predictions per set and sums them up per role: the mean, the
worst set, and over seeds the mean and the spread (max - min) of each role's mean SRCC; a change
is kept only if it lifts the selection-set mean by more than that spread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssimjax.config import DEFAULT_RECIPES, HELD_OUT_ROLES
from ssimjax.data.logoset import split_icon_dataset
from ssimjax.data.manifest import split_rows
from ssimjax.data.sets import split_sets
from ssimjax.evaluate.metrics import per_set_metrics, role_summary

__all__ = ["over_seeds", "per_set_metrics", "protocol_data", "protocol_split", "protocol_table", "role_summary"]



def protocol_data(cache_dir: str | Path, train_count: int, per_set: int, recipes: int = DEFAULT_RECIPES,
                  log=None) -> Path:
    """The folder of a manifest joining a ``train_count``-image set of the training sets and
    ``per_set`` images of each selection and report set: a default run's data
    (:func:`ssimjax.data.logoset.split_icon_dataset`)."""
    return split_icon_dataset(cache_dir, train_count, per_set, recipes, log=log)


def protocol_split(sources: np.ndarray, validation_split: float, seed: int) -> tuple[np.ndarray, ...]:
    """``(train, val, held out)`` row indices, as a default run splits them: the training sets'
    rows split seeded, every selection and report row held out."""
    return split_rows(sources, validation_split, seed, HELD_OUT_ROLES)


def over_seeds(summaries: list[dict[str, dict]]) -> dict[str, dict]:
    """Each role's figures averaged over seeds, with the spread (max - min) of its mean SRCC and PLCC."""
    out = {}
    for role in summaries[0]:
        vals = {k: [s[role][k] for s in summaries] for k in ("mean_srcc", "mean_plcc", "worst_srcc")}
        out[role] = {k: float(np.mean(v)) for k, v in vals.items()}
        out[role]["spread_srcc"] = float(np.ptp(vals["mean_srcc"]))
        out[role]["spread_plcc"] = float(np.ptp(vals["mean_plcc"]))
        out[role]["seeds"] = len(summaries)
    return out


def protocol_table(results: dict) -> str:
    """Markdown: per candidate, each held-out set's SRCC / PLCC (mean over seeds), then each role's
    mean, worst and seed spread."""
    split = split_sets()
    sets = [s for role in ("selection", "report") for s in split[role]
            if any(s in r["per_seed"][0]["per_set"] for r in results.values())]
    head = ["candidate"] + [f"{s} ({role_tag(s)})" for s in sets] + \
        ["selection mean", "selection worst", "selection spread", "report mean", "report worst"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for key, r in sorted(results.items()):
        cells = [r["name"]]
        for s in sets:
            v = [p["per_set"][s] for p in r["per_seed"] if s in p["per_set"]]
            cells.append(f"{np.mean([m['srcc'] for m in v]):.3f} / {np.mean([m['plcc'] for m in v]):.3f}")
        o = r["over_seeds"]
        sel, rep = o.get("selection", {}), o.get("report", {})
        cells += [_pair(sel), f"{sel.get('worst_srcc', float('nan')):.3f}",
                  f"{sel.get('spread_srcc', float('nan')):.3f} / {sel.get('spread_plcc', float('nan')):.3f}",
                  _pair(rep), f"{rep.get('worst_srcc', float('nan')):.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def role_tag(name: str) -> str:
    return "sel" if name in split_sets()["selection"] else "rep"


def _pair(d: dict) -> str:
    return f"{d.get('mean_srcc', float('nan')):.3f} / {d.get('mean_plcc', float('nan')):.3f}"
