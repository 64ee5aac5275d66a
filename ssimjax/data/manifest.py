"""Manifests of labelled images (CSV or JSON: ``image``, ``ssim``, optional ``source``), their
validation (every invalid row named in one error), and the seeded train / validation / test split.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

MANIFEST_NAMES = ("labels.csv", "labels.json")


class DataError(ValueError):
    """Input data that cannot be used; the message names the file and rows."""


@dataclasses.dataclass(frozen=True)
class Row:
    """One manifest entry. ``where`` names it for messages, e.g. ``labels.csv line 4``."""

    image: Path
    ssim: float
    where: str
    source: str | None = None  # the manifest's optional ``source`` column (e.g. the icon set)


@dataclasses.dataclass(frozen=True)
class Problem:
    where: str
    image: str
    reason: str

    def __str__(self):
        return f"{self.where} ({self.image}): {self.reason}"


def find_manifest(data: str | Path) -> Path:
    path = Path(data)
    if path.is_dir():
        for name in MANIFEST_NAMES:
            if (path / name).is_file():
                return path / name
        raise DataError(f"{path}: folder has no {' or '.join(MANIFEST_NAMES)}")
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.suffix.lower() not in (".csv", ".json"):
        raise DataError(f"{path}: expected a .csv or .json manifest, or a folder holding one")
    return path


def _parse_label(value) -> tuple[float | None, str | None]:
    if isinstance(value, bool) or value is None:
        return None, f"ssim {value!r} is not a number"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None, f"ssim {value!r} is not a number"
    if not math.isfinite(v):
        return None, f"ssim {value!r} is not finite"
    if not 0.0 <= v <= 1.0:
        return None, f"ssim {v} is outside [0, 1]"
    return v, None


def read_manifest(data: str | Path) -> tuple[Path, list[Row], list[Problem]]:
    """Parses a CSV (header ``image,ssim``) or JSON (list of ``{"image", "ssim"}``) manifest.

    Returns the manifest path, the rows whose label is valid and whose image file exists, and a
    problem per other row. Image paths resolve against the manifest's folder.
    """
    manifest = find_manifest(data)
    base = manifest.parent
    entries: list[tuple[str, object, object, object]] = []
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{manifest}: cannot read manifest ({e})") from None
    if manifest.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        header = [h.strip() for h in (reader.fieldnames or [])]
        if "image" not in header or "ssim" not in header:
            raise DataError(f"{manifest}: header must name columns 'image' and 'ssim' (got {header or 'nothing'})")
        reader.fieldnames = header
        for row in reader:
            entries.append((f"{manifest.name} line {reader.line_num}", row.get("image"), row.get("ssim"),
                            row.get("source")))
    else:
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{manifest}: not valid JSON ({e})") from None
        if not isinstance(items, list):
            raise DataError(f"{manifest}: expected a JSON list of {{\"image\", \"ssim\"}} objects")
        for i, item in enumerate(items):
            where = f"{manifest.name} item {i}"
            if not isinstance(item, dict):
                entries.append((where, None, None, None))
            else:
                entries.append((where, item.get("image"), item.get("ssim"), item.get("source")))
    if not entries:
        raise DataError(f"{manifest}: no rows")

    rows, problems = [], []
    for where, image, label, source in entries:
        if not isinstance(image, str) or not image.strip():
            problems.append(Problem(where, repr(image), "no image path"))
            continue
        ssim, why = _parse_label(label.strip() if isinstance(label, str) else label)
        path = (base / image.strip()).resolve()
        if why is None and not path.is_file():
            why = "image file not found"
        if why is not None:
            problems.append(Problem(where, image, why))
        else:
            rows.append(Row(path, ssim, where, str(source).strip() or None if source is not None else None))
    return manifest, rows, problems


def raise_for_problems(manifest: Path, problems: Sequence[Problem], valid: int, skip_invalid: bool, log=None):
    """One error listing every invalid row, or (with ``skip_invalid``) a note of how many were skipped."""
    if not problems:
        return
    if skip_invalid:
        if log is not None:
            log(f"{manifest}: skipped {len(problems)} invalid rows, training on {valid} valid ones")
        return
    lines = "\n".join(f"  {p}" for p in problems)
    raise DataError(
        f"{manifest}: {len(problems)} invalid rows (use --skip-invalid to train on the {valid} valid ones):\n{lines}"
    )


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def split_indices(n: int, validation_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded shuffle split into (train, val) index arrays; both keep at least two rows."""
    n_val = int(round(n * validation_split))
    n_val = min(max(n_val, 2), n - 2)
    if n < 4:
        raise DataError(f"need at least 4 valid rows to split into training and validation (got {n})")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def split_rows(sources: np.ndarray, validation_split: float, seed: int,
               test_source: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train, val, test)`` row indices: the rows of ``test_source`` (whole icon sets, never
    trained on nor used to stop training: comma-separated names, or the roles ``selection`` and
    ``report`` of :func:`ssimjax.data.sets.split_sets`) are the test set; the rest split as
    :func:`split_indices`."""
    from ssimjax.data.sets import held_out_names

    sources = np.asarray(sources, dtype=object)
    test = np.zeros(0, np.int64)
    rest = np.arange(len(sources))
    if test_source is not None:
        names = held_out_names(test_source)
        present = set(sources.tolist())
        missing = [n for n in names if n not in present]
        if missing or not names:
            known = sorted({s for s in sources if s}) or ["none: the manifest has no 'source' column"]
            raise DataError(f"test source {(missing or [test_source])[0]!r} has no rows (sources: {', '.join(known)})")
        held = np.isin(sources.astype(str), names)
        test, rest = np.flatnonzero(held), np.flatnonzero(~held)
    train, val = split_indices(len(rest), validation_split, seed)
    return rest[train], rest[val], test
