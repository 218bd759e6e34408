"""Shared test fixtures: the one per-dtype tolerance table, a seeded rng, float64 reference helpers,
random conv2d problems (inputs, a hypothesis strategy, a check against the reference).

Tolerances are for comparing a kernel's result (computed in ``dtype``) with the float64 reference on
inputs drawn from a standard normal distribution with at most a few hundred terms per output: float32
accumulates ~1e-7 relative error per term, float64 ~1e-16.
"""

import contextlib

import numpy as np
import pytest
from hypothesis import assume
from hypothesis import strategies as st

import fastconv
import fastconv.bands
import fastconv.reference
import fastconv.threads
from fastconv.shapes import conv_output_size, resolve_padding

TOL = {
    np.dtype(np.float32): dict(rtol=1e-4, atol=1e-4),
    np.dtype(np.float64): dict(rtol=1e-10, atol=1e-10),
}

FLOAT_DTYPES = (np.float32, np.float64)


def tolerance(dtype):
    """rtol/atol for results of ``dtype`` compared with the float64 reference."""
    return TOL[np.dtype(dtype)]


def assert_close_to(actual, expected, dtype=None):
    """Same shape, ``actual.dtype == dtype`` (default: its own), values within ``TOL[dtype]``."""
    dtype = np.dtype(actual.dtype if dtype is None else dtype)
    assert actual.dtype == dtype, f"dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == expected.shape, f"shape {actual.shape}, expected {expected.shape}"
    np.testing.assert_allclose(actual, expected, **tolerance(dtype))


def reference_conv2d_f64(x, weight, bias=None, **options):
    """``fastconv.reference.conv2d`` evaluated in float64 on copies of the inputs."""
    as64 = (lambda a: None if a is None else np.asarray(a, dtype=np.float64))
    options = {k: v for k, v in options.items() if k not in ("algo", "out")}
    return fastconv.reference.conv2d(as64(x), as64(weight), as64(bias), **options)


def conv_inputs(rng, x_shape, w_shape, with_bias, dtype):
    """Standard-normal ``(x, weight, bias)`` of ``dtype``; ``bias`` is None unless ``with_bias``."""
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if with_bias else None
    return x, w, b


def assert_conv2d_matches_reference(rng, algo, x_shape, w_shape, options, with_bias, dtype):
    """``fastconv.conv2d(algo=algo)`` on :func:`conv_inputs` equals the float64 reference within the
    tolerance of ``dtype``, and leaves its inputs untouched."""
    x, w, b = conv_inputs(rng, x_shape, w_shape, with_bias, dtype)
    x0, w0 = x.copy(), w.copy()
    out = fastconv.conv2d(x, w, b, algo=algo, **options)
    assert_close_to(out, reference_conv2d_f64(x, w, b, **options), dtype)
    np.testing.assert_array_equal(x, x0)  # inputs untouched
    np.testing.assert_array_equal(w, w0)


def assume_valid_conv(in_hw, kernel_hw, options):
    """Inside a hypothesis test or strategy: reject (``assume``) conv2d ``options`` (stride, padding,
    dilation, padding_mode) that give an empty output for ``in_hw`` or pad beyond PyTorch's limits for
    reflect (< size) and circular (<= size) padding."""
    try:
        conv_output_size(in_hw, kernel_hw, options["stride"], options["padding"], options["dilation"])
    except ValueError:
        assume(False)
    pads = resolve_padding(in_hw, kernel_hw, options["stride"], options["padding"], options["dilation"])
    for (p0, p1), size in zip(pads, in_hw):
        assume(not (options["padding_mode"] == "reflect" and max(p0, p1) >= size))
        assume(not (options["padding_mode"] == "circular" and max(p0, p1) > size))


