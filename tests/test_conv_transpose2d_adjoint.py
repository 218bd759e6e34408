"""The defining property: conv_transpose2d is the adjoint of conv2d.

``sum(conv2d(a, w) * b) == sum(a * conv_transpose2d(b, w))`` in float64 for every configuration in which
conv2d maps the transposed output's size back to the transposed input's size (offset < stride).
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv
from fastconv.shapes import conv_output_size, conv_transpose_output_sizes


def _axis(padding, i):
    """The one-axis form of a 2-D padding argument (int, (before, after) or a mode)."""
    if isinstance(padding, (str, int)):
        return padding
    return padding[i] if isinstance(padding[i], tuple) else padding[i]


@st.composite
def adjoint_configs(draw):
    groups = draw(st.integers(1, 3))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    ih, iw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    kind = draw(st.sampled_from(["int", "pair", "sides", "valid", "same", "full"]))
    padding = {
        "int": draw(st.integers(0, 2)),
        "pair": (draw(st.integers(0, 2)), draw(st.integers(0, 2))),
        "sides": ((draw(st.integers(0, 2)), draw(st.integers(0, 2))),
                  (draw(st.integers(0, 2)), draw(st.integers(0, 2)))),
    }.get(kind, kind)
    # Sizes conv2d maps back (for explicit padding: offsets 0 .. stride - 1, not the unreached extras).
    sizes = conv_transpose_output_sizes((ih, iw), (kh, kw), stride=s, padding=padding, dilation=d)
    adjoint_sizes = tuple(
        tuple(o for o in axis_sizes if conv_output_size(o, k, stride=st_, padding=_axis(padding, i), dilation=dl) == n_in)
        for i, (axis_sizes, n_in, k, st_, dl) in enumerate(zip(sizes, (ih, iw), (kh, kw), s, d)))
    if not adjoint_sizes[0] or not adjoint_sizes[1]:
        padding = "valid"  # the explicit padding ate the output: fall back to a config that exists
        adjoint_sizes = conv_transpose_output_sizes((ih, iw), (kh, kw), stride=s, padding="valid", dilation=d)
        adjoint_sizes = tuple(axis[:st_] for axis, st_ in zip(adjoint_sizes, s))
    out_hw = (draw(st.sampled_from(adjoint_sizes[0])), draw(st.sampled_from(adjoint_sizes[1])))
    # Pass the size either as output_size or as the equivalent output_padding.
    use_output_padding = kind != "same" and draw(st.booleans())
    n = draw(st.integers(1, 2))
    return dict(b_shape=(n, groups * cg, ih, iw), w_shape=(groups * cg, og, kh, kw),
                a_shape=(n, groups * og) + out_hw, stride=s, padding=padding, dilation=d, groups=groups,
                use_output_padding=use_output_padding, algo=draw(st.sampled_from(["auto", "direct", "col2im"])))


@settings(max_examples=50, deadline=None)
@given(adjoint_configs(), st.integers(0, 2**16))
def test_adjoint_identity(cfg, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(cfg["a_shape"])   # conv2d input  == transposed output
    b = rng.standard_normal(cfg["b_shape"])   # conv2d output == transposed input
    w = rng.standard_normal(cfg["w_shape"])   # (C_in_t, O_t/g, kh, kw) == conv2d (O, C/g, kh, kw)
    common = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"])
    forward = fastconv.conv2d(a, w, **common)
    assert forward.shape == b.shape
    if cfg["use_output_padding"]:
        pads = fastconv.shapes.conv_transpose_padding(cfg["b_shape"][2:], cfg["w_shape"][2:], stride=cfg["stride"],
                                                      padding=cfg["padding"], dilation=cfg["dilation"],
                                                      output_size=cfg["a_shape"][2:])
        op = tuple(o - ((i - 1) * s - p0 - p1 + d * (k - 1) + 1) for o, i, s, (p0, p1), d, k in zip(
            cfg["a_shape"][2:], cfg["b_shape"][2:], cfg["stride"], pads, cfg["dilation"], cfg["w_shape"][2:]))
        back = fastconv.conv_transpose2d(b, w, output_padding=op, algo=cfg["algo"], **common)
    else:
        back = fastconv.conv_transpose2d(b, w, output_size=cfg["a_shape"][2:], algo=cfg["algo"], **common)
    assert back.shape == a.shape
    lhs = np.sum(forward * b)
    rhs = np.sum(a * back)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-10 * np.sqrt(a.size * w.size))
