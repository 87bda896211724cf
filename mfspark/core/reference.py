"""Pure-NumPy reference ALS: the updates of docs/model.md written as plainly as possible.

This is the oracle the tests hold the distributed job to.  It shares no code with the
block solver (:mod:`mfspark.core.block`): one Python loop over users and one over items, each
row's system built with ``X.T @ X`` and solved with ``numpy.linalg.solve``.  It is meant
for small in-memory data only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ReferenceModel:
    """State of the reference ALS: factors, biases, mean and the objective per iteration."""

    mu: float
    user_factors: np.ndarray
    user_bias: np.ndarray
    item_factors: np.ndarray
    item_bias: np.ndarray
    objectives: list[float] = field(default_factory=list)


def _lams(n_rated: np.ndarray, lam: float, reg_scale: str) -> np.ndarray:
    return lam * n_rated.astype(float) if reg_scale == "count" else np.full(len(n_rated), lam)


def objective(users: np.ndarray, items: np.ndarray, ratings: np.ndarray,
              model: ReferenceModel, lam: float, reg_scale: str) -> float:
    """The exact J of docs/model.md (squared error plus the, possibly count-weighted, penalty)."""
    pred = (np.sum(model.user_factors[users] * model.item_factors[items], axis=1)
            + model.user_bias[users] + model.item_bias[items] + model.mu)
    n_u = np.bincount(users, minlength=len(model.user_bias))
    n_i = np.bincount(items, minlength=len(model.item_bias))
    pen_u = _lams(n_u, lam, reg_scale) @ (np.sum(model.user_factors ** 2, axis=1)
                                          + model.user_bias ** 2)
    pen_i = _lams(n_i, lam, reg_scale) @ (np.sum(model.item_factors ** 2, axis=1)
                                          + model.item_bias ** 2)
    return float(np.sum((ratings - pred) ** 2) + pen_u + pen_i)


def _half_step(rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray, n_rows: int,
               fixed: np.ndarray, fixed_bias: np.ndarray, mu: float, lam: float,
               reg_scale: str) -> tuple[np.ndarray, np.ndarray]:
    k = fixed.shape[1]
    factors, bias = np.zeros((n_rows, k)), np.zeros(n_rows)
    for r in range(n_rows):
        sel = rows == r
        if not sel.any():
            continue  # no ratings: keeps u = 0, b = 0
        X = np.hstack([fixed[cols[sel]], np.ones((sel.sum(), 1))])
        y = ratings[sel] - fixed_bias[cols[sel]] - mu
        lam_r = lam * sel.sum() if reg_scale == "count" else lam
        w = np.linalg.solve(X.T @ X + lam_r * np.eye(k + 1), X.T @ y)
        factors[r], bias[r] = w[:k], w[k]
    return factors, bias


def als(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int,
        n_items: int, item_factors: np.ndarray, lam: float, reg_scale: str,
        iterations: int) -> ReferenceModel:
    """Run ``iterations`` full ALS iterations (users first, then items) from the given
    initial item factors and zero biases; records J after every iteration."""
    ratings = np.asarray(ratings, dtype=np.float64)
    k = item_factors.shape[1]
    model = ReferenceModel(mu=float(ratings.mean()), user_factors=np.zeros((n_users, k)),
                           user_bias=np.zeros(n_users),
                           item_factors=np.array(item_factors, dtype=np.float64),
                           item_bias=np.zeros(n_items))
    for _ in range(iterations):
        model.user_factors, model.user_bias = _half_step(
            users, items, ratings, n_users, model.item_factors, model.item_bias,
            model.mu, lam, reg_scale)
        model.item_factors, model.item_bias = _half_step(
            items, users, ratings, n_items, model.user_factors, model.user_bias,
            model.mu, lam, reg_scale)
        model.objectives.append(objective(users, items, ratings, model, lam, reg_scale))
    return model


# Implicit feedback: the dense oracle of mfspark.core.implicit


def implicit_dense(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int,
                   n_items: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The full preference and confidence matrices: ``P = [r > 0]``, ``C = 1 + alpha |r|``
    on observed pairs, ``P = 0`` and ``C = 1`` elsewhere."""
    P, C = np.zeros((n_users, n_items)), np.ones((n_users, n_items))
    r = np.asarray(ratings, dtype=np.float64)
    P[users, items] = (r > 0).astype(float)
    C[users, items] = 1.0 + alpha * np.abs(r)
    return P, C


