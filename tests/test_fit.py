import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssimjax.train.checkpoint import RunCheckpoints
from ssimjax.train.progress import TIMING_KEYS, EarlyStopping, FitProgress, TrainingError
from ssimjax.train.fit import fit, predict
from ssimjax.train.losses import mse_loss
from ssimjax.models.resnet import backbone_feature_dim
from ssimjax.evaluate.predict import load_run, predict_files
from ssimjax.train.run import train_run
from ssimjax.train.plan import RunError
from ssimjax.train.state import Trainer, create_train_state

D = backbone_feature_dim("tiny")


def synthetic(n, seed=0, poison=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype(np.float32)
    y = (1 / (1 + np.exp(-x[:, :8].sum(1) / 3))).astype(np.float32)
    if poison:
        x[3] = np.nan
    return {"features": x, "ssim": y}


def leaves_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_early_stopping_rule():
    es = EarlyStopping()
    assert es.update(0.5, 0.1, 1e-4)  # first epoch always improves
    assert not es.update(0.49995, 0.10005, 1e-4) and es.patience_counter == 1  # within min_delta: no
    assert es.update(0.6, 0.2, 1e-4) and es.patience_counter == 0  # correlation alone counts
    assert es.update(0.4, 0.0, 1e-4)  # loss alone counts
    for _ in range(3):
        es.update(0.45, 0.1, 1e-4)
    assert es.should_stop(3) and not es.should_stop(4)


def test_fit_stops_early_and_restores_the_best_weights(tiny_config):
    config = tiny_config.replace(epochs=30, patience=3, min_delta=10.0)  # nothing beats epoch 1 by 10
    res = fit(create_train_state(config), config, synthetic(64), synthetic(24, seed=1))
    assert res.stopped_early and res.epochs_completed == 4
    assert all(len(v) == 4 for v in res.history.values())

    config = tiny_config.replace(epochs=12, patience=12, learning_rate=3e-3)
    val = synthetic(24, seed=1)
    res = fit(create_train_state(config), config, synthetic(64), val)
    h = res.history
    assert res.best_epoch == int(np.argmin(h["val_loss"])) and res.epochs_completed == 12
    assert res.best_epoch != 11 or h["val_loss"][11] == min(h["val_loss"])
    restored = float(mse_loss(jnp.asarray(predict(Trainer.from_config(config), res.state, val, 16)), jnp.asarray(val["ssim"])))
    assert restored == pytest.approx(h["val_loss"][res.best_epoch], rel=1e-6)
    assert min(h["val_loss"]) < h["val_loss"][0]


def test_checkpoint_round_trip_is_exact(tmp_path, tiny_config):
    state = create_train_state(tiny_config)
    state = fit(state, tiny_config.replace(epochs=2), synthetic(32), synthetic(8, 1)).state
    ck = RunCheckpoints(tmp_path)
    ck.save(7, state, {"epoch": 7, "note": "x"}, val_loss=0.1)
    ck.close()
    ck = RunCheckpoints(tmp_path, read_only=True)
    restored, meta = ck.restore(7, create_train_state(tiny_config))
    assert meta == {"epoch": 7, "note": "x"}
    assert leaves_equal(restored, state)
    assert jax.tree_util.tree_structure(restored.opt_state) == jax.tree_util.tree_structure(state.opt_state)
    assert (tmp_path / "backbone").is_dir()  # the frozen backbone is stored once, beside the epochs


def test_a_checkpoint_holds_its_epochs_history_not_what_is_appended_while_it_is_written(tmp_path, tiny_config):
    # Saves are asynchronous: the next epoch's rows were appended to the very lists being written,
    # and a run resumed from that checkpoint carried a history row twice (seen in CI as a
    # learning-rate history one entry longer than the other keys').
    state = create_train_state(tiny_config)
    history = {"val_loss": [0.5], "learning_rate": [1e-3]}
    ck = RunCheckpoints(tmp_path)
    ck.save(0, state, {"epoch": 0, "history": history}, val_loss=0.5)
    history["val_loss"].append(0.4)
    history["learning_rate"].append(5e-4)
    ck.close()
    meta = RunCheckpoints(tmp_path, read_only=True).read_meta(0)
    assert meta["history"] == {"val_loss": [0.5], "learning_rate": [1e-3]}

    # A checkpoint written so by an earlier version resumes with its own epochs' rows only.
    ck = RunCheckpoints(tmp_path / "old")
    keys = tuple(FitProgress().history)
    meta = FitProgress(history={k: [0.1] for k in keys}, best_epoch=0).meta(0, {"loss": 0.1})
    meta["history"]["learning_rate"].append(5e-4)
    ck.save(0, state, meta, val_loss=0.1)
    ck.close()
    _, progress = FitProgress.from_checkpoints(RunCheckpoints(tmp_path / "old", read_only=True), state, keys)
    assert progress.next_epoch == 1 and all(v == [0.1] for v in progress.history.values())


def test_checkpoints_keep_the_latest_five_and_the_best(tmp_path, tiny_config):
    state = create_train_state(tiny_config)
    ck = RunCheckpoints(tmp_path)
    for epoch, loss in enumerate([0.5, 0.1, 0.4, 0.3, 0.35, 0.6, 0.7, 0.8, 0.9]):
        ck.save(epoch, state, {"epoch": epoch}, val_loss=loss)
    ck.close()
    assert RunCheckpoints(tmp_path, read_only=True).steps() == [1, 4, 5, 6, 7, 8]


def test_resume_reproduces_an_uninterrupted_run(tmp_path, small_dataset, tiny_config):
    config = tiny_config.replace(epochs=6, patience=20, scheduler="reduce_on_plateau")
    full, _ = train_run(config, data=small_dataset, out=tmp_path / "full", report=False)  # test_report

    class Stop(KeyboardInterrupt):
        pass

    def interrupt(epoch, history):
        if epoch == 2:
            raise Stop()

    with pytest.raises(Stop):
        train_run(config, data=small_dataset, out=tmp_path / "cut", on_epoch_end=interrupt, report=False)
    with pytest.raises(RunError, match="already holds a run"):
        train_run(config, data=small_dataset, out=tmp_path / "cut")
    resumed, _ = train_run(config, data=small_dataset, out=tmp_path / "cut", resume=True, report=False)
    for key, values in full.history.items():
        if key not in TIMING_KEYS:
            assert resumed.history[key] == values, key
    assert resumed.best_epoch == full.best_epoch
    assert leaves_equal(resumed.state.params, full.state.params)
    assert leaves_equal(resumed.state.opt_state, full.state.opt_state)


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_checkpoints(tmp_path, tiny_config):
    ck = RunCheckpoints(tmp_path)
    config = tiny_config.replace(epochs=2)
    fit(create_train_state(config), config, synthetic(32), synthetic(8, 1), checkpoints=ck)
    with pytest.raises(TrainingError, match=r"epoch 3, batch \d+: training loss is nan"):
        state, progress = FitProgress.from_checkpoints(ck, create_train_state(config))
        fit(state, config.replace(epochs=4), synthetic(32, poison=True), synthetic(8, 1),
            checkpoints=ck, progress=progress)
    ck.close()
    ck = RunCheckpoints(tmp_path, read_only=True)
    assert ck.latest_epoch() == 1
    state, meta = ck.restore(1, create_train_state(config))
    assert meta["epoch"] == 1 and np.isfinite(np.asarray(state.params["predictor"]["head"]["kernel"])).all()


@pytest.mark.parametrize("stop", [KeyboardInterrupt, TrainingError])
def test_fast_epochs_are_saved_when_best_or_last_and_ctrl_c_saves_the_epoch_it_finished(tmp_path, tiny_config,
                                                                                          monkeypatch, stop):
    import ssimjax.train.fit as fit_module

    monkeypatch.setattr(fit_module, "CHECKPOINT_EVERY_S", 1e9)  # no epoch is saved for its time alone
    config = tiny_config.replace(epochs=10, patience=20, learning_rate=3e-2)
    train, val = synthetic(64), synthetic(24, seed=1)
    whole = fit(create_train_state(config), config, train, val)
    bests = {e for e in range(10) if whole.history["val_loss"][e] == min(whole.history["val_loss"][:e + 1])}
    assert 1 < len(bests) < 9  # some epochs are not the best so far: those are not saved

    ck = RunCheckpoints(tmp_path / "all")
    fit(create_train_state(config), config, train, val, checkpoints=ck)
    ck.close()
    assert RunCheckpoints(tmp_path / "all", read_only=True).steps() == sorted(bests | {9})[-5:]  # the latest 5 kept

    cut = min(set(range(1, 9)) - bests)  # an epoch that is neither best nor last

    def interrupt(epoch, history, metrics):
        if epoch == cut:
            raise stop("stopped")  # Ctrl-C, or a non-finite loss in the next epoch

    ck = RunCheckpoints(tmp_path / "cut")
    with pytest.raises(stop):
        fit(create_train_state(config), config, train, val, checkpoints=ck, on_epoch_end=interrupt)
    ck.close()
    ck = RunCheckpoints(tmp_path / "cut")
    assert ck.latest_epoch() == cut
    state, progress = FitProgress.from_checkpoints(ck, create_train_state(config))
    resumed = fit(state, config, train, val, checkpoints=ck, progress=progress)
    ck.close()
    for key, values in whole.history.items():
        if key not in TIMING_KEYS:
            assert resumed.history[key] == values, key
    assert leaves_equal(resumed.state.params, whole.state.params)


def test_unfrozen_backbone_trains_on_images_and_predicts(tmp_path, small_dataset, tiny_config):
    config = tiny_config.replace(freeze_backbone=False, epochs=2)
    res, out = train_run(config, data=small_dataset, out=tmp_path / "run", report=False)
    start = create_train_state(config)
    assert not leaves_equal(res.state.params["feature_extractor"], start.params["feature_extractor"])
    assert not (out / "backbone").exists()  # the backbone is in every checkpoint instead
    run = load_run(out)
    assert run.config == config
    assert leaves_equal(run.state.params, res.state.params)
    preds = predict_files(run, sorted((small_dataset / "images").glob("*.png"))[:3])
    assert preds.shape == (3,) and np.all((preds > 0) & (preds < 1))


def test_resuming_a_run_that_stopped_early_reports_its_own_epochs(tmp_path, small_dataset, tiny_config):
    config = tiny_config.replace(epochs=30, patience=2, min_delta=10.0)  # stops after epoch 3
    first, out = train_run(config, data=small_dataset, out=tmp_path / "run", report=False)
    assert first.stopped_early and first.epochs_completed == 3
    again, _ = train_run(config, data=small_dataset, out=out, resume=True, report=False)
    assert again.stopped_early and again.epochs_completed == 3 and again.best_epoch == first.best_epoch
    assert again.history == first.history


def test_default_model_trains_its_map_network_first_and_predicts_with_it(tmp_path, small_dataset):
    """The default model: the SSIM-map network is trained on the training images, saved once in
    the run folder, read back on resume and by load_run, and its score is the MLP's last input."""
    import json

    from ssimjax.config import TrainConfig
    from ssimjax.features.inputs import build_inputs
    from ssimjax.features.cache import default_cache_dir
    from ssimjax.models.mapnet import with_map_scores
    from ssimjax.features.stats import STAT_NAMES

    config = TrainConfig(backbone="tiny", hidden_dims=(16,), batch_size=8, epochs=4, map_steps=20, map_extra=24)
    assert config.map_net
    full, out = train_run(config, data=small_dataset, out=tmp_path / "full", report=False)
    assert (out / "map_net").is_dir()
    timings = json.loads((out / "summary.json").read_text())["timings"]
    assert timings["map_net_train_s"] > 0 and timings["map_net_score_s"] > 0
    run = load_run(out)
    assert run.map_model is not None and run.map_model.spec.channels == config.map_channels

    class Stop(KeyboardInterrupt):
        pass

    def interrupt(epoch, history):
        if epoch == 1:
            raise Stop()

    with pytest.raises(Stop):
        train_run(config, data=small_dataset, out=tmp_path / "cut", on_epoch_end=interrupt, report=False)
    resumed, _ = train_run(config, data=small_dataset, out=tmp_path / "cut", resume=True, report=False)
    assert all(resumed.history[k] == v for k, v in full.history.items() if k not in TIMING_KEYS)

    # predict.py's path (image files -> statistics + map score -> model) equals the training inputs'.
    inputs, _, _ = build_inputs(run.trainer, run.state.variables, small_dataset, default_cache_dir(), False)
    stats = with_map_scores(inputs["stats"], inputs["path"], run.map_model)
    given, _, _ = build_inputs(run.trainer, run.state.variables, small_dataset, default_cache_dir(), False,
                               map_model=run.map_model)
    np.testing.assert_array_equal(given["stats"], stats)
    assert stats.shape[1] == len(STAT_NAMES) + 1 and np.ptp(stats[:, -1]) > 0
    expected = predict(run.trainer, run.state, {"features": inputs["features"], "stats": stats}, 8)
    np.testing.assert_allclose(predict_files(run, list(inputs["path"])), expected, atol=1e-6)
    with pytest.raises(ValueError, match="map score"):
        predict(run.trainer, run.state, {"features": inputs["features"], "stats": inputs["stats"]}, 8)
