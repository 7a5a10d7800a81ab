"""BERT-whitening (Su et al., 2021): ``z = (x - mu) @ W`` with ``W = U[:, :k] / sqrt(S[:k])``
where ``U, S = svd(cov(x))``. Fitted once (on training texts), then applied unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Directions whose variance is below this fraction of the largest carry no signal (fewer
# texts than dimensions); dividing by their near-zero scale would blow up unseen texts.
RELATIVE_VARIANCE_FLOOR = 1e-6


class Whitening:
    def __init__(self, mu: np.ndarray, W: np.ndarray):
        self.mu = np.asarray(mu, dtype=np.float32)
        self.W = np.asarray(W, dtype=np.float32)

    @property
    def dim(self) -> int:
        return int(self.W.shape[1])

    @classmethod
    def fit(cls, x: np.ndarray, k: int) -> Whitening:
        """Fit on the rows of ``x`` [n, d] and keep ``k`` dimensions (fewer when the data has
        lower rank)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"whitening needs at least two vectors, got shape {x.shape}")
        mu = x.mean(axis=0)
        cov = np.cov(x - mu, rowvar=False)
        U, S, _ = np.linalg.svd(cov)
        keep = min(k, int((S > S[0] * RELATIVE_VARIANCE_FLOOR).sum()))
        return cls(mu, U[:, :keep] / np.sqrt(S[:keep]))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float32) - self.mu) @ self.W).astype(np.float32, copy=False)

    def save(self, directory: str | Path, prefix: str) -> None:
        directory = Path(directory)
        np.save(directory / f"{prefix}_mu.npy", self.mu)
        np.save(directory / f"{prefix}_W.npy", self.W)

    @classmethod
    def load(cls, directory: str | Path, prefix: str) -> Whitening:
        directory = Path(directory)
        return cls(np.load(directory / f"{prefix}_mu.npy"), np.load(directory / f"{prefix}_W.npy"))
