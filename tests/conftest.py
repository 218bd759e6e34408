"""Shared test fixtures: the one per-dtype tolerance table, a seeded rng, float64 reference helpers.

Tolerances are for comparing a kernel's result (computed in ``dtype``) with the float64 reference on
inputs drawn from a standard normal distribution with at most a few hundred terms per output: float32
accumulates ~1e-7 relative error per term, float64 ~1e-16.
"""

import numpy as np
import pytest

import fastconv.reference

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
