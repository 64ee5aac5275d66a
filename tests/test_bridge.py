"""The bridge: exact Flax <-> PyTorch conversion, layer-by-layer parity, and the plan's training
step in PyTorch against ssimjax's, from the same weights on the same batches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from bridge import (  # noqa: E402
    ConversionError, QualityPredictionModel, backbone_flax_to_torchvision, flax_to_torch, torch_to_flax,
    torchvision_to_backbone,
)
from ssimjax.config import TrainConfig  # noqa: E402
from ssimjax.models.quality import QualityModel, make_model  # noqa: E402
from ssimjax.models.init import init_variables  # noqa: E402
from ssimjax.train.state import Trainer, create_train_state  # noqa: E402

torch.use_deterministic_algorithms(True)


def randomized_variables(model, seed=0):
    """Kaiming weights plus random BatchNorm scales, shifts and statistics (defaults hide swapped fields)."""
    rng = np.random.default_rng(seed)
    v = init_variables(model, seed)

    def rand(path, x):
        name, shape = path[-1].key, np.shape(x)
        if name == "scale":
            return jnp.asarray(rng.uniform(0.1, 0.4, shape), jnp.float32)  # keeps activations O(1)
        if name in ("bias", "mean"):
            return jnp.asarray(rng.normal(0, 0.1, shape), jnp.float32)
        if name == "var":
            return jnp.asarray(rng.uniform(0.5, 1.5, shape), jnp.float32)
        return x

    return jax.tree_util.tree_map_with_path(rand, v)


def leaves_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


@pytest.fixture(scope="module")
def resnet50_variables():
    return randomized_variables(QualityModel(), 0)


def test_state_dict_has_the_documented_keys_and_round_trips_bit_exactly(resnet50_variables):
    sd = flax_to_torch(resnet50_variables)
    reference = QualityPredictionModel().state_dict()
    assert list(sd) == list(reference) or set(sd) == set(reference)
    assert {k: tuple(v.shape) for k, v in sd.items()} == {k: tuple(v.shape) for k, v in reference.items()}
    assert "feature_extractor.backbone.0.weight" in sd and "predictor.mlp.16.weight" in sd
    assert sd["feature_extractor.backbone.4.0.downsample.1.num_batches_tracked"].dtype == torch.long
    back = torch_to_flax(sd, resnet50_variables)
    assert leaves_equal(back, resnet50_variables)

    # The backbone alone, in torchvision's own names.
    bb = {c: resnet50_variables[c]["feature_extractor"] for c in ("params", "batch_stats")}
    tv_sd = backbone_flax_to_torchvision(bb)
    tv_keys = {k for k in torchvision.models.resnet50(weights=None).state_dict() if not k.startswith("fc.")}
    assert set(tv_sd) == tv_keys
    assert leaves_equal(torchvision_to_backbone(tv_sd, bb), bb)


def test_variants_without_batch_norm_and_other_widths_convert():
    config = TrainConfig.plan_model(hidden_dims=(64, 32, 16), use_batch_norm=False, dropout_rate=0.1)
    v = init_variables(make_model(config), 1)
    sd = flax_to_torch(v)
    model = QualityPredictionModel({"hidden_dims": [64, 32, 16], "use_batch_norm": False, "dropout_rate": 0.1})
    model.load_state_dict(sd, strict=True)
    assert "predictor.mlp.9.weight" in sd  # three hidden layers of (Linear, ReLU, Dropout), then the head
    assert leaves_equal(torch_to_flax(sd, v), v)


def test_mismatches_list_every_missing_unexpected_and_misshaped_key(resnet50_variables):
    sd = dict(flax_to_torch(resnet50_variables))
    del sd["predictor.mlp.0.weight"]
    del sd["feature_extractor.backbone.1.running_var"]
    sd["predictor.mlp.16.weight"] = torch.zeros(2, 128)
    sd["predictor.extra.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError) as info:
        torch_to_flax(sd, resnet50_variables, what="model.pth")
    e = info.value
    assert sorted(e.missing) == ["feature_extractor.backbone.1.running_var", "predictor.mlp.0.weight"]
    assert e.unexpected == ["predictor.extra.weight"]
    assert e.misshaped == ["predictor.mlp.16.weight (2, 128) (expected (1, 128))"]
    assert str(e).startswith("model.pth does not match the model: missing keys (2)")


def test_layer_by_layer_parity_full_resnet50(resnet50_variables):
    """Stem, four stages, pooled features and MLP output on a non-square input, fp32."""
    model = QualityModel()
    torch_model = QualityPredictionModel()
    torch_model.load_state_dict(flax_to_torch(resnet50_variables), strict=True)
    torch_model.eval()
    x = np.random.default_rng(1).normal(size=(2, 3, 200, 160)).astype(np.float32)
    (ssim, feats), inter = model.apply(resnet50_variables, jnp.asarray(x.transpose(0, 2, 3, 1)),
                                        mutable=["intermediates"])
    inter = inter["intermediates"]["feature_extractor"]
    with torch.no_grad():
        h, outs = torch.from_numpy(x), {}
        for i, module in enumerate(torch_model.feature_extractor.backbone):
            h = module(h)
            if i == 3:
                outs["stem"] = h
            elif 4 <= i <= 7:
                outs[f"layer{i - 3}"] = h
        t_feats = torch.flatten(h, 1)
        t_ssim = torch_model.predictor(t_feats)
    diffs = {}
    for name, t in outs.items():
        ours = np.asarray(inter[name][0]).transpose(0, 3, 1, 2)
        assert ours.shape == tuple(t.shape), name
        diffs[name] = float(np.abs(ours - t.numpy()).max())
    diffs["features"] = float(np.abs(np.asarray(feats) - t_feats.numpy()).max())
    diffs["ssim"] = float(np.abs(np.asarray(ssim) - t_ssim.numpy()).max())
    print("max abs difference per layer:", diffs)
    assert all(d < 1e-5 for d in diffs.values()), diffs

    # The MLP on varied features (the pooled features of two random images are close to each other).
    f = np.random.default_rng(2).normal(size=(16, 2048)).astype(np.float32)
    ours = model.apply(resnet50_variables, jnp.asarray(f), method=QualityModel.predict_from_features)
    with torch.no_grad():
        ref = torch_model.predictor(torch.from_numpy(f)).numpy()
    assert np.abs(np.asarray(ours) - ref).max() < 1e-5 and ref.std() > 1e-3


def torch_reference_step(model, optimizer, images, targets):
    """One step of the plan's trainer: MSE, backward, clip at 1.0 over model.parameters(), Adam."""
    optimizer.zero_grad()
    pred, _ = model(images)
    loss = torch.nn.MSELoss()(pred.squeeze(1), targets)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    optimizer.step()
    return loss.item()


