"""Cross-validation: stratified splits, folds trained together in one compiled program, summaries."""

import numpy as np
import pytest

from ssimjax.config import TrainConfig
from ssimjax.evaluate.cross_validation import ValidationError, cross_validate, cv_epoch, fold_splits, summarize
from ssimjax.features.stats import STAT_NAMES

rng = np.random.default_rng(0)


def stats_inputs(n, seed=0):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, len(STAT_NAMES))).astype(np.float32)
    y = (1 / (1 + np.exp(-x[:, :4].sum(1) / 2))).astype(np.float32)
    return {"features": np.zeros((n, 0), np.float32), "stats": x, "ssim": y}


def test_stratified_folds_keep_band_shares_and_cover_every_row_once():
    y = np.concatenate([rng.uniform(0.3, 0.6, 50), rng.uniform(0.6, 0.8, 50), rng.uniform(0.8, 1.0, 100)])
    splits, strata = fold_splits(y, 5)
    assert strata == "quality bands"
    val = np.concatenate([va for _, va in splits])
    assert sorted(val) == list(range(200))
    for tr, va in splits:
        assert len(set(tr) & set(va)) == 0
        assert np.sum(y[va] >= 0.8) == 20 and np.sum(y[va] < 0.6) == 10
    # Same seed, same folds.
    again, _ = fold_splits(y, 5)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again))


def test_narrow_labels_fall_back_to_quantile_strata_and_kfold_when_asked():
    y = np.concatenate([rng.uniform(0.9, 1.0, 97), [0.5, 0.55, 0.7]])  # low and medium bands: < 5 rows
    _, strata = fold_splits(y, 5)
    assert strata == "label quantiles"
    _, strata = fold_splits(y, 5, stratified=False)
    assert strata == "none"
    with pytest.raises(ValidationError, match="needs at least 10 rows"):
        fold_splits(y[:9], 5)
    with pytest.raises(ValidationError, match="folds must be"):
        fold_splits(y, 1)


def test_folds_train_together_compiled_once_and_match_each_fold_alone():
    config = TrainConfig(hidden_dims=(16, 8), batch_size=10, epochs=6, learning_rate=1e-2, dropout_rate=0.0,
                         map_net=False)
    inputs = stats_inputs(90)  # folds of 18: the training sets (72) do not fill their last batch
    before = cv_epoch._cache_size()
    together = cross_validate(config, inputs, folds=5)
    assert cv_epoch._cache_size() == before + 1  # one compilation for all five folds
    assert together["vectorised"] and len(together["fold_results"]) == 5
    for k in (0, 3):
        alone = cross_validate(config, inputs, folds=5, fold_subset=[k])["fold_results"][0]
        both = together["fold_results"][k]
        assert alone["fold"] == k and alone["sample_count"] == both["sample_count"]
        for key in ("mae", "correlation", "srcc"):
            # vmap batches the matmuls: float32 sums in another order, nothing more.
            assert alone[key] == pytest.approx(both[key], abs=1e-4), key
    summary = together["summary"]
    maes = [f["mae"] for f in together["fold_results"]]
    assert summary["mae"]["mean"] == pytest.approx(np.mean(maes))
    assert summary["mae"]["median"] == pytest.approx(np.median(maes))
    assert summary["correlation"]["std"] == pytest.approx(np.std([f["correlation"] for f in together["fold_results"]]))
    assert summary["correlation"]["mean"] > 0.5  # it learned: the comparison above is not of noise
    assert together["epochs"] == 6 and together["fold_results"][0]["epochs_completed"] == 6


def test_folds_of_unequal_size_do_not_train_on_padding():
    # 51 rows: one fold trains on 40 rows (5 batches of 8), the others on 41 (6 batches, the last
    # with one row): the shorter fold's sixth, all-padding batch must change nothing.
    config = TrainConfig(hidden_dims=(8,), batch_size=8, epochs=3, learning_rate=1e-2, dropout_rate=0.0, map_net=False)
    inputs = stats_inputs(51, seed=2)
    together = cross_validate(config, inputs, folds=5)
    sizes = [r["sample_count"] for r in together["fold_results"]]
    assert sorted(sizes) == [10, 10, 10, 10, 11]
    for k in range(5):
        alone = cross_validate(config, inputs, folds=5, fold_subset=[k])["fold_results"][0]
        assert alone["mae"] == pytest.approx(together["fold_results"][k]["mae"], abs=1e-5), k


def test_cv_epochs_are_capped_at_20():
    config = TrainConfig(hidden_dims=(8,), batch_size=16, epochs=150, map_net=False)
    res = cross_validate(config, stats_inputs(40), folds=2)
    assert res["epochs"] == 20 and len(res["history"]["val_loss"][0]) == 20


def test_summarize_skips_non_numbers():
    s = summarize([{"fold": 0, "mae": 1.0, "name": "x"}, {"fold": 1, "mae": 3.0, "name": "y"}])
    assert set(s) == {"mae"} and s["mae"] == {"mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0, "median": 2.0}
