"""Every pinned icon set ssimjax knows, what kind of image each holds, and the one fixed rule that
splits them into training, *selection* and *report* sets.

Selection sets are the ones designs and hyper-parameters are chosen on; report sets are scored
once per candidate and never used to choose anything, so their figures say how a model does on
icon sets nobody tuned on. The rule is in code, seeded, and stratified by kind, so that every
kind of image (emoji, flags, brand logos, app and file icons, pictograms) has a set on each side
wherever it has enough sets:

- the five sets every earlier design decision looked at (:data:`SEEN_SETS`) are never report
  sets: ``logos`` (the set those decisions were made on) is a selection set, the other four train;
- within each kind, the other sets are ordered by the sha256 of ``"{SPLIT_SEED}:{name}"`` and
  dealt in turn to report, selection, then training (a kind's third set onwards trains).

Changing the registry or the seed changes the split; :data:`SPLIT_VERSION` names it in every
record that depends on it. This module does not import JAX.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from ssimjax.data.icons import DEFAULT_SOURCES, Source

SPLIT_SEED = 24
SPLIT_VERSION = f"kind-stratified-sha256-seed{SPLIT_SEED}-v1"
ROLES = ("train", "selection", "report")

_ISSUE_24 = (  # @iconify-json sets, pinned: (name, version, kind)
    ("emojione", "1.2.3", "emoji"),
    ("fxemoji", "1.2.2", "emoji"),
    ("streamline-emojis", "1.2.4", "emoji"),
    ("fluent-emoji", "1.2.7", "emoji"),  # gradients
    ("flagpack", "1.2.8", "flag"),
    ("cif", "1.2.7", "flag"),
    ("material-icon-theme", "1.2.70", "app-icon"),
    ("catppuccin", "1.2.17", "app-icon"),
    ("file-icons", "1.2.2", "app-icon"),
    ("fa6-brands", "1.2.6", "brand"),
    ("cib", "1.2.3", "brand"),
    ("unjs", "1.2.4", "brand"),
    ("meteocons", "1.2.4", "pictogram"),
    ("icon-park", "1.2.4", "pictogram"),
    ("game-icons", "1.2.4", "pictogram"),
    ("pixelarticons", "1.2.9", "pictogram"),
    ("mdi", "1.2.3", "pictogram"),
)
SEEN_KINDS = {"logos": "brand", "simple-icons": "brand", "fluent-emoji-flat": "emoji", "twemoji": "emoji",
              "flag": "flag"}
SEEN_SETS = tuple(s.name for s in DEFAULT_SOURCES)
ALL_SOURCES = DEFAULT_SOURCES + tuple(Source(n, f"@iconify-json/{n}", v, "iconify") for n, v, _ in _ISSUE_24)
KINDS = {**SEEN_KINDS, **{n: k for n, _, k in _ISSUE_24}}


def source(name: str) -> Source:
    """The pinned :class:`Source` of a set by its short name. Raises ValueError naming the known ones."""
    for s in ALL_SOURCES:
        if s.name == name:
            return s
    raise ValueError(f"unknown icon set {name!r}; known: {', '.join(sorted(KINDS))}")


def _order(name: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def split_sets(names=None, seed: int = SPLIT_SEED) -> dict[str, tuple[str, ...]]:
    """``{"train": (...), "selection": (...), "report": (...)}``: each set's role by the module's rule
    (``names``: the sets to split, default every known one; each role sorted by name)."""
    names = sorted(KINDS if names is None else names)
    unknown = [n for n in names if n not in KINDS]
    if unknown:
        raise ValueError(f"unknown icon set(s) {', '.join(unknown)}; known: {', '.join(sorted(KINDS))}")
    roles: dict[str, list[str]] = {r: [] for r in ROLES}
    by_kind = defaultdict(list)
    for n in names:
        if n in SEEN_SETS:
            roles["selection" if n == "logos" else "train"].append(n)
        else:
            by_kind[KINDS[n]].append(n)
    for kind in sorted(by_kind):
        for i, n in enumerate(sorted(by_kind[kind], key=lambda n: _order(n, seed))):
            roles[("report", "selection")[i] if i < 2 else "train"].append(n)
    return {r: tuple(sorted(v)) for r, v in roles.items()}


def role_of(name: str, seed: int = SPLIT_SEED) -> str:
    """``"train"``, ``"selection"`` or ``"report"``."""
    return next(r for r, v in split_sets(seed=seed).items() if name in v)


def held_out_names(spec: str) -> list[str]:
    """The set names a held-out spec (``TrainConfig.test_source``) names: comma-separated set names,
    where the roles ``selection`` and ``report`` stand for their sets. Names need not be known sets
    (a user's manifest has its own sources)."""
    names = []
    for token in (t.strip() for t in spec.split(",")):
        for name in (split_sets()[token] if token in ("selection", "report") else (token,) if token else ()):
            if name not in names:
                names.append(name)
    return names


def sources_named(spec: str) -> tuple[Source, ...]:
    """The sources a ``--sets`` value names: ``default`` (the five), ``all``, a role (``train``,
    ``selection``, ``report``) or comma-separated set names. Raises ValueError naming what is unknown."""
    spec = spec.strip()
    if spec == "default":
        return DEFAULT_SOURCES
    if spec == "all":
        return ALL_SOURCES
    if spec in ROLES:
        return tuple(source(n) for n in split_sets()[spec])
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ValueError("names no icon set")
    return tuple(source(n) for n in names)
