"""Differential privacy on what leaves a client: the Gaussian mechanism, applied by the client.

Adapter updates: the update (trained minus received weights, for the part sent) is clipped to
L2 norm C with Flower's DP primitives and gets Gaussian noise. Any two clipped updates differ
by at most 2C, so sigma = 2C * sqrt(2 ln(1.25/delta)) / epsilon gives (epsilon, delta)-DP for one
release; a client releasing R updates spends R * epsilon under basic composition.

Local centroids: a centroid is the mean of n unit-norm embeddings, so replacing one sample moves
it by at most 2/n; clusters are disjoint, so noising each with sigma_k = (2/n_k) * sqrt(2 ln(1.25/delta))
/ epsilon makes the one release of all centroids (epsilon, delta)-DP. The number of local
clusters and their sizes are treated as public.
"""

from __future__ import annotations

import math

import numpy as np
from flwr.supercore.differential_privacy import (
    add_gaussian_noise_inplace,
    compute_clip_model_update,
)

from fedrouter_cli.model.lora import Adapter


def gaussian_sigma(sensitivity: float, epsilon: float, delta: float) -> float:
    return sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon


def privatize_update(sent: Adapter, start: Adapter, clip: float, epsilon: float, delta: float,
                     seed: int) -> Adapter:
    """`sent` with its update relative to `start` clipped to `clip` and Gaussian noise added."""
    keys = sorted(sent)
    new = [np.array(sent[k], dtype=np.float32) for k in keys]
    compute_clip_model_update(new, [np.asarray(start[k], dtype=np.float32) for k in keys], clip)
    saved = np.random.get_state()
    np.random.seed(seed % 2**32)  # Flower's noise draws from numpy's global generator; seeded for resume
    try:
        add_gaussian_noise_inplace(new, gaussian_sigma(2 * clip, epsilon, delta))
    finally:
        np.random.set_state(saved)
    return dict(zip(keys, new))


def privatize_centroids(centroids: np.ndarray, sizes: np.ndarray, epsilon: float, delta: float,
                        seed: int) -> np.ndarray:
    """Centroids with per-cluster Gaussian noise scaled to their sensitivity 2/n_k."""
    rng = np.random.default_rng(seed)
    sigmas = np.array([gaussian_sigma(2.0 / max(int(n), 1), epsilon, delta) for n in sizes], dtype=np.float64)
    noise = rng.normal(size=centroids.shape) * sigmas[:, None]
    return (centroids.astype(np.float64) + noise).astype(np.float32)
