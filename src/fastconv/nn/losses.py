"""Losses: each returns ``(loss, grad)`` where ``grad`` is d(loss)/d(prediction), ready for ``backward``.

Both average over the batch (PyTorch's ``reduction="mean"``): softmax cross-entropy over the N rows,
MSE over every element.
"""

import numpy as np

__all__ = ["CrossEntropyLoss", "MSELoss", "mse_loss", "softmax", "softmax_cross_entropy"]


def softmax(logits):
    """Row-wise softmax of (N, K) logits, shifted by the row maximum (no overflow)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of softmax(logits) against integer class labels.

    Parameters
    ----------
    logits : ndarray (N, K), float32 or float64
    labels : int ndarray (N,), values in ``[0, K)``

    Returns
    -------
    (loss, grad): ``loss = mean_n(logsumexp(logits[n]) - logits[n, labels[n]])`` as a Python float, and
    ``grad = (softmax(logits) - onehot(labels)) / N`` of the logits' dtype.

    >>> import numpy as np
    >>> loss, grad = softmax_cross_entropy(np.zeros((2, 4)), np.array([0, 3]))
    >>> round(loss, 6), grad[0].tolist()
    (1.386294, [-0.375, 0.125, 0.125, 0.125])
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2:
        raise ValueError(f"softmax_cross_entropy: logits must be 2-D (N, K), got shape {logits.shape}")
    if labels.shape != (logits.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"softmax_cross_entropy: labels must be an int array of shape ({logits.shape[0]},), "
                         f"got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"softmax_cross_entropy: labels must be in [0, {logits.shape[1]}), "
                         f"got values {labels.min()}..{labels.max()}")
    n_batch = logits.shape[0]
    rows = np.arange(n_batch)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    loss = float(np.mean(log_norm - shifted[rows, labels]))
    grad = np.exp(shifted - log_norm[:, None])
    grad[rows, labels] -= 1
    grad /= n_batch
    return loss, grad.astype(logits.dtype, copy=False)


def mse_loss(prediction, target):
    """Mean squared error ``mean((prediction - target) ** 2)`` and its gradient ``2 (p - t) / size``.

    >>> import numpy as np
    >>> mse_loss(np.array([1.0, 3.0]), np.array([0.0, 1.0]))
    (2.5, array([1., 2.]))
    """
    prediction, target = np.asarray(prediction), np.asarray(target)
    if prediction.shape != target.shape:
        raise ValueError(f"mse_loss: target must have the prediction's shape {prediction.shape}, got {target.shape}")
    diff = prediction - target
    loss = float(np.mean(diff * diff))
    return loss, (diff * (2.0 / diff.size)).astype(prediction.dtype, copy=False)


class CrossEntropyLoss:
    """Object form: ``loss = criterion(logits, labels)``, then ``criterion.backward()`` -> grad of the logits."""

    def __call__(self, logits, labels):
        loss, self._grad = softmax_cross_entropy(logits, labels)
        return loss

    def backward(self):
        return self._grad


class MSELoss:
    """Object form of :func:`mse_loss`."""

    def __call__(self, prediction, target):
        loss, self._grad = mse_loss(prediction, target)
        return loss

    def backward(self):
        return self._grad
