"""Shared by the PyTorch-side tests (imported only where torch is installed)."""

import torch
import torchvision


def random_torchvision_resnet50(seed=0, bn_scale=(0.1, 0.4)):
    """A randomly initialised torchvision ResNet-50 with random BatchNorm statistics and affine
    parameters: nothing can be downloaded here, and default statistics hide swapped fields."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet50(weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(*bn_scale)
                m.bias.normal_(0, 0.1)
    return model
