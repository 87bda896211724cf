"""The state of a fit held as NumPy arrays: one side's factors, a whole fit, the seeded start.

The in-process fit (:mod:`mfspark.core.local`), the pure-NumPy reference and the tests hold
models this way; the distributed engine keeps its factors in Parquet and DataFrames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Side:
    """One side's factors, indexed by dense index.

    ``factors`` (n, K) and ``bias`` (n,) are float64; ``counts`` (n,) holds each row's
    number of training ratings (a row with none keeps zero factors and bias).
    """

    factors: np.ndarray
    bias: np.ndarray
    counts: np.ndarray

    @classmethod
    def zeros(cls, counts: np.ndarray, rank: int) -> Side:
        return cls(np.zeros((len(counts), rank)), np.zeros(len(counts)), counts)

    def unknowns(self, biases: bool) -> np.ndarray:
        """The rows' current unknowns, where a conjugate-gradient half-step starts: the
        factors, with ``biases`` followed by the bias as a last column."""
        return np.column_stack([self.factors, self.bias]) if biases else self.factors


@dataclass
class FitResult:
    """A fitted model: global mean, both sides, one history entry per iteration, and each
    side's penalty term of J (what the objective after the other side's next half-step
    adds to that half-step's own terms)."""

    mu: float
    users: Side
    items: Side
    history: list[dict[str, float]] = field(default_factory=list)
    penalty: dict[str, float] = field(default_factory=dict)


def init_factors(n: int, rank: int, seed: int) -> np.ndarray:
    """Seeded initial factors: i.i.d. N(0, 1/rank) entries, so each vector has norm ~1.

    The values depend only on ``(n, rank, seed)``, never on how the data is partitioned.
    """
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, rank)) / np.sqrt(max(rank, 1))
