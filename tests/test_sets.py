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
