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

from ssimjax.config import ConfigError, TrainConfig
from ssimjax.data.labelling import conversion_ssim, conversion_ssim_map
from ssimjax.evaluate.cross_validation import cross_validate
from ssimjax.evaluate.metrics import comprehensive_metrics, quality_metrics, ranking_accuracy, regression_metrics
from ssimjax.evaluate.predict import load_run, predict_files
from ssimjax.evaluate.recommend import recommend
from ssimjax.evaluate.report import write_report
from ssimjax.evaluate.settings_eval import evaluate_settings_model
from ssimjax.features.inputs import build_inputs
from ssimjax.features.stats import image_statistics
from ssimjax.models.init import init_variables
from ssimjax.models.layers import BatchNorm
from ssimjax.models.mapnet import MapNet, map_scores
from ssimjax.models.quality import (
    BACKBONE,
    PREDICTOR,
    Predictor,
    QualityModel,
    make_model,
    merge_backbone,
    split_backbone,
)
from ssimjax.models.resnet import ResNet
from ssimjax.models.setting_head import SettingsModel
from ssimjax.train.fit import fit
from ssimjax.train.losses import (
    LossSpec,
    adaptive_loss,
    combined_loss,
    get_loss,
    huber_loss,
    mae_loss,
    mse_loss,
    quality_aware_loss,
    ranking_loss,
)
from ssimjax.train.mapnet import train_map_net
from ssimjax.train.optim import advance_learning_rate, make_optimizer
from ssimjax.train.run import train_run
from ssimjax.train.settings import SettingsRunConfig, load_settings_model, train_settings_run
from ssimjax.train.state import Trainer, TrainState, create_train_state
from ssimjax.train.steps import epoch_batches, eval_step, extract_features, train_epoch, train_step

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
