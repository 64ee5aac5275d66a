"""Cross-validation: k folds, stratified by quality band, each trained from scratch.

With cached inputs (a frozen backbone's features and/or image statistics) every fold trains in
one vectorised program: the folds' states are stacked and each epoch is ``jax.vmap`` of a whole
epoch (shuffle, every batch step, validation, learning-rate schedule, best-weight tracking) over
the folds, compiled once whatever the number of folds. Folds of unequal size are padded to the
largest and masked; a batch with no real rows leaves its fold's state untouched. With a training
backbone the folds run one after the other through :func:`ssimjax.train.fit.fit`.

Each fold trains ``min(20, config.epochs)`` epochs (the plan's reduced CV budget) with no early
stop, and is scored with the weights of its lowest-validation-loss epoch (what early stopping with
best-weight restore keeps).
"""

from __future__ import annotations

import functools
import logging
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from ssimjax.config import TrainConfig
from ssimjax.evaluate.metrics import comprehensive_metrics
from ssimjax.models.init import init_variables, with_training_start
from ssimjax.models.quality import split_backbone
from ssimjax.train.losses import batched_loss
from ssimjax.train.optim import advance_learning_rate
from ssimjax.train.state import Trainer, TrainState, create_train_state
from ssimjax.train.steps import _SHUFFLE, eval_step, gather_batch, train_step

log = logging.getLogger("ssimjax")

CV_SEED = 42  # the plan's StratifiedKFold(random_state=42)
CV_MAX_EPOCHS = 20  # the plan's min(20, epochs) per fold
QUANTILE_STRATA = 5
SUMMARY_STATS = ("mean", "std", "min", "max", "median")


class ValidationError(ValueError):
    pass


def fold_splits(y, folds: int = 5, stratified: bool = True, bands=(0.6, 0.8), seed: int = CV_SEED):
    """``(splits, strata)``: a list of (train_idx, val_idx) and how the folds were stratified.

    Stratified by quality band (scikit-learn's StratifiedKFold, shuffled, ``seed``); where a band
    holds fewer rows than folds (real logos cluster above 0.9), by label quantiles instead; plain
    shuffled KFold when ``stratified`` is False.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    y = np.asarray(y, np.float64)
    if not isinstance(folds, int) or folds < 2:
        raise ValidationError(f"folds must be a whole number >= 2 (got {folds!r})")
    if len(y) < 2 * folds:
        raise ValidationError(f"{folds}-fold cross-validation needs at least {2 * folds} rows (have {len(y)})")
    if not stratified:
        return list(KFold(folds, shuffle=True, random_state=seed).split(y)), "none"
    strata, kind = np.digitize(y, bands), "quality bands"
    if np.bincount(strata)[np.unique(strata)].min() < folds:
        edges = np.quantile(y, np.linspace(0, 1, QUANTILE_STRATA + 1)[1:-1])
        strata, kind = np.digitize(y, edges), "label quantiles"
        if np.bincount(strata)[np.unique(strata)].min() < folds:
            return list(KFold(folds, shuffle=True, random_state=seed).split(y)), "none (too few rows per stratum)"
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), strata)), kind


def start_state(config: TrainConfig, train: dict, variables: dict) -> TrainState:
    """A fresh state for training on ``train`` from ``variables`` (every fold's same start), image
    statistics standardised with the training rows', head bias at their mean SSIM (as a run starts)."""
    if "stats" in train:
        variables = with_training_start(variables, config, train["stats"], train["ssim"])
    return create_train_state(config, variables)


def _padded(index_sets, width):
    rows = np.zeros((len(index_sets), width), np.int32)
    for i, idx in enumerate(index_sets):
        rows[i, :len(idx)] = idx
    return rows, np.asarray([len(idx) for idx in index_sets], np.int32)


def _fold_epoch(state, best, features, targets, stats, rows, n_rows, val_rows, n_val, epoch, *, trainer, config,
                batch_size, guard):
    """One fold's epoch: shuffled batches of its training rows (padding last, masked), validation
    loss and predictions, the schedule's step, and the best epoch so far (lowest val loss)."""
    m = rows.shape[0]
    key = jax.random.fold_in(jax.random.fold_in(state.rng, _SHUFFLE), epoch)
    real = jnp.arange(m) < n_rows
    # One random number per row position, independent of the padded width: a fold shuffles the same
    # whether it trains alone or beside longer folds.
    draws = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i)))(jnp.arange(m))
    order = jnp.argsort(jnp.where(real, draws, 2.0))
    nb = math.ceil(m / batch_size)
    pad = nb * batch_size - m
    idx = jnp.concatenate([rows[order], jnp.zeros((pad,), rows.dtype)]).reshape(nb, batch_size)
    mask = (jnp.arange(nb * batch_size) < n_rows).reshape(nb, batch_size)

    def body(state, xs):
        bmask = xs[1]
        new, metrics = train_step(state, gather_batch(features, targets, stats, *xs), trainer=trainer)
        if not guard:  # every fold has real rows in every batch
            return new, metrics["loss"] * jnp.sum(bmask)
        # A batch with no real rows (a fold whose rows end a batch earlier) changes nothing. Costs a
        # pass over the state per step, so only when some fold has fewer batches than another.
        keep = jnp.any(bmask)
        state = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new, state)
        return state, jnp.where(keep, metrics["loss"], 0.0) * jnp.sum(bmask)

    state, weighted = jax.lax.scan(body, state, (idx, mask))
    train_loss = jnp.sum(weighted) / n_rows

    vbatch = {"features": features[val_rows]}
    if stats is not None:
        vbatch["stats"] = stats[val_rows]
    pred = eval_step(state, vbatch, trainer=trainer)
    vmask = jnp.arange(val_rows.shape[0]) < n_val
    val_loss = batched_loss(trainer.loss, pred, targets[val_rows], batch_size, state.params, mask=vmask)
    state = state.replace(opt_state=advance_learning_rate(state.opt_state, config, epoch, val_loss))

    better = val_loss < best["val_loss"]
    best = {
        "val_loss": jnp.where(better, val_loss, best["val_loss"]),
        "epoch": jnp.where(better, epoch, best["epoch"]),
        "pred": jnp.where(better, pred, best["pred"]),
    }
    return state, best, train_loss, val_loss


