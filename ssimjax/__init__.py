"""ssimjax: predict the SSIM a VTracer raster-to-SVG conversion will reach, trained with JAX/Flax.

The public API, by stage (everything else is reachable through the packages named):

- configuration: :class:`TrainConfig` (the plan's defaults; ``config.json``), :class:`ConfigError`;
- data (``ssimjax.data``): :func:`conversion_ssim` / :func:`conversion_ssim_map`, the labelling
  pipeline (VTracer -> resvg -> SSIM) on a PIL image;
- features (``ssimjax.features``): :func:`image_statistics`, :func:`build_inputs` (a manifest's
  model inputs, cached);
- models (``ssimjax.models``): :func:`make_model`, :class:`QualityModel`, :class:`ResNet`,
  :class:`Predictor`, :class:`BatchNorm`, :func:`init_variables`, :func:`split_backbone` /
  :func:`merge_backbone` (:data:`BACKBONE`, :data:`PREDICTOR`); the SSIM-map network
  :class:`MapNet`, :func:`train_map_net`, :func:`map_scores`;
- training (``ssimjax.train``): the pure steps :func:`train_step`, :func:`eval_step`,
  :func:`train_epoch`, :func:`extract_features`, :func:`epoch_batches` over a
  :class:`TrainState` made by :func:`create_train_state` and bound by a :class:`Trainer`; losses
  (:class:`LossSpec`, :func:`get_loss`, :func:`mse_loss`, ...); :func:`make_optimizer`,
  :func:`advance_learning_rate`; the loop :func:`fit`; a whole run :func:`train_run`;
- evaluation (``ssimjax.evaluate``): :func:`quality_metrics`, :func:`comprehensive_metrics`,
  :func:`regression_metrics`, :func:`ranking_accuracy`, :func:`cross_validate`, a run loaded back
  (:func:`load_run`, :func:`predict_files`) and its report (:func:`write_report`);
- choosing VTracer's parameters per logo: :class:`SettingsRunConfig`, :func:`train_settings_run`
  (``ssimjax train --vtracer-parameters``), :func:`load_settings_model` (a
  :class:`SettingsModel`), :func:`recommend`, :func:`evaluate_settings_model`.

``import ssimjax`` never imports PyTorch: only ``bridge`` does.
"""

# Where each public name is defined, imported on first use (PEP 562): a data build's worker
# processes import ssimjax.data modules without JAX, Flax and Optax, which take seconds to load.
_WHERE = {name: module for module, names in {
    "ssimjax.config": "ConfigError TrainConfig",
    "ssimjax.data.labelling": "conversion_ssim conversion_ssim_map",
    "ssimjax.evaluate.cross_validation": "cross_validate",
    "ssimjax.evaluate.metrics": "comprehensive_metrics quality_metrics ranking_accuracy regression_metrics",
    "ssimjax.evaluate.predict": "load_run predict_files",
    "ssimjax.evaluate.recommend": "recommend",
    "ssimjax.evaluate.report": "write_report",
    "ssimjax.evaluate.settings_eval": "evaluate_settings_model",
    "ssimjax.features.inputs": "build_inputs",
    "ssimjax.features.stats": "image_statistics",
    "ssimjax.models.init": "init_variables",
    "ssimjax.models.layers": "BatchNorm",
    "ssimjax.models.mapnet": "MapNet map_scores",
    "ssimjax.models.quality": "BACKBONE PREDICTOR Predictor QualityModel make_model merge_backbone split_backbone",
    "ssimjax.models.resnet": "ResNet",
    "ssimjax.models.setting_head": "SettingsModel",
    "ssimjax.train.fit": "fit",
    "ssimjax.train.losses": "LossSpec adaptive_loss combined_loss get_loss "
        "huber_loss mae_loss mse_loss quality_aware_loss ranking_loss",
    "ssimjax.train.mapnet": "train_map_net",
    "ssimjax.train.optim": "advance_learning_rate make_optimizer",
    "ssimjax.train.run": "train_run",
    "ssimjax.train.settings": "SettingsRunConfig load_settings_model train_settings_run",
    "ssimjax.train.state": "Trainer TrainState create_train_state",
    "ssimjax.train.steps": "epoch_batches eval_step extract_features train_epoch train_step",
}.items() for name in names.split()}


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ssimjax' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

# Where each public name is defined: the public-API test checks that every name is this object.
__all__ = [
    # configuration
    "ConfigError", "TrainConfig",
    # data and features
    "build_inputs", "conversion_ssim", "conversion_ssim_map", "image_statistics",
    # models
    "BACKBONE", "PREDICTOR", "BatchNorm", "MapNet", "Predictor", "QualityModel", "ResNet", "init_variables",
    "make_model", "map_scores", "merge_backbone", "split_backbone",
    # training
    "LossSpec", "TrainState", "Trainer", "adaptive_loss", "advance_learning_rate", "combined_loss",
    "create_train_state", "epoch_batches", "eval_step", "extract_features", "fit", "get_loss", "huber_loss",
    "mae_loss", "make_optimizer", "mse_loss", "quality_aware_loss", "ranking_loss", "train_epoch", "train_map_net",
    "train_run", "train_step",
    # evaluation
    "comprehensive_metrics", "cross_validate", "load_run", "predict_files", "quality_metrics", "ranking_accuracy",
    "regression_metrics", "write_report",
    # choosing VTracer's parameters per logo
    "SettingsModel", "SettingsRunConfig", "evaluate_settings_model", "load_settings_model", "recommend",
    "train_settings_run",
]
