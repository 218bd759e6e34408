"""fastconv.nn layers: gradients vs central finite differences (float64, reference backend), the same
results with the fastconv backend, parameter bookkeeping, PyTorch's default initialisation, errors."""

import math

import numpy as np
import pytest

import fastconv
import fastconv.reference
from conftest import numeric_grad as _numeric_grad
from fastconv import nn

# (id, factory(ops, rng), input shape). Small shapes: finite differences cost 2 forwards per element.
LAYERS = [
    ("conv_s2_p1", lambda ops, rng: nn.Conv2d(2, 3, 3, stride=2, padding=1, dtype=np.float64, rng=rng, ops=ops),
     (2, 2, 5, 5)),
    ("conv_groups_dilation_same", lambda ops, rng: nn.Conv2d(4, 2, (3, 2), dilation=(1, 2), groups=2,
                                                             padding="same", dtype=np.float64, rng=rng, ops=ops),
     (1, 4, 5, 6)),
    ("conv_reflect_nobias", lambda ops, rng: nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect", bias=False,
                                                       dtype=np.float64, rng=rng, ops=ops), (1, 2, 4, 5)),
    ("convT_s2_op1", lambda ops, rng: nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1,
                                                         dtype=np.float64, rng=rng, ops=ops), (2, 2, 3, 3)),
    ("convT_groups", lambda ops, rng: nn.ConvTranspose2d(4, 2, 2, stride=2, groups=2, dtype=np.float64, rng=rng,
                                                         ops=ops), (1, 4, 3, 2)),
    ("maxpool_3s2p1", lambda ops, rng: nn.MaxPool2d(3, stride=2, padding=1, ops=ops), (2, 2, 5, 5)),
    ("maxpool_ceil_dilation", lambda ops, rng: nn.MaxPool2d(2, stride=2, dilation=(1, 2), ceil_mode=True, ops=ops),
     (1, 2, 5, 6)),
    ("avgpool_3s2p1", lambda ops, rng: nn.AvgPool2d(3, stride=2, padding=1, ops=ops), (2, 2, 5, 5)),
    ("avgpool_ceil_exclude_pad", lambda ops, rng: nn.AvgPool2d(2, padding=1, ceil_mode=True,
                                                               count_include_pad=False, ops=ops), (1, 2, 5, 4)),
    ("adaptive_avg_3x2", lambda ops, rng: nn.AdaptiveAvgPool2d((3, 2), ops=ops), (2, 2, 5, 5)),
    ("adaptive_max_3", lambda ops, rng: nn.AdaptiveMaxPool2d(3, ops=ops), (2, 2, 5, 4)),
    ("spp_max", lambda ops, rng: nn.SpatialPyramidPool2d((1, 2), ops=ops), (2, 2, 5, 5)),
    ("spp_avg", lambda ops, rng: nn.SpatialPyramidPool2d((1, (2, 3)), mode="avg", ops=ops), (1, 2, 4, 5)),
    ("relu", lambda ops, rng: nn.ReLU(ops=ops), (2, 2, 3, 3)),
    ("flatten", lambda ops, rng: nn.Flatten(ops=ops), (2, 2, 3, 3)),
    ("linear", lambda ops, rng: nn.Linear(6, 4, dtype=np.float64, rng=rng, ops=ops), (3, 6)),
    ("linear_nobias", lambda ops, rng: nn.Linear(6, 4, bias=False, dtype=np.float64, rng=rng, ops=ops), (3, 6)),
    ("sequential", lambda ops, rng: nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, dtype=np.float64, rng=rng, ops=ops), nn.ReLU(ops=ops),
        nn.MaxPool2d(2, ops=ops), nn.Conv2d(2, 2, 2, dtype=np.float64, rng=rng, ops=ops), nn.ReLU(ops=ops),
        nn.SpatialPyramidPool2d((1, 2), ops=ops), nn.Linear(10, 3, dtype=np.float64, rng=rng, ops=ops)),
     (2, 1, 6, 6)),
]
IDS = [name for name, _, _ in LAYERS]



