"""Analysis tools: fastconv.shapes.receptive_field and fastconv.nn.summary (worked examples of docs/nn.md)."""

import io
import math

import numpy as np
import pytest

import fastconv
from fastconv import nn
from fastconv.shapes import receptive_field


# -- receptive_field on plain tuples ----------------------------------------------------------------

def test_worked_example_3x3_stride2_then_3x3_gives_3_then_7():
    assert receptive_field([(3, 2, 1, 1), (3, 1, 1, 1)]) == [(3, 2), (7, 2)]


def test_two_3x3_keep_the_receptive_field_of_one_5x5_with_fewer_weights():
    assert receptive_field([(5, 1, 2, 1)])[-1] == receptive_field([(3, 1, 1, 1), (3, 1, 1, 1)])[-1] == (5, 1)
    per_pair = nn.summary(nn.Sequential(nn.Conv2d(1, 1, 5, bias=False)), (1, 9, 9))
    stacked = nn.summary(nn.Sequential(nn.Conv2d(1, 1, 3, bias=False), nn.Conv2d(1, 1, 3, bias=False)), (1, 9, 9))
    assert sum(r["params"] for r in per_pair) == 25
    assert sum(r["params"] for r in stacked) == 18
    assert per_pair[-1]["receptive_field"] == stacked[-1]["receptive_field"] == (5, 5)


def test_1x11_then_11x1_keeps_the_receptive_field_of_11x11_with_22_weights():
    assert receptive_field([((1, 11), 1), ((11, 1), 1)])[-1] == ((11, 11), (1, 1))
    assert receptive_field([(11, 1)])[-1] == (11, 1)
    square = nn.summary(nn.Sequential(nn.Conv2d(1, 1, 11, bias=False)), (1, 16, 16))
    factored = nn.summary(nn.Sequential(nn.Conv2d(1, 1, (1, 11), bias=False), nn.Conv2d(1, 1, (11, 1), bias=False)),
                          (1, 16, 16))
    assert sum(r["params"] for r in square) == 121
    assert sum(r["params"] for r in factored) == 22
    assert square[-1]["receptive_field"] == factored[-1]["receptive_field"] == (11, 11)
    assert square[-1]["output_shape"] == factored[-1]["output_shape"] == (1, 1, 6, 6)


def test_dilation_and_padding_forms():
    # dilation 2 on a 3x3 is a 5-wide field; padding never changes size (int, pair, per-side, mode string)
    assert receptive_field([(3, 1, 0, 2)]) == [(5, 1)]
    assert receptive_field([(3, 1, "same", 1), (3, 2, (1, 1), 1), (3, 1, ((0, 1), (1, 0)), 1)]) == [
        (3, 1), (5, 2), (9, 2)]
    assert receptive_field([]) == []


def _brute_receptive_field(layers, size=64):
    """Receptive field of the centre output unit by propagating an impulse sensitivity backwards."""
    # Track, for one output unit, the set of input positions it depends on (1-D, no padding).
    sizes = [size]
    for k, s, d in layers:
        sizes.append((sizes[-1] - d * (k - 1) - 1) // s + 1)
    positions = {sizes[-1] // 2}
    for (k, s, d), in_size in zip(reversed(layers), reversed(sizes[:-1])):
        positions = {o * s + t * d for o in positions for t in range(k)}
        assert max(positions) < in_size
    return max(positions) - min(positions) + 1


@pytest.mark.parametrize("layers", [
    [(3, 1, 1)], [(3, 2, 1), (3, 1, 1)], [(2, 2, 1), (3, 2, 2), (5, 1, 1)], [(7, 2, 1), (3, 2, 1), (3, 1, 3)],
], ids=["3", "3s2-3", "2s2-3s2d2-5", "7s2-3s2-3d3"])
def test_receptive_field_matches_brute_force(layers):
    got = receptive_field([(k, s, 0, d) for k, s, d in layers])
    jump = math.prod(s for _, s, _ in layers)
    assert got[-1] == (_brute_receptive_field(layers), jump)


@pytest.mark.parametrize("bad, err, match", [
    ([3], TypeError, r"receptive_field: layers\[0\] must be a tuple"),
    ([(3, 0)], ValueError, r"receptive_field: layers\[0\] stride must be >= 1"),
    ([(3, 1, None)], TypeError, r"layers\[0\] padding must be an int"),
    (5, TypeError, "receptive_field: layers must be a sequence"),
])
def test_receptive_field_errors(bad, err, match):
    with pytest.raises(err, match=match):
        receptive_field(bad)


# -- summary -----------------------------------------------------------------------------------------

def test_params_formula_896_for_32_3x3_filters_on_rgb():
    # (C_in / groups * kH * kW + bias) * C_out = (3 * 3 * 3 + 1) * 32 = 896 (not 960)
    rows = nn.summary(nn.Sequential(nn.Conv2d(3, 32, 3)), (3, 224, 224))
    assert rows[0]["params"] == 896 == (3 * 3 * 3 + 1) * 32
    assert rows[0]["output_shape"] == (1, 32, 222, 222)
    assert rows[0]["macs"] == 32 * 222 * 222 * 27


def test_summary_keys_and_worked_example():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1))
    rows = nn.summary(model, (2, 1, 16, 16))
    assert [set(r) >= {"layer", "output_shape", "params", "macs", "receptive_field", "jump"} for r in rows] == [
        True] * 3
    assert [r["receptive_field"] for r in rows] == [(3, 3), (3, 3), (7, 7)]
    assert [r["jump"] for r in rows] == [(2, 2), (2, 2), (2, 2)]
    assert [r["output_shape"] for r in rows] == [(2, 4, 8, 8), (2, 4, 8, 8), (2, 8, 8, 8)]
    assert [r["params"] for r in rows] == [40, 0, 296]
    assert rows[2]["macs"] == 2 * 8 * 8 * 8 * 4 * 9  # batch 2 counts twice


