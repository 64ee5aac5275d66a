"""The icon-set registry and the fixed rule that splits it into training, selection and report sets."""

import numpy as np
import pytest

from ssimjax.data.sets import ALL_SOURCES, KINDS, SEEN_SETS, SPLIT_SEED, role_of, source, split_sets


def test_the_split_is_fixed_disjoint_complete_and_never_reports_a_set_already_looked_at():
    split = split_sets()
    assert split == split_sets()  # the same on every call, machine and process (sha256, not hash())
    names = [n for v in split.values() for n in v]
    assert sorted(names) == sorted(KINDS) and len(names) == len(set(names)) == len(ALL_SOURCES) == 22
    assert not set(SEEN_SETS) & set(split["report"])
    assert "logos" in split["selection"]
    # The documented split (docs/data.md): a change here changes every report figure.
    assert split["report"] == ("flagpack", "fxemoji", "game-icons", "material-icon-theme", "unjs")
    assert split["selection"] == ("cib", "cif", "file-icons", "fluent-emoji", "icon-park", "logos")


def test_every_kind_is_on_each_side_and_the_seed_moves_sets_within_their_kind():
    split = split_sets()
    for kind in set(KINDS.values()):
        unseen = [n for n, k in KINDS.items() if k == kind and n not in SEEN_SETS]
        assert len(unseen) >= 2, kind
        assert sum(KINDS[n] == kind for n in split["report"]) == 1, kind
        assert sum(KINDS[n] == kind and n not in SEEN_SETS for n in split["selection"]) == 1, kind
        assert any(KINDS[n] == kind for n in split["train"]), kind
    other = split_sets(seed=SPLIT_SEED + 1)
    assert other != split
    assert sorted(KINDS[n] for n in other["report"]) == sorted(KINDS[n] for n in split["report"])


def test_sets_are_pinned_and_named_errors_list_the_known_ones():
    assert source("mdi").package == "@iconify-json/mdi" and source("mdi").version == "1.2.3"
    assert source("simple-icons").kind == "simple-icons"
    assert role_of("unjs") == "report" and role_of("twemoji") == "train"
    with pytest.raises(ValueError, match="unknown icon set 'nope'; known: catppuccin, cib"):
        source("nope")
    with pytest.raises(ValueError, match="unknown icon set"):
        split_sets(["logos", "nope"])
    assert split_sets(["logos", "mdi", "unjs"]) == {"train": (), "selection": ("logos",), "report": ("mdi", "unjs")}


def test_the_protocol_trains_on_training_sets_only_and_sums_up_each_role_over_seeds():
    from ssimjax.bench.protocol import over_seeds, per_set_metrics, protocol_split, protocol_table, role_summary

    split = split_sets()
    sources = np.asarray([s for s in sorted(KINDS) for _ in range(20)])
    tr, va, held = protocol_split(sources, 0.2, seed=0)
    assert set(sources[tr]) == set(sources[va]) == set(split["train"]) and len(va) == round(0.2 * (len(tr) + len(va)))
    assert set(sources[held]) == set(split["selection"]) | set(split["report"])
    assert sorted(np.concatenate([tr, va, held])) == list(range(len(sources)))
    tr1, _, held1 = protocol_split(sources, 0.2, seed=1)
    assert not np.array_equal(tr, tr1) and np.array_equal(held, held1)

    rng = np.random.default_rng(0)
    y = rng.uniform(0.8, 1.0, len(held))
    summaries = []
    for noise in (0.01, 0.03):
        pred = y + rng.normal(0, noise, len(y))
        pred[sources[held] == "unjs"] = rng.uniform(0.8, 1.0, 20)  # one report set ranked at random
        summaries.append(role_summary(per_set_metrics(pred, y, sources[held])))
    assert summaries[0]["report"]["worst_set"] == "unjs" and summaries[0]["report"]["sets"] == 5
    assert summaries[0]["selection"]["mean_srcc"] > 0.9 > summaries[0]["report"]["worst_srcc"]
    o = over_seeds(summaries)
    assert o["selection"]["spread_srcc"] == pytest.approx(
        abs(summaries[0]["selection"]["mean_srcc"] - summaries[1]["selection"]["mean_srcc"]))
    table = protocol_table({"x": {"name": "candidate x", "over_seeds": o,
                                  "per_seed": [{"per_set": per_set_metrics(y, y, sources[held])}]}})
    assert "| candidate x | 1.000 / 1.000 |" in table and "unjs (rep)" in table and "logos (sel)" in table


