"""How a run starts is decided in one place: defaults, conflicts, and what the MLP sees."""

import pytest

from ssimjax.config import ConfigError, TrainConfig
from ssimjax.train.plan import RunError, plan_run


def test_a_default_run_trains_on_icons_and_holds_out_the_selection_and_report_sets(tmp_path):
    plan = plan_run({}, out=tmp_path / "r")
    assert plan.data == "icons" and plan.config.test_source == "selection,report"
    assert plan.config.image_stats and not plan.config.backbone_features
    own = plan_run({}, out=tmp_path / "r", data=str(tmp_path))
    assert own.config.test_source is None
    assert plan_run({"test_source": None}, out=tmp_path / "r").config.test_source is None


def test_the_mlp_sees_backbone_features_when_they_can_carry_signal(tmp_path):
    loaded = []
    plan = plan_run({}, out=tmp_path / "r", load_backbone=lambda c: loaded.append(c) or ({}, {"weights": "file"}))
    assert plan.config.backbone_features and loaded and plan.backbone == ({}, {"weights": "file"})
    assert plan_run({"freeze_backbone": False}, out=tmp_path / "r").config.backbone_features
    assert not plan_run({"backbone_features": False}, out=tmp_path / "r",
                        load_backbone=lambda c: ({}, {})).config.backbone_features
    with pytest.raises(ConfigError, match="training the backbone needs backbone_features"):
        plan_run({"freeze_backbone": False, "backbone_features": False}, out=tmp_path / "r")
    with pytest.raises(ConfigError, match="the MLP needs an input"):
        TrainConfig(image_stats=False)
    assert TrainConfig.plan_model() == TrainConfig(image_stats=False, map_net=False, backbone_features=True,
                                                   loss="mse", epochs=50, patience=10,
                                                   hidden_dims=(1024, 512, 256, 128))
    with pytest.raises(ConfigError, match="map_net: the map score joins the image statistics"):
        TrainConfig(image_stats=False, backbone_features=True)


def test_conflicting_requests_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="--resume needs the run folder"):
        plan_run({}, resume=True)
    with pytest.raises(ConfigError, match="starts a run"):
        plan_run({}, out=tmp_path, resume=True, load_backbone=lambda c: ({}, {}))
    with pytest.raises(RunError, match="nothing to resume"):
        plan_run({}, out=tmp_path, resume=True)
    with pytest.raises(ConfigError, match="needs the resnet50 backbone"):
        plan_run({"backbone": "tiny"}, out=tmp_path / "r", load_backbone=lambda c: ({}, {}))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "config.json").write_text("{}")
    # A run stopped before its first checkpoint left only its record: a new run may start there.
    assert plan_run({}, out=tmp_path / "taken").reuses_folder
    for work in ("checkpoints", "map_net", "map_net_checkpoints"):
        (tmp_path / work / work).mkdir(parents=True)
        with pytest.raises(RunError, match="already holds a run"):
            plan_run({}, out=tmp_path / work)


def test_the_map_network_steps_scale_with_the_training_images():
    from ssimjax.config import MAP_MIN_STEPS, MAP_STEPS, map_steps_for

    auto = TrainConfig()
    assert map_steps_for(auto, 32) == MAP_MIN_STEPS  # a 40-image set: seconds, not minutes
    assert map_steps_for(auto, 1000) == 1000 and map_steps_for(auto, 2396) == 2396
    assert map_steps_for(auto, 100_000) == MAP_STEPS
    assert map_steps_for(TrainConfig(map_steps=20), 100_000) == 20
    with pytest.raises(ConfigError, match="map_steps: must be a whole number >= 1"):
        TrainConfig(map_steps=0)