def test_summary_groups_bias_and_layer_kinds():
    model = nn.Sequential(
        nn.Conv2d(4, 8, 3, groups=2, bias=False), nn.MaxPool2d(2), nn.AvgPool2d(3, stride=1, padding=1),
        nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1), nn.AdaptiveAvgPool2d(4), nn.AdaptiveMaxPool2d(2),
        nn.Flatten(), nn.Linear(16, 3))
    rows = nn.summary(model, (1, 4, 10, 10))
    assert [r["output_shape"] for r in rows] == [
        (1, 8, 8, 8), (1, 8, 4, 4), (1, 8, 4, 4), (1, 4, 8, 8), (1, 4, 4, 4), (1, 4, 2, 2), (1, 16), (1, 3)]
    assert rows[0]["params"] == 4 // 2 * 9 * 8
    assert rows[3]["params"] == 8 * 4 * 16 + 4
    assert rows[3]["macs"] == 4 * 4 * 8 * 4 * 16
    assert rows[7]["params"] == 16 * 3 + 3 and rows[7]["macs"] == 48
    # RF: 3; maxpool 2 -> 4 (j 2); avg 3 -> 8; transposed 4/2 spans 2 inputs -> 10, j 1; adaptive 8->4
    # (window 2, step 2) -> 11, j 2; 4->2 -> 13, j 4; Flatten keeps; Linear sees the 2x2 map -> 17.
    assert [r["receptive_field"][0] for r in rows] == [3, 4, 8, 10, 11, 13, 13, 17]
    assert [r["jump"][0] for r in rows] == [1, 2, 2, 1, 2, 4, 4, 8]


def test_summary_matches_real_forward_shapes(rng):
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(3, stride=2, ceil_mode=True),
                          nn.Conv2d(4, 6, (2, 3), dilation=(1, 2)), nn.SpatialPyramidPool2d((1, 2)),
                          nn.Linear(30, 5))
    x = rng.standard_normal((2, 1, 13, 11)).astype(np.float32)
    rows = nn.summary(model, x.shape)
    for layer, row in zip(model, rows):
        x = layer.forward(x)
        assert x.shape == row["output_shape"], row["layer"]
    assert rows[-1]["params"] == sum(p.size for p in model.parameters()) - sum(r["params"] for r in rows[:-1])


def test_summary_prints_table_with_totals():
    buf = io.StringIO()
    model = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Conv2d(32, 8, 1))
    rows = nn.summary(model, (3, 8, 8), print_table=True, file=buf)
    text = buf.getvalue()
    lines = text.strip().splitlines()
    assert lines[0].split()[:3] == ["#", "layer", "output"]
    assert lines[-1].split()[:3] == ["total", f"{896 + 264:,}", f"{sum(r['macs'] for r in rows):,}"]
    assert "Conv2d(3, 32" in text


def test_summary_errors():
    with pytest.raises(TypeError, match="summary: model must be a fastconv.nn.Module"):
        nn.summary(fastconv.conv2d, (1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"summary: input_shape must be \(C, H, W\)"):
        nn.summary(nn.Sequential(nn.ReLU()), (8, 8, 8, 8, 8))
