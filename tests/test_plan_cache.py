"""The memoised call plans of conv2d / conv_transpose2d (``fastconv.plan_cache``): a repeated call looks its
plan up, and a cached plan never lets an argument through that an uncached call would refuse."""

import numpy as np
import pytest

import fastconv
from fastconv import conv as conv_module
from fastconv import conv_transpose as ct_module
from fastconv.plan_cache import is_plain, memoised_plan


def test_only_exact_ints_strings_none_float_dtypes_and_tuples_of_them_are_plain():
    assert is_plain((1, "same", None, np.dtype(np.float32), np.dtype(np.float64), ((1, 2), (3, 4)), ()))
    for value in (1.0, True, [1, 1], np.int64(1), (1, [2]), ((1, 1.5),), np.dtype(np.int32), np.ones(2)):
        assert not is_plain((value,)), value


def test_memoised_plan_caches_plain_calls_only_and_never_errors():
    calls = []

    @memoised_plan
    def planner(a, b):
        calls.append((a, b))
        if a < 0:
            raise ValueError("negative")
        return a + sum(b)

    assert planner(1, (2, 3)) == planner(1, (2, 3)) == 6
    assert len(calls) == 1
    assert planner(1, [2, 3]) == planner(1, [2, 3]) == 6  # a list: planned every time
    assert len(calls) == 3
    for _ in range(2):
        with pytest.raises(ValueError, match="negative"):
            planner(-1, (0,))
    assert len(calls) == 5
    planner.cache_clear()
    planner(1, (2, 3))
    assert len(calls) == 6


@pytest.mark.parametrize("op, module, w_shape", [
    (fastconv.conv2d, conv_module, (4, 3, 3, 3)),
    (fastconv.conv_transpose2d, ct_module, (3, 4, 3, 3)),
], ids=["conv2d", "conv_transpose2d"])
def test_a_cached_plan_still_refuses_what_an_uncached_call_refuses(op, module, w_shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    module._call_plan.cache_clear()
    first = op(x, w, stride=2, padding=1)
    hits = module._call_plan.cache_info().hits
    np.testing.assert_array_equal(op(x, w, stride=2, padding=1), first)
    assert module._call_plan.cache_info().hits == hits + 1
    np.testing.assert_array_equal(op(x, w, stride=[2, 2], padding=[1, 1]), first)  # lists: planned afresh
    # Equal as dictionary keys to the cached (stride 2, padding 1), but not accepted arguments.
    with pytest.raises(TypeError, match="stride"):
        op(x, w, stride=2.0, padding=1)
    with pytest.raises(TypeError, match="padding"):
        op(x, w, stride=2, padding=True)
    with pytest.raises(ValueError, match="bias"):
        op(x, w, np.zeros(7, np.float32), stride=2, padding=1)
    with pytest.raises(ValueError, match="bias"):  # errors are not cached: raised again
        op(x, w, np.zeros(7, np.float32), stride=2, padding=1)
    # float64 input: another plan (the dtype is part of the key)
    assert op(x.astype(np.float64), w, stride=2, padding=1).dtype == np.float64
