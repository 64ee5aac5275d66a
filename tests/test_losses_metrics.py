import jax.numpy as jnp
import numpy as np
import pytest

from ssimjax.train.losses import combined_loss, get_loss, pearson
from ssimjax.evaluate.metrics import regression_metrics

torch = pytest.importorskip("torch")

rng = np.random.default_rng(0)
PRED = rng.uniform(0, 1, 12).astype(np.float32)
TARGET = np.clip(PRED + rng.normal(0, 0.15, 12), 0, 1).astype(np.float32)


def torch_combined(pred, target):
    # The plan's CombinedSSIMLoss, written out in torch.
    p, t = torch.tensor(pred), torch.tensor(target)
    mse, mae = torch.nn.MSELoss()(p, t), torch.nn.L1Loss()(p, t)
    pc, tc = p - p.mean(), t - t.mean()
    corr = (pc * tc).sum() / (torch.sqrt((pc**2).sum() * (tc**2).sum()) + 1e-8)
    return float(mse + 0.3 * mae + 0.1 * (1 - corr))


@pytest.mark.parametrize("name,ref", [
    ("mse", lambda p, t: float(torch.nn.MSELoss()(torch.tensor(p), torch.tensor(t)))),
    ("mae", lambda p, t: float(torch.nn.L1Loss()(torch.tensor(p), torch.tensor(t)))),
    ("huber", lambda p, t: float(torch.nn.SmoothL1Loss(beta=0.1)(torch.tensor(p), torch.tensor(t)))),
    ("combined", torch_combined),
])
def test_losses_match_torch_and_ignore_padding(name, ref):
    fn = get_loss(name)
    ours = float(fn(jnp.asarray(PRED), jnp.asarray(TARGET)))
    assert ours == pytest.approx(ref(PRED, TARGET), rel=1e-5, abs=1e-7)
    padded_p = jnp.concatenate([jnp.asarray(PRED), jnp.asarray([5.0, -3.0])])
    padded_t = jnp.concatenate([jnp.asarray(TARGET), jnp.asarray([0.0, 1.0])])
    mask = jnp.arange(14) < 12
    assert float(fn(padded_p, padded_t, mask)) == pytest.approx(ours, rel=1e-5)


def test_combined_loss_has_no_correlation_term_for_one_row():
    one = float(combined_loss(jnp.asarray([0.3]), jnp.asarray([0.5])))
    assert one == pytest.approx(0.04 + 0.3 * 0.2, rel=1e-5)
    assert float(pearson(jnp.asarray(PRED), jnp.asarray(PRED))) == pytest.approx(1.0, abs=1e-6)


def test_combined_loss_gradient_is_finite_for_one_row_and_for_equal_predictions():
    """A last batch holding one real row (the rest padding), or predictions all clipped to the same
    value, once made the gradient NaN (sqrt's slope at 0), and with it every parameter."""
    import jax

    grad = jax.grad(combined_loss)
    one_real = grad(jnp.asarray([0.3, 0.0, 0.0]), jnp.asarray([0.5, 0.0, 0.0]), jnp.arange(3) < 1)
    equal = grad(jnp.full(4, 1.0), jnp.asarray([0.9, 0.8, 0.95, 0.7]))
    assert np.isfinite(np.asarray(one_real)).all() and np.isfinite(np.asarray(equal)).all()
    # Only the mse and mae terms remain for the one row: 2 (0.3 - 0.5) + 0.3 sign(0.3 - 0.5).
    assert float(one_real[0]) == pytest.approx(2 * (0.3 - 0.5) - 0.3, rel=1e-5)


def test_unknown_loss_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown loss 'l3'"):
        get_loss("l3")


def test_regression_metrics():
    m = regression_metrics(PRED, TARGET)
    assert m["correlation"] == pytest.approx(np.corrcoef(PRED, TARGET)[0, 1], rel=1e-6)
    assert m["mae"] == pytest.approx(np.abs(PRED - TARGET).mean(), rel=1e-6)
    assert m["accuracy_10pct"] == pytest.approx(np.mean(np.abs(PRED - TARGET) < 0.1))
    r2 = 1 - np.sum((PRED - TARGET) ** 2) / np.sum((TARGET - TARGET.mean()) ** 2)
    assert m["r2_score"] == pytest.approx(r2, rel=1e-5)
    # Undefined correlation (constant predictions) is reported as 0, not NaN.
    assert regression_metrics(np.full(5, 0.5), TARGET[:5])["correlation"] == 0.0
