"""The evaluation router: send each sample to the adapter of its nearest centroid (Euclidean)."""

from __future__ import annotations

import numpy as np

from fedrouter_cli.errors import FedrouterError


def nearest(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid for each point."""
    if points.shape[1] != centroids.shape[1]:
        raise FedrouterError(
            f"Test embeddings have dimension {points.shape[1]} but the centroids {centroids.shape[1]}; "
            "they come from different embedders: rerun `fedrouter embed` and `fedrouter simulate` with one embedder."
        )
    return squared_distances(points, centroids).argmin(1)


def squared_distances(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """[points, centroids] squared Euclidean distances (the router compares these; `serve`
    reports their square roots)."""
    return ((points[:, None, :] - centroids[None, :, :]) ** 2).sum(-1)
