"""fastconv: Numba-JIT 2-D convolution and pooling kernels for numpy arrays (NCHW, PyTorch semantics).

Importing compiles nothing: each kernel compiles on first use (and is cached on disk when a writable
cache directory exists, see ``fastconv._jit``).
"""

from . import _jit  # noqa: F401  (numba policy must be set before any kernel is defined)
from . import memory, nn, shapes
from .backward import (adaptive_avg_pool2d_backward, adaptive_max_pool2d_backward, avg_pool2d_backward,
                       conv2d_backward, conv_transpose2d_backward, max_pool2d_backward,
                       spatial_pyramid_pool2d_backward)
from .conv import conv2d
from .conv_transpose import conv_transpose2d, plan_conv_transpose2d
from .dispatch import plan_conv2d
from .memory import empty_cache
from .pool import adaptive_avg_pool2d, adaptive_max_pool2d, avg_pool2d, max_pool2d, spatial_pyramid_pool2d
from .threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

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
    "empty_cache",
    "get_num_threads",
    "max_pool2d",
    "max_pool2d_backward",
    "memory",
    "nn",
    "plan_conv2d",
    "plan_conv_transpose2d",
    "set_num_threads",
    "shapes",
    "spatial_pyramid_pool2d",
    "spatial_pyramid_pool2d_backward",
]
