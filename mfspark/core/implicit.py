"""The implicit-feedback terms of a half-step (Hu, Koren and Volinsky 2008), in NumPy only.

Semantics are Spark MLlib's (``ALS(implicitPrefs=True, alpha=...)``).  Every observed value
``r`` (a count of plays, clicks, or a rating) becomes

- a preference ``p = 1`` if ``r > 0``, else ``p = 0``;
- a confidence ``c = 1 + alpha * |r|`` (``|r|``: a negative value is a confident 0).

Every (row, column) pair *not* observed has ``p = 0`` and ``c = 1``.  The objective is

    J = sum_{all (u, i)} c_ui (p_ui - x_u . y_i)^2 + sum_u lam_u ||x_u||^2 + sum_i lam_i ||y_i||^2

with ``lam_u = lam * n_u`` (``reg_scale="count"``, MLlib's regParam; ``n_u`` is the number of
the row's values with ``r > 0``, as MLlib's ``numExplicits``) or ``lam_u = lam``.  With the
fixed side ``Y`` each row's exact minimizer solves

    (Y^T Y + sum_{Omega_u} (c_ui - 1) y_i y_i^T + lam_u I) x_u = sum_{Omega_u} c_ui p_ui y_i

so ``Y^T Y`` (:func:`fixed_gramian`) is the one product over the whole fixed side, computed
once per half-step, and only the observed entries enter each row, weighted by ``c - 1``:
the general system of :mod:`mfspark.core.objective` with ``base = Y^T Y``.  Each row's data
term of J follows from its system (:func:`mfspark.core.objective.data_term`) with the
constant ``sum_{Omega_u} c p^2`` (the loss of ``x = 0`` over all columns).

By default there is no bias and no global mean in this model (MLlib has none either).  With
biases the score is ``x_u . y_i + b_u + c_i`` and J adds ``sum_u lam_u b_u^2 + sum_i lam_i
c_i^2``.  A row's unknowns are then ``[x_u; b_u]`` against ``y~_i = [y_i; 1]`` and the target
``p_ui - c_i`` over *all* columns, still with one global product per half-step: the Gram
matrix of ``Z = [Y, 1, c]`` holds ``Y~^T Y~``, the shift ``Y~^T c`` and ``c . c``, and

    (Y~^T Y~ + sum_{Omega_u} (c_ui - 1) y~_i y~_i^T + lam_u I) [x_u; b_u]
        = sum_{Omega_u} (c_ui p_ui - (c_ui - 1) c_i) y~_i - Y~^T c

    sum_i c_ui (p_ui - c_i)^2 = c . c + sum_{Omega_u} (p_ui - 2 p_ui c_i + (c_ui - 1)(p_ui - c_i)^2)

(the second line is the data term's constant; ``p^2 = p``).
"""

from __future__ import annotations

import numpy as np


def gramian(factors: np.ndarray) -> np.ndarray:
    """``Y^T Y`` of the fixed side's factors, in float64."""
    Y = np.asarray(factors, dtype=np.float64)
    return Y.T @ Y


def fixed_gramian(factors: np.ndarray, bias: np.ndarray, biases: bool) -> np.ndarray:
    """The one product of the fixed side a half-step needs: ``Y^T Y``, or with ``biases``
    the Gram matrix of ``Z = [Y, 1, c]`` (factors, a column of ones, the biases), taken
    apart by :func:`split_gramian`.  A sum over rows: the Gram matrices of the fixed
    side's blocks add up to the whole side's."""
    Y = np.asarray(factors, dtype=np.float64)
    if not biases:
        return gramian(Y)
    return gramian(np.column_stack([Y, np.ones(len(Y)), np.asarray(bias, dtype=np.float64)]))


def split_gramian(gram: np.ndarray, biases: bool) -> tuple[np.ndarray, np.ndarray | None, float]:
    """``(base, shift, c . c)`` of the rows' systems from :func:`fixed_gramian`: without
    biases ``(Y^T Y, None, 0)``; with biases ``(Y~^T Y~, Y~^T c, c . c)``."""
    G = np.asarray(gram, dtype=np.float64)
    if not biases:
        return G, None, 0.0
    return G[:-1, :-1], G[:-1, -1].copy(), float(G[-1, -1])


def confidence_terms(ratings: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Per observed value: ``c - 1 = alpha |r|`` (the weight of the Gram correction) and
    ``c p`` (the weight of the right-hand side: ``1 + alpha r`` if ``r > 0``, else 0)."""
    r = np.asarray(ratings, dtype=np.float64)
    extra = alpha * np.abs(r)
    return extra, np.where(r > 0, 1.0 + extra, 0.0)


def row_terms(ratings: np.ndarray, start: np.ndarray, alpha: float,
              col_bias: np.ndarray | None = None, bias_sq: float = 0.0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per rating the weight ``c - 1`` and the target ``c p`` (:func:`confidence_terms`);
    per row the count of values ``> 0`` (what scales lambda) and the constant of its data
    term, ``sum c p^2`` over its observed values (ratings sorted by row, each row starting
    at ``start``).

    With ``col_bias`` (each rating's fixed-side bias ``c_i``) and ``bias_sq`` (``c . c``)
    the terms of the model with biases (module docstring): target ``c p - (c - 1) c_i``
    and constant ``sum_i c (p - c_i)^2`` over all columns."""
    extra, target = confidence_terms(ratings, alpha)
    positive = (np.asarray(ratings) > 0).astype(np.float64)
    loss = target  # c p^2 = c p
    if col_bias is not None:
        cb = np.asarray(col_bias, dtype=np.float64)
        target = target - extra * cb
        loss = positive * (1.0 - 2.0 * cb) + extra * (positive - cb) ** 2
    if not len(start):
        return extra, target, np.zeros(0), np.zeros(0)
    n_pos = np.add.reduceat(positive, start)
    const = np.add.reduceat(loss, start) + bias_sq
    return extra, target, n_pos, const
