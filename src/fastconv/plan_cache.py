"""Memoised call plans: a public op's validated, canonical problem and chosen algorithm per call signature.

Why: planning a call (checking every option, canonical shapes and paddings, the dispatch rules and the
reason strings they build) runs ~20-30 us of Python each call, and several times that when the call
follows an idle pause, as calls in a training loop or a benchmark round do: the interpreter's code and
data have left the core's caches (measured: a (1, 64, 4, 4) conv_transpose2d took 47 us back to back and
210-300 us after a 20 ms sleep; building its problem alone 15 vs 66-124 us). A call whose options are
plain values looks its plan up instead.

Only exact ``int``, ``str``, ``None``, the float32 / float64 dtypes and tuples of them are looked up:
``1``, ``1.0`` and ``True`` compare equal as keys but are not the same argument (a float stride must
still raise), and a list is not hashable. Any other value plans afresh, the same code. Errors are never
cached (the planner raises on every call), so a cached call validates exactly as an uncached one.

A plan holds the dispatch rules' choice as it was when its signature was first planned: code that
changes a rule's module constant at run time (as a test may) must call the op's
``_call_plan.cache_clear()`` for calls with ``algo="auto"`` to see it. The run paths (which kernel
route, which work items) are still decided per call.
"""

import functools

import numpy as np

PLAN_CACHE_SIZE = 512  # signatures per op; a plan is a few hundred bytes

# The computation dtypes are the only dtypes the ops accept (each has its own dtype class).
_PLAIN_TYPES = frozenset((int, str, type(None), type(np.dtype(np.float32)), type(np.dtype(np.float64))))


def is_plain(values):
    """Whether ``values`` (a tuple) holds only exact ints, strings, None, float dtypes and tuples of them."""
    for value in values:
        kind = type(value)
        if kind in _PLAIN_TYPES or (kind is tuple and is_plain(value)):
            continue
        return False
    return True


def memoised_plan(planner):
    """``planner(*args)``, memoised (LRU, ``PLAN_CACHE_SIZE``) when every argument is plain (:func:`is_plain`).

    ``planner`` must be a pure function of its arguments; ``.cache_clear()`` empties its cache.
    """
    cached = functools.lru_cache(maxsize=PLAN_CACHE_SIZE)(planner)

    @functools.wraps(planner)
    def plan(*args):
        if is_plain(args):
            return cached(*args)
        return planner(*args)

    plan.cache_clear = cached.cache_clear
    plan.cache_info = cached.cache_info
    return plan