@functools.partial(jax.jit, static_argnames=("trainer", "config", "batch_size", "guard"))
def cv_epoch(states, best, features, targets, stats, rows, n_rows, val_rows, n_val, epoch, *, trainer, config,
             batch_size, guard=True):
    """One epoch of every fold at once: :func:`_fold_epoch` vmapped over the stacked states (a
    single fold: the same epoch without vmap).
    ``guard``: some fold has fewer batches than another (its extra batches must change nothing)."""
    fn = functools.partial(_fold_epoch, trainer=trainer, config=config, batch_size=batch_size,
                           guard=guard)
    if rows.shape[0] == 1:
        # One fold: the plain program. Under vmap with an axis of size 1, XLA kept autodiff's
        # transposed gradient of the first Dense layer and Adam read it across its rows (the
        # benchmark's one fold: 10.4 s there, 3.95 s plain).
        first = lambda tree: jax.tree_util.tree_map(lambda a: a[0], tree)
        out = fn(first(states), first(best), features, targets, stats, rows[0], n_rows[0], val_rows[0], n_val[0],
                 epoch)
        return jax.tree_util.tree_map(lambda a: a[None], out)
    return jax.vmap(fn, in_axes=(0, 0, None, None, None, 0, 0, 0, 0, None))(
        states, best, features, targets, stats, rows, n_rows, val_rows, n_val, epoch)


def _cv_config(config: TrainConfig) -> TrainConfig:
    return config.replace(epochs=min(CV_MAX_EPOCHS, config.epochs))


