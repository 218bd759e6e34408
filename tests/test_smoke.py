"""Every public op once on small shapes against the numpy reference.

Small on purpose: CI runs this file a second time with NUMBA_BOUNDSCHECK=1 (a fresh compile), so any
out-of-bounds access in a kernel raises instead of reading garbage.
"""

import numpy as np
import pytest

import fastconv
import fastconv.reference as ref

RNG = np.random.default_rng(1234)


def _arr(*shape):
    return RNG.standard_normal(shape)


CONV_CASES = {
    "k3-same": dict(x=(2, 4, 7, 6), w=(8, 4, 3, 3), kw=dict(padding="same")),
    "k3-s2-full-dil2": dict(x=(1, 3, 9, 8), w=(5, 3, 3, 2), kw=dict(stride=2, padding="full", dilation=2)),
    "depthwise-reflect": dict(x=(2, 6, 6, 7), w=(6, 1, 3, 3), kw=dict(padding=1, groups=6,
                                                                           padding_mode="reflect")),
    "1x1": dict(x=(2, 5, 4, 4), w=(7, 5, 1, 1), kw=dict()),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("algo", ["direct", "im2col"])
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d_matches_reference(case, algo, dtype):
    spec = CONV_CASES[case]
    x, w = _arr(*spec["x"]).astype(dtype), _arr(*spec["w"]).astype(dtype)
    b = _arr(spec["w"][0]).astype(dtype)
    got = fastconv.conv2d(x, w, b, algo=algo, **spec["kw"])
    want = ref.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), **spec["kw"])
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
