"""fastconv: Numba-JIT 2-D convolution and pooling kernels for numpy arrays (NCHW, PyTorch semantics).

Importing compiles nothing: each kernel compiles on first use (and is cached on disk when a writable
cache directory exists, see ``fastconv._jit``).
"""

from . import _jit  # noqa: F401  (numba policy must be set before any kernel is defined)
from . import shapes
from .conv import conv2d
from .dispatch import plan_conv2d
from .threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = [
    "conv2d",
    "get_num_threads",
    "plan_conv2d",
    "set_num_threads",
    "shapes",
]
