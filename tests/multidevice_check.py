"""Run by test_parallel.py in a fresh process with 4 host devices (XLA_FLAGS must be set before
jax is imported): the same training on one device and split over four, compared."""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from ssimjax.config import TrainConfig
from ssimjax.features.stats import STAT_NAMES
from ssimjax.train.progress import TIMING_KEYS
from ssimjax.train.fit import fit
from ssimjax.models.resnet import backbone_feature_dim
from ssimjax.train.parallel import ParallelError, data_mesh
from ssimjax.train.state import Trainer, create_train_state
from ssimjax.train.steps import jit_extract_features

def main():
    # Everything under main(): the run below spawns worker processes (the SSIM maps), which
    # re-import this file and must not run the check again.
    assert jax.device_count() == 4, jax.devices()
    mesh = data_mesh()
    out = {"devices": jax.device_count()}

    D = backbone_feature_dim("tiny")


    def synthetic(n, seed, dtype):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, D))
        y = 1 / (1 + np.exp(-x[:, :8].sum(1) / 3))
        s = rng.normal(size=(n, len(STAT_NAMES)))
        return {"features": x.astype(dtype), "ssim": y.astype(dtype), "stats": s.astype(dtype)}


    def histories(dtype, epochs):
        config = TrainConfig(backbone="tiny", hidden_dims=(32, 16), batch_size=8, epochs=epochs, patience=50,
                             backbone_features=True, loss="combined", map_net=False)
        runs = []
        for m in (None, mesh):
            variables = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), create_train_state(config).variables)
            state = create_train_state(config, variables)
            res = fit(state, config, synthetic(100, 0, dtype), synthetic(36, 1, dtype), mesh=m)
            runs.append({k: v for k, v in res.history.items() if k not in TIMING_KEYS})
        return runs


    with jax.enable_x64(True):
        one, four = histories(np.float64, 6)
    out["float64_max_diff"] = max(float(np.max(np.abs(np.asarray(one[k]) - np.asarray(four[k])))) for k in one)
    one, four = histories(np.float32, 3)
    out["float32_first_epoch_loss_diff"] = max(abs(one[k][0] - four[k][0]) for k in ("train_loss", "val_loss"))

    # Images: one train step of the whole model (backbone training) and feature extraction, split or not.
    config = TrainConfig(backbone="tiny", hidden_dims=(16,), batch_size=8, freeze_backbone=False, backbone_features=True,
                         image_stats=False, map_net=False, loss="mse")
    rng = np.random.default_rng(0)
    batch = {"image": rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8), "ssim": rng.uniform(0.5, 1, 8).astype(np.float32),
             "mask": np.ones(8, bool)}
    losses, feats = [], []
    for m in (None, mesh):
        trainer = Trainer.from_config(config, m)
        state = create_train_state(config)
        _, metrics = trainer.train_step(state, batch)
        losses.append(float(metrics["loss"]))
        feats.append(np.asarray(jit_extract_features(state.variables, batch["image"], trainer=trainer)))
    out["image_step_loss_diff"] = abs(losses[0] - losses[1])
    # Split, not replicated: the compiled step sums gradients and batch statistics across devices.
    from ssimjax.train.steps import jit_train_step

    hlo = jit_train_step.lower(create_train_state(config), batch, trainer=Trainer.from_config(config, mesh)).compile().as_text()
    out["step_all_reduces"] = hlo.count("all-reduce(")
    out["features_max_diff"] = float(np.max(np.abs(feats[0] - feats[1])))

    try:
        fit(create_train_state(config), config.replace(batch_size=6, freeze_backbone=True, image_stats=True),
            synthetic(20, 0, np.float32), synthetic(8, 1, np.float32), mesh=mesh)
        out["uneven_batch_error"] = None
    except ParallelError as e:
        out["uneven_batch_error"] = str(e)

    # A whole run reports its devices.
    if len(sys.argv) > 1:
        from ssimjax.train.run import train_run

        run_config = TrainConfig(backbone="tiny", hidden_dims=(16,), batch_size=8, epochs=2, map_steps=20,
                                 map_extra=0)
        _, run_dir = train_run(run_config, data=sys.argv[1], out=sys.argv[2], report=False)
        out["summary_devices"] = json.loads((run_dir / "summary.json").read_text())["devices"]

    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
