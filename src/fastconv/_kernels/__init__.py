"""Numba kernels. Each takes only owned, C-contiguous float32/float64 arrays and Python ints and
validates nothing: the public wrappers guarantee every contract stated in the kernel docstrings."""
