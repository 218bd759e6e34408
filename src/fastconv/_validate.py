"""Argument checking and canonicalisation shared by every public wrapper.

Every function takes the public function name ``fn`` first so messages read
``"conv2d: stride must be >= 1, got 0"``. TypeError for the wrong kind, ValueError for a wrong value.
"""

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def is_int(value):
    """True for Python/numpy integers, False for bool (a bool is not a size)."""
    if type(value) is int:  # the common case, without the slow abstract-base-class check
        return True
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_int(fn, name, value, minimum=None):
    """Return ``value`` as a Python int, checking kind and lower bound."""
    if not is_int(value):
        raise TypeError(f"{fn}: {name} must be an int, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{fn}: {name} must be >= {minimum}, got {value}")
    return value


def as_pair(fn, name, value, minimum=None):
    """Canonicalise an int or a length-2 sequence of ints into an ``(h, w)`` tuple of ints."""
    if is_int(value):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{fn}: {name} must be an int or a pair of ints, got {value!r}")
    if minimum is not None and min(pair) < minimum:
        raise ValueError(f"{fn}: {name} must be >= {minimum}, got {value!r}")
    return pair


def check_choice(fn, name, value, choices):
    """Check that ``value`` is one of the strings in ``choices``."""
    if not isinstance(value, str) or value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{fn}: {name} must be one of {valid}, got {value!r}")
    return value


def check_array(fn, name, arr, ndim):
    """Check that ``arr`` is a float32/float64 ndarray of ``ndim`` dimensions (not converted)."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(
            f"{fn}: {name} must be a numpy.ndarray, got {type(arr).__name__}; use np.asarray({name})"
        )
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{fn}: {name} must be float32 or float64, got {arr.dtype}; use {name}.astype(np.float32)"
        )
    if arr.ndim != ndim:
        raise ValueError(f"{fn}: {name} must be {ndim}-D, got shape {arr.shape}")
    return arr


def check_output_mask(fn, output_mask):
    """``output_mask`` (grad_x, grad_weight, grad_bias) flags -> a tuple of three bools."""
    if not (isinstance(output_mask, (tuple, list)) and len(output_mask) == 3
            and all(isinstance(v, (bool, np.bool_)) for v in output_mask)):
        raise TypeError(f"{fn}: output_mask must be a tuple of three bools (grad_x, grad_weight, grad_bias), "
                        f"got {output_mask!r}")
    return tuple(bool(v) for v in output_mask)


def common_dtype(*arrays):
    """The computation dtype: ``np.result_type`` of the (already checked float) inputs."""
    return np.result_type(*[a for a in arrays if a is not None])


def as_kernel_array(arr, dtype):
    """An owned-or-borrowed, writeable, C-contiguous array of ``dtype`` that a kernel may read.

    Read-only or strided inputs are copied (kernels only read them, but numba compiles a separate
    specialisation per layout/readonly flag). The caller's array is never modified.
    """
    if arr.dtype == dtype and arr.flags.c_contiguous and arr.flags.writeable:
        return arr
    return np.array(arr, dtype=dtype, order="C", copy=True)


def check_out(fn, out, shape, dtype, inputs):
    """Validate a user-supplied ``out`` array, or allocate one (from the caching pool) when ``out`` is None."""
    shape = tuple(int(s) for s in shape)
    if out is None:
        from . import memory  # memory imports this module's is_int

        return memory.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{fn}: out must be a numpy.ndarray or None, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{fn}: out must have shape {shape}, got {out.shape}")
    if out.dtype != dtype:
        raise ValueError(f"{fn}: out must have dtype {np.dtype(dtype)}, got {out.dtype}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{fn}: out must be C-contiguous and writeable; use np.empty({shape}, dtype)")
    for a in inputs:
        if a is not None and np.may_share_memory(out, a):
            raise ValueError(f"{fn}: out must not overlap an input array; pass a separate buffer")
    return out


def conv_shapes_and_steps(fn, x_shape, weight_shape, weight_layout, groups, stride, dilation,
                          x_layout="(N, C, H, W)"):
    """The checks conv2d and conv_transpose2d share: 4-D shapes as ints, ``groups``, and the
    ``stride`` / ``dilation`` pairs. Returns ``(x_shape, weight_shape, groups, stride, dilation)``."""
    if len(x_shape) != 4:
        raise ValueError(f"{fn}: x must be 4-D {x_layout}, got shape {x_shape}")
    if len(weight_shape) != 4:
        raise ValueError(f"{fn}: weight must be 4-D {weight_layout}, got shape {weight_shape}")
    return (tuple(int(v) for v in x_shape), tuple(int(v) for v in weight_shape),
            check_int(fn, "groups", groups, 1), as_pair(fn, "stride", stride, 1),
            as_pair(fn, "dilation", dilation, 1))
