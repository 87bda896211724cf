"""Implicit-feedback ALS (Hu, Koren and Volinsky 2008) for one block of rows, in NumPy only.

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

``Y^T Y`` (:func:`gramian`) is computed once per half-step, on the driver that holds the
broadcast factors; only the observed entries enter the per-row correction, built by the
explicit solver's normal equations with each rating weighted by ``c - 1``.

Each row's data term of J after its solve is returned without another pass over all pairs:

    sum_i c_ui (p_ui - x . y_i)^2 = sum_{Omega_u} c p^2 - 2 x . b + x^T (A - lam_u I) x

where ``A x = b`` is the row's system (any ``x``: it also holds for the NNLS solution).

By default there is no bias and no global mean in this model (MLlib has none either).  With
biases (``biases=True``, off by default) the score is ``x_u . y_i + b_u + c_i`` and J adds
``sum_u lam_u b_u^2 + sum_i lam_i c_i^2``.  A row's unknowns are then ``[x_u; b_u]`` against
the augmented fixed factors ``y~_i = [y_i; 1]`` and the target ``p_ui - c_i`` over *all*
columns, still with one global product per half-step: the driver's Gram matrix of
``Z = [Y, 1, c]`` (:func:`fixed_gramian`) holds ``Y~^T Y~``, the shift
``Y~^T c`` and ``c . c``, and

    (Y~^T Y~ + sum_{Omega_u} (c_ui - 1) y~_i y~_i^T + lam_u I) [x_u; b_u]
        = sum_{Omega_u} (c_ui p_ui - (c_ui - 1) c_i) y~_i - Y~^T c

    sum_i c_ui (p_ui - c_i)^2 = c . c + sum_{Omega_u} (p_ui - 2 p_ui c_i + (c_ui - 1)(p_ui - c_i)^2)

(the second line is the data term's constant; ``p^2 = p``).
"""

from __future__ import annotations

import numpy as np

from mfspark.solve import DEFAULT_MAX_GATHER, normal_equations, regularization


def gramian(factors: np.ndarray) -> np.ndarray:
    """``Y^T Y`` of the fixed side's factors, in float64."""
    Y = np.asarray(factors, dtype=np.float64)
    return Y.T @ Y


def fixed_gramian(factors: np.ndarray, bias: np.ndarray, biases: bool) -> np.ndarray:
    """The one product of the fixed side a half-step needs (on the driver, once): ``Y^T Y``,
    or with ``biases`` the Gram matrix of ``Z = [Y, 1, c]`` (factors, a column of ones, the
    biases), taken apart by :func:`split_gramian`."""
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


