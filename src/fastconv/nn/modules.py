"""Layers: plain numpy modules with an explicit ``forward`` / ``backward`` and a swappable ``ops`` backend.

Every layer calls its forward op and the matching ``*_backward`` op through ``self.ops``, which is the
``fastconv`` module (default) or ``fastconv.reference``: both expose the same names and signatures,
so ``ops=fastconv.reference`` switches a model to the pure-numpy code path with no other change.

Conventions (PyTorch's where they exist):

* ``forward(x)`` caches what ``backward`` needs (the input, max-pool indices); ``backward(grad_out)``
  returns ``grad_x`` and *adds* the parameter gradients into ``gradients()`` (call ``zero_grad()``
  between steps, as in PyTorch). ``backward(grad_out, input_grad=False)`` skips ``grad_x`` and returns
  None: the model's input needs no gradient (PyTorch's ``requires_grad=False`` input), which saves the
  first layer's largest backward product.
* ``parameters()`` and ``gradients()`` are lists of numpy arrays in the same order; optimisers in
  :mod:`fastconv.nn.optim` update the parameter arrays in place.
* Default initialisation is PyTorch's: ``kaiming_uniform_(a=sqrt(5))`` on the weight, i.e.
  ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, and the bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.
  ``fan_in`` is ``weight.shape[1] * kH * kW`` (for ``ConvTranspose2d`` that is ``out_channels / groups *
  kH * kW``, as PyTorch computes it). Values are drawn in float64 from ``rng`` and then cast, so float32
  and float64 models built from the same seed hold the same numbers up to rounding.
* Each layer also describes itself for :func:`fastconv.nn.summary`: ``output_shape(in_shape)``,
  ``macs(in_shape)`` and ``receptive(r_hw, j_hw, map_hw)``; none of these touches an array.
"""

import math
from fractions import Fraction

import numpy as np

from .. import shapes
from ..blas import matmul
from .._validate import as_pair, check_choice, check_int, is_int
from ..padding import PADDING_MODES

__all__ = [
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "AvgPool2d",
    "Conv2d",
    "ConvTranspose2d",
    "Flatten",
    "Linear",
    "MaxPool2d",
    "Module",
    "ReLU",
    "Sequential",
    "SpatialPyramidPool2d",
]


def _default_ops():
    import fastconv

    return fastconv


