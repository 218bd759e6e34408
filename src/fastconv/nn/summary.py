"""``summary(model, input_shape)``: per-layer output shape, parameters, MACs, receptive field and jump.

Shape maths only: no array is allocated and no kernel runs, so a (1, 3, 224, 224) VGG summary is instant.

Formulas (per layer; derivations and worked examples in docs/nn.md)::

    params = (C_in / groups * kH * kW + bias) * C_out            conv (bias = 1 with a bias, else 0)
    macs   = N * C_out * OH * OW * (C_in / groups) * kH * kW     conv; transposed conv: N * H * W * weight.size
    r_out  = r_in + (k - 1) * dilation * j_in                    receptive field, r = 1 at the input
    j_out  = j_in * stride                                       jump, j = 1 at the input

Pools and activations have no parameters and count 0 MACs (comparisons and adds, not weights). A layer
whose units see a whole feature map (``Linear`` after ``Flatten``, ``SpatialPyramidPool2d``) acts as a
window the size of that map. A transposed convolution divides the jump by its stride (a ``Fraction``
when it does not divide) and widens the field by ``(k_eff - 1) // stride`` input units; adaptive pools
with uneven bins report upper bounds (largest bin, largest bin-to-bin step).
"""

from fractions import Fraction

from .modules import Module, Sequential

COLUMNS = ("#", "layer", "output_shape", "params", "macs", "receptive_field", "jump")


def _leaves(module, prefix=""):
    """``[(dotted name, layer), ...]`` of the non-container layers, in execution order."""
    if isinstance(module, Sequential):
        out = []
        for name, child in module.named_children():
            out += _leaves(child, f"{prefix}{name}.")
        return out
    return [(prefix.rstrip(".") or "0", module)]


def _plain(value):
    """A Fraction that is an integer becomes an int (jumps after a transposed conv)."""
    if isinstance(value, Fraction) and value.denominator == 1:
        return int(value)
    return value


def _canonical_input(input_shape):
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:  # (C, H, W): one image
        shape = (1,) + shape
    if len(shape) not in (2, 4) or min(shape) < 1:
        raise ValueError(f"summary: input_shape must be (C, H, W), (N, C, H, W) or (N, features) of "
                         f"positive ints, got {input_shape!r}")
    return shape


def summary(model, input_shape, *, print_table=False, file=None):
    """Per-layer analysis of ``model`` for an input of ``input_shape``.

    Parameters
    ----------
    model : Module (a ``Sequential`` is walked layer by layer, nested ones too)
    input_shape : (C, H, W) (batch of 1), (N, C, H, W), or (N, features) for an MLP
    print_table : bool. Also print the rows as a table followed by a totals line.
    file : text stream for the table (default: stdout).

    Returns
    -------
    list of dict, one per layer, keys ``"name"`` (dotted position), ``"layer"`` (its repr),
    ``"output_shape"``, ``"params"``, ``"macs"``, ``"receptive_field"`` and ``"jump"`` (both ``(h, w)``
    pairs, in input pixels).

    >>> from fastconv.nn import Conv2d, Sequential
    >>> rows = summary(Sequential(Conv2d(3, 32, 3)), (3, 224, 224))
    >>> rows[0]["output_shape"], rows[0]["params"], rows[0]["receptive_field"]
    ((1, 32, 222, 222), 896, (3, 3))
    """
    if not isinstance(model, Module):
        raise TypeError(f"summary: model must be a fastconv.nn.Module, got {type(model).__name__}")
    shape = _canonical_input(input_shape)
    r_hw, j_hw = (1, 1), (1, 1)
    map_hw = shape[2:] if len(shape) == 4 else (1, 1)
    rows = []
    for name, layer in _leaves(model):
        out_shape = tuple(int(s) for s in layer.output_shape(shape))
        macs = int(layer.macs(shape))
        r_hw, j_hw, map_hw = layer.receptive(r_hw, j_hw, map_hw)
        if len(out_shape) == 4:
            map_hw = out_shape[2:]
        rows.append({
            "name": name,
            "layer": repr(layer),
            "output_shape": out_shape,
            "params": int(layer.num_params()),
            "macs": macs,
            "receptive_field": tuple(_plain(r) for r in r_hw),
            "jump": tuple(_plain(j) for j in j_hw),
        })
        shape = out_shape
    if print_table:
        print(format_summary(rows), file=file)
    return rows


def _pair_text(pair):
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def format_summary(rows):
    """The rows of :func:`summary` as an aligned text table with a totals line."""
    header = ("#", "layer", "output shape", "params", "MACs", "RF", "jump")
    body = [(r["name"], r["layer"], str(r["output_shape"]), f"{r['params']:,}", f"{r['macs']:,}",
             _pair_text(r["receptive_field"]), _pair_text(r["jump"])) for r in rows]
    total = ("", "total", "", f"{sum(r['params'] for r in rows):,}", f"{sum(r['macs'] for r in rows):,}", "", "")
    table = [header] + body + [total]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    right = {3, 4, 5, 6}

    def fmt(line):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths)))

    rule = "-" * len(fmt(header))
    return "\n".join([fmt(header), rule] + [fmt(line) for line in body] + [rule, fmt(total)]).rstrip()
