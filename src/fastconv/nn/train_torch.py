"""The digits CNN of :mod:`fastconv.nn.train_digits` in PyTorch, for the ``--backend torch`` comparison.

Same layers, same initial weights (copied from the numpy model built with the same seed), same Adam
hyper-parameters and the same batches; torch's autograd computes the gradients. torch is an optional
benchmark extra (``pip install 'fastconv[bench]'``), never a dependency of fastconv.
"""

import numpy as np


def import_torch():
    """torch, or SystemExit with the install hint."""
    try:
        import torch
    except ImportError as exc:
        raise SystemExit("train_digits: --backend torch needs PyTorch: pip install 'fastconv[bench]'") from exc
    return torch


class TorchRunner:
    """One training step / prediction of the numpy ``model`` re-built in torch with identical weights."""

    def __init__(self, model, levels, lr, dtype):
        torch = import_torch()
        import torch.nn.functional as F

        self.torch, self.F = torch, F
        self.levels = levels
        self.dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]
        # The numpy model's parameters in order: conv1 (w, b), conv2 (w, b), linear (w, b).
        self.params = [torch.nn.Parameter(torch.from_numpy(np.array(p))) for p in model.parameters()]
        self.opt = torch.optim.Adam(self.params, lr=lr)

    def _forward(self, x):
        F = self.F
        w1, b1, w2, b2, w3, b3 = self.params
        h = F.max_pool2d(F.relu(F.conv2d(x, w1, b1, padding=1)), 2)
        h = F.relu(F.conv2d(h, w2, b2, padding=1))
        n_batch = h.shape[0]
        spp = self.torch.cat([F.adaptive_max_pool2d(h, level).reshape(n_batch, -1) for level in self.levels],
                             dim=1)
        return F.linear(spp, w3, b3)

    def step(self, xb, yb):
        """One Adam step on a batch; returns (loss as float, logits as numpy)."""
        self.opt.zero_grad(set_to_none=True)
        logits = self._forward(self.torch.from_numpy(xb))
        loss = self.F.cross_entropy(logits, self.torch.from_numpy(yb))
        loss.backward()
        self.opt.step()
        return float(loss.detach()), logits.detach().numpy()

    def predict(self, x):
        with self.torch.no_grad():
            return self._forward(self.torch.from_numpy(np.ascontiguousarray(x))).numpy()