def make_batches(n, size=96, batch=8, seed=0):
    """Demo logos at a reduced size (the model pools globally), ImageNet-normalised, NCHW.

    Real, varied images matter here: on random noise the pooled features of a batch are nearly
    identical, and the MLP's BatchNorm divides by their tiny spread, amplifying rounding.
    """
    from PIL import Image

    from ssimjax.data.images import normalize, to_rgb
    from ssimjax.data.demo import generate_image

    rng = np.random.default_rng(seed)
    images = [np.asarray(to_rgb(generate_image(seed, i)[0]).resize((size, size), Image.BILINEAR))
              for i in range(batch + 8)]
    out = []
    for _ in range(n):
        pick = rng.choice(len(images), batch, replace=False)
        x = normalize(np.stack([images[i] for i in pick])).transpose(0, 3, 1, 2)
        out.append((np.ascontiguousarray(x), rng.uniform(0.2, 0.95, size=batch).astype(np.float32)))
    return out


def run_both(config, steps, batch, size, dtype):
    """Train the same weights on the same batches with ssimjax's train_step and the plan's torch
    step; returns (our losses, their losses, our state_dict, their state_dict)."""
    freeze = config.freeze_backbone
    variables = init_variables(make_model(config), 3)
    torch_model = QualityPredictionModel({"dropout_rate": 0.0, "freeze_backbone": freeze,
                                          "hidden_dims": list(config.hidden_dims)})
    torch_model.load_state_dict(flax_to_torch(variables), strict=True)
    torch_model = torch_model.to(dtype)
    if freeze:  # inference mode for the frozen backbone, training mode for the MLP
        torch_model.feature_extractor.eval()
        torch_model.predictor.train()
        optimizer = torch.optim.Adam(torch_model.predictor.parameters(), lr=1e-3, weight_decay=1e-4,
                                     betas=(0.9, 0.999))
    else:
        torch_model.train()
        optimizer = torch.optim.Adam([
            {"params": torch_model.feature_extractor.parameters(), "lr": 1e-4},
            {"params": torch_model.predictor.parameters(), "lr": 1e-3},
        ], weight_decay=1e-4)
    jdtype = jnp.float64 if dtype == torch.float64 else jnp.float32
    state = create_train_state(config, jax.tree_util.tree_map(lambda a: jnp.asarray(a, jdtype), variables))
    step = Trainer.from_config(config).train_step
    ours, theirs = [], []
    for images, targets in make_batches(steps, size=size, batch=batch):
        theirs.append(torch_reference_step(torch_model, optimizer, torch.from_numpy(images).to(dtype),
                                           torch.from_numpy(targets).to(dtype)))
        state, metrics = step(state, {"image": jnp.asarray(images.transpose(0, 2, 3, 1), jdtype),
                                      "ssim": jnp.asarray(targets, jdtype), "mask": jnp.ones(batch, bool)})
        ours.append(float(metrics["loss"]))
    return np.asarray(ours), np.asarray(theirs), flax_to_torch(state.variables), torch_model.state_dict()


