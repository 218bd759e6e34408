"""``C = A @ B (+ C)`` on 2-D numpy views through the CBLAS ``?gemm`` of the OpenBLAS that numpy loaded.

Why not ``np.matmul``: the conv backward drivers (``fastconv.backward``) need two things numpy's matmul
does not offer, and both matter at the sizes they run:

* ``beta = 1``: the weight gradient accumulates one GEMM per (image, row band) into the same result; with
  numpy every product would be written to a temporary and added (L5: a 2.4 MB add per 231 MFLOP GEMM,
  ~10 % of the time).
* A strided destination: the input gradient of a row band is written straight into its columns of
  ``grad_x[n]`` (leading dimension ``H * W``), not into a temporary that is copied.

Both are plain BLAS arguments (``beta``, ``ldc``). The entry point is looked up in the shared library numpy
loaded (as ``fastconv.blas`` does for the thread count): ``scipy_cblas_sgemm64_`` (numpy's wheels),
``cblas_sgemm64_`` or ``cblas_sgemm``. Its integer width comes from the library's own configuration string
(``USE64BITINT``), and a 2x3x2 probe is checked against numpy once before first use. When anything is
missing (another BLAS, no OpenBLAS symbols, a failed probe) :func:`gemm` falls back to numpy
(``np.matmul`` into a temporary, then copy or add): same results up to rounding, only slower.

ctypes releases the GIL for the call, so worker threads run their GEMMs concurrently.

This is not a numba kernel; it lives next to them because it is private to the backward conv drivers.
"""

import ctypes
import threading

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

_LOCK = threading.Lock()
_UNSET = object()
_ENTRIES = _UNSET  # {np.dtype: callable} once looked up; {} when unavailable


def _library_paths():
    try:
        with open("/proc/self/maps") as maps:
            return sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line})
    except OSError:
        return []


def _bind(lib, name, int_type, scalar):
    func = getattr(lib, name, None)
    if func is None:
        return None
    i, p = int_type, ctypes.c_void_p
    func.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i, i, i, scalar, p, i, p, i, scalar, p, i]
    func.restype = None
    return func


def _config(lib):
    for name in ("scipy_openblas_get_config64_", "openblas_get_config64_", "scipy_openblas_get_config",
                 "openblas_get_config"):
        getter = getattr(lib, name, None)
        if getter is not None:
            getter.restype = ctypes.c_char_p
            text = getter()
            return text.decode("ascii", "replace") if text else ""
    return None


def _find_entries():
    """{float32: sgemm, float64: dgemm} of the OpenBLAS numpy loaded, or {}."""
    np.ones((2, 2)) @ np.ones((2, 2))  # make sure numpy's BLAS is loaded
    for path in _library_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        config = _config(lib)
        if config is None:
            continue
        int_type = ctypes.c_int64 if "USE64BITINT" in config else ctypes.c_int32
        for prefix, suffix in (("scipy_", "64_"), ("", "64_"), ("scipy_", ""), ("", "")):
            if (suffix == "64_") != (int_type is ctypes.c_int64):
                continue
            s = _bind(lib, f"{prefix}cblas_sgemm{suffix}", int_type, ctypes.c_float)
            d = _bind(lib, f"{prefix}cblas_dgemm{suffix}", int_type, ctypes.c_double)
            if s is not None and d is not None:
                entries = {np.dtype(np.float32): s, np.dtype(np.float64): d}
                if _probe(entries):
                    return entries
    return {}


def _probe(entries):
    """Check each entry on a small product with a transposed operand, a leading dimension and beta = 1."""
    for dtype in entries:
        a = np.arange(1.0, 7.0, dtype=dtype).reshape(2, 3)
        b = np.arange(2.0, 14.0, dtype=dtype).reshape(3, 4)[:, :2]
        c = np.ones((2, 3), dtype=dtype)
        expected = c.copy()
        expected[:, :2] += a @ b
        try:
            _call(entries[dtype], a, b, c[:, :2], 1.0)
        except (ctypes.ArgumentError, OSError):
            return False
        if not np.array_equal(c, expected):
            return False
    return True


def _entries():
    global _ENTRIES
    if _ENTRIES is _UNSET:
        with _LOCK:
            if _ENTRIES is _UNSET:
                _ENTRIES = _find_entries()
    return _ENTRIES


def _layout(m):
    """(transpose flag, leading dimension) of a 2-D view for row-major CBLAS, or None if not expressible."""
    s0, s1 = m.strides
    item = m.itemsize
    rows, cols = m.shape
    if s1 == item and s0 % item == 0 and s0 // item >= max(1, cols):
        return _NO_TRANS, s0 // item
    if s0 == item and s1 % item == 0 and s1 // item >= max(1, rows):
        return _TRANS, s1 // item
    if rows == 1 and s1 == item:
        return _NO_TRANS, max(1, cols)
    if cols == 1 and s0 == item:
        return _TRANS, max(1, rows)
    return None


def _address(m):
    return m.__array_interface__["data"][0]  # ~2x faster than m.ctypes.data


def _call(func, a, b, c, beta):
    (m, k), (_, n) = a.shape, b.shape
    ta, lda = _layout(a)
    tb, ldb = _layout(b)
    _, ldc = _layout(c)
    func(_ROW_MAJOR, ta, tb, m, n, k, 1.0, _address(a), lda, _address(b), ldb, beta, _address(c), ldc)


def gemm(a, b, c, accumulate):
    """``c[...] = a @ b`` (``accumulate`` False) or ``c += a @ b`` (True), in place.

    ``a`` (M, K), ``b`` (K, N), ``c`` (M, N): 2-D views of one float dtype whose elements are evenly
    spaced in one direction and contiguous in the other (any transposed or sliced view of a C array);
    ``c`` row-major with unit column stride and not overlapping ``a`` or ``b``. Uses the calling thread's
    BLAS thread count (the drivers set it).
    """
    if not accumulate and c.flags.c_contiguous:
        # numpy's own BLAS call: ~10 us less Python overhead than ctypes (``ndarray.ctypes`` is slow).
        return np.matmul(a, b, out=c)
    func = _entries().get(a.dtype) if a.size and b.size and c.size else None
    if (func is not None and c.strides[1] == c.itemsize and _layout(c) is not None
            and _layout(a) is not None and _layout(b) is not None):
        _call(func, a, b, c, 1.0 if accumulate else 0.0)
        return c
    if accumulate:
        c += a @ b
    else:
        np.matmul(a, b, out=c) if c.flags.c_contiguous else np.copyto(c, a @ b)
    return c


def available():
    """True when :func:`gemm` calls CBLAS directly (False: the numpy fallback)."""
    return bool(_entries())
