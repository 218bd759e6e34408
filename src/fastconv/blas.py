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

Two context managers give other modules the same setting around a whole section:
:func:`one_blas_thread` (reference-counted, for calls whose GEMMs run on several worker threads at once:
conv_transpose2d's col2im, the conv2d backward's band GEMMs) and :class:`single_blas_thread` (cheap, for
a short serial section on the calling thread).
"""

import contextlib
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


def blas_num_threads():
    """numpy's OpenBLAS thread count now, or None when fastconv cannot set it (see :func:`blas_available`)."""
    handles = _openblas()
    return None if handles is None else handles[1]()


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


_USERS = 0
_SAVED = None
_USERS_LOCK = threading.Lock()


@contextlib.contextmanager
def one_blas_thread():
    """OpenBLAS on one thread while any caller is inside (each worker thread runs its own GEMMs; a
    multithreaded GEMM would fight the other workers for the cores). Process-wide, reference-counted
    across concurrent callers, restored by the last one out; without OpenBLAS a no-op. ~5 us per use:
    for a short serial section :class:`single_blas_thread` is cheaper."""
    global _USERS, _SAVED
    handles = _openblas()
    if handles is None:
        yield
        return
    setter, getter = handles
    with _USERS_LOCK:
        if _USERS == 0:
            with _LOCK:
                _SAVED = getter()
                setter(1)
        _USERS += 1
    try:
        yield
    finally:
        with _USERS_LOCK:
            _USERS -= 1
            if _USERS == 0:
                with _LOCK:
                    setter(_SAVED)


class single_blas_thread:
    """OpenBLAS on one thread for a short serial section, holding this module's lock meanwhile (the
    protocol of :func:`matmul`): ~1 us instead of ~5 us for the reference-counted :func:`one_blas_thread`,
    which the threaded paths use. Without OpenBLAS a no-op. Not reentrant: no :func:`matmul` inside (the
    lock is not reentrant)."""

    __slots__ = ("previous",)

    def __enter__(self):
        handles = _openblas()
        self.previous = None
        if handles is not None:
            _LOCK.acquire()
            self.previous = handles[1]()
            if self.previous != 1:
                handles[0](1)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            if self.previous != 1:
                _openblas()[0](self.previous)
            _LOCK.release()
        return False
