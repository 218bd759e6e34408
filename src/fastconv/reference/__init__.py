"""Pure-numpy reference implementations of every public fastconv op (no numba, no scipy).

Same names and signatures as ``fastconv``; independent code paths used to validate the kernels, and
usable as a slow backend.
"""

from .conv import conv2d

__all__ = ["conv2d"]
