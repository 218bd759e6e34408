"""Numba set-up shared by every kernel module: cache location, threading layer, decorators.

Decisions (see docs/algorithms.md, "Compilation and threads"):

* Kernels compile lazily on first call (no eager signatures), so ``import fastconv`` compiles nothing.
* The on-disk compile cache lives in ``$FASTCONV_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/fastconv``
  (``~/.cache/fastconv``), unless the user already chose ``NUMBA_CACHE_DIR``. The directory is probed
  for writability at import: when nothing writable exists (read-only install, no HOME) caching is off
  and kernels simply recompile per process. ``FASTCONV_CACHE_DIR=off`` disables caching on purpose.
* The threading layer must be thread-safe ("omp" or "tbb"): numba's "workqueue" aborts the process when
  two Python threads run parallel kernels at once. Idle OpenMP threads sleep at once
  (``OMP_WAIT_POLICY=PASSIVE``, a ``setdefault``) so they never spin against OpenBLAS, the next
  kernel or another program; the wake-up this costs (~100 us on this VM) is avoided for small
  problems by running them on one thread (``fastconv.threads.serial_if_small``).
"""

import os
import tempfile

# Must be set before libgomp is loaded (numba loads it lazily at the first parallel launch).
# Measurements behind the values: docs/algorithms.md, "Threads".
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402

_OFF_VALUES = ("", "0", "off", "none", "false")


def _writable_dir(path):
    """Return True when ``path`` exists (or can be created) and accepts a new file."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
        return True
    except OSError:
        return False


def _choose_cache_dir():
    """Pick the compile-cache directory, or None to disable caching."""
    explicit = os.environ.get("FASTCONV_CACHE_DIR")
    if explicit is not None:
        if explicit.strip().lower() in _OFF_VALUES:
            return None
        return explicit if _writable_dir(explicit) else None
    if numba.config.CACHE_DIR:  # the user set NUMBA_CACHE_DIR: respect it
        return numba.config.CACHE_DIR if _writable_dir(numba.config.CACHE_DIR) else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if base.startswith("~"):  # no HOME at all
        return None
    path = os.path.join(base, "fastconv", f"numba-{numba.__version__}")
    return path if _writable_dir(path) else None


CACHE_DIR = _choose_cache_dir()
CACHE_ENABLED = CACHE_DIR is not None
if CACHE_ENABLED:
    numba.config.CACHE_DIR = CACHE_DIR

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "threadsafe"


def kernel(func=None, *, parallel=False, fastmath=False):
    """``numba.njit`` with fastconv's policy: lazy, cached when possible, no implicit fastmath."""

    def wrap(f):
        return numba.njit(f, parallel=parallel, fastmath=fastmath, cache=CACHE_ENABLED, nogil=True)

    return wrap if func is None else wrap(func)


def parallel_kernel(func=None, *, fastmath=False):
    """A :func:`kernel` with ``parallel=True`` (use ``numba.prange`` for the owned loop)."""
    return kernel(func, parallel=True, fastmath=fastmath)


# Helpers inlined into their jitted callers by numba (IR inlining): no dispatcher or cache entry of
# their own, and the caller's constants fold into them.
inline = numba.njit(inline="always")
