"""Thread count for fastconv's parallel kernels (numba's pool).

``set_num_threads(n)`` limits numba's parallel regions to ``n`` threads for the calling thread, as
``numba.set_num_threads`` does; results are bit-identical for every thread count because each
parallel iteration owns a disjoint slice of the output and sums in a fixed order.
"""

import numba

from ._validate import check_int


def get_num_threads():
    """Number of threads fastconv's parallel kernels use (numba's current setting)."""
    return numba.get_num_threads()


def set_num_threads(n):
    """Use ``n`` threads (1 <= n <= ``numba.config.NUMBA_NUM_THREADS``) in fastconv's kernels."""
    limit = numba.config.NUMBA_NUM_THREADS
    n = check_int("set_num_threads", "n", n, 1)
    if n > limit:
        raise ValueError(f"set_num_threads: n must be <= {limit} (NUMBA_NUM_THREADS), got {n}")
    numba.set_num_threads(n)


# Below these amounts of work a call runs its kernels on the calling thread only: waking the sleeping
# pool costs ~100 us per parallel region on this machine, more than such a kernel gains from a second
# core. Measured crossover for conv2d (docs/algorithms.md, "Threads"): one thread is as fast or faster
# up to ~19M multiply-adds, two threads win from ~75M.
SERIAL_MACS = 16_000_000
SERIAL_ELEMENTS = 1_000_000  # pooling: input + output elements touched


_RAW = None


def _raw_thread_count():
    """numba's (get, set) of the calling thread's count, without the public functions' per-call locking.

    ``numba.get_num_threads`` / ``set_num_threads`` take two process-wide locks on every call (~5 us each
    here, a visible share of a 50 us pooling call); once the pool is launched the threading layer's own
    entry points do the same job. Falls back to the public functions if numba's internals move.
    """
    global _RAW
    if _RAW is None:
        try:
            from numba.np.ufunc import parallel

            parallel._launch_threads()
            _RAW = (parallel._get_num_threads, parallel._set_num_threads)
        except (ImportError, AttributeError):
            _RAW = (numba.get_num_threads, numba.set_num_threads)
    return _RAW


def current_threads():
    """The calling thread's numba thread count, without :func:`get_num_threads`' locking (~10 us): the
    ``workers`` argument of the kernels that claim their work items (``_kernels/claim.py``)."""
    return _raw_thread_count()[0]()


class serial_if_small:
    """Context manager: run the enclosed kernels on one thread when ``work < limit``.

    numba's thread count is per calling thread, so this never affects other Python threads;
    results are identical either way (every kernel is bit-identical across thread counts).
    """

    def __init__(self, work, limit=SERIAL_MACS):
        self.serial = work < limit
        self.previous = None

    def __enter__(self):
        if self.serial:
            get, set_ = _raw_thread_count()
            self.previous = get()
            if self.previous != 1:
                set_(1)
            else:
                self.serial = False  # already serial: nothing to restore
        return self

    def __exit__(self, *exc):
        if self.serial:
            _raw_thread_count()[1](self.previous)
        return False
