import json
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssimjax.config import TrainConfig
from ssimjax.models.quality import QualityModel, count_params, make_model
from ssimjax.models.resnet import backbone_feature_dim
from ssimjax.models.init import init_variables


def abstract_variables(model, size=224):
    x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
    return jax.eval_shape(lambda x: model.init({"params": jax.random.PRNGKey(0)}, x), x)


def test_resnet50_has_torchvisions_parameter_count_and_structure():
    v = abstract_variables(QualityModel())
    backbone = v["params"]["feature_extractor"]
    assert count_params(backbone) == 23_508_032  # torchvision resnet50 without fc
    convs = [p for p, _ in jax.tree_util.tree_flatten_with_path(backbone)[0] if p[-1].key == "kernel"]
    assert len(convs) == 53
    bns = [p for p, _ in jax.tree_util.tree_flatten_with_path(v["batch_stats"]["feature_extractor"])[0]
           if p[-1].key == "mean"]
    assert len(bns) == 53
    assert backbone["layer2_0"]["conv2"]["kernel"].shape == (3, 3, 128, 128)  # v1.5: stride on the 3x3
    assert backbone["layer4_2"]["conv3"]["kernel"].shape == (1, 1, 512, 2048)


def test_predictor_structure_default_and_without_batch_norm():
    v = abstract_variables(QualityModel())
    pred = v["params"]["predictor"]
    assert [pred[f"dense_{i}"]["kernel"].shape for i in range(4)] == [(2048, 1024), (1024, 512), (512, 256), (256, 128)]
    assert pred["head"]["kernel"].shape == (128, 1)
    assert set(v["batch_stats"]["predictor"]) == {"bn_0", "bn_1", "bn_2", "bn_3"}
    nobn = abstract_variables(QualityModel(hidden_dims=(64,), use_batch_norm=False))
    assert set(nobn["params"]["predictor"]) == {"dense_0", "head"}
    assert "predictor" not in nobn.get("batch_stats", {})


def test_output_shapes_full_model_abstract_and_tiny_concrete():
    model = QualityModel()
    variables = abstract_variables(model)
    out = jax.eval_shape(lambda v, x: model.apply(v, x), variables, jax.ShapeDtypeStruct((3, 224, 224, 3), jnp.float32))
    assert out[0].shape == (3, 1) and out[1].shape == (3, 2048)

    tiny = QualityModel(backbone="tiny", hidden_dims=(16,))
    tv = init_variables(tiny, 0)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 224, 224, 3)), jnp.float32)
    ssim, feats = tiny.apply(tv, x)
    assert ssim.shape == (2, 1) and feats.shape == (2, backbone_feature_dim("tiny"))
    assert np.all((np.asarray(ssim) > 0) & (np.asarray(ssim) < 1))
    # Non-square inputs work too (the backbone pools globally).
    ssim2, _ = tiny.apply(tv, x[:, :200, :160])
    assert ssim2.shape == (2, 1)


def test_initialisation_is_seeded_and_follows_kaiming_fan_out():
    model = QualityModel()
    a, b, c = init_variables(model, 0), init_variables(model, 0), init_variables(model, 1)
    ka, kb, kc = (v["params"]["feature_extractor"]["layer3_0"]["conv2"]["kernel"] for v in (a, b, c))
    assert np.array_equal(ka, kb) and not np.array_equal(ka, kc)
    fan_out = 3 * 3 * 256
    assert np.std(np.asarray(ka)) == pytest.approx(np.sqrt(2 / fan_out), rel=0.02)
    dense = np.asarray(a["params"]["predictor"]["dense_0"]["kernel"])
    assert np.std(dense) == pytest.approx(np.sqrt(2 / 1024), rel=0.02)
    assert not np.any(np.asarray(a["params"]["predictor"]["dense_0"]["bias"]))
    assert np.all(np.asarray(a["batch_stats"]["feature_extractor"]["bn1"]["var"]) == 1)


def test_head_init_choice():
    lecun = init_variables(make_model(TrainConfig(hidden_dims=(128,))), 0)["params"]["predictor"]["head"]["kernel"]
    plan = init_variables(make_model(TrainConfig(hidden_dims=(128,), head_init="kaiming_fan_out")), 0)
    plan = plan["params"]["predictor"]["head"]["kernel"]
    assert np.std(np.asarray(lecun)) == pytest.approx(np.sqrt(1 / 128), rel=0.2)
    assert np.std(np.asarray(plan)) == pytest.approx(np.sqrt(2), rel=0.2)


