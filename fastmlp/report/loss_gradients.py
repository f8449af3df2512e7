"""How hard each loss pushes the logits (Q8): the gradient of cross-entropy and of squared
error with respect to the logits z, for the same softmax output P = softmax(z).

For one sample with one-hot target y (K classes)::

    cross-entropy   L = -log P_y               dL/dz = P - y
    squared error   L = sum_k (P_k - y_k)^2    dL/dz_j = 2 P_j ((P_j - y_j) - sum_k P_k (P_k - y_k))

the second through the softmax Jacobian dP_k/dz_j = P_k (delta_kj - P_j), which vanishes as
P saturates: a confidently wrong prediction (P_y near 0) gets a full push from
cross-entropy (|dL/dz| near sqrt 2) and almost none from squared error.
"""

from __future__ import annotations

import numpy as np


def logit_gradients(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample dL/dz of both losses: ``{"cross_entropy": (N, K), "mean_squared_error":
    (N, K)}`` for probabilities (N, K) (rows sum to 1) and labels (N,) in [0, K)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    target = np.zeros_like(probabilities)
    target[np.arange(len(labels)), np.asarray(labels)] = 1.0
    error = probabilities - target
    # dL/dz_j = 2 P_j (e_j - sum_k P_k e_k), e = P - y
    squared = 2 * probabilities * (error - (probabilities * error).sum(axis=1, keepdims=True))
    return {"cross_entropy": error, "mean_squared_error": squared}


def gradient_norms(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample L2 norms (N,) of :func:`logit_gradients`, by loss."""
    return {
        loss: np.linalg.norm(gradient, axis=1)
        for loss, gradient in logit_gradients(probabilities, labels).items()
    }