def max_weight_difference(ours_sd, theirs_sd, prefix):
    """Largest absolute difference over the learned weights (not the BatchNorm statistics)."""
    keys = [k for k in theirs_sd if k.startswith(prefix) and not k.endswith("num_batches_tracked")
            and "running" not in k]
    return max(float((ours_sd[k].to(theirs_sd[k].dtype) - theirs_sd[k]).abs().max()) for k in keys)


@pytest.mark.parametrize("freeze,steps", [(True, 10), (False, 5)])
def test_training_algorithm_is_the_plans_pytorch_trainer(freeze, steps):
    """Adam with L2, clipping at 1.0, MSE, batch 32, the plan's default MLP, dropout off.

    Compared in float64 on both sides. In float32 the two runs part after the first steps, as
    any two float32 implementations do: Adam's first updates are about +-lr for every weight
    whatever the gradient's size, so weights whose true gradient is ~0 (biases feeding a
    BatchNorm, directions BatchNorm removes) move by the sign of rounding noise, which differs
    between XLA and PyTorch (measured: loss differences ~1e-2 within 50 steps in float32, from
    4e-7 at step 1). float64 shrinks that noise below Adam's eps and leaves only the algorithm.
    """
    config = TrainConfig.plan_model(dropout_rate=0.0, freeze_backbone=freeze, loss="mse")
    with jax.enable_x64():
        ours, theirs, ours_sd, theirs_sd = run_both(config, steps, batch=32, size=32, dtype=torch.float64)
    loss_diff = float(np.abs(ours - theirs).max())
    mlp_diff = max_weight_difference(ours_sd, theirs_sd, "predictor.")
    all_diff = max_weight_difference(ours_sd, theirs_sd, "")
    stats_diff = max(float(((ours_sd[k].double() - theirs_sd[k]).abs() / (1 + theirs_sd[k].abs())).max())
                     for k in theirs_sd if "running" in k)
    print(f"freeze={freeze}, {steps} steps (float64): max loss difference {loss_diff:.1e}, "
          f"max MLP weight difference {mlp_diff:.1e}, max weight difference overall {all_diff:.1e}, "
          f"BatchNorm running statistics relative difference {stats_diff:.1e}")
    assert loss_diff < 1e-5 and mlp_diff < 1e-4 and all_diff < 1e-4 and stats_diff < 1e-6
    assert ours[-1] < ours[0]  # it trained
    if freeze:
        bb = [k for k in theirs_sd if k.startswith("feature_extractor.") and not k.endswith("num_batches_tracked")]
        assert all(torch.equal(ours_sd[k].double(), theirs_sd[k]) for k in bb)  # frozen stays frozen, both sides


def test_first_training_step_matches_in_float32():
    config = TrainConfig.plan_model(dropout_rate=0.0, loss="mse")
    ours, theirs, _, _ = run_both(config, 1, batch=32, size=64, dtype=torch.float32)
    assert abs(ours[0] - theirs[0]) < 1e-5


def test_pretrained_torchvision_weights_give_torchvisions_features(tmp_path):
    from bridge import backbone_from_torchvision, PretrainedError

    from torch_helpers import random_torchvision_resnet50

    tv = random_torchvision_resnet50()
    path = tmp_path / "resnet50.pth"
    torch.save(tv.state_dict(), path)
    model = QualityModel()
    template = init_variables(model, 0)
    template_bb = {c: template[c]["feature_extractor"] for c in ("params", "batch_stats")}
    backbone, facts = backbone_from_torchvision(str(path), template_bb)
    assert facts["weights"] == "file" and len(facts["file_sha256"]) == 64
    variables = {c: dict(template[c], feature_extractor=backbone[c]) for c in ("params", "batch_stats")}
    x = np.random.default_rng(0).normal(size=(2, 3, 96, 128)).astype(np.float32)
    ours = model.apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)), method=QualityModel.extract_features)
    tv.eval()
    with torch.no_grad():
        ref = torch.flatten(torch.nn.Sequential(*list(tv.children())[:-1])(torch.from_numpy(x)), 1).numpy()
    assert np.abs(np.asarray(ours) - ref).max() < 1e-5

    (tmp_path / "bad.pth").write_bytes(b"not a torch file")
    with pytest.raises(PretrainedError, match="bad.pth: cannot load as a weights-only torch file"):
        backbone_from_torchvision(str(tmp_path / "bad.pth"), template_bb)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(PretrainedError, match=r"mis-shaped keys \(1\): conv1.weight"):
        backbone_from_torchvision(str(tmp_path / "wrong.pth"), template_bb)