@pytest.mark.parametrize("name, make, shape", LAYERS, ids=IDS)
def test_gradients_match_finite_differences(name, make, shape):
    rng = np.random.default_rng(7)
    layer = make(fastconv.reference, rng)
    x = rng.standard_normal(shape)
    weights = rng.standard_normal(layer.forward(x).shape)  # loss = sum(out * weights)

    def loss():
        return float(np.sum(layer.forward(x) * weights))

    layer.zero_grad()
    layer.forward(x)
    grad_x = layer.backward(weights)
    assert grad_x.shape == x.shape and grad_x.dtype == np.float64
    np.testing.assert_allclose(grad_x, _numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    for param, grad in zip(layer.parameters(), layer.gradients()):
        np.testing.assert_allclose(grad, _numeric_grad(loss, param), rtol=1e-6, atol=1e-8)


def _run(layer, x, grad_seed=3):
    out = layer.forward(x)
    grad_out = np.random.default_rng(grad_seed).standard_normal(out.shape).astype(out.dtype)
    layer.zero_grad()
    return [out, layer.backward(grad_out)] + [g.copy() for g in layer.gradients()]


@pytest.mark.parametrize("name, make, shape", LAYERS, ids=IDS)
def test_backend_switch_gives_the_same_results(name, make, shape):
    x = np.random.default_rng(11).standard_normal(shape)
    fast = make(fastconv, np.random.default_rng(5))
    slow = make(fastconv.reference, np.random.default_rng(5))
    for a, b in zip(_run(fast, x), _run(slow, x)):
        assert a.dtype == b.dtype == np.float64
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # set_ops switches an existing model in place: the same layer now reproduces the reference numbers.
    for a, b in zip(_run(fast.set_ops(fastconv.reference), x), _run(slow, x)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name, make, shape", [layer for layer in LAYERS if layer[0] in (
    "conv_s2_p1", "convT_s2_op1", "maxpool_3s2p1", "spp_max", "sequential")],
    ids=["conv_s2_p1", "convT_s2_op1", "maxpool_3s2p1", "spp_max", "sequential"])
def test_float32_layers_stay_float32(name, make, shape, tol):
    x = np.random.default_rng(11).standard_normal(shape)
    fast = make(fastconv, np.random.default_rng(5)).astype(np.float32)
    slow = make(fastconv.reference, np.random.default_rng(5))
    for a, b in zip(_run(fast, x.astype(np.float32)), _run(slow, x)):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, **tol[np.dtype(np.float32)])


def test_backward_accumulates_until_zero_grad():
    rng = np.random.default_rng(0)
    layer = nn.Linear(3, 2, dtype=np.float64, rng=rng)
    x, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    layer.forward(x)
    layer.backward(g)
    once = [a.copy() for a in layer.gradients()]
    layer.backward(g)
    for a, b in zip(layer.gradients(), once):
        np.testing.assert_allclose(a, 2 * b)
    layer.zero_grad()
    assert all(not a.any() for a in layer.gradients())


def test_parameters_and_gradients_line_up():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3, bias=False, rng=1))
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "3.weight"]
    assert [p.shape for p in model.parameters()] == [g.shape for g in model.gradients()] == [
        (2, 1, 3, 3), (2,), (3, 8)]
    assert model.parameters()[0] is model[0].weight
    assert len(model) == 4 and isinstance(model[1], nn.ReLU)
    assert "(3): Linear(in_features=8, out_features=3, bias=False)" in repr(model)
    model.astype(np.float64)
    assert {p.dtype for p in model.parameters()} == {g.dtype for g in model.gradients()} == {np.dtype(np.float64)}


def test_conv_transpose_output_size_argument_and_backward():
    rng = np.random.default_rng(2)
    layer = nn.ConvTranspose2d(2, 1, 3, stride=2, padding=1, dtype=np.float64, rng=rng, ops=fastconv.reference)
    x = rng.standard_normal((1, 2, 3, 3))
    out = layer.forward(x, output_size=(6, 6))  # default would be 5x5; output_size picks the reachable 6x6
    assert out.shape == (1, 1, 6, 6)
    weights = rng.standard_normal(out.shape)
    grad_x = layer.backward(weights)
    numeric = _numeric_grad(lambda: float(np.sum(layer.forward(x, output_size=(6, 6)) * weights)), x)
    np.testing.assert_allclose(grad_x, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("make, fan_in", [
    (lambda: nn.Conv2d(4, 6, 3, rng=0), 36),
    (lambda: nn.Conv2d(4, 6, (3, 5), groups=2, rng=0), 30),
    (lambda: nn.ConvTranspose2d(4, 6, 3, rng=0), 54),  # PyTorch: weight.shape[1] * kH * kW
    (lambda: nn.ConvTranspose2d(4, 6, 3, groups=2, rng=0), 27),
    (lambda: nn.Linear(10, 3, rng=0), 10),
], ids=["conv", "conv_groups", "convT", "convT_groups", "linear"])
def test_default_init_is_pytorch_kaiming_uniform(make, fan_in):
    layer = make()
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)): gain sqrt(1/3) * sqrt(3 / fan_in)
    for p in (layer.weight, layer.bias):
        assert p.dtype == np.float32
        assert np.abs(p).max() <= bound
        assert np.abs(p).max() > 0.5 * bound  # spread over the interval, not a tiny constant
    np.testing.assert_array_equal(make().weight, layer.weight)  # same seed, same numbers