def as_rng(rng):
    """A ``numpy.random.Generator`` from a Generator, an int seed, or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or is_int(rng):
        return np.random.default_rng(rng)
    raise TypeError(f"nn: rng must be a numpy.random.Generator, an int seed or None, got {rng!r}")


def _float_dtype(fn, dtype):
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{fn}: dtype must be float32 or float64, got {dtype}")
    return dtype


def _uniform(rng, bound, shape, dtype):
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


class Module:
    """Base layer: ``forward``/``backward``, ``parameters()``/``gradients()``, backend switch, dtype cast.

    Subclasses with parameters list their attribute names in ``_param_names``; ``grads[name]`` holds the
    accumulated gradient of ``getattr(self, name)``.
    """

    _param_names = ()

    def __init__(self, ops=None):
        self.ops = _default_ops() if ops is None else ops
        self.grads = {}

    # -- computation ------------------------------------------------------------------------------
    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad_out, input_grad=True):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    # -- parameters -------------------------------------------------------------------------------
    def named_parameters(self, prefix=""):
        """``[(name, array), ...]`` of this module and its children (dotted names)."""
        own = [(prefix + n, getattr(self, n)) for n in self._param_names if getattr(self, n) is not None]
        for name, child in self.named_children():
            own += child.named_parameters(f"{prefix}{name}.")
        return own

    def parameters(self):
        """The parameter arrays (optimisers update them in place)."""
        return [p for _, p in self.named_parameters()]

    def gradients(self):
        """The gradient arrays, in the order of :meth:`parameters`."""
        grads = [self.grads[n] for n in self._param_names if getattr(self, n) is not None]
        for _, child in self.named_children():
            grads += child.gradients()
        return grads

    def zero_grad(self):
        """Reset every accumulated gradient to zero."""
        for n in self._param_names:
            if getattr(self, n) is not None:
                self.grads[n] = np.zeros_like(getattr(self, n))
        for _, child in self.named_children():
            child.zero_grad()

    def _accumulate(self, name, grad):
        self.grads[name] += grad

    def named_children(self):
        return []

    def set_ops(self, ops):
        """Switch this module and its children to another backend (``fastconv`` or ``fastconv.reference``)."""
        self.ops = ops
        for _, child in self.named_children():
            child.set_ops(ops)
        return self

    def astype(self, dtype):
        """Cast every parameter (and reset the gradients) to float32 or float64, in place; returns self.

        Create optimisers after casting: they hold references to the parameter arrays.
        """
        dtype = _float_dtype(type(self).__name__, dtype)
        for n in self._param_names:
            if getattr(self, n) is not None:
                setattr(self, n, getattr(self, n).astype(dtype))
        for _, child in self.named_children():
            child.astype(dtype)
        self.zero_grad()
        return self

    # -- description for summary (shapes only, no arrays) ------------------------------------------
    def output_shape(self, in_shape):
        return tuple(in_shape)

    def macs(self, in_shape):
        """Multiply-accumulates of one forward pass (weights only: pools and activations count 0)."""
        return 0

    def receptive(self, r_hw, j_hw, map_hw):
        """``(r_hw, j_hw, map_hw)`` after this layer; ``map_hw`` is the grid the units sit on."""
        return r_hw, j_hw, map_hw

    def num_params(self):
        return sum(p.size for p in self.parameters())

    def _extra_repr(self):
        return ""

    def __repr__(self):
        return f"{type(self).__name__}({self._extra_repr()})"


def _window_receptive(r_hw, j_hw, map_hw, k_hw, s_hw, d_hw):
    """The receptive-field recurrence of a sliding window (conv or pool)."""
    r_hw = tuple(r + (k - 1) * d * j for r, k, d, j in zip(r_hw, k_hw, d_hw, j_hw))
    j_hw = tuple(j * s for j, s in zip(j_hw, s_hw))
    return r_hw, j_hw, map_hw


def _global_receptive(r_hw, j_hw, map_hw):
    """A unit that sees the whole ``map_hw`` grid: a window as large as the map."""
    r_hw = tuple(r + (m - 1) * j for r, m, j in zip(r_hw, map_hw, j_hw))
    j_hw = tuple(j * m for j, m in zip(j_hw, map_hw))
    return r_hw, j_hw, (1, 1)


def _set_conv_geometry(layer, fn, in_channels, out_channels, kernel_size, stride, dilation, groups):
    """Validate and store the arguments Conv2d and ConvTranspose2d share."""
    layer.in_channels = check_int(fn, "in_channels", in_channels, 1)
    layer.out_channels = check_int(fn, "out_channels", out_channels, 1)
    layer.kernel_size = as_pair(fn, "kernel_size", kernel_size, 1)
    layer.stride = as_pair(fn, "stride", stride, 1)
    layer.dilation = as_pair(fn, "dilation", dilation, 1)
    layer.groups = check_int(fn, "groups", groups, 1)
    if layer.in_channels % layer.groups or layer.out_channels % layer.groups:
        raise ValueError(f"{fn}: groups must divide in_channels ({in_channels}) and out_channels "
                         f"({out_channels}), got {groups}")


def _init_conv_params(layer, fn, weight_shape, bias, dtype, rng):
    """PyTorch's default init: weight then bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    ``fan_in = weight.shape[1] * kH * kW`` for both layers, as PyTorch computes it (for a transposed conv
    that is ``out_channels / groups * kH * kW``).
    """
    dtype, rng = _float_dtype(fn, dtype), as_rng(rng)
    bound = 1.0 / math.sqrt(weight_shape[1] * weight_shape[2] * weight_shape[3])
    layer.weight = _uniform(rng, bound, weight_shape, dtype)
    layer.bias = _uniform(rng, bound, (layer.out_channels,), dtype) if bias else None
    layer.zero_grad()


class Conv2d(Module):
    """2-D convolution layer (``torch.nn.Conv2d``): weight ``(O, C_in / groups, kH, kW)``, bias ``(O,)``.

    Cross-correlation (no kernel flip), as :func:`fastconv.conv2d`.
    """

    _param_names = ("weight", "bias")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", *, dtype=np.float32, rng=None, ops=None):
        super().__init__(ops)
        fn = "Conv2d"
        _set_conv_geometry(self, fn, in_channels, out_channels, kernel_size, stride, dilation, groups)
        self.padding = padding
        self.padding_mode = check_choice(fn, "padding_mode", padding_mode, PADDING_MODES)
        weight_shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        _init_conv_params(self, fn, weight_shape, bias, dtype, rng)

    def _options(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups,
                    padding_mode=self.padding_mode)

    def forward(self, x):
        self._x = x
        return self.ops.conv2d(x, self.weight, self.bias, **self._options())

    def backward(self, grad_out, input_grad=True):
        grad_x, grad_weight, grad_bias = self.ops.conv2d_backward(
            grad_out, self._x, self.weight, output_mask=(input_grad, True, self.bias is not None),
            **self._options())
        self._accumulate("weight", grad_weight)
        if self.bias is not None:
            self._accumulate("bias", grad_bias)
        return grad_x

    def output_shape(self, in_shape):
        n_batch, _, ih, iw = in_shape
        oh, ow = shapes.conv_output_size((ih, iw), self.kernel_size, self.stride, self.padding, self.dilation)
        return (n_batch, self.out_channels, oh, ow)

    def macs(self, in_shape):
        n_batch, c_out, oh, ow = self.output_shape(in_shape)
        return n_batch * c_out * oh * ow * self.weight[0].size

    def receptive(self, r_hw, j_hw, map_hw):
        return _window_receptive(r_hw, j_hw, map_hw, self.kernel_size, self.stride, self.dilation)

    def _extra_repr(self):
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != 0:
            text += f", padding={self.padding!r}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode!r}"
        return text


class ConvTranspose2d(Module):
    """Transposed 2-D convolution layer (``torch.nn.ConvTranspose2d``): weight ``(C_in, O / groups, kH, kW)``.

    ``forward(x, output_size=None)``; ``output_size`` picks one of the reachable output sizes.
    """

    _param_names = ("weight", "bias")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, *, dtype=np.float32, rng=None, ops=None):
        super().__init__(ops)
        fn = "ConvTranspose2d"
        _set_conv_geometry(self, fn, in_channels, out_channels, kernel_size, stride, dilation, groups)
        self.output_padding = as_pair(fn, "output_padding", output_padding, 0)
        self.padding = padding
        weight_shape = (self.in_channels, self.out_channels // self.groups) + self.kernel_size
        _init_conv_params(self, fn, weight_shape, bias, dtype, rng)

    def _options(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def forward(self, x, output_size=None):
        out = self.ops.conv_transpose2d(x, self.weight, self.bias, output_padding=self.output_padding,
                                        output_size=output_size, **self._options())
        # The backward needs the output_padding that produced this size (output_size replaces it).
        default_hw = self.output_shape(x.shape)[2:]
        extra = tuple(o - d for o, d in zip(out.shape[2:], default_hw))
        self._x, self._output_padding = x, tuple(p + e for p, e in zip(self.output_padding, extra))
        return out

    def backward(self, grad_out, input_grad=True):
        grad_x, grad_weight, grad_bias = self.ops.conv_transpose2d_backward(
            grad_out, self._x, self.weight, output_padding=self._output_padding,
            output_mask=(input_grad, True, self.bias is not None), **self._options())
        self._accumulate("weight", grad_weight)
        if self.bias is not None:
            self._accumulate("bias", grad_bias)
        return grad_x

    def output_shape(self, in_shape):
        n_batch, _, ih, iw = in_shape
        oh, ow = shapes.conv_transpose_output_size((ih, iw), self.kernel_size, self.stride, self.padding,
                                                   self.output_padding, self.dilation)
        return (n_batch, self.out_channels, oh, ow)

    def macs(self, in_shape):
        n_batch, _, ih, iw = in_shape
        return n_batch * ih * iw * self.weight.size  # each input pixel meets (O / groups) * kH * kW taps

    def receptive(self, r_hw, j_hw, map_hw):
        # An output unit gathers the inputs x with y = x * s - p + k * d: they span at most
        # (k_eff - 1) // s + 1 neighbouring input units, and output units are 1/s input units apart.
        k_eff = [shapes.effective_kernel_size(k, d) for k, d in zip(self.kernel_size, self.dilation)]
        r_hw = tuple(r + (ke - 1) // s * j for r, ke, s, j in zip(r_hw, k_eff, self.stride, j_hw))
        j_hw = tuple(Fraction(j) / s for j, s in zip(j_hw, self.stride))
        return r_hw, j_hw, map_hw

    def _extra_repr(self):
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != 0:
            text += f", padding={self.padding!r}"
        if self.output_padding != (0, 0):
            text += f", output_padding={self.output_padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class _WindowPool(Module):
    def _pool_hw(self, in_shape):
        n_batch, c_in, ih, iw = in_shape
        oh, ow = shapes.pool_output_size((ih, iw), self.kernel_size, self.stride, self.padding, self.dilation,
                                         self.ceil_mode)
        return (n_batch, c_in, oh, ow)

    def output_shape(self, in_shape):
        return self._pool_hw(in_shape)

    def receptive(self, r_hw, j_hw, map_hw):
        return _window_receptive(r_hw, j_hw, map_hw, self.kernel_size, self.stride, self.dilation)

    def _extra_repr(self):
        text = f"kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != 0:
            text += f", padding={self.padding!r}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.ceil_mode:
            text += ", ceil_mode=True"
        return text


class MaxPool2d(_WindowPool):
    """Max pooling layer (``torch.nn.MaxPool2d``). The gradient goes to the element each window picked."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *, ops=None):
        super().__init__(ops)
        fn = "MaxPool2d"
        self.kernel_size = as_pair(fn, "kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else as_pair(fn, "stride", stride, 1)
        self.padding, self.dilation, self.ceil_mode = padding, as_pair(fn, "dilation", dilation, 1), ceil_mode

    def _options(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, ceil_mode=self.ceil_mode)

    def forward(self, x):
        out, self._indices = self.ops.max_pool2d(x, self.kernel_size, return_indices=True, **self._options())
        self._x = x
        return out

    def backward(self, grad_out, input_grad=True):
        if not input_grad:
            return None
        return self.ops.max_pool2d_backward(grad_out, self._x, self.kernel_size, indices=self._indices,
                                            **self._options())


class AvgPool2d(_WindowPool):
    """Average pooling layer (``torch.nn.AvgPool2d``)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None, *, ops=None):
        super().__init__(ops)
        fn = "AvgPool2d"
        self.kernel_size = as_pair(fn, "kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else as_pair(fn, "stride", stride, 1)
        self.padding, self.dilation, self.ceil_mode = padding, (1, 1), ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def _options(self):
        return dict(stride=self.stride, padding=self.padding, ceil_mode=self.ceil_mode,
                    count_include_pad=self.count_include_pad, divisor_override=self.divisor_override)

    def forward(self, x):
        self._x = x
        return self.ops.avg_pool2d(x, self.kernel_size, **self._options())

    def backward(self, grad_out, input_grad=True):
        if not input_grad:
            return None
        return self.ops.avg_pool2d_backward(grad_out, self._x, self.kernel_size, **self._options())


class _AdaptivePool(Module):
    def __init__(self, output_size, ops):
        super().__init__(ops)
        self.output_size = as_pair(type(self).__name__, "output_size", output_size, 1)

    def output_shape(self, in_shape):
        return tuple(in_shape[:2]) + self.output_size

    def receptive(self, r_hw, j_hw, map_hw):
        # Bins [floor(i * a / o), ceil((i + 1) * a / o)): exact window and stride when o divides a; for
        # uneven bins the largest bin and the largest start-to-start gap (upper bounds).
        k_hw, s_hw = [], []
        for a, o in zip(map_hw, self.output_size):
            bins = shapes.adaptive_bins(a, o)
            k_hw.append(max(b - s for s, b in bins))
            gaps = [bins[i + 1][0] - bins[i][0] for i in range(o - 1)]
            s_hw.append(max(gaps) if gaps else a)
        r_hw, j_hw, _ = _window_receptive(r_hw, j_hw, map_hw, k_hw, s_hw, (1, 1))
        return r_hw, j_hw, self.output_size

    def _extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(_AdaptivePool):
    """Adaptive average pooling to a fixed ``output_size`` (``torch.nn.AdaptiveAvgPool2d``)."""

    def __init__(self, output_size, *, ops=None):
        super().__init__(output_size, ops)

    def forward(self, x):
        self._x = x
        return self.ops.adaptive_avg_pool2d(x, self.output_size)

    def backward(self, grad_out, input_grad=True):
        if not input_grad:
            return None
        return self.ops.adaptive_avg_pool2d_backward(grad_out, self._x, self.output_size)


class AdaptiveMaxPool2d(_AdaptivePool):
    """Adaptive max pooling to a fixed ``output_size`` (``torch.nn.AdaptiveMaxPool2d``)."""

    def __init__(self, output_size, *, ops=None):
        super().__init__(output_size, ops)

    def forward(self, x):
        out, self._indices = self.ops.adaptive_max_pool2d(x, self.output_size, return_indices=True)
        self._x = x
        return out

    def backward(self, grad_out, input_grad=True):
        if not input_grad:
            return None
        return self.ops.adaptive_max_pool2d_backward(grad_out, self._x, self.output_size, indices=self._indices)


class SpatialPyramidPool2d(Module):
    """Spatial pyramid pooling (He et al. 2014): ``(N, C, H, W)`` -> ``(N, C * sum(l_h * l_w))`` for any H, W."""

    def __init__(self, levels=(1, 2, 4), mode="max", rule="adaptive", *, ops=None):
        super().__init__(ops)
        fn = "SpatialPyramidPool2d"
        self.levels = tuple(as_pair(fn, "levels", level, 1) for level in levels)
        if not self.levels:
            raise ValueError(f"{fn}: levels must not be empty, got {levels!r}")
        self.mode = check_choice(fn, "mode", mode, ("max", "avg"))
        self.rule = check_choice(fn, "rule", rule, ("adaptive", "paper"))

    def forward(self, x):
        self._x = x
        return self.ops.spatial_pyramid_pool2d(x, self.levels, mode=self.mode, rule=self.rule)

    def backward(self, grad_out, input_grad=True):
        if not input_grad:
            return None
        return self.ops.spatial_pyramid_pool2d_backward(grad_out, self._x, self.levels, mode=self.mode,
                                                        rule=self.rule)

    def output_shape(self, in_shape):
        return (in_shape[0], shapes.spp_output_length(in_shape[1], self.levels))

    def receptive(self, r_hw, j_hw, map_hw):
        return _global_receptive(r_hw, j_hw, map_hw)  # the level-1 bin sees the whole map

    def _extra_repr(self):
        text = f"levels={self.levels}, mode={self.mode!r}"
        return text + (f", rule={self.rule!r}" if self.rule != "adaptive" else "")


class ReLU(Module):
    """``max(x, 0)``; NaN stays NaN and the gradient is blocked where the output is <= 0, as in torch."""

    def forward(self, x):
        self._out = np.maximum(x, x.dtype.type(0))
        return self._out

    def backward(self, grad_out, input_grad=True):
        if not input_grad:
            return None
        # torch's where(out <= 0, 0, grad) as a bit mask: np.where on a data-dependent bool mask runs
        # ~5x slower (measured 64 vs 15 us on a (32, 16, 8, 8) float32 step). blocked -> 1 - 1 = 0 bits,
        # kept -> 0 - 1 = all ones (unsigned wrap-around).
        bits = np.dtype(f"u{grad_out.itemsize}")
        mask = (self._out <= 0).astype(bits)
        mask -= 1
        mask &= np.ascontiguousarray(grad_out).view(bits)
        return mask.view(grad_out.dtype)


class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` into one (``torch.nn.Flatten``; default keeps the batch axis)."""

    def __init__(self, start_dim=1, end_dim=-1, *, ops=None):
        super().__init__(ops)
        self.start_dim, self.end_dim = check_int("Flatten", "start_dim", start_dim), check_int(
            "Flatten", "end_dim", end_dim)

    def output_shape(self, in_shape):
        in_shape = tuple(in_shape)
        start, end = self.start_dim % len(in_shape), self.end_dim % len(in_shape)
        return in_shape[:start] + (math.prod(in_shape[start:end + 1]),) + in_shape[end + 1:]

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(self.output_shape(x.shape))

    def backward(self, grad_out, input_grad=True):
        if not input_grad:
            return None
        return grad_out.reshape(self._shape)

    def _extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Linear(Module):
    """``y = x @ weight.T + bias`` (``torch.nn.Linear``): weight ``(out_features, in_features)``."""

    _param_names = ("weight", "bias")

    def __init__(self, in_features, out_features, bias=True, *, dtype=np.float32, rng=None, ops=None):
        super().__init__(ops)
        fn = "Linear"
        self.in_features = check_int(fn, "in_features", in_features, 1)
        self.out_features = check_int(fn, "out_features", out_features, 1)
        dtype, rng = _float_dtype(fn, dtype), as_rng(rng)
        bound = 1.0 / math.sqrt(self.in_features)
        self.weight = _uniform(rng, bound, (self.out_features, self.in_features), dtype)
        self.bias = _uniform(rng, bound, (self.out_features,), dtype) if bias else None
        self.zero_grad()

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"Linear: x must have shape (N, {self.in_features}), got {x.shape}; "
                             f"put a Flatten() before a Linear")
        self._x = x
        out = matmul(x, self.weight.T)
        if self.bias is not None:
            out += self.bias
        return out

    def backward(self, grad_out, input_grad=True):
        self._accumulate("weight", matmul(grad_out.T, self._x))
        if self.bias is not None:
            self._accumulate("bias", grad_out.sum(axis=0))
        return matmul(grad_out, self.weight) if input_grad else None

    def output_shape(self, in_shape):
        return (in_shape[0], self.out_features)

    def macs(self, in_shape):
        return in_shape[0] * self.weight.size

    def receptive(self, r_hw, j_hw, map_hw):
        return _global_receptive(r_hw, j_hw, map_hw)  # every output mixes every flattened unit

    def _extra_repr(self):
        text = f"in_features={self.in_features}, out_features={self.out_features}"
        return text + (", bias=False" if self.bias is None else "")


class Sequential(Module):
    """Layers applied in order; ``backward`` runs them in reverse."""

    def __init__(self, *layers):
        super().__init__(ops=layers[0].ops if layers else None)
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: layers must be Module instances, got {layer!r} at position {i}")
        self.layers = list(layers)

    def named_children(self):
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_out, input_grad=True):
        for i in range(len(self.layers) - 1, -1, -1):
            grad_out = self.layers[i].backward(grad_out, input_grad=input_grad or i > 0)
        return grad_out

    def __getitem__(self, index):
        return self.layers[index]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self):
        body = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({body}\n)"
