"""Dynamic hand-out of work items to the threads of a parallel kernel.

Why: numba's OpenMP layer splits a ``prange`` into one static, contiguous share per thread, and
``numba.parallel_chunksize`` does not change that (measured: with one thread slowed 4x, both threads
still ran 32 of 64 iterations, chunk size 1 or not). On a shared machine one core often loses 10-30 %
of a call to another process (per-thread timers on conv2d L2: 106 vs 163 million cycles busy for the
same 261 items), and the other thread then idles at the end.

So a kernel runs one ``prange`` iteration per thread (``workers`` of them). The items are split into
``workers`` contiguous ranges, each with a counter; a worker claims the items of its own range in
order, then helps with the others' ranges, claiming from their counters. Threads thus stream through
memory in order, as with the static split, and only the end of a call is shared out item by item::

    counters = range_counters(n_items, workers)
    for worker in prange(workers):
        item, used = next_item(counters, worker, 0, workers, n_items)
        while item >= 0:
            ...  # the work of ``item``
            item, used = next_item(counters, worker, used, workers, n_items)

Results do not depend on it: every item computes the same values whichever thread runs it.
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .._jit import inline, kernel

COUNTER_STRIDE = 8  # int64 slots between counters: one 64-byte cache line each


@kernel
def range_counters(n_items, workers):
    """The counters of :func:`claim`: range ``r`` starts at item ``r * n_items // workers``."""
    counters = np.empty(workers * COUNTER_STRIDE, dtype=np.int64)
    for r in range(workers):
        counters[r * COUNTER_STRIDE] = r * n_items // workers
    return counters


@intrinsic
def _fetch_add(typingctx, counters, index):
    if not (isinstance(counters, types.Array) and counters.dtype == types.int64):
        return None

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        ptr = builder.gep(data, [args[1]], inbounds=True)
        return builder.atomic_rmw("add", ptr, ir.Constant(ir.IntType(64), 1), "monotonic")
    return types.int64(counters, types.int64), codegen


@kernel
def claim(counters, r):
    """The next item of range ``r`` (atomically taken; past the range's end once it is used up)."""
    return _fetch_add(counters, r * COUNTER_STRIDE)


@inline
def next_item(counters, worker, used, workers, n_items):
    """``(item, used)``: the next item for ``worker``, which has used up ``used`` ranges (its own first,
    then the following ones); ``item`` is -1 when every range is used up."""
    while used < workers:
        r = (worker + used) % workers
        item = claim(counters, r)
        if item < (r + 1) * n_items // workers:
            return item, used
        used += 1
    return -1, used
