"""The optimiser and schedules against PyTorch's own implementations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssimjax.config import TrainConfig
from ssimjax.train.optim import advance_learning_rate, current_learning_rate, make_optimizer

torch = pytest.importorskip("torch")


def lr_sequence(config, val_losses):
    params = {"predictor": {"w": jnp.zeros(3)}}
    opt_state = make_optimizer(config).init(params)
    lrs = []
    for epoch, v in enumerate(val_losses):
        lrs.append(current_learning_rate(opt_state))
        opt_state = advance_learning_rate(opt_state, config, epoch, v)
    return lrs


def torch_lr_sequence(scheduler, val_losses, epochs):
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([p], lr=1e-3)
    sched = {
        "reduce_on_plateau": lambda: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=5, min_lr=1e-7),
        "cosine_annealing": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=1e-7),
        "step": lambda: torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.5),
        "constant": lambda: torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0),
    }[scheduler]()
    lrs = []
    for v in val_losses:
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step(v) if scheduler == "reduce_on_plateau" else sched.step()
    return lrs


@pytest.mark.parametrize("scheduler", ["reduce_on_plateau", "cosine_annealing", "step", "constant"])
def test_each_schedule_matches_torch(scheduler):
    rng = np.random.default_rng(0)
    # Improving, then flat with noise (plateaus), then a long flat stretch down to the min lr.
    val = list(np.linspace(1.0, 0.5, 10)) + list(0.5 + 0.01 * rng.random(30)) + [0.6] * 80
    epochs = len(val)
    config = TrainConfig(scheduler=scheduler, epochs=epochs)
    ours = lr_sequence(config, val)
    ref = torch_lr_sequence(scheduler, val, epochs)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-12)
    if scheduler == "reduce_on_plateau":
        assert min(ours) == pytest.approx(1e-7) and ours[0] == pytest.approx(1e-3)


@pytest.mark.parametrize("freeze", [True, False])
def test_adam_l2_and_clipping_match_torch(freeze):
    """Adam with L2 weight decay in the gradient and global-norm clipping at 1.0, both groups."""
    rng = np.random.default_rng(0)
    w_bb, w_pr = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)
    x = rng.normal(size=(16, 4)).astype(np.float32) * 3
    y = rng.normal(size=(16,)).astype(np.float32)
    config = TrainConfig.plan_model(weight_decay=1e-2, learning_rate=1e-2, freeze_backbone=freeze)

    def loss(params):
        w = params["feature_extractor"]["w"]
        # As train_step does: no gradient flows into a frozen backbone.
        h = jnp.tanh(jnp.asarray(x) @ (jax.lax.stop_gradient(w) if freeze else w))
        return jnp.mean((h @ params["predictor"]["w"] - y) ** 2)

    params = {"feature_extractor": {"w": jnp.asarray(w_bb)}, "predictor": {"w": jnp.asarray(w_pr)}}
    tx = make_optimizer(config)
    opt_state = tx.init(params)
    tb, tp = torch.tensor(w_bb, requires_grad=not freeze), torch.tensor(w_pr, requires_grad=True)
    groups = [{"params": [tp], "lr": 1e-2}] + ([] if freeze else [{"params": [tb], "lr": 1e-3}])
    topt = torch.optim.Adam(groups, weight_decay=1e-2, betas=(0.9, 0.999))
    for _ in range(20):
        grads = jax.grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = jax.tree_util.tree_map(lambda p, u: p + u, params, updates)
        topt.zero_grad()
        tl = torch.mean((torch.tanh(torch.tensor(x) @ tb) @ tp - torch.tensor(y)) ** 2)
        tl.backward()
        torch.nn.utils.clip_grad_norm_([tb, tp], max_norm=1.0)
        topt.step()
    np.testing.assert_allclose(params["predictor"]["w"], tp.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(params["feature_extractor"]["w"], tb.detach().numpy(), atol=1e-5)
    if freeze:
        np.testing.assert_array_equal(params["feature_extractor"]["w"], w_bb)