def test_a_held_out_spec_names_sets_or_roles_and_a_run_reports_each_role():
    from ssimjax.cli.train import held_out_lines
    from ssimjax.data.manifest import DataError, split_rows
    from ssimjax.data.sets import held_out_names
    from ssimjax.evaluate.metrics import per_set_metrics, role_summary
    from ssimjax.evaluate.report import _dashboard_html

    split = split_sets()
    assert held_out_names("selection,report") == list(split["selection"] + split["report"])
    assert held_out_names("logos, mine,logos") == ["logos", "mine"]  # a user's own source names too
    sources = np.asarray(["mine"] * 6 + ["logos"] * 4 + ["mdi"] * 10)
    tr, va, test = split_rows(sources, 0.2, 0, "mine,logos")
    assert list(test) == list(range(10)) and set(sources[np.concatenate([tr, va])]) == {"mdi"}
    with pytest.raises(DataError, match="test source 'emoji' has no rows \\(sources: logos, mdi, mine\\)"):
        split_rows(sources, 0.2, 0, "logos,emoji")

    rng = np.random.default_rng(0)
    names = list(split["selection"] + split["report"])
    held = np.repeat(names, 10)
    y = rng.uniform(0.8, 1.0, len(held))
    pred = y + rng.normal(0, 0.01, len(y))
    per_set = per_set_metrics(pred, y, held)
    roles = role_summary(per_set)
    summary = {"test_source": "selection,report", "test_metrics": {"count": len(y), "srcc": 0.9, "plcc": 0.8,
                                                                   "mae": 0.01},
               "test_per_set": per_set, "test_roles": roles}
    lines = held_out_lines(summary)
    mean = roles["report"]["mean_srcc"]
    assert lines[0].startswith(f"report sets (5, never trained or chosen on): mean SRCC {mean:.4f}")
    assert lines[1].startswith("selection sets (6, designs are chosen on these)") and "logos " in lines[2]
    html = _dashboard_html(summary, {}, {})
    assert "report sets: mean SRCC" in html and "Held-out icon sets" in html
    assert "<td>logos</td><td>selection</td>" in html


def test_held_out_figures_by_long_side_read_the_size_from_the_statistics():
    from PIL import Image

    from ssimjax.cli.train import held_out_lines
    from ssimjax.evaluate.metrics import long_sides, per_size_metrics, size_band
    from ssimjax.evaluate.report import _dashboard_html
    from ssimjax.features.stats import image_statistics

    sizes = [(30, 20), (20, 47), (48, 48), (100, 300), (256, 10), (1000, 999)]
    stats = np.stack([image_statistics(Image.new("RGB", wh, (200, 30, 30))) for wh in sizes])
    assert list(long_sides(stats)) == [30, 47, 48, 300, 256, 1000]
    assert [size_band(v) for v in (47, 48, 95, 96, 255, 256)] == \
        ["<48 px", "48-95 px", "48-95 px", "96-255 px", "96-255 px", ">=256 px"]

    y = np.array([0.5, 0.7, 0.9, 0.95, 0.97, 0.99])
    per_size = per_size_metrics(y + [0.2, -0.1, 0.0, 0.01, 0.0, 0.01], y, long_sides(stats))
    assert list(per_size) == ["<48 px", "48-95 px", ">=256 px"]  # smallest first; empty bands left out
    assert per_size["<48 px"]["count"] == 2 and per_size["<48 px"]["mae"] == pytest.approx(0.15)
    assert per_size["<48 px"]["bias"] == pytest.approx(0.05) and per_size[">=256 px"]["count"] == 3
    with pytest.raises(ValueError, match="differ in length"):
        per_size_metrics(y, y, [30, 40])

    summary = {"test_source": "logos", "test_metrics": {"count": 6, "srcc": 0.9, "plcc": 0.8, "mae": 0.05},
               "test_per_size": per_size}
    lines = held_out_lines(summary)
    assert lines[-1].startswith("by long side: <48 px (2) SRCC ") and "MAE 0.150" in lines[-1]
    html = _dashboard_html(summary, {}, {})
    assert "Held-out images by long side" in html and "<td>&lt;48 px</td><td>2</td>" in html
