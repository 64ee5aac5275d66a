import jax
import jax.numpy as jnp
import numpy as np

from ssimjax.config import TrainConfig
from ssimjax.models.resnet import backbone_feature_dim
from ssimjax.train.state import Trainer, create_train_state
from ssimjax.train.steps import epoch_batches, eval_step, train_epoch, train_step


D = backbone_feature_dim("tiny")


def feature_batch(rng, n=8, d=D, pad=0):
    x = rng.normal(size=(n + pad, d)).astype(np.float32)
    y = rng.uniform(0.2, 0.9, size=(n + pad,)).astype(np.float32)
    mask = np.arange(n + pad) < n
    return {"features": jnp.asarray(x), "ssim": jnp.asarray(y), "mask": jnp.asarray(mask)}


def leaves_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_train_step_is_pure_and_compiles_once(tiny_config):
    state = create_train_state(tiny_config)
    trainer = Trainer.from_config(tiny_config)
    traces = []

    def counted(state, batch):
        traces.append(1)  # runs only while tracing
        return train_step(state, batch, trainer=trainer)

    step = jax.jit(counted)
    rng = np.random.default_rng(0)
    batch = feature_batch(rng)
    s1, m1 = step(state, batch)
    s2, m2 = step(state, batch)
    assert leaves_equal(s1, s2) and leaves_equal(m1, m2)  # same inputs, same outputs
    s = s1
    for _ in range(5):
        s, _ = step(s, feature_batch(rng))
    assert len(traces) == 1  # no retracing per step
    assert int(s.step) == 6
    # The input state is untouched (no hidden mutation).
    assert leaves_equal(state, create_train_state(tiny_config))


def test_padded_masked_batch_trains_exactly_like_the_short_batch(tiny_config):
    config = tiny_config.replace(dropout_rate=0.0)
    state, trainer = create_train_state(config), Trainer.from_config(config)
    rng = np.random.default_rng(1)
    padded = feature_batch(rng, n=5, pad=3)
    short = {k: v[:5] for k, v in padded.items()}
    a, ma = trainer.train_step(state, padded)
    b, mb = trainer.train_step(state, short)
    np.testing.assert_allclose(ma["loss"], mb["loss"], rtol=1e-6)
    np.testing.assert_allclose(ma["pred"][:5], mb["pred"], rtol=1e-6)
    for x, y in zip(jax.tree_util.tree_leaves(a.batch_stats), jax.tree_util.tree_leaves(b.batch_stats)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    # Dense biases feeding a BatchNorm have a zero gradient up to rounding, which Adam's first
    # step scales to up to ~lr; everything else moves identically.
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a.params), jax.tree_util.tree_leaves(b.params)):
        name = jax.tree_util.keystr(path)
        feeds_batch_norm = "dense_" in name and name.endswith("['bias']")
        np.testing.assert_allclose(x, y, atol=config.learning_rate if feeds_batch_norm else 1e-5, err_msg=name)


def test_frozen_backbone_never_changes_and_unfrozen_learns_slower(tiny_config):
    rng = np.random.default_rng(2)
    images = jnp.asarray(rng.normal(size=(4, 64, 64, 3)), jnp.float32)
    batch = {"image": images, "ssim": jnp.asarray([0.2, 0.4, 0.6, 0.8]), "mask": jnp.ones(4, bool)}
    frozen = create_train_state(tiny_config)
    after, _ = Trainer.from_config(tiny_config).train_step(frozen, batch)
    assert leaves_equal(after.params["feature_extractor"], frozen.params["feature_extractor"])
    assert leaves_equal(after.batch_stats["feature_extractor"], frozen.batch_stats["feature_extractor"])
    assert not leaves_equal(after.params["predictor"], frozen.params["predictor"])

    unfrozen_config = tiny_config.replace(freeze_backbone=False)
    unfrozen = create_train_state(unfrozen_config)
    after, _ = Trainer.from_config(unfrozen_config).train_step(unfrozen, batch)
    bb0, bb1 = unfrozen.params["feature_extractor"], after.params["feature_extractor"]
    assert not leaves_equal(bb1, bb0)
    assert not leaves_equal(after.batch_stats["feature_extractor"], unfrozen.batch_stats["feature_extractor"])
    # Adam's first step moves each weight by about lr (times the group's multiplier).
    step_bb = np.abs(np.asarray(bb1["conv1"]["kernel"] - bb0["conv1"]["kernel"])).max()
    p0, p1 = unfrozen.params["predictor"], after.params["predictor"]
    step_pred = np.abs(np.asarray(p1["dense_0"]["kernel"] - p0["dense_0"]["kernel"])).max()
    np.testing.assert_allclose(step_bb, 0.1 * tiny_config.learning_rate, rtol=0.05)
    np.testing.assert_allclose(step_pred, tiny_config.learning_rate, rtol=0.05)


