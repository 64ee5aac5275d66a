"""ssimjax: predict the SSIM of a VTracer raster-to-SVG conversion with a JAX/Flax ResNet-50 + MLP.

The pure pieces (model, losses, optimiser, steps) are importable from here; ``ssimjax.fit``,
``ssimjax.run`` and ``ssimjax.data`` hold the loop, whole runs, and data handling.
"""

from .config import ConfigError, TrainConfig
from .losses import combined_loss, get_loss, huber_loss, mae_loss, mse_loss
from .metrics import regression_metrics
from .models import BatchNorm, Predictor, QualityModel, ResNet, init_variables, make_model
from .optim import end_epoch, make_optimizer
from .steps import TrainState, create_train_state, epoch_batches, eval_step, extract_features, train_epoch, train_step

__version__ = "0.1.0"

__all__ = [
    "BatchNorm", "ConfigError", "Predictor", "QualityModel", "ResNet", "TrainConfig", "TrainState",
    "combined_loss", "create_train_state", "end_epoch", "epoch_batches", "eval_step", "extract_features",
    "get_loss", "huber_loss", "init_variables", "mae_loss", "make_model", "make_optimizer", "mse_loss",
    "regression_metrics", "train_epoch", "train_step",
]
