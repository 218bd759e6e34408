"""Losses (value and gradient) and optimisers (updates computed by hand)."""

import math

import numpy as np
import pytest

from conftest import numeric_grad as _numeric_grad
from fastconv import nn
from fastconv.nn.optim import SGD, Adam



def test_softmax_cross_entropy_hand_value():
    logits = np.array([[0.0, math.log(3.0)]])  # softmax = (1/4, 3/4)
    loss, grad = nn.softmax_cross_entropy(logits, np.array([1]))
    assert loss == pytest.approx(-math.log(0.75))
    np.testing.assert_allclose(grad, [[0.25, -0.25]])


def test_softmax_cross_entropy_gradient_and_stability(rng):
    logits = rng.standard_normal((5, 7))
    labels = rng.integers(0, 7, 5)
    _, grad = nn.softmax_cross_entropy(logits, labels)
    np.testing.assert_allclose(grad, _numeric_grad(lambda: nn.softmax_cross_entropy(logits, labels)[0], logits),
                               rtol=1e-6, atol=1e-9)
    big, _ = nn.softmax_cross_entropy(np.array([[1000.0, 0.0]]), np.array([1]))
    assert big == pytest.approx(1000.0)
    assert nn.softmax_cross_entropy(logits.astype(np.float32), labels)[1].dtype == np.float32
    np.testing.assert_allclose(nn.softmax(logits).sum(axis=1), 1.0)


def test_mse_gradient(rng):
    pred, target = rng.standard_normal((2, 1, 3, 3)), rng.standard_normal((2, 1, 3, 3))
    loss, grad = nn.mse_loss(pred, target)
    assert loss == pytest.approx(np.mean((pred - target) ** 2))
    np.testing.assert_allclose(grad, _numeric_grad(lambda: nn.mse_loss(pred, target)[0], pred), rtol=1e-6, atol=1e-9)


def test_loss_objects_match_functions(rng):
    logits, labels = rng.standard_normal((3, 4)), np.array([0, 1, 3])
    criterion = nn.CrossEntropyLoss()
    assert criterion(logits, labels) == nn.softmax_cross_entropy(logits, labels)[0]
    np.testing.assert_array_equal(criterion.backward(), nn.softmax_cross_entropy(logits, labels)[1])
    mse = nn.MSELoss()
    assert mse(logits, logits + 1) == pytest.approx(1.0)
    np.testing.assert_allclose(mse.backward(), np.full((3, 4), -2.0 / 12))


@pytest.mark.parametrize("call, match", [
    (lambda: nn.softmax_cross_entropy(np.zeros(3), np.array([0])), "softmax_cross_entropy: logits must be 2-D"),
    (lambda: nn.softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0])), "labels must be an int array"),
    (lambda: nn.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3])), r"labels must be in \[0, 3\)"),
    (lambda: nn.mse_loss(np.zeros(3), np.zeros(4)), "mse_loss: target must have the prediction's shape"),
])
def test_loss_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_sgd_plain_and_momentum_by_hand():
    p = np.array([1.0, -2.0])
    opt = SGD([p], lr=0.1)
    opt.step([np.array([0.5, 1.0])])
    np.testing.assert_allclose(p, [0.95, -2.1])

    p = np.array([1.0])
    opt = SGD([p], lr=0.1, momentum=0.9)
    opt.step([np.array([0.5])])        # b = 0.5
    opt.step([np.array([0.25])])       # b = 0.9 * 0.5 + 0.25 = 0.7
    np.testing.assert_allclose(p, [1.0 - 0.05 - 0.07])

    p = np.array([1.0])
    opt = SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)
    opt.step([np.array([0.4])])        # g = 0.4 + 0.1 = 0.5, b = 0.5, g = 0.5 + 0.45 = 0.95
    np.testing.assert_allclose(p, [1.0 - 0.095])


def test_adam_by_hand():
    p = np.array([1.0, 1.0])
    opt = Adam([p], lr=0.01)
    g1, g2 = np.array([0.5, -2.0]), np.array([0.1, 1.0])
    opt.step([g1])
    np.testing.assert_allclose(p, 1.0 - 0.01 * g1 / (np.abs(g1) + 1e-8))  # first step moves by lr * sign
    expected = p.copy()
    m = 0.9 * (0.1 * g1) + 0.1 * g2
    v = 0.999 * (0.001 * g1 ** 2) + 0.001 * g2 ** 2
    expected -= 0.01 * (m / (1 - 0.9 ** 2)) / (np.sqrt(v / (1 - 0.999 ** 2)) + 1e-8)
    opt.step([g2])
    np.testing.assert_allclose(p, expected, rtol=1e-14)


def test_optimisers_keep_float32_and_minimise_a_quadratic():
    for make in (lambda q: SGD([q], lr=0.1, momentum=0.5), lambda q: Adam([q], lr=0.1)):
        q = np.array([3.0, -4.0], dtype=np.float32)
        opt = make(q)
        for _ in range(200):
            opt.step([2 * q])
        assert q.dtype == np.float32
        assert np.abs(q).max() < 0.05


@pytest.mark.parametrize("call, err, match", [
    (lambda: SGD([np.zeros(2)], lr=0.0), ValueError, "SGD: lr must be > 0"),
    (lambda: SGD([np.zeros(2, dtype=int)]), TypeError, r"SGD: params\[0\] must be a float numpy.ndarray"),
    (lambda: SGD([np.zeros(2)], nesterov=True), ValueError, "SGD: nesterov must have momentum > 0"),
    (lambda: SGD([np.zeros(2)], momentum=-1), ValueError, "SGD: momentum must be >= 0"),
    (lambda: Adam([np.zeros(2)], betas=(1.0, 0.9)), ValueError, r"Adam: betas must be in \[0, 1\)"),
    (lambda: Adam([np.zeros(2)]).step([]), ValueError, r"Adam.step: grads must match the 1 parameters"),
    (lambda: Adam([np.zeros(2)]).step([np.zeros(3)]), ValueError, r"Adam.step: grads\[0\] must have shape"),
])
def test_optimiser_errors(call, err, match):
    with pytest.raises(err, match=match):
        call()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_fused_update_is_bit_identical_to_the_numpy_expression(dtype, weight_decay, rng):
    # Contiguous same-dtype parameters take the fused kernel; F-ordered gradients the numpy expression:
    # both must give the same bits (same operations, same order, same dtype).
    shapes = [(16, 1, 3, 3), (16,), (10, 336)]
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    fused = Adam([p.copy() for p in start], lr=3e-3, weight_decay=weight_decay)
    plain = Adam([p.copy() for p in start], lr=3e-3, weight_decay=weight_decay)
    for _ in range(5):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        fused.step(grads)
        plain.step([np.asfortranarray(g) if g.ndim > 1 else g for g in grads])
    assert fused.params[0].dtype == dtype
    for a, b in zip(fused.params[::2], plain.params[::2]):  # the 1-D one takes the kernel in both
        np.testing.assert_array_equal(a, b)
    # and both moved: the update did something
    assert not np.array_equal(fused.params[2], start[2])