def weighted_normal_equations(F: np.ndarray, cols: np.ndarray, weight: np.ndarray,
                              target: np.ndarray, start: np.ndarray, counts: np.ndarray,
                              max_gather: int = DEFAULT_MAX_GATHER
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``sum_j weight_j f_j f_j^T`` and ``sum_j target_j f_j`` over its ratings
    ``j`` in ``start_r .. start_r + counts_r`` (ratings sorted by row, ``f_j = F[cols[j]]``):
    the explicit solver's :func:`mfspark.solve.normal_equations` with weights, so the same
    per-rank Gram method (sparse product at low rank, one ``syrk`` per row above) serves
    both models."""
    return normal_equations(F, cols, target, start, counts, max_gather, weight=weight)


def row_terms(ratings: np.ndarray, start: np.ndarray, alpha: float, lam: float,
              reg_scale: str, col_bias: np.ndarray | None = None, bias_sq: float = 0.0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per rating ``c - 1`` and the right-hand-side weight ``c p`` (:func:`confidence_terms`);
    per row the ridge weight ``lam_u`` and the constant of its data term, ``sum c p^2`` over
    its observed values (ratings sorted by row, each row starting at ``start``).

    With ``col_bias`` (each rating's fixed-side bias ``c_i``) and ``bias_sq`` (``c . c``)
    the terms of the model with biases (module docstring): weight ``c p - (c - 1) c_i`` and
    constant ``sum_i c (p - c_i)^2`` over all columns."""
    extra, target = confidence_terms(ratings, alpha)
    positive = (np.asarray(ratings) > 0).astype(np.float64)
    loss = target  # c p^2 = c p
    if col_bias is not None:
        cb = np.asarray(col_bias, dtype=np.float64)
        target = target - extra * cb
        loss = positive * (1.0 - 2.0 * cb) + extra * (positive - cb) ** 2
    n_pos = np.add.reduceat(positive, start) if len(start) else np.zeros(0)
    cpp = np.add.reduceat(loss, start) + bias_sq if len(start) else np.zeros(0)
    return extra, target, regularization(n_pos, lam, reg_scale), cpp


def implicit_system(F: np.ndarray, fixed_gram: np.ndarray, cols: np.ndarray,
                    ratings: np.ndarray, start: np.ndarray, counts: np.ndarray, alpha: float,
                    lam: float, reg_scale: str, max_gather: int = DEFAULT_MAX_GATHER,
                    col_bias: np.ndarray | None = None, shift: np.ndarray | None = None,
                    bias_sq: float = 0.0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rows' systems ``A x = b`` of the module docstring (with biases: ``F`` the
    augmented ``[Y, 1]``, ``fixed_gram``, ``shift`` and ``bias_sq`` from
    :func:`split_gramian`, ``col_bias`` each rating's ``c_i``).

    Returns ``(A, b, lam_rows, cpp)``: ``lam_rows`` the per-row ridge weights (already on
    ``A``'s diagonal), ``cpp`` the constant of each row's data term (:func:`row_terms`).
    """
    extra, target, lam_rows, cpp = row_terms(ratings, start, alpha, lam, reg_scale,
                                             col_bias, bias_sq)
    gram, rhs = weighted_normal_equations(F, cols, extra, target, start, counts, max_gather)
    if shift is not None:
        rhs -= shift
    gram += fixed_gram
    k = gram.shape[1]
    gram[:, np.arange(k), np.arange(k)] += lam_rows[:, None]
    return gram, rhs, lam_rows, cpp


def data_term(A: np.ndarray | None, b: np.ndarray, lam_rows: np.ndarray, cpp: np.ndarray,
              x: np.ndarray, xAx: np.ndarray | None = None) -> np.ndarray:
    """Each row's ``sum_{all i} c (p - x . y_i)^2`` from its system (see the module
    docstring); exact for any ``x``, clipped at 0 against round-off.  Without ``A`` (the
    compiled solver keeps none) ``xAx``, each row's ``x^T A x``, is used, or, when that is
    not given either, ``x . b``: exact when ``x`` solves ``A x = b`` (or its NNLS)."""
    xb = np.einsum("rk,rk->r", x, b)
    if xAx is None:
        xAx = xb if A is None else np.einsum("rk,rkl,rl->r", x, A, x)
    return np.maximum(cpp - 2 * xb + xAx - lam_rows * np.einsum("rk,rk->r", x, x), 0.0)


def cg_solve(A: np.ndarray, b: np.ndarray, x0: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` conjugate-gradient steps on every row's SPD system ``A x = b`` from ``x0``
    (the stack at once): each step minimizes ``1/2 x^T A x - b^T x`` over a growing Krylov
    space around ``x0``, so no step increases it, and ``k`` steps solve a ``k x k`` system up
    to round-off.  The NumPy twin of the compiled loop's conjugate gradient
    (:func:`mfspark.kernel.cg_rows`)."""
    x = np.array(x0, dtype=np.float64)
    r = b - np.einsum("rkl,rl->rk", A, x)
    p = r.copy()
    rr = np.einsum("rk,rk->r", r, r)
    for _ in range(steps):
        live = rr > 0  # a row already solved exactly stays put
        Ap = np.einsum("rkl,rl->rk", A, p)
        pAp = np.einsum("rk,rk->r", p, Ap)
        step = np.where(live, rr / np.where(live, pAp, 1.0), 0.0)
        x += step[:, None] * p
        r -= step[:, None] * Ap
        rr_next = np.einsum("rk,rk->r", r, r)
        p = r + np.where(live, rr_next / np.where(live, rr, 1.0), 0.0)[:, None] * p
        rr = rr_next
    return x
