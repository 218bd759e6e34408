"""Pure-numpy reference implementations of every public fastconv op (no numba, no scipy).

Same names and signatures as ``fastconv``; independent code paths used to validate the kernels, and
usable as a slow backend.
"""

from .backward import (adaptive_avg_pool2d_backward, adaptive_max_pool2d_backward, avg_pool2d_backward,
                       conv2d_backward, conv_transpose2d_backward, max_pool2d_backward,
                       spatial_pyramid_pool2d_backward)
from .conv import conv2d
from .conv_transpose import conv_transpose2d
from .pool import adaptive_avg_pool2d, adaptive_max_pool2d, avg_pool2d, max_pool2d, spatial_pyramid_pool2d

__all__ = [
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "conv2d",
    "conv2d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "spatial_pyramid_pool2d",
    "spatial_pyramid_pool2d_backward",
]
