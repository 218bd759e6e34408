"""Train a small CNN on scikit-learn's 8x8 handwritten digits with fastconv (or the numpy reference) as backend.

conv(1->16, 3x3) -> ReLU -> max pool 2x2 -> conv(16->32, 3x3) -> ReLU -> spatial pyramid pool (1, 2, 4)
-> linear(672 -> 10), softmax cross-entropy, Adam. Fixed seed: the split, the initial weights and the
batch order all come from ``--seed``, so both backends see exactly the same computation.

Run ``python -m fastconv train --help`` (or ``python examples/train_digits.py``). The digits ship inside
scikit-learn (the optional extra ``fastconv[examples]``); ``--data random`` trains on a random stand-in
of the same shape instead (for smoke tests, not for accuracy). ``--backend torch`` trains the same model
(same initial weights and batches) in PyTorch when it is installed, for a speed comparison.
"""

import argparse
import json
import sys
import time

import numpy as np

from . import Conv2d, Linear, MaxPool2d, ReLU, Sequential, SpatialPyramidPool2d, optim, softmax_cross_entropy

BACKENDS = ("fastconv", "reference", "torch")
SPP_LEVELS = (1, 2, 4)
DTYPES = ("float32", "float64")


def backend_module(name):
    """The ops module for a backend name."""
    import fastconv
    import fastconv.reference

    return {"fastconv": fastconv, "reference": fastconv.reference}[name]


def load_data(source="digits", seed=0, test_fraction=0.2, n_random=300):
    """``(x_train, y_train, x_test, y_test)`` as (N, 1, 8, 8) float64 in [0, 1] and int64 labels.

    ``source="digits"``: the 1797 scikit-learn digits, shuffled with ``seed`` and split into a held-out test
    set of ``test_fraction``. ``source="random"``: ``n_random`` uniform images with labels that depend on
    them (the argmax of a fixed linear map), learnable but meaningless.
    """
    rng = np.random.default_rng(seed)
    if source == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError as exc:
            raise SystemExit("train_digits: the digits need scikit-learn: pip install 'fastconv[examples]' "
                             "(or run with --data random)") from exc
        digits = load_digits()
        images, labels = digits.images / 16.0, digits.target.astype(np.int64)
    elif source == "random":
        images = rng.random((n_random, 8, 8))
        labels = np.argmax(images.reshape(n_random, 64) @ rng.standard_normal((64, 10)), axis=1).astype(np.int64)
    else:
        raise ValueError(f"train_digits: source must be one of 'digits', 'random', got {source!r}")
    order = rng.permutation(len(labels))
    n_test = int(round(test_fraction * len(labels)))
    test, train = order[:n_test], order[n_test:]
    images = images[:, None, :, :]
    return images[train], labels[train], images[test], labels[test]


def make_model(ops, dtype, seed):
    """The CNN, initialised from ``seed`` (PyTorch's default init), parameters of ``dtype``."""
    rng = np.random.default_rng(seed)
    return Sequential(
        Conv2d(1, 16, 3, padding=1, dtype=dtype, rng=rng, ops=ops),
        ReLU(),
        MaxPool2d(2, ops=ops),
        Conv2d(16, 32, 3, padding=1, dtype=dtype, rng=rng, ops=ops),
        ReLU(),
        SpatialPyramidPool2d(SPP_LEVELS, ops=ops),
        Linear(32 * 21, 10, dtype=dtype, rng=rng, ops=ops),
    )


class NumpyRunner:
    """One training step / prediction of the numpy model with a fastconv or reference backend."""

    def __init__(self, model, lr):
        self.model = model
        self.opt = optim.Adam(model.parameters(), lr=lr)

    def step(self, xb, yb):
        self.model.zero_grad()
        logits = self.model.forward(xb)
        loss, grad = softmax_cross_entropy(logits, yb)
        self.model.backward(grad, input_grad=False)  # the images need no gradient
        self.opt.step(self.model.gradients())
        return loss, logits

    def predict(self, x):
        return self.model.forward(x)


def make_runner(backend, dtype, seed, lr):
    """The model of ``seed`` ready to train with ``backend`` ("torch" copies the numpy model's weights)."""
    if backend == "torch":
        from .train_torch import TorchRunner

        return TorchRunner(make_model(backend_module("reference"), dtype, seed), SPP_LEVELS, lr, dtype)
    return NumpyRunner(make_model(backend_module(backend), dtype, seed), lr)


