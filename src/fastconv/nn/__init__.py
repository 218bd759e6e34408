"""fastconv.nn: a small layer API on top of the functional ops, for training toy CNNs in numpy.

Layers (``Conv2d``, ``ConvTranspose2d``, pools, ``ReLU``, ``Flatten``, ``Linear``, ``Sequential``) have an
explicit ``forward``/``backward`` and an ``ops`` backend argument (``fastconv`` or ``fastconv.reference``);
losses return ``(loss, grad)``; optimisers live in :mod:`fastconv.nn.optim`; :func:`summary` reports
shapes, parameters, MACs and receptive fields. See docs/nn.md.
"""

from . import optim
from .losses import CrossEntropyLoss, MSELoss, mse_loss, softmax, softmax_cross_entropy
from .modules import (
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    AvgPool2d,
    Conv2d,
    ConvTranspose2d,
    Flatten,
    Linear,
    MaxPool2d,
    Module,
    ReLU,
    Sequential,
    SpatialPyramidPool2d,
)
from .summary import format_summary, summary

__all__ = [
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "AvgPool2d",
    "Conv2d",
    "ConvTranspose2d",
    "CrossEntropyLoss",
    "Flatten",
    "Linear",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "ReLU",
    "Sequential",
    "SpatialPyramidPool2d",
    "format_summary",
    "mse_loss",
    "optim",
    "softmax",
    "softmax_cross_entropy",
    "summary",
]
