"""The VTracer setting to convert each logo with, from one look at the image (issue 25).

``recommend(run_dir, images, min_ssim=0.95)``: for each image, the candidate setting whose
predicted luminance and colour SSIM reach the target (capped at what VTracer's defaults are
predicted to reach, plus the run's safety margin) at the smallest predicted SVG; or, with
``max_bytes``, the best predicted quality within that size. ``verify=True`` converts with the
chosen setting and with the defaults and adds the real figures. ``search=N`` converts the defaults
and up to N candidates, in the order the predictions rank them, and keeps the smallest that really
meets the target (:func:`ssimjax.models.setting_head.search_setting`): a few conversions instead of
one per candidate, and the target always really met.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence


def _model_and_config(model_or_run):
    from ssimjax.train.settings import SettingsRunConfig, load_settings_model

    if isinstance(model_or_run, (str, Path)):
        import json

        run = Path(model_or_run)
        margin = SettingsRunConfig.margin
        cfg_path = run / "settings_config.json"
        if cfg_path.is_file():
            margin = float(json.loads(cfg_path.read_text()).get("margin", margin))
        return load_settings_model(run), margin
    return model_or_run, SettingsRunConfig.margin


def recommend(model_or_run, images: Sequence, min_ssim: float | None = None, max_bytes: float | None = None,
              verify: bool = False, margin: float | None = None, svg_dir: str | Path | None = None,
              search: int = 0) -> dict:
    """``{key: result}`` for each image (a path, a PIL image or a uint8 array; the key is the path
    as given, or ``image N``). ``result``: ``params`` (the setting), ``predicted_ssim``,
    ``predicted_rgb_ssim``, ``predicted_bytes``, ``default_predicted_*``, ``seconds`` (the
    recommendation's time), and ``ssim``, ``rgb_ssim``, ``bytes``, ``default_ssim``,
    ``default_rgb_ssim``, ``default_bytes`` (real with ``verify``, else the predictions).
    ``min_ssim`` defaults to 0.95 unless ``max_bytes`` is given. With ``svg_dir`` the chosen
    setting's SVG of each image is written there (``verify`` implied). With ``search`` (a number of
    candidates, ``verify`` implied) the kept setting is the one the search found and ``conversions``
    counts the settings converted. Raises ValueError naming an image that cannot be read."""
    from ssimjax.data.images import ImageError, as_image, to_rgb
    from ssimjax.data.vtsettings import conversion_labels, convert, default_setting, svg_labels
    from ssimjax.models.setting_head import choose_setting, search_setting

    if min_ssim is not None and max_bytes is not None:
        raise ValueError("give one of min_ssim and max_bytes")
    if min_ssim is None and max_bytes is None:
        min_ssim = 0.95
    if min_ssim is not None and not 0 < min_ssim <= 1:
        raise ValueError(f"min_ssim must be in (0, 1] (got {min_ssim})")
    if max_bytes is not None and max_bytes <= 0:
        raise ValueError(f"max_bytes must be > 0 (got {max_bytes})")
    if search < 0:
        raise ValueError(f"search must be >= 0 (got {search})")
    model, run_margin = _model_and_config(model_or_run)
    margin = run_margin if margin is None else margin
    candidates = list(model.candidates)
    d = candidates.index(default_setting())
    out, written = {}, set()
    for i, item in enumerate(images):
        key = str(item) if isinstance(item, (str, Path)) else f"image {i}"
        try:
            img = as_image(item, key)
        except ImageError as e:
            raise ValueError(str(e)) from None
        t = time.perf_counter()
        pred = model.predict(img)
        c = choose_setting(pred["ssim"], pred["rgb_ssim"], pred["bytes"], d, min_ssim=min_ssim, max_bytes=max_bytes,
                           margin=margin if min_ssim is not None else 0.0)
        seconds = time.perf_counter() - t
        figures = {"ssim": float(pred["ssim"][c]), "rgb_ssim": float(pred["rgb_ssim"][c]),
                   "bytes": int(round(float(pred["bytes"][c])))}
        r = dict(params=dict(candidates[c]), predicted_ssim=figures["ssim"], predicted_rgb_ssim=figures["rgb_ssim"],
                 predicted_bytes=figures["bytes"], default_predicted_ssim=float(pred["ssim"][d]),
                 default_predicted_rgb_ssim=float(pred["rgb_ssim"][d]),
                 default_predicted_bytes=int(round(float(pred["bytes"][d]))), seconds=seconds, verified=False)
        r.update(figures)
        r.update(default_ssim=r["default_predicted_ssim"], default_rgb_ssim=r["default_predicted_rgb_ssim"],
                 default_bytes=r["default_predicted_bytes"])
        if search:
            original = to_rgb(img)
            svgs, labels = {}, {}

            def real(j):
                svgs[j] = convert(original, candidates[j])
                # search_setting converts the defaults first; a candidate whose luminance SSIM misses
                # the target they fix is rejected without its colour SSIM.
                floor = min(min_ssim, labels[d]["ssim"]) if min_ssim is not None and d in labels else None
                labels[j] = svg_labels(original, svgs[j], floor)[0]
                return labels[j]["ssim"], labels[j]["rgb_ssim"], labels[j]["svg_bytes"]

            c, converted = search_setting(pred["ssim"], pred["rgb_ssim"], pred["bytes"], d, real, search,
                                          min_ssim=min_ssim, max_bytes=max_bytes)
            r.update(params=dict(candidates[c]), predicted_ssim=float(pred["ssim"][c]),
                     predicted_rgb_ssim=float(pred["rgb_ssim"][c]), predicted_bytes=int(round(float(pred["bytes"][c]))),
                     ssim=labels[c]["ssim"], rgb_ssim=labels[c]["rgb_ssim"], bytes=labels[c]["svg_bytes"],
                     default_ssim=labels[d]["ssim"], default_rgb_ssim=labels[d]["rgb_ssim"],
                     default_bytes=labels[d]["svg_bytes"], verified=True, conversions=len(converted),
                     seconds=time.perf_counter() - t)
            svg = svgs[c]
        elif verify or svg_dir is not None:
            original = to_rgb(img)
            svg = convert(original, candidates[c])
            chosen, _ = svg_labels(original, svg)
            default = chosen if c == d else conversion_labels(original, candidates[d])[0]
            r.update(ssim=chosen["ssim"], rgb_ssim=chosen["rgb_ssim"], bytes=chosen["svg_bytes"],
                     default_ssim=default["ssim"], default_rgb_ssim=default["rgb_ssim"],
                     default_bytes=default["svg_bytes"], verified=True)
        if svg_dir is not None:
            from ssimjax.files import write_text_atomic

            name = Path(key).stem if isinstance(item, (str, Path)) else f"image_{i}"
            if name in written:  # two images of one name (in different folders) keep both SVGs
                name = f"{name}_{i}"
            written.add(name)
            path = Path(svg_dir) / f"{name}.svg"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, svg)  # the SVG verified above
            r["svg"] = str(path)
        out[key] = r
    return out


def describe(key: str, r: dict) -> str:
    """One line for a recommendation, as ``ssimjax recommend`` prints it."""
    from ssimjax.data.vtsettings import default_setting

    changed = {k: v for k, v in r["params"].items() if v != default_setting()[k]}
    what = ", ".join(f"{k}={v}" for k, v in changed.items()) or "VTracer's defaults"
    tag = "real" if r["verified"] else "predicted"
    ratio = r["bytes"] / max(r["default_bytes"], 1)
    line = (f"{key}: {what}; {tag}: SSIM {r['ssim']:.4f}, colour SSIM {r['rgb_ssim']:.4f}, {r['bytes']} bytes "
            f"(x{ratio:.2f} of the defaults' {r['default_bytes']}; defaults' SSIM {r['default_ssim']:.4f}, colour "
            f"{r['default_rgb_ssim']:.4f})")
    if r["verified"]:
        line += f"; predicted SSIM {r['predicted_ssim']:.4f}, {r['predicted_bytes']} bytes"
    if "conversions" in r:
        line += f"; {r['conversions']} settings converted"
    return line + (f"; wrote {r['svg']}" if "svg" in r else "")
