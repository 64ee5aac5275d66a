"""The icon-set registry and the fixed rule that splits it into training, selection and report sets."""

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