def accuracy(runner, x, y, batch_size=256):
    """Fraction of ``x`` classified as ``y``."""
    hits = 0
    for start in range(0, len(y), batch_size):
        hits += int(np.sum(np.argmax(runner.predict(x[start:start + batch_size]), axis=1) == y[start:start + batch_size]))
    return hits / max(len(y), 1)


def _bar(epoch, epochs, done, total, loss, acc, width=24):
    filled = int(width * done / total)
    return (f"\repoch {epoch:>2}/{epochs} [{'#' * filled}{'.' * (width - filled)}] {done:>3}/{total} "
            f"loss {loss:.4f} acc {acc:.3f}")


def train(data, *, backend="fastconv", dtype="float32", epochs=12, seed=0, batch_size=32, lr=3e-3,
          max_steps=None, progress=True, out=None):
    """Train the CNN on ``data = (x_train, y_train, x_test, y_test)``; returns the result dict.

    Keys: ``backend``, ``dtype``, ``test_accuracy``, ``train_accuracy``, ``losses`` (one per step),
    ``epoch_seconds`` (wall time of each epoch's training steps), ``seed``, ``epochs``, ``steps``.
    ``max_steps`` stops early (tests). ``progress`` draws a bar per epoch on stderr and prints one line
    per epoch on ``out`` (default stdout).
    """
    x_train, y_train, x_test, y_test = data
    out = sys.stdout if out is None else out
    dtype = np.dtype(dtype)
    x_train, x_test = x_train.astype(dtype), x_test.astype(dtype)
    if backend not in BACKENDS:
        raise ValueError(f"train_digits: backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    runner = make_runner(backend, dtype, seed, lr)
    order_rng = np.random.default_rng(seed + 1)
    losses, epoch_seconds = [], []
    n_batches = -(-len(y_train) // batch_size)
    for epoch in range(1, epochs + 1):
        order = order_rng.permutation(len(y_train))
        start_time, hits, seen = time.perf_counter(), 0, 0
        for b in range(n_batches):
            idx = order[b * batch_size:(b + 1) * batch_size]
            xb, yb = x_train[idx], y_train[idx]
            loss, logits = runner.step(xb, yb)
            losses.append(loss)
            hits += int(np.sum(np.argmax(logits, axis=1) == yb))
            seen += len(yb)
            if progress:
                print(_bar(epoch, epochs, b + 1, n_batches, loss, hits / seen), end="", file=sys.stderr, flush=True)
            if max_steps is not None and len(losses) >= max_steps:
                break
        epoch_seconds.append(time.perf_counter() - start_time)
        if progress:
            print(file=sys.stderr)
            epoch_losses = losses[-(b + 1):]
            print(f"epoch {epoch:>2}/{epochs}  loss {np.mean(epoch_losses):.4f}  train acc {hits / seen:.3f}  "
                  f"test acc {accuracy(runner, x_test, y_test):.3f}  {epoch_seconds[-1]:.2f} s", file=out, flush=True)
        if max_steps is not None and len(losses) >= max_steps:
            break
    return {
        "backend": backend,
        "dtype": dtype.name,
        "test_accuracy": accuracy(runner, x_test, y_test),
        "train_accuracy": accuracy(runner, x_train, y_train),
        "losses": losses,
        "epoch_seconds": epoch_seconds,
        "seed": seed,
        "epochs": len(epoch_seconds),
        "steps": len(losses),
    }


def build_parser(prog=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, default="fastconv",
                        help="ops backend (default fastconv); torch trains the same model in PyTorch")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="parameter and data dtype")
    parser.add_argument("--epochs", type=int, default=12, help="training epochs (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the init and the batch order")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    parser.add_argument("--data", choices=("digits", "random"), default="digits",
                        help="digits (needs scikit-learn) or a random stand-in")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument("--json", metavar="PATH", help="write backend, dtype, test_accuracy, losses, epoch_seconds")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    return parser


def main(argv=None, prog=None):
    args = build_parser(prog).parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        raise SystemExit("train_digits: --epochs and --batch-size must be >= 1")
    data = load_data(args.data, seed=args.seed)
    if not args.quiet:
        print(f"{args.data}: {len(data[1])} train / {len(data[3])} test images, backend {args.backend}, "
              f"{args.dtype}, seed {args.seed}", flush=True)
    result = train(data, backend=args.backend, dtype=args.dtype, epochs=args.epochs, seed=args.seed,
                   batch_size=args.batch_size, lr=args.lr, max_steps=args.max_steps, progress=not args.quiet)
    print(f"test accuracy {result['test_accuracy']:.4f}  ({result['steps']} steps, "
          f"{np.mean(result['epoch_seconds']):.2f} s per epoch)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