def implicit_objective(P: np.ndarray, C: np.ndarray, X: np.ndarray, Y: np.ndarray,
                       lam: float, reg_scale: str, x_bias: np.ndarray | None = None,
                       y_bias: np.ndarray | None = None) -> float:
    """``sum_{all u, i} c (p - x_u . y_i - b_u - c_i)^2 + sum lam_u (||x_u||^2 + b_u^2)
    + sum lam_i (||y_i||^2 + c_i^2)``, with ``lam_u = lam * #{i: r_ui > 0}`` under
    ``reg_scale="count"``; the biases ``b`` (``x_bias``), ``c`` (``y_bias``) default to 0."""
    b = np.zeros(len(X)) if x_bias is None else np.asarray(x_bias, dtype=np.float64)
    c = np.zeros(len(Y)) if y_bias is None else np.asarray(y_bias, dtype=np.float64)
    lam_u = _lams((P > 0).sum(axis=1), lam, reg_scale)
    lam_i = _lams((P > 0).sum(axis=0), lam, reg_scale)
    scores = X @ Y.T + b[:, None] + c[None, :]
    return float(np.sum(C * (P - scores) ** 2) + lam_u @ (np.sum(X ** 2, axis=1) + b ** 2)
                 + lam_i @ (np.sum(Y ** 2, axis=1) + c ** 2))


def _implicit_half_step(P: np.ndarray, C: np.ndarray, Y: np.ndarray, lam: float,
                        reg_scale: str, y_bias: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Each row's exact minimizer on the dense matrices (every column, observed or not):
    ``(Y^T C_u Y + lam_u I)^-1 Y^T C_u p_u``, or with the fixed side's biases ``c``
    (``y_bias``) ``[x_u; b_u] = (Y~^T C_u Y~ + lam_u I)^-1 Y~^T C_u (p_u - c)`` on
    ``Y~ = [Y, 1]``.  Returns the factors and the biases (zero without ``y_bias``)."""
    k = Y.shape[1]
    lam_u = _lams((P > 0).sum(axis=1), lam, reg_scale)
    if y_bias is None:
        Yt, target = Y, P
    else:
        Yt, target = np.hstack([Y, np.ones((len(Y), 1))]), P - np.asarray(y_bias)[None, :]
    k1 = Yt.shape[1]
    W = np.zeros((P.shape[0], k1))
    for u in range(P.shape[0]):
        YC = Yt.T * C[u]
        W[u] = np.linalg.solve(YC @ Yt + lam_u[u] * np.eye(k1), YC @ target[u])
    return W[:, :k].copy(), (W[:, k].copy() if k1 > k else np.zeros(P.shape[0]))


def implicit_als(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int,
                 n_items: int, user_factors: np.ndarray, lam: float, alpha: float,
                 reg_scale: str, iterations: int, biases: bool = False) -> ReferenceModel:
    """Implicit-feedback ALS (Hu, Koren, Volinsky 2008; MLlib's semantics and order) on dense
    P and C: no global mean, and no biases unless ``biases``; the users start at
    ``user_factors`` (and zero biases), every iteration solves the items, then the users;
    J recorded after every iteration."""
    P, C = implicit_dense(users, items, ratings, n_users, n_items, alpha)
    k = user_factors.shape[1]
    model = ReferenceModel(mu=0.0, user_factors=np.array(user_factors, dtype=np.float64),
                           user_bias=np.zeros(n_users),
                           item_factors=np.zeros((n_items, k)),
                           item_bias=np.zeros(n_items))
    for _ in range(iterations):
        model.item_factors, model.item_bias = _implicit_half_step(
            P.T, C.T, model.user_factors, lam, reg_scale, model.user_bias if biases else None)
        model.user_factors, model.user_bias = _implicit_half_step(
            P, C, model.item_factors, lam, reg_scale, model.item_bias if biases else None)
        model.objectives.append(implicit_objective(P, C, model.user_factors,
                                                   model.item_factors, lam, reg_scale,
                                                   model.user_bias, model.item_bias))
    return model
