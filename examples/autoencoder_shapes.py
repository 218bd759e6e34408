"""A convolutional autoencoder on synthetic 32x32 shapes: strided conv2d encoder, conv_transpose2d decoder, MSE.

The data set (filled squares, discs and triangles of random size and place) is generated from ``--seed``,
so every run sees the same images. Prints the reconstruction MSE on the whole set before and after
training and the factor it fell by; saves a PNG of inputs (top) vs reconstructions (bottom) when
matplotlib is installed. ``--backend reference`` runs the same model on the numpy reference ops.

    python examples/autoencoder_shapes.py --epochs 15 --png shapes.png --json ae.json
"""

import argparse
import json
import sys
import time

import numpy as np

import fastconv
import fastconv.reference
from fastconv.nn import Conv2d, ConvTranspose2d, ReLU, Sequential, mse_loss, optim

SIZE = 32


def make_shapes(n_images=512, seed=0):
    """``(n_images, 1, 32, 32)`` float64 images in {0, 1}: one filled square, disc or triangle each."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    images = np.zeros((n_images, 1, SIZE, SIZE))
    for i in range(n_images):
        kind = rng.integers(3)
        r = rng.uniform(4, 10)
        cy, cx = rng.uniform(r, SIZE - r, size=2)
        if kind == 0:    # axis-aligned square of half-side r
            mask = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
        elif kind == 1:  # disc of radius r
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:            # upward triangle of half-width r
            mask = (yy >= cy - r) & (yy <= cy + r) & (np.abs(xx - cx) <= (yy - (cy - r)) / 2)
        images[i, 0] = mask
    return images


def make_model(ops, dtype, seed):
    """32x32 -> 8 x 16x16 -> 16 x 8x8 -> 8 x 16x16 -> 1 x 32x32 (PyTorch's default init from ``seed``)."""
    rng = np.random.default_rng(seed)
    return Sequential(
        Conv2d(1, 8, 3, stride=2, padding=1, dtype=dtype, rng=rng, ops=ops), ReLU(),
        Conv2d(8, 16, 3, stride=2, padding=1, dtype=dtype, rng=rng, ops=ops), ReLU(),
        ConvTranspose2d(16, 8, 4, stride=2, padding=1, dtype=dtype, rng=rng, ops=ops), ReLU(),
        ConvTranspose2d(8, 1, 4, stride=2, padding=1, dtype=dtype, rng=rng, ops=ops),
    )


def reconstruction_mse(model, images, batch_size=128):
    total = 0.0
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        total += mse_loss(model.forward(batch), batch)[0] * len(batch)
    return total / len(images)


def train(images, *, backend="fastconv", dtype="float32", epochs=15, seed=0, batch_size=32, lr=3e-3,
          progress=True):
    """Train on ``images``; returns a dict with the MSE before/after, the per-step losses and epoch times."""
    ops = {"fastconv": fastconv, "reference": fastconv.reference}[backend]
    images = images.astype(dtype)
    model = make_model(ops, np.dtype(dtype), seed)
    opt = optim.Adam(model.parameters(), lr=lr)
    order_rng = np.random.default_rng(seed + 1)
    mse_before = reconstruction_mse(model, images)
    losses, epoch_seconds = [], []
    for epoch in range(1, epochs + 1):
        order = order_rng.permutation(len(images))
        start_time = time.perf_counter()
        for start in range(0, len(images), batch_size):
            batch = images[order[start:start + batch_size]]
            model.zero_grad()
            loss, grad = mse_loss(model.forward(batch), batch)
            model.backward(grad, input_grad=False)  # the images need no gradient
            opt.step(model.gradients())
            losses.append(loss)
        epoch_seconds.append(time.perf_counter() - start_time)
        if progress:
            n = -(-len(images) // batch_size)
            print(f"epoch {epoch:>2}/{epochs}  mse {np.mean(losses[-n:]):.5f}  {epoch_seconds[-1]:.2f} s", flush=True)
    mse_after = reconstruction_mse(model, images)
    return {"backend": backend, "dtype": np.dtype(dtype).name, "mse_before": mse_before, "mse_after": mse_after,
            "mse_drop_factor": mse_before / mse_after, "losses": losses, "epoch_seconds": epoch_seconds,
            "model": model}


def save_png(path, model, images, count=8):
    """Inputs (top row) vs reconstructions (bottom row); returns False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    recon = model.forward(images[:count])
    fig, axes = plt.subplots(2, count, figsize=(count, 2.2))
    for i in range(count):
        for row, arr in enumerate((images, recon)):
            axes[row, i].imshow(np.clip(arr[i, 0], 0, 1), cmap="gray", vmin=0, vmax=1)
            axes[row, i].axis("off")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("fastconv", "reference"), default="fastconv")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=512, help="size of the synthetic data set")
    parser.add_argument("--png", metavar="PATH", default="autoencoder_shapes.png",
                        help="inputs vs reconstructions (needs matplotlib)")
    parser.add_argument("--json", metavar="PATH", help="write mse_before, mse_after, losses, epoch_seconds")
    args = parser.parse_args(argv)
    images = make_shapes(args.images, seed=args.seed)
    result = train(images, backend=args.backend, dtype=args.dtype, epochs=args.epochs, seed=args.seed)
    print(f"reconstruction MSE {result['mse_before']:.5f} -> {result['mse_after']:.5f} "
          f"(fell {result['mse_drop_factor']:.1f}x), {np.mean(result['epoch_seconds']):.2f} s per epoch")
    if save_png(args.png, result["model"], images.astype(args.dtype)):
        print(f"wrote {args.png}")
    else:
        print("matplotlib not installed: no PNG")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: v for k, v in result.items() if k != "model"}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