def test_batchnorm_running_variance_is_unbiased_like_torch():
    from ssimjax.models.layers import BatchNorm

    x = jnp.asarray(np.random.default_rng(0).normal(2.0, 3.0, size=(5, 4)), jnp.float32)
    bn = BatchNorm()
    v = bn.init(jax.random.PRNGKey(0), x)
    y, upd = bn.apply(v, x, mutable=["batch_stats"])
    xn = np.asarray(x, np.float64)
    np.testing.assert_allclose(upd["batch_stats"]["mean"], 0.1 * xn.mean(0), rtol=1e-5)
    np.testing.assert_allclose(upd["batch_stats"]["var"], 0.9 + 0.1 * xn.var(0, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(y, (xn - xn.mean(0)) / np.sqrt(xn.var(0) + 1e-5), atol=1e-5)
    # A masked (padded) batch gives exactly the statistics of its real rows.
    padded = jnp.concatenate([x, jnp.full((3, 4), 100.0)])
    mask = jnp.arange(8) < 5
    yp, updp = bn.apply(v, padded, mask=mask, mutable=["batch_stats"])
    np.testing.assert_allclose(yp[:5], y, atol=1e-5)
    np.testing.assert_allclose(updp["batch_stats"]["var"], upd["batch_stats"]["var"], rtol=1e-5)


@pytest.mark.parametrize("masked", [False, True])
def test_batchnorm_gradient_equals_autodiff_of_the_formula(masked):
    """The written-out backward pass of training-mode BatchNorm against autodiff of the plain formula,
    in float64: input, scale and bias gradients, with and without padded rows."""
    from ssimjax.models.layers import batch_normalize

    jax.config.update("jax_enable_x64", True)
    try:
        rng = np.random.default_rng(1)
        x = jnp.asarray(rng.normal(1.5, 2.0, size=(6, 5, 3, 4)))
        scale, bias = jnp.asarray(rng.normal(size=4)), jnp.asarray(rng.normal(size=4))
        weights = jnp.asarray([1.0, 1, 0, 1, 1, 0] if masked else [1.0] * 6)
        probe = jnp.asarray(rng.normal(size=x.shape))

        def reference(x, scale, bias):
            w = weights.reshape(6, 1, 1, 1)
            n = jnp.sum(weights) * 15
            mean = jnp.sum(x * w, axis=(0, 1, 2)) / n
            var = jnp.sum(jnp.square(x - mean) * w, axis=(0, 1, 2)) / n
            return jnp.sum(probe * ((x - mean) * jax.lax.rsqrt(var + 1e-5) * scale + bias))

        def ours(x, scale, bias):
            return jnp.sum(probe * batch_normalize(x, scale, bias, weights, 1e-5, masked)[0])

        assert float(ours(x, scale, bias)) == pytest.approx(float(reference(x, scale, bias)), rel=1e-12)
        for got, want in zip(jax.grad(ours, (0, 1, 2))(x, scale, bias), jax.grad(reference, (0, 1, 2))(x, scale, bias)):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_batchnorm_bfloat16_gradient_stays_bfloat16_and_close():
    from ssimjax.models.layers import batch_normalize

    x = jnp.asarray(np.random.default_rng(2).normal(size=(8, 6, 6, 16)), jnp.float32)
    scale, bias, weights = jnp.ones(16), jnp.zeros(16), jnp.ones(8)
    probe = jnp.asarray(np.random.default_rng(3).normal(size=x.shape), jnp.float32)

    def loss(x):
        return jnp.sum(probe * batch_normalize(x, scale, bias, weights, 1e-5, False)[0])

    g32, g16 = jax.grad(loss)(x), jax.grad(loss)(x.astype(jnp.bfloat16))
    assert g16.dtype == jnp.bfloat16
    assert float(jnp.linalg.norm(g16.astype(jnp.float32) - g32) / jnp.linalg.norm(g32)) < 0.02
    # bfloat16 statistics come from one pass (sums of x and x^2): still those of the values it holds,
    # also with a mean well away from zero, with and without padded rows.
    for masked in (False, True):
        shifted = (x * 0.5 + 3.0).astype(jnp.bfloat16)
        w = jnp.asarray([1.0] * 6 + [0.0] * 2) if masked else weights
        _, mean, var = batch_normalize(shifted, scale, bias, w, 1e-5, masked)
        real = np.asarray(shifted, np.float64)[:6 if masked else 8].reshape(-1, 16)
        np.testing.assert_allclose(mean, real.mean(0), rtol=1e-5)
        np.testing.assert_allclose(var, real.var(0), rtol=1e-3)


@pytest.mark.parametrize("size", [9, 12])
def test_training_max_pool_matches_torch_value_and_gradient_with_ties(size):
    """The stem's max-pool in training mode (its own gradient) against torch's MaxPool2d(3, 2, 1):
    the same maxima, and each window's gradient to its first maximum, also where a flat region
    makes every value of a window equal (as flat logo areas do after a ReLU). Float64, so only a
    real routing difference shows."""
    torch = pytest.importorskip("torch")
    from ssimjax.models.layers import max_pool_3x3_s2

    jax.config.update("jax_enable_x64", True)
    try:
        rng = np.random.default_rng(0)
        x = np.maximum(rng.normal(size=(2, size, size, 3)), 0.0)
        x[:, : size // 2, : size // 2] = 0.7  # ties
        g = rng.normal(size=(2, (size - 1) // 2 + 1, (size - 1) // 2 + 1, 3))
        out, vjp = jax.vjp(max_pool_3x3_s2, jnp.asarray(x))
        tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
        tout = torch.nn.functional.max_pool2d(tx, 3, 2, 1)
        tout.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
        np.testing.assert_array_equal(np.asarray(out), tout.detach().numpy().transpose(0, 2, 3, 1))
        np.testing.assert_allclose(np.asarray(vjp(jnp.asarray(g))[0]), tx.grad.numpy().transpose(0, 2, 3, 1),
                                   rtol=0, atol=1e-12)
    finally:
        jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("stride", [1, 2])
def test_1x1_convolution_as_matrix_product_equals_the_convolution(stride):
    """A CPU runs 1x1 convolutions as matrix products, other backends as convolutions: the same
    values and gradients either way (float64, so only a real difference shows)."""
    from ssimjax.models.resnet import Conv

    jax.config.update("jax_enable_x64", True)
    try:
        x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 9, 16)))
        params = Conv(8, 1, stride).init(jax.random.PRNGKey(0), x)

        def run(as_matmul):
            conv = Conv(8, 1, stride, matmul_1x1=as_matmul)
            return jax.value_and_grad(lambda p, x: jnp.sum(jnp.sin(conv.apply(p, x))), argnums=(0, 1))(params, x)

        (v_mm, (gp_mm, gx_mm)), (v_cv, (gp_cv, gx_cv)) = run(True), run(False)
        np.testing.assert_allclose(v_mm, v_cv, rtol=1e-12)
        np.testing.assert_allclose(gp_mm["params"]["kernel"], gp_cv["params"]["kernel"], rtol=1e-12)
        np.testing.assert_allclose(gx_mm, gx_cv, rtol=1e-12, atol=1e-15)
    finally:
        jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("stride", [1, 2])
def test_bfloat16_1x1_products_take_bfloat16_operands_and_sum_in_float32(stride):
    """Mixed precision on a CPU: every product of a 1x1 convolution, forward and backward, takes
    bfloat16 operands with a float32 result (XLA's CPU compiler runs bfloat16 -> bfloat16 products
    as float32 ones), and the kernel's gradient keeps float32 sums of the exact bfloat16 products
    (autodiff would round it to bfloat16)."""
    from ssimjax.models.resnet import Conv

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 9, 9, 16)), jnp.float32)
    conv = Conv(8, 1, stride, dtype="bfloat16", matmul_1x1=True)
    params = conv.init(jax.random.PRNGKey(0), x)
    kernel = params["params"]["kernel"]

    def loss(p, x):
        return jnp.sum(jnp.sin(conv.apply(p, x).astype(jnp.float32)))

    y = conv.apply(params, x)
    (gp, gx) = jax.grad(loss, argnums=(0, 1))(params, x)
    assert y.dtype == jnp.bfloat16 and gp["params"]["kernel"].dtype == jnp.float32

    as64 = lambda a: np.asarray(jnp.asarray(a, jnp.bfloat16), np.float64)
    xs, k = as64(x)[:, ::stride, ::stride], as64(kernel[0, 0])
    y_ref = xs @ k
    np.testing.assert_allclose(np.asarray(y, np.float64), y_ref, rtol=2**-8, atol=1e-6)
    g = as64(np.cos(np.asarray(y, np.float32)))  # the cotangent the product sees: bfloat16
    dk_ref = np.einsum("nhwc,nhwk->ck", xs, g)
    np.testing.assert_allclose(gp["params"]["kernel"][0, 0], dk_ref, rtol=1e-5, atol=1e-5)
    dx_ref = np.zeros(x.shape)
    dx_ref[:, ::stride, ::stride] = g @ k.T
    np.testing.assert_allclose(np.asarray(gx, np.float64), dx_ref, rtol=2**-7, atol=1e-2)

    from jax.extend.core import subjaxprs

    def dot_eqns(jaxpr):
        found = [e for e in jaxpr.eqns if e.primitive.name == "dot_general"]
        return found + [e for sub in subjaxprs(jaxpr) for e in dot_eqns(sub)]

    dots = dot_eqns(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(params, x).jaxpr)
    assert len(dots) == 3 and all(v.aval.dtype == jnp.bfloat16 for e in dots for v in e.invars)
    assert all(e.params["preferred_element_type"] == jnp.float32 for e in dots)


