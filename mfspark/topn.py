"""Top-N recommendations for a few users from factors held on the driver (pure NumPy)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def top_n(user_factors: np.ndarray, user_bias: np.ndarray, item_factors: np.ndarray,
          item_bias: np.ndarray, mu: float, n: int,
          exclude: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best items for each given user, scored ``mu + b_i + c_j + u_i . v_j``.

    ``exclude[r]`` lists item indices never to recommend to user ``r`` (what it rated).
    Returns (item indices, scores), each of shape (users, n), best first; a user with fewer
    than ``n`` eligible items gets -1 / NaN in the remaining places.
    """
    scores = user_factors @ item_factors.T + item_bias[None, :] + (user_bias[:, None] + mu)
    for r, seen in enumerate(exclude or []):
        scores[r, np.asarray(seen, dtype=np.int64)] = -np.inf
    n_take = min(n, scores.shape[1])
    best = np.argsort(-scores, axis=1, kind="stable")[:, :n_take]
    picked = np.take_along_axis(scores, best, axis=1)
    best = np.where(np.isfinite(picked), best, -1)
    picked = np.where(np.isfinite(picked), picked, np.nan)
    if n_take < n:
        pad = n - n_take
        best = np.pad(best, ((0, 0), (0, pad)), constant_values=-1)
        picked = np.pad(picked, ((0, 0), (0, pad)), constant_values=np.nan)
    return best, picked
