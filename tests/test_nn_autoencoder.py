"""examples/autoencoder_shapes.py: deterministic data, both backends agree, the reconstruction MSE falls."""

import importlib.util
import pathlib

import numpy as np
import pytest

from fastconv import nn

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "autoencoder_shapes.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("autoencoder_shapes", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shapes_are_deterministic_binary_images(example):
    a, b = example.make_shapes(16, seed=2), example.make_shapes(16, seed=2)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (16, 1, 32, 32) and set(np.unique(a)) == {0.0, 1.0}
    assert (a.sum(axis=(1, 2, 3)) > 16).all()  # every image holds a shape
    assert not np.array_equal(a, example.make_shapes(16, seed=3))


def test_autoencoder_geometry(example):
    rows = nn.summary(example.make_model(None, np.float32, 0), (1, 32, 32))
    assert [r["output_shape"][1:] for r in rows[::2]] == [(8, 16, 16), (16, 8, 8), (8, 16, 16), (1, 32, 32)]


def test_backends_agree_and_mse_falls(example):
    images = example.make_shapes(64, seed=0)
    runs = [example.train(images, backend=b, dtype="float64", epochs=3, seed=0, batch_size=16, progress=False)
            for b in ("fastconv", "reference")]
    np.testing.assert_allclose(runs[0]["losses"], runs[1]["losses"], rtol=0, atol=1e-8)
    assert runs[0]["mse_after"] < 0.7 * runs[0]["mse_before"]
