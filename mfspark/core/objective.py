"""What one half-step minimizes, for every model variant, as data.

Every row ``i`` of a half-step (a user given the items, or an item given the users) solves
one regularized, possibly weighted least-squares system on the fixed side's vectors
``x_j`` (``[v_j, 1]`` with biases, ``v_j`` without)::

    (base + sum_j w_ij x_j x_j^T + lam_i I) [u_i; b_i] = sum_j t_ij x_j - shift

optionally with ``u_i >= 0`` (nonnegative factors; the bias stays free), solved exactly or
by a few conjugate-gradient steps.  An :class:`Objective` says which terms a variant has:

- explicit ratings (docs/model.md): ``w_ij = 1``, ``t_ij = A_ij - c_j - mu``, no base, no shift;
- implicit feedback (Hu, Koren, Volinsky; MLlib's ``implicitPrefs``): ``w_ij = alpha |r|``,
  ``t_ij = c p``, ``base = Y^T Y``;
- implicit feedback with biases: ``t_ij = c p - (c - 1) c_j``, ``base = Y~^T Y~`` and
  ``shift = Y~^T c`` on ``Y~ = [Y, 1]``;
- every variant: ``lam_i = lambda`` or ``lambda * n_i`` (``n_i`` the row's ratings; for
  implicit feedback its values ``> 0``, MLlib's ``numExplicits``).

(``c = 1 + alpha |r|`` is the confidence, ``p = [r > 0]`` the preference;
:mod:`mfspark.core.implicit` derives the implicit rows.)

The data term of a row after its solve needs no second pass over the ratings: with
``A w = b`` the row's system,

    data_i = const_i - 2 w . b + w^T A w - lam_i ||w||^2

where ``const_i = sum_j t_ij^2`` for explicit ratings (the squared targets) and the
implicit loss constant of :func:`mfspark.core.implicit.row_terms`; at an exact (or NNLS)
solution ``w^T A w = w . b``.  The penalty of J is ``sum_i lam_i (||u_i||^2 + b_i^2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfspark.core import implicit

REG_SCALES = ("none", "count")


@dataclass(frozen=True)
class Objective:
    """The model variant a half-step solves (every field is plain data)."""

    reg: float
    """Regularization strength lambda (> 0)."""
    reg_scale: str = "count"
    """``count``: ``lam_i = lambda * n_i`` (ALS-WR, MLlib's regParam); ``none``: lambda."""
    biases: bool = True
    """Whether every row solves a bias beside its factors (``x_j = [v_j, 1]``)."""
    alpha: float | None = None
    """None: explicit ratings; a number: implicit feedback, confidence ``1 + alpha |r|``."""
    nonnegative: bool = False
    """Constrain the factors (not the bias) to be >= 0."""
    cg_steps: int = 0
    """0: exact solves; N: N conjugate-gradient steps from the row's previous unknowns."""

    def __post_init__(self) -> None:
        if self.reg_scale not in REG_SCALES:
            raise ValueError(f"reg_scale must be one of {REG_SCALES}, got {self.reg_scale!r}")
        if self.cg_steps and (self.alpha is None or self.nonnegative):
            raise ValueError("conjugate gradient serves the unconstrained implicit systems only")

    @property
    def implicit(self) -> bool:
        """Whether the ratings are implicit feedback."""
        return self.alpha is not None

    def regularization(self, counts: np.ndarray) -> np.ndarray:
        """Per-row ridge weight ``lam_i``: ``lambda`` or ``lambda * counts_i``."""
        counts = np.asarray(counts, dtype=np.float64)
        return self.reg * counts if self.reg_scale == "count" else np.full_like(counts,
                                                                                self.reg)

    def penalty(self, factors: np.ndarray, bias: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Each row's regularization term of J, ``lam_i (||u_i||^2 + b_i^2)``, with ``counts``
        the counts that scale lambda (:meth:`row_terms`' ``reg_counts``)."""
        sq = np.einsum("ik,ik->i", factors, factors) + bias * bias
        return self.regularization(counts) * sq

    def bound(self, k1: int) -> np.ndarray | None:
        """The coordinates held >= 0 (the factors, never the bias), or None."""
        if not self.nonnegative:
            return None
        bound = np.ones(k1, dtype=bool)
        bound[-1] = not self.biases
        return bound

    def fixed_terms(self, factors: np.ndarray, bias: np.ndarray,
                    gram: np.ndarray | None = None) -> FixedTerms:
        """What the rows of a half-step share: the fixed side's vectors, and for implicit
        feedback its Gram matrix taken apart into ``base``, ``shift`` and ``c . c``
        (``gram``: :func:`mfspark.core.implicit.fixed_gramian` of the whole fixed side,
        computed here when not given)."""
        factors = np.asarray(factors, dtype=np.float64)
        bias = np.asarray(bias, dtype=np.float64)
        F = augmented(factors) if self.biases else factors
        if not self.implicit:
            return FixedTerms(F, bias)
        if gram is None:
            gram = implicit.fixed_gramian(factors, bias, self.biases)
        base, shift, bias_sq = implicit.split_gramian(gram, self.biases)
        return FixedTerms(F, bias, base, shift, bias_sq)

    def row_terms(self, ratings: np.ndarray, cols: np.ndarray, start: np.ndarray,
                  counts: np.ndarray, fixed: FixedTerms, mu: float) -> RowTerms:
        """Per rating the weight and target, per row ``lam_i`` and the data term's constant,
        for ratings sorted by row (row ``r`` starts at ``start[r]``)."""
        if self.implicit:
            col_bias = fixed.bias[cols] if self.biases else None
            weight, target, reg_counts, const = implicit.row_terms(
                ratings, start, self.alpha, col_bias, fixed.bias_sq)
            return RowTerms(target, weight, self.regularization(reg_counts), const, reg_counts)
        y = ratings - fixed.bias[cols] - mu
        const = np.add.reduceat(y * y, start) if len(start) else np.zeros(0)
        return RowTerms(y, None, self.regularization(counts), const, counts)


@dataclass(frozen=True)
class FixedTerms:
    """The fixed side as every row of a half-step sees it."""

    F: np.ndarray
    """Row ``j``: ``x_j`` (``[v_j, 1]`` with biases), float64."""
    bias: np.ndarray
    """The fixed side's biases ``c_j``."""
    base: np.ndarray | None = None
    """Added to every row's Gram matrix (implicit feedback: ``Y^T Y``)."""
    shift: np.ndarray | None = None
    """Subtracted from every right-hand side (implicit feedback with biases: ``Y~^T c``)."""
    bias_sq: float = 0.0
    """``c . c`` (implicit feedback with biases: part of every row's data constant)."""


@dataclass(frozen=True)
class RowTerms:
    """What the ratings of a block contribute to their rows' systems."""

    target: np.ndarray
    """Per rating ``t_ij``."""
    weight: np.ndarray | None
    """Per rating ``w_ij`` (None: all ones)."""
    lam: np.ndarray
    """Per row ``lam_i``."""
    const: np.ndarray
    """Per row the data term's constant."""
    reg_counts: np.ndarray
    """Per row the count that scales lambda (``n_i``, or ``n+_i`` for implicit feedback)."""


def augmented(factors: np.ndarray) -> np.ndarray:
    """The vectors ``x_j = [v_j, 1]`` as float64 rows."""
    n, k = factors.shape
    F = np.empty((n, k + 1), dtype=np.float64)
    F[:, :k] = factors
    F[:, k] = 1.0
    return F


def data_term(const: np.ndarray, w: np.ndarray, rhs: np.ndarray, lam: np.ndarray,
              wAw: np.ndarray | None = None) -> np.ndarray:
    """Each row's data term after its solve (module docstring), clipped at 0 against
    round-off; ``wAw`` defaults to ``w . rhs``, exact at an exact or NNLS solution."""
    wb = np.einsum("rk,rk->r", w, rhs)
    if wAw is None:
        wAw = wb
    return np.maximum(const - 2 * wb + wAw - lam * np.einsum("rk,rk->r", w, w), 0.0)


def split_unknowns(w: np.ndarray, biases: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each row's solved ``[u; b]`` as ``(factors, bias)``; without biases all of ``w`` is
    factors and the bias is zero."""
    if biases:
        return w[:, :-1].copy(), w[:, -1].copy()
    return w, np.zeros(len(w))
