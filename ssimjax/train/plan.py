"""How a run starts: fresh, resumed, or from a pretrained backbone. The one place that decides,
and that refuses conflicting requests with a one-line error."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import Callable

from ssimjax.config import (
    BUILTIN_DATA,
    DEFAULT_HELD_OUT_PER_SET,
    DEFAULT_TEST_SOURCE,
    ConfigError,
    TrainConfig,
    load_config,
)

# What a resumed run may change: only how long it goes on.
RESUMABLE_FIELDS = ("epochs",)
# A run folder holding any of these holds work a new run must not overwrite (--resume continues it).
WORK = ("checkpoints", "map_net", "map_net_checkpoints")


class RunError(RuntimeError):
    """A run folder that cannot be used as asked; the message names it."""


@dataclasses.dataclass
class RunPlan:
    config: TrainConfig
    out: Path
    resume: bool
    data: str | Path  # a manifest or folder, or a built-in set's name ('icons', 'generated')
    backbone: tuple[dict, dict] | None = None  # (variables, facts) of pretrained backbone weights
    saved_facts: dict = dataclasses.field(default_factory=dict)  # a resumed run's config.json facts
    reuses_folder: bool = False  # a new run in a folder a run stopped before its first checkpoint left


def is_builtin(data) -> bool:
    """Whether ``data`` names a built-in set (and no file or folder of that name is there)."""
    return isinstance(data, str) and data in BUILTIN_DATA and not Path(data).exists()


def resolve_data(data, cache_dir: Path, demo_count: int, icon_count: int, log=None,
                 held_out_per_set: int = DEFAULT_HELD_OUT_PER_SET) -> str | Path:
    """``data`` itself, or the folder of the built-in set it names (built and cached on first use):
    ``icons`` is ``icon_count`` training images from the split's training sets and
    ``held_out_per_set`` of each selection and report set (:func:`ssimjax.data.logoset.split_icon_dataset`)."""
    if not is_builtin(data):
        return data
    if data == "generated":
        from ssimjax.data.demo import demo_dataset

        return demo_dataset(cache_dir, count=demo_count, seed=0, log=log)
    from ssimjax.data.logoset import split_icon_dataset

    return split_icon_dataset(cache_dir, icon_count, held_out_per_set, log=log)


def new_run_dir(root: str | Path = "runs") -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / stamp
    i = 1
    while path.exists():
        i += 1
        path = Path(root) / f"{stamp}-{i}"
    return path


def _as_given(config: TrainConfig | dict | None) -> dict:
    if config is None:
        return {}
    return config.to_dict() if isinstance(config, TrainConfig) else dict(config)


def plan_run(
    config: TrainConfig | dict | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    data: str | Path | None = None,
    load_backbone: Callable[[TrainConfig], tuple[dict, dict]] | None = None,
    flag_name: Callable[[str], str] = str,
) -> RunPlan:
    """Decides how a run starts and checks that the request is consistent: :class:`ConfigError`
    for requests that contradict each other, :class:`RunError` for a folder that does not fit.

    ``config`` is a :class:`TrainConfig` or the fields given (e.g. on the command line). A fresh
    run needs a folder that holds no run; a resumed one continues the run in ``out`` as it was
    configured (only ``epochs`` may change; other given fields must match), on its own data by
    default and with its own backbone. Without ``data`` a fresh run trains on the built-in real-logo
    set and holds out :data:`DEFAULT_TEST_SOURCE` (every selection and report set) unless told
    otherwise. The MLP sees the backbone's features when pretrained weights are loaded or the
    backbone trains, unless told otherwise.
    ``load_backbone(config)`` returns pretrained backbone ``(variables, facts)``, for fresh
    ResNet-50 runs only. ``flag_name`` turns a field name into
    the name the caller's user knows (``--learning-rate``) for messages.
    """
    given = _as_given(config)
    out = Path(out) if out is not None else (None if resume else new_run_dir())
    if resume:
        if out is None:
            raise ConfigError("--resume needs the run folder (--out RUN_DIR)")
        if load_backbone is not None:
            raise ConfigError(f"{flag_name('backbone_weights')} starts a run; --resume continues with the "
                              "run's own backbone")
        if not (out / "config.json").is_file():
            raise RunError(f"{out}: nothing to resume (no config.json)")
        saved, facts = load_config(out / "config.json")
        saved_dict = saved.to_dict()
        clash = [f"{flag_name(k)} (run has {saved_dict[k]!r})" for k, v in given.items()
                 if k not in RESUMABLE_FIELDS and (list(v) if isinstance(v, tuple) else v) != saved_dict[k]]
        if clash:
            raise ConfigError("--resume continues the run as configured; these differ: " + ", ".join(clash))
        config = saved.replace(**{k: given[k] for k in RESUMABLE_FIELDS if k in given})
        if data is None:  # continue on the data the run started with (as asked for, if not yet read)
            data = facts.get("data", {}).get("manifest") or facts.get("data", {}).get("requested")
        return RunPlan(config, out, True, data, saved_facts=facts)

    if any((out / name).exists() for name in WORK):
        raise RunError(f"{out}: already holds a run; pass --resume to continue it, or choose another --out")
    # A run stopped before its first checkpoint left only its record: a new run may start there.
    reuses_folder = any((out / name).exists() for name in ("config.json", "backbone"))
    if data is None:
        data = "icons"
    if data == "icons" and is_builtin(data) and "test_source" not in given:
        given["test_source"] = DEFAULT_TEST_SOURCE  # a default run scores icon sets it never saw
    if "backbone_features" not in given and (load_backbone is not None or given.get("freeze_backbone") is False):
        # Pretrained features carry what a random backbone's do not; a trained backbone must be seen.
        given["backbone_features"] = True
    config = TrainConfig(**given)
    backbone = None
    if load_backbone is not None:
        if config.backbone != "resnet50":
            raise ConfigError(f"{flag_name('backbone_weights')} needs the resnet50 backbone")
        backbone = load_backbone(config)
    return RunPlan(config, out, False, data, backbone=backbone, reuses_folder=reuses_folder)
