"""numpy's BLAS thread count around fastconv's own GEMMs.

Small GEMMs run faster on one BLAS thread, and, more importantly, a multithreaded OpenBLAS call leaves
its workers spinning for a while afterwards, stealing the cores from the numba kernel that runs next.
Measured on this project's 2-core machine: a (32, 16, 4, 4) conv2d_backward (im2col kernel + a 2.4
MFLOP GEMM) took 4.7 ms with OpenBLAS's 2 threads and 1.7 ms with one. Large GEMMs keep every
thread (the alternation costs nothing measurable there, docs/algorithms.md, "Threads").

So :func:`matmul` runs GEMMs below ``SMALL_GEMM_FLOPS`` with one BLAS thread. The thread count is set
through OpenBLAS's own ``*_set_num_threads`` symbol, found in the shared library that numpy loaded (as
threadpoolctl does, without the dependency). With another BLAS (or none found) it is a plain
``np.matmul``. The setting is process-wide: a concurrent large GEMM in another Python thread may
briefly run on one thread (slower, never wrong).
"""

import ctypes
import threading

import numpy as np

SMALL_GEMM_FLOPS = 32e6

_LOCK = threading.Lock()
_SYMBOLS = ("scipy_openblas{}_num_threads64_", "openblas{}_num_threads64_", "openblas{}_num_threads")


def _find_openblas():
    """(set_num_threads, get_num_threads) of the OpenBLAS numpy loaded, or None."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pattern in _SYMBOLS:
            setter = getattr(lib, pattern.format("_set"), None)
            getter = getattr(lib, pattern.format("_get"), None)
            if setter is not None and getter is not None:
                getter.restype = ctypes.c_int
                return setter, getter
    return None


_UNSET = object()
_OPENBLAS = _UNSET  # found on first use, not at import


def _openblas():
    """The cached (setter, getter) pair, looked up on first use (numpy has loaded its BLAS by then)."""
    global _OPENBLAS
    if _OPENBLAS is _UNSET:
        _OPENBLAS = _find_openblas()
    return _OPENBLAS


def blas_available():
    """True when fastconv can set the BLAS thread count (numpy built with OpenBLAS)."""
    return _openblas() is not None


def matmul(a, b, out=None):
    """``np.matmul(a, b, out=out)``, on one BLAS thread when the product is small."""
    flops = 2.0 * a.shape[-2] * a.shape[-1] * b.shape[-1]
    for dim in np.broadcast_shapes(a.shape[:-2], b.shape[:-2]):
        flops *= dim
    if flops >= SMALL_GEMM_FLOPS or _openblas() is None:
        return np.matmul(a, b, out=out)
    setter, getter = _OPENBLAS
    with _LOCK:
        previous = getter()
        setter(1)
        try:
            return np.matmul(a, b, out=out)
        finally:
            setter(previous)