def test_off_a_cpu_the_backbone_traces_convolutions_only(monkeypatch):
    """XLA's GPU compiler (jaxlib 0.11.2) aborted the whole process on the 1x1 convolutions written
    as matrix products: on any backend but the CPU, the backbone's training step must hold no
    matrix product. (The CPU's own program holds them, so this test tells the two apart.)"""
    from ssimjax.models.resnet import ResNet

    model = ResNet(stage_sizes=(1, 1), width=8)
    x = jnp.zeros((2, 32, 32, 3))
    variables = model.init(jax.random.PRNGKey(0), x)

    def program():
        loss = lambda p: jnp.sum(model.apply({**variables, "params": p}, x, train=True, mutable=["batch_stats"])[0])
        return str(jax.make_jaxpr(jax.grad(loss))(variables["params"]))

    assert "dot_general" in program()
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    gpu = program()
    assert "dot_general" not in gpu and "conv_general_dilated" in gpu


def test_residual_head_starts_at_the_map_score_and_learns_a_bounded_correction(tmp_path):
    """The default model's MLP corrects the map score (the last statistic): untrained, it predicts
    the map score plus the training rows' mean correction, clipped to [0, 1]; runs saved before the
    residual head existed load as the sigmoid model they were."""
    from ssimjax.config import load_config, save_config
    from ssimjax.models.quality import map_residual, num_stats
    from ssimjax.models.init import with_training_start

    config = TrainConfig(backbone="tiny", hidden_dims=(16,), backbone_features=False)
    assert map_residual(config) and not map_residual(config.replace(map_residual=False))
    assert not map_residual(config.replace(map_net=False))  # nothing to correct
    model = make_model(config)
    rng = np.random.default_rng(0)
    stats = rng.normal(size=(40, num_stats(config))).astype(np.float32)
    stats[:, -1] = rng.uniform(0.7, 1.0, 40)  # map scores
    ssim = np.clip(stats[:, -1] - 0.02, 0, 1).astype(np.float32)
    v = with_training_start(init_variables(model, 0), config, stats, ssim)
    probe = stats[:4].copy()
    probe[0, -1], probe[1, -1] = 1.5, -0.5  # map scores out of range still give an SSIM
    out = np.asarray(model.apply(v, jnp.zeros((4, 0)), jnp.asarray(probe), method=model.predict_from_features))[:, 0]
    np.testing.assert_allclose(out, np.clip(probe[:, -1] - 0.02, 0, 1), atol=1e-6)

    save_config(tmp_path / "config.json", config)
    saved = load_config(tmp_path / "config.json")[0]
    assert saved.map_residual and saved.map_extra_mlp
    legacy = json.loads((tmp_path / "config.json").read_text())
    del legacy["train"]["map_residual"], legacy["train"]["map_extra_mlp"]
    (tmp_path / "config.json").write_text(json.dumps(legacy))
    saved = load_config(tmp_path / "config.json")[0]
    assert not saved.map_residual and not saved.map_extra_mlp