def test_float32_and_float64_init_agree_for_the_same_seed():
    a = nn.Conv2d(3, 4, 3, rng=9)
    b = nn.Conv2d(3, 4, 3, dtype=np.float64, rng=9)
    np.testing.assert_array_equal(a.weight, b.weight.astype(np.float32))


@pytest.mark.parametrize("call, err, match", [
    (lambda: nn.Conv2d(4, 6, 3, groups=4), ValueError, r"Conv2d: groups must divide in_channels \(4\) and "
                                                        r"out_channels \(6\), got 4"),
    (lambda: nn.ConvTranspose2d(3, 4, 3, groups=2), ValueError, "ConvTranspose2d: groups must divide"),
    (lambda: nn.Conv2d(0, 6, 3), ValueError, "Conv2d: in_channels must be >= 1"),
    (lambda: nn.Conv2d(1, 6, 3, padding_mode="edge"), ValueError, "Conv2d: padding_mode must be one of"),
    (lambda: nn.Conv2d(1, 1, 3, dtype=np.int32), TypeError, "Conv2d: dtype must be float32 or float64"),
    (lambda: nn.Linear(3, 2, rng="seed"), TypeError, "nn: rng must be a numpy.random.Generator"),
    (lambda: nn.Linear(3, 2).forward(np.zeros((2, 4), np.float32)), ValueError,
     r"Linear: x must have shape \(N, 3\), got \(2, 4\); put a Flatten\(\) before a Linear"),
    (lambda: nn.Sequential(nn.ReLU(), np.tanh), TypeError, "Sequential: layers must be Module instances"),
    (lambda: nn.SpatialPyramidPool2d(()), ValueError, "SpatialPyramidPool2d: levels must not be empty"),
    (lambda: nn.SpatialPyramidPool2d(mode="min"), ValueError, "SpatialPyramidPool2d: mode must be one of"),
    (lambda: nn.MaxPool2d(0), ValueError, "MaxPool2d: kernel_size must be >= 1"),
])
def test_layer_errors(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_op_errors_surface_from_the_backend():
    # Layers pass arguments through: the op's own message reaches the user unchanged.
    with pytest.raises(ValueError, match="conv2d"):
        nn.Conv2d(3, 2, 3).forward(np.zeros((1, 2, 5, 5), np.float32))


@pytest.mark.parametrize("ops", [fastconv, fastconv.reference], ids=["fastconv", "reference"])
def test_backward_without_input_grad_gives_the_same_parameter_gradients(ops):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 6, 6))
    g = rng.standard_normal((2, 5))

    def model():
        return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64, rng=1, ops=ops), nn.ReLU(),
                             nn.MaxPool2d(2, ops=ops), nn.ConvTranspose2d(3, 2, 2, stride=2, dtype=np.float64,
                                                                          rng=2, ops=ops),
                             nn.SpatialPyramidPool2d((1, 2), ops=ops), nn.Linear(10, 5, dtype=np.float64, rng=3))

    full, skipped = model(), model()
    full.forward(x)
    skipped.forward(x)
    assert full.backward(g).shape == x.shape
    assert skipped.backward(g, input_grad=False) is None
    for a, b in zip(full.gradients(), skipped.gradients()):
        np.testing.assert_array_equal(a, b)
    first = nn.Conv2d(2, 3, 3, dtype=np.float64, rng=1, ops=ops)
    first.forward(x)
    assert first.backward(rng.standard_normal((2, 3, 4, 4)), input_grad=False) is None
    assert first.grads["weight"].any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_matches_torch_semantics_for_nan_and_inf(dtype):
    # torch.relu keeps NaN; its backward is where(out <= 0, 0, grad), so NaN outputs pass the gradient
    # and blocked positions give exactly 0 even for an infinite gradient.
    relu = nn.ReLU()
    x = np.array([[-1.0, 0.0, 2.0, np.nan, -np.inf, np.inf]], dtype=dtype)
    out = relu.forward(x)
    np.testing.assert_array_equal(out, np.array([[0.0, 0.0, 2.0, np.nan, 0.0, np.inf]], dtype=dtype))
    grad = relu.backward(np.array([[np.inf, 5.0, 3.0, 7.0, np.nan, -1.0]], dtype=dtype))
    np.testing.assert_array_equal(grad, np.array([[0.0, 0.0, 3.0, 7.0, 0.0, -1.0]], dtype=dtype))
    assert out.dtype == grad.dtype == dtype
