"""ssimjax: predict the SSIM of a VTracer raster-to-SVG conversion with a JAX/Flax ResNet-50 + MLP.

The pure pieces (model, losses, optimiser, steps) are importable from here. The stages of a run
each have a module: ``data`` (manifests, images), ``features`` (model inputs and the feature
cache), ``steps`` (pure steps), ``fit`` (the epoch loop), ``checkpoint``, ``predict`` (a run
loaded back), ``start`` (how a run starts), ``run`` (the orchestration), ``validation``
(cross-validation), ``analysis`` (robustness, speed, feature importance) and ``report``.
"""

from ssimjax.config import ConfigError, TrainConfig
from ssimjax.evaluate.metrics import comprehensive_metrics, quality_metrics, ranking_accuracy, regression_metrics
from ssimjax.models.init import init_variables
from ssimjax.models.layers import BatchNorm
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
from ssimjax.train.optim import advance_learning_rate, make_optimizer
from ssimjax.train.state import Trainer, TrainState, create_train_state
from ssimjax.train.steps import epoch_batches, eval_step, extract_features, train_epoch, train_step

__version__ = "0.1.0"

__all__ = [
    "BACKBONE", "PREDICTOR", "BatchNorm", "ConfigError", "Predictor", "QualityModel", "ResNet", "TrainConfig",
    "TrainState", "Trainer", "advance_learning_rate", "combined_loss", "create_train_state", "epoch_batches",
    "eval_step", "extract_features", "get_loss", "huber_loss", "init_variables", "mae_loss", "make_model",
    "make_optimizer", "merge_backbone", "mse_loss", "regression_metrics", "split_backbone", "train_epoch",
    "train_step", "LossSpec", "adaptive_loss", "quality_aware_loss", "ranking_loss", "comprehensive_metrics",
    "quality_metrics", "ranking_accuracy",
]