@st.composite
def conv2d_configs(draw, channels):
    """A random small conv2d problem with a non-empty output: ``channels`` is a strategy drawing
    ``(groups, C_in, C_out)``; kernel 1..5, stride 1..3, dilation 1..2 (ints or pairs), every padding form
    and mode (:func:`assume_valid_conv`), batch 1..3, H and W 1..12. Returns a dict with
    ``x_shape``, ``w_shape``, ``options`` (conv2d keywords), ``bias`` (bool), ``dtype``, ``seed``."""
    groups, c_in, c_out = draw(channels)
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    small = st.integers(1, 3)
    options = dict(
        groups=groups,
        stride=draw(st.one_of(small, st.tuples(small, small))),
        dilation=draw(st.one_of(st.integers(1, 2), st.tuples(st.integers(1, 2), st.integers(1, 2)))),
        padding=draw(st.one_of(st.sampled_from(["valid", "same", "full"]), st.integers(0, 3),
                               st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)),
                                         st.tuples(st.integers(0, 3), st.integers(0, 3))))),
        padding_mode=draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"])),
    )
    in_hw = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    assume_valid_conv(in_hw, (kh, kw), options)
    return dict(x_shape=(draw(st.integers(1, 3)), c_in) + in_hw, w_shape=(c_out, c_in // groups, kh, kw),
                options=options, bias=draw(st.booleans()), dtype=draw(st.sampled_from(FLOAT_DTYPES)),
                seed=draw(st.integers(0, 2**32 - 1)))


@pytest.fixture
def rng():
    """A fresh generator with a fixed seed per test (deterministic, independent of test order)."""
    return np.random.default_rng(20240611)


@pytest.fixture
def tol():
    """The tolerance table itself: ``tol[np.dtype(np.float32)]`` -> dict(rtol=..., atol=...)."""
    return TOL


@pytest.fixture
def assert_close():
    """``assert_close(actual, expected, dtype=None)`` using the shared tolerance table."""
    return assert_close_to


@pytest.fixture
def conv2d_ref64():
    """The float64 reference conv2d (see :func:`reference_conv2d_f64`)."""
    return reference_conv2d_f64


@pytest.fixture
def restore_threads():
    """Restores ``fastconv.get_num_threads()`` after a test that changes it."""
    before = fastconv.get_num_threads()
    yield
    fastconv.set_num_threads(before)


@contextlib.contextmanager
def small_problems_in_parallel():
    """Small problems run on every thread too. ``fastconv.threads.serial_if_small`` (and the band GEMMs'
    threshold) run them on the calling thread only, so without this a test comparing thread counts on a
    small problem would compare one thread with itself."""

    def never_serial(self, work, limit=None):
        self.serial = False
        self.previous = None

    init, band_limit = fastconv.threads.serial_if_small.__init__, fastconv.bands.SERIAL_MACS
    fastconv.threads.serial_if_small.__init__ = never_serial
    fastconv.bands.SERIAL_MACS = 0
    try:
        yield
    finally:
        fastconv.threads.serial_if_small.__init__ = init
        fastconv.bands.SERIAL_MACS = band_limit


@pytest.fixture
def in_parallel():
    """:func:`small_problems_in_parallel` for the whole test."""
    with small_problems_in_parallel():
        yield


def at_one_and_two_threads(call):
    """``(call() on one thread, call() on two threads)``, small problems included
    (:func:`small_problems_in_parallel`); the thread count is restored afterwards."""
    before = fastconv.get_num_threads()
    try:
        with small_problems_in_parallel():
            fastconv.set_num_threads(1)
            one = call()
            fastconv.set_num_threads(2)
            two = call()
    finally:
        fastconv.set_num_threads(before)
    return one, two


# Finite differences, shared by the backward, layer and loss tests (float64).
FD_EPS = 1e-6
FD_TOL = dict(rtol=1e-6, atol=1e-7)


def numeric_grad(loss, arr, eps=FD_EPS):
    """Central differences ``(loss(a + eps e_i) - loss(a - eps e_i)) / (2 eps)`` for every element of
    ``arr`` (modified in place and restored)."""
    grad = np.empty_like(arr)
    flat, gflat = arr.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + eps
        up = loss()
        flat[i] = keep - eps
        down = loss()
        flat[i] = keep
        gflat[i] = (up - down) / (2 * eps)
    return grad


def distinct(rng, shape):
    """Values with gaps >= 0.01 between any two (no ties: max pooling is differentiable there)."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.01 + rng.uniform(0, 1e-3, shape)) - 1.0
