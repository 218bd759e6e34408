"""Property-based tests: random valid conv2d configurations, every algo against the float64 reference."""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastconv
from fastconv.shapes import conv_output_size, resolve_padding

ALGOS = ("auto", "direct", "im2col")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
# The fixtures used here (assert_close, conv2d_ref64) return pure functions: sharing them across
# hypothesis examples is safe.
STATELESS_FIXTURES = HealthCheck.function_scoped_fixture

small = st.integers(1, 3)
pair_or_int = (lambda values: st.one_of(values, st.tuples(values, values)))
padding_forms = st.one_of(
    st.sampled_from(["valid", "same", "full"]),
    st.integers(0, 3),
    st.tuples(st.integers(0, 3), st.integers(0, 3)),
    st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)), st.tuples(st.integers(0, 3), st.integers(0, 3))),
)


@st.composite
def conv_configs(draw):
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(small)
    c_out = groups * draw(st.sampled_from([1, 2, 3, 4, 5, 8, 9]))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    config = dict(
        x_shape=(draw(st.integers(1, 3)), c_in, draw(st.integers(1, 10)), draw(st.integers(1, 10))),
        w_shape=(c_out, c_in // groups, kh, kw),
        bias=draw(st.booleans()),
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        seed=draw(st.integers(0, 2**32 - 1)),
        options=dict(
            stride=draw(pair_or_int(small)),
            dilation=draw(pair_or_int(st.integers(1, 2))),
            padding=draw(padding_forms),
            groups=groups,
            padding_mode=draw(st.sampled_from(PADDING_MODES)),
        ),
    )
    options = config["options"]
    in_hw = config["x_shape"][2:]
    try:  # keep only configurations with a non-empty output
        conv_output_size(in_hw, (kh, kw), options["stride"], options["padding"], options["dilation"])
    except ValueError:
        assume(False)
    pads = resolve_padding(in_hw, (kh, kw), options["stride"], options["padding"], options["dilation"])
    for (p0, p1), size in zip(pads, in_hw):  # PyTorch's limits on reflect/circular padding
        assume(not (options["padding_mode"] == "reflect" and max(p0, p1) >= size))
        assume(not (options["padding_mode"] == "circular" and max(p0, p1) > size))
    return config


@pytest.mark.parametrize("algo", ALGOS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, STATELESS_FIXTURES])
@given(config=conv_configs())
def test_random_configs_match_reference(algo, config, assert_close, conv2d_ref64):
    rng = np.random.default_rng(config["seed"])
    dtype = config["dtype"]
    x = rng.standard_normal(config["x_shape"]).astype(dtype)
    w = rng.standard_normal(config["w_shape"]).astype(dtype)
    b = rng.standard_normal(config["w_shape"][0]).astype(dtype) if config["bias"] else None
    x0 = x.copy()
    out = fastconv.conv2d(x, w, b, algo=algo, **config["options"])
    assert_close(out, conv2d_ref64(x, w, b, **config["options"]), dtype)
    np.testing.assert_array_equal(x, x0)


@settings(max_examples=40, deadline=None, suppress_health_check=[STATELESS_FIXTURES])
@given(
    n=st.integers(1, 3),
    groups=st.integers(1, 3),
    stride=pair_or_int(small),
    seed=st.integers(0, 2**32 - 1),
)
def test_linearity_in_x_and_batch_independence(n, groups, stride, seed, assert_close):
    # conv2d(a*x1 + x2) = a*conv2d(x1) + conv2d(x2) (no bias), and image i of a batch equals the
    # convolution of image i alone.
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal((n, 2 * groups, 7, 6))
    x2 = rng.standard_normal((n, 2 * groups, 7, 6))
    w = rng.standard_normal((3 * groups, 2, 3, 2))
    options = dict(stride=stride, groups=groups, padding="same")
    combined = fastconv.conv2d(2.5 * x1 + x2, w, **options)
    assert_close(combined, 2.5 * fastconv.conv2d(x1, w, **options) + fastconv.conv2d(x2, w, **options))
    for i in range(n):
        assert_close(fastconv.conv2d(x1[i:i + 1], w, **options)[0], fastconv.conv2d(x1, w, **options)[i])
