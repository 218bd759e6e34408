"""Optimisers that update parameter arrays in place: SGD (momentum, Nesterov, weight decay) and Adam.

Usage::

    opt = Adam(model.parameters(), lr=1e-3)
    model.zero_grad(); loss, grad = softmax_cross_entropy(model(x), y); model.backward(grad)
    opt.step(model.gradients())

Update rules are PyTorch's (``torch.optim.SGD`` / ``torch.optim.Adam``, ``maximize=False``,
``amsgrad=False``), so the same hyper-parameters mean the same thing.
"""

import numpy as np

from .._kernels.optim import adam_update

__all__ = ["Adam", "SGD"]


class _Optimizer:
    def __init__(self, params, lr):
        self.params = list(params)
        for i, p in enumerate(self.params):
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise TypeError(f"{type(self).__name__}: params[{i}] must be a float numpy.ndarray, got {p!r}")
        if not lr > 0:
            raise ValueError(f"{type(self).__name__}: lr must be > 0, got {lr!r}")
        self.lr = float(lr)
        self.steps = 0

    def _grads(self, grads):
        grads = list(grads)
        if len(grads) != len(self.params):
            raise ValueError(f"{type(self).__name__}.step: grads must match the {len(self.params)} parameters, "
                             f"got {len(grads)}")
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if g.shape != p.shape:
                raise ValueError(f"{type(self).__name__}.step: grads[{i}] must have shape {p.shape}, got {g.shape}")
        return grads


class SGD(_Optimizer):
    """Stochastic gradient descent with momentum (PyTorch's form).

    ``g = grad + weight_decay * p``; with momentum ``b = momentum * b + (1 - dampening) * g`` (``b = g`` on
    the first step), then ``g = g + momentum * b`` (Nesterov) or ``g = b``; finally ``p -= lr * g``.
    """

    def __init__(self, params, lr=0.01, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr)
        if momentum < 0:
            raise ValueError(f"SGD: momentum must be >= 0, got {momentum!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov must have momentum > 0 and dampening 0, "
                             f"got momentum {momentum!r}, dampening {dampening!r}")
        self.momentum, self.dampening = float(momentum), float(dampening)
        self.weight_decay, self.nesterov = float(weight_decay), bool(nesterov)
        self.buffers = [None] * len(self.params)

    def step(self, grads):
        for i, (p, g) in enumerate(zip(self.params, self._grads(grads))):
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum:
                if self.buffers[i] is None:
                    self.buffers[i] = np.array(g, dtype=p.dtype)
                else:
                    self.buffers[i] *= self.momentum
                    self.buffers[i] += (1 - self.dampening) * g
                g = g + self.momentum * self.buffers[i] if self.nesterov else self.buffers[i]
            p -= (self.lr * g).astype(p.dtype, copy=False)
        self.steps += 1


class Adam(_Optimizer):
    """Adam (Kingma & Ba 2015) with PyTorch's bias correction and epsilon placement.

    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``; ``weight_decay`` adds ``wd * p`` to g.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        beta1, beta2 = betas
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"Adam: betas must be in [0, 1), got {betas!r}")
        self.beta1, self.beta2, self.eps, self.weight_decay = float(beta1), float(beta2), float(eps), float(weight_decay)
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]

    def step(self, grads):
        grads = self._grads(grads)
        self.steps += 1
        correction1 = 1 - self.beta1 ** self.steps
        correction2 = 1 - self.beta2 ** self.steps
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            if g.dtype == p.dtype and p.flags.c_contiguous and g.flags.c_contiguous:
                # One fused pass, bit-identical to the numpy expression below (_kernels/optim.py).
                consts = np.array([self.weight_decay, self.beta1, 1 - self.beta1, self.beta2, 1 - self.beta2,
                                   correction2, self.eps, self.lr / correction1], dtype=p.dtype)
                adam_update(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), consts)
                continue
            if self.weight_decay:
                g = g + self.weight_decay * p
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * (g * g)
            denom = np.sqrt(v / correction2) + self.eps
            p -= (self.lr / correction1 * m / denom).astype(p.dtype, copy=False)
