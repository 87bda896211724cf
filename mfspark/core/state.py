"""The state of a fit held as NumPy arrays: one side's factors, a whole fit, the seeded start.

The in-process fit (:mod:`mfspark.core.local`), the pure-NumPy reference and the tests hold
models this way; the distributed engine keeps its factors in Parquet and DataFrames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mfspark.core.packing import splitmix


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


def seeded_factors(keys: np.ndarray, rank: int, seed: int) -> np.ndarray:
    """Seeded start vectors of the rows with these ``keys``: i.i.d. N(0, 1/rank) entries
    (each vector has norm about 1), every entry a function of ``(seed, key, coordinate)``
    only, so a row starts the same whichever block, partition or process draws it.

    Counter-based: SplitMix64 of the key's and the coordinate's counters gives two
    uniforms per pair of coordinates, the Box-Muller transform two standard normals.  The
    compiled twin (:mod:`mfspark.core.kernel.seeded`) gives the same numbers faster.
    """
    from mfspark.core import kernel
    from mfspark.core.kernel import seeded

    keys = np.ascontiguousarray(keys, dtype=np.int64)
    out = np.empty((len(keys), rank))
    seed64 = np.uint64(int(seed) & seeded.MASK)
    if kernel.available():
        seeded.normals(keys, rank, seed64, out)
    elif rank:
        with np.errstate(over="ignore"):
            base = splitmix(keys.view(np.uint64) * np.uint64(seeded.GOLDEN) + seed64)
            pairs = np.arange(0, rank, 2, dtype=np.uint64)
            step = np.uint64(seeded.STEP)
            a = splitmix(base[:, None] + step * (pairs + np.uint64(1))[None, :])
            b = splitmix(base[:, None] + step * (pairs + np.uint64(2))[None, :])
        u1 = ((a >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
        u2 = ((b >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
        radius = np.sqrt(-2.0 * np.log(u1))
        out[:, 0::2] = radius * np.cos(2 * np.pi * u2)
        out[:, 1::2] = (radius * np.sin(2 * np.pi * u2))[:, :rank // 2]
    return out / np.sqrt(max(rank, 1))


def init_factors(n: int, rank: int, seed: int) -> np.ndarray:
    """:func:`seeded_factors` of the keys ``0 .. n - 1`` (rows indexed densely)."""
    return seeded_factors(np.arange(n, dtype=np.int64), rank, seed)
