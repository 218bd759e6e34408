"""One training step of the digits CNN (batch 32, 8x8) per backend: reported, never asserted.

The epoch comparison with PyTorch is the ``training`` section of ``python -m fastconv bench``.
"""

import numpy as np
import pytest

from fastconv.nn import train_digits


@pytest.mark.parametrize("backend", ["fastconv", "reference"])
def test_training_step(benchmark, backend):
    x_train, y_train, _, _ = train_digits.load_data("random", seed=0, n_random=64)
    runner = train_digits.make_runner(backend, "float32", 0, 3e-3)
    xb, yb = x_train[:32].astype(np.float32), y_train[:32]
    benchmark.group = "digits training step"
    loss, logits = benchmark(runner.step, xb, yb)
    assert np.isfinite(loss) and logits.shape == (32, 10)