def test_tiny_model_learns_a_learnable_target():
    config = TrainConfig.plan_model(backbone="tiny", hidden_dims=(64, 32), dropout_rate=0.0, batch_size=16, scheduler="constant")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, D)).astype(np.float32)
    w = rng.normal(size=D)
    y = (1 / (1 + np.exp(-(x @ w) / 8))).astype(np.float32)
    state, trainer = create_train_state(config), Trainer.from_config(config)
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    before = float(jnp.mean((eval_step(state, {"features": xj}, trainer=trainer) - yj) ** 2))
    compiled = train_epoch._cache_size()
    for epoch in range(30):
        state, _ = trainer.train_epoch(state, xj, yj, epoch, batch_size=16)
    after = float(jnp.mean((eval_step(state, {"features": xj}, trainer=trainer) - yj) ** 2))
    assert after < 0.1 * before and after < 0.01, (before, after)
    assert train_epoch._cache_size() == compiled + 1  # one compilation for all 30 epochs


def test_epoch_batches_are_a_seeded_permutation_with_masked_padding():
    rng = jax.random.PRNGKey(0)
    idx, mask = epoch_batches(rng, 0, 10, 4)
    assert idx.shape == (3, 4) and int(mask.sum()) == 10
    assert sorted(np.asarray(idx)[np.asarray(mask)].tolist()) == list(range(10))
    idx_again, _ = epoch_batches(rng, 0, 10, 4)
    idx_next, _ = epoch_batches(rng, 1, 10, 4)
    assert np.array_equal(idx, idx_again) and not np.array_equal(idx, idx_next)


def test_states_from_one_config_share_one_compilation_of_each_step():
    from ssimjax.train.steps import jit_eval_step

    config = TrainConfig.plan_model(backbone="tiny", hidden_dims=(24, 12), batch_size=8, seed=11)
    rng = np.random.default_rng(5)
    x, y = jnp.asarray(rng.normal(size=(40, D)), jnp.float32), jnp.asarray(rng.uniform(size=40), jnp.float32)
    evals, epochs = jit_eval_step._cache_size(), train_epoch._cache_size()
    for seed in range(3):  # three states, three Trainer objects, one configuration (seeds differ)
        cfg = config.replace(seed=seed)
        state, trainer = create_train_state(cfg), Trainer.from_config(cfg)
        state, _ = trainer.train_epoch(state, x, y, 0, batch_size=8)
        trainer.eval_step(state, {"features": x})
    assert jit_eval_step._cache_size() == evals + 1
    assert train_epoch._cache_size() == epochs + 1
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree_util.tree_leaves(state))  # arrays only


def test_uint8_images_are_normalised_on_the_device_bit_for_bit():
    from ssimjax.data.images import normalize
    from ssimjax.train.steps import jit_extract_features, normalize_images

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 224, 224, 3), dtype=np.uint8)
    images[0, 0, :4] = [[0, 0, 0], [255, 255, 255], [1, 128, 254], [17, 99, 201]]
    on_device = np.asarray(jax.jit(normalize_images)(jnp.asarray(images)))
    assert on_device.dtype == np.float32 and np.array_equal(on_device, normalize(images))
    config = TrainConfig.plan_model(backbone="tiny", hidden_dims=(16,))
    state, trainer = create_train_state(config), Trainer.from_config(config)
    a = jit_extract_features(state.variables, jnp.asarray(images), trainer=trainer)
    b = jit_extract_features(state.variables, jnp.asarray(normalize(images)), trainer=trainer)
    assert np.array_equal(np.asarray(a), np.asarray(b))