def _vectorised(config, inputs, splits, base_variables):
    trainer = Trainer.from_config(config)
    stats = inputs.get("stats")
    states = [start_state(config, {k: v[tr] for k, v in inputs.items()}, base_variables)
              for tr, _ in splits]
    states = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)
    rows, n_rows = _padded([tr for tr, _ in splits], max(len(tr) for tr, _ in splits))
    val_rows, n_val = _padded([va for _, va in splits], max(len(va) for _, va in splits))
    k = len(splits)
    best = {"val_loss": jnp.full((k,), jnp.inf, jnp.float32), "epoch": jnp.full((k,), -1, jnp.int32),
            "pred": jnp.zeros(val_rows.shape, jnp.float32)}
    args = [jnp.asarray(inputs["features"]), jnp.asarray(inputs["ssim"]),
            None if stats is None else jnp.asarray(stats), jnp.asarray(rows), jnp.asarray(n_rows),
            jnp.asarray(val_rows), jnp.asarray(n_val)]
    guard = len({-(-int(n) // config.batch_size) for n in n_rows}) > 1
    history = {"train_loss": [], "val_loss": []}
    for epoch in range(config.epochs):
        states, best, train_loss, val_loss = cv_epoch(states, best, *args, epoch, trainer=trainer,
                                                      config=config, batch_size=config.batch_size, guard=guard)
        history["train_loss"].append(np.asarray(train_loss))
        history["val_loss"].append(np.asarray(val_loss))
    best = jax.device_get(best)
    preds = [best["pred"][i, :n_val[i]] for i in range(k)]
    epochs = [int(e) for e in best["epoch"]]
    per_fold = {key: np.stack(v, axis=1) for key, v in history.items()}  # (folds, epochs)
    return preds, epochs, per_fold


def _sequential(config, inputs, splits, base_variables):
    from ssimjax.train.fit import fit, predict

    preds, epochs, per_fold = [], [], {"train_loss": [], "val_loss": []}
    trainer = Trainer.from_config(config)
    for tr, va in splits:
        train = {k: v[tr] for k, v in inputs.items()}
        val = {k: v[va] for k, v in inputs.items()}
        res = fit(start_state(config, train, base_variables), config.replace(patience=config.epochs + 1), train, val)
        preds.append(predict(trainer, res.state, val, config.eval_batch_size))
        epochs.append(res.best_epoch)
        for key in per_fold:
            per_fold[key].append(res.history[key])
    return preds, epochs, {k: np.asarray(v) for k, v in per_fold.items()}


def summarize(fold_results: list[dict]) -> dict:
    """Mean, std, min, max and median over the folds of every numeric metric."""
    summary = {}
    for key in fold_results[0]:
        values = [r[key] for r in fold_results]
        if key == "fold" or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            continue
        a = np.asarray(values, np.float64)
        summary[key] = {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()),
                        "max": float(a.max()), "median": float(np.median(a))}
    return summary


def cross_validate(config: TrainConfig, inputs: dict, folds: int = 5, stratified: bool = True,
                   seed: int = CV_SEED, base_variables: dict | None = None, fold_subset=None) -> dict:
    """K-fold cross-validation of ``config`` on ``inputs`` (``ssim`` and ``features`` (N, D), possibly
    (N, 0), and/or ``stats``; or ``image`` when the backbone trains).

    Returns ``fold_results`` (the comprehensive metrics of each fold's validation rows, with
    ``fold``, ``training_time`` and ``best_epoch``), ``summary`` (:func:`summarize`), ``history``
    (per-fold train/val loss per epoch) and how it ran. ``fold_subset`` trains only those folds
    (of the same splits), e.g. one fold to time against all.
    """
    config = _cv_config(config)
    y = np.asarray(inputs["ssim"])
    splits, strata = fold_splits(y, folds, stratified, config.quality_bands, seed)
    chosen = list(range(folds)) if fold_subset is None else list(fold_subset)
    splits = [splits[i] for i in chosen]
    inputs = {k: v for k, v in inputs.items() if k in ("features", "stats", "image", "ssim")}
    vectorised = "features" in inputs
    log.info(f"{len(splits)} of {folds} folds ({'stratified by ' + strata if stratified else 'not stratified'}), "
             f"{config.epochs} epochs each, {'vectorised in one program' if vectorised else 'one after the other'}")
    t0 = time.perf_counter()
    if base_variables is None:
        # Every fold starts from the same seeded variables: drawn once (a ResNet-50's take about
        # 1.6 s each, most of a small set's cross-validation when drawn per fold).
        base_variables = init_variables(Trainer.from_config(config).model, config.seed)
    if vectorised:
        base_variables = split_backbone(base_variables)[1]  # k stacked ResNet-50s would only cost memory
    run = _vectorised if vectorised else _sequential
    preds, epochs, per_fold = run(config, inputs, splits, base_variables)
    total = time.perf_counter() - t0
    fold_results = []
    for i, ((_, va), pred, best_epoch) in enumerate(zip(splits, preds, epochs)):
        metrics = comprehensive_metrics(pred, y[va], config.quality_bands)
        fold_results.append({"fold": chosen[i], **metrics, "best_epoch": best_epoch + 1,
                             # Vectorised folds train together: each is charged an equal share.
                             "training_time": total / len(splits), "epochs_completed": config.epochs})
        log.info(f"fold {chosen[i] + 1}: correlation {metrics['correlation']:.4f}, SRCC {metrics['srcc']:.4f}, "
                 f"MAE {metrics['mae']:.4f}")
    return {
        "folds": folds, "folds_trained": chosen, "stratified": stratified, "strata": strata, "seed": seed,
        "vectorised": vectorised, "epochs": config.epochs, "rows": int(len(y)), "total_time_s": total,
        "fold_results": fold_results, "summary": summarize(fold_results),
        "history": {k: v.tolist() for k, v in per_fold.items()},
    }
