"""The PyTorch side: the deployment's QualityPredictionModel, Flax <-> torch weight conversion,
torch checkpoint export, and pretrained torchvision weights. The only package that imports torch."""

from .convert import (
    ConversionError,
    backbone_flax_to_torchvision,
    flax_to_torch,
    torch_to_flax,
    torchvision_to_backbone,
)
from .export import ExportError, build_checkpoint, export_run, torch_config
from .model import QualityPredictionModel
from .pretrained import PretrainedError, backbone_from_torchvision, load_torchvision_state_dict
from .recommender import SettingRecommender, export_settings_run, settings_state_dict

__all__ = [
    "ConversionError", "ExportError", "PretrainedError", "QualityPredictionModel", "SettingRecommender",
    "backbone_flax_to_torchvision",
    "backbone_from_torchvision", "build_checkpoint", "export_run", "flax_to_torch", "load_torchvision_state_dict",
    "export_settings_run", "settings_state_dict", "torch_config", "torch_to_flax", "torchvision_to_backbone",
]
