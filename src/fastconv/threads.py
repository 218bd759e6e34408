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
