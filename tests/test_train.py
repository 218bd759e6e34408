"""The toy training loop: both backends follow the same loss curve and the loss falls; the command works.

Uses the scikit-learn digits when scikit-learn is installed, else the random stand-in of the same shape
(the test runs either way and says which data it used in its id).
"""

import json
import sys

import numpy as np
import pytest

from fastconv import __main__ as cli
from fastconv.nn import train_digits

try:
    import sklearn  # noqa: F401  (the optional extra fastconv[examples])
    HAVE_SKLEARN = True
except ImportError:
    HAVE_SKLEARN = False
SOURCE = "digits" if HAVE_SKLEARN else "random"


@pytest.fixture(scope="module")
def data():
    return train_digits.load_data(SOURCE, seed=0)


@pytest.mark.parametrize("source", [SOURCE])
def test_both_backends_agree_step_by_step_and_loss_falls(source, data):
    runs = {backend: train_digits.train(data, backend=backend, dtype="float64", epochs=3, seed=3, max_steps=20,
                                        progress=False)
            for backend in ("fastconv", "reference")}
    fast, slow = runs["fastconv"]["losses"], runs["reference"]["losses"]
    assert len(fast) == len(slow) == 20
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-8)
    assert np.mean(fast[-3:]) < 0.85 * np.mean(fast[:3])  # starts near log(10) = 2.3 and falls
    assert {"backend", "dtype", "test_accuracy", "losses", "epoch_seconds"} <= set(runs["fastconv"])
    assert runs["reference"]["backend"] == "reference" and runs["fastconv"]["dtype"] == "float64"


def test_same_seed_same_curve_float32(data):
    a = train_digits.train(data, dtype="float32", epochs=1, seed=1, max_steps=4, progress=False)
    b = train_digits.train(data, dtype="float32", epochs=1, seed=1, max_steps=4, progress=False)
    assert a["losses"] == b["losses"]
    assert np.isfinite(a["losses"]).all() and 0 <= a["test_accuracy"] <= 1


def test_split_is_held_out_and_deterministic():
    x_train, y_train, x_test, y_test = train_digits.load_data("random", seed=4, n_random=50)
    assert x_train.shape == (40, 1, 8, 8) and x_test.shape == (10, 1, 8, 8)
    assert not any((x_test[i] == x_train).all(axis=(1, 2, 3)).any() for i in range(len(x_test)))
    again = train_digits.load_data("random", seed=4, n_random=50)
    np.testing.assert_array_equal(again[2], x_test)
    if HAVE_SKLEARN:
        digits = train_digits.load_data("digits", seed=0)
        assert (len(digits[1]), len(digits[3])) == (1438, 359)
        assert digits[0].max() <= 1.0 and set(np.unique(digits[1])) == set(range(10))


def test_command_writes_json(tmp_path, capsys):
    path = tmp_path / "run.json"
    assert cli.main(["train", "--data", "random", "--epochs", "2", "--max-steps", "3", "--seed", "5",
                     "--backend", "reference", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["backend"] == "reference" and result["dtype"] == "float32"
    assert len(result["losses"]) == 3 and len(result["epoch_seconds"]) == 1
    out = capsys.readouterr()
    assert "test accuracy" in out.out and "epoch  1/2" in out.out
    assert "loss" in out.err and "acc" in out.err  # the progress bar


def test_load_data_rejects_unknown_source():
    with pytest.raises(ValueError, match="train_digits: source must be one of 'digits', 'random', got 'mnist'"):
        train_digits.load_data("mnist")


def test_command_errors(monkeypatch):
    with pytest.raises(SystemExit, match="train_digits: --epochs and --batch-size must be >= 1"):
        train_digits.main(["--epochs", "0", "--data", "random"])
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # as if scikit-learn were absent
    with pytest.raises(SystemExit, match=r"train_digits: the digits need scikit-learn: pip install 'fastconv\[examples\]'"):
        train_digits.load_data("digits")


def test_torch_backend_trains_the_same_model(data):
    pytest.importorskip("torch", reason="torch is an optional bench extra; the comparison backend needs it")
    runs = {backend: train_digits.train(data, backend=backend, dtype="float64", epochs=1, seed=2, max_steps=6,
                                        progress=False)
            for backend in ("fastconv", "torch")}
    # Same initial weights, batches and Adam: the curves agree up to the optimisers' rounding.
    np.testing.assert_allclose(runs["torch"]["losses"], runs["fastconv"]["losses"], rtol=1e-9)
    assert runs["torch"]["backend"] == "torch"


def test_torch_backend_without_torch_says_how_to_install(data, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(SystemExit, match=r"train_digits: --backend torch needs PyTorch: pip install 'fastconv\[bench\]'"):
        train_digits.train(data, backend="torch", epochs=1, max_steps=1, progress=False)


def test_unknown_backend_is_a_value_error(data):
    with pytest.raises(ValueError, match=r"train_digits: backend must be one of 'fastconv', 'reference', 'torch', "
                                         r"got 'jax'"):
        train_digits.train(data, backend="jax", epochs=1, max_steps=1, progress=False)
