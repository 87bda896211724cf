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


def block_top_k(user_factors: np.ndarray, user_bias: np.ndarray, item_factors: np.ndarray,
                item_bias: np.ndarray, mu: float, k: int,
                seen: tuple[np.ndarray, np.ndarray] | None = None,
                max_elements: int = 1 << 22) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` best items of each user within one (user block, item block) pair.

    Scores ``mu + b_i + c_j + u_i . v_j`` are computed as one matrix product per chunk of
    users (at most ``max_elements`` scores in memory at a time) and cut to each user's ``k``
    best with ``argpartition`` (unordered: the caller merges the blocks' candidates).
    ``seen = (user positions, item positions)`` marks pairs never to recommend.

    Returns
    -------
    rows, cols, scores : ndarray
        Flat arrays of the kept candidates: user position, item position, score.
    """
    n_users, n_items = len(user_bias), len(item_bias)
    take = min(k, n_items)
    if take <= 0 or n_users == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    masked = seen is not None and len(seen[0]) > 0
    if masked:
        order = np.argsort(seen[0], kind="stable")
        seen_rows, seen_cols = seen[0][order], seen[1][order]
    step = max(1, max_elements // max(n_items, 1))
    out_rows, out_cols, out_scores = [], [], []
    for lo in range(0, n_users, step):
        hi = min(lo + step, n_users)
        scores = user_factors[lo:hi] @ item_factors.T + item_bias[None, :]
        scores += (user_bias[lo:hi] + mu)[:, None]
        if masked:
            a, b = np.searchsorted(seen_rows, [lo, hi])
            scores[seen_rows[a:b] - lo, seen_cols[a:b]] = -np.inf
        best = (np.argpartition(-scores, take - 1, axis=1)[:, :take] if take < n_items
                else np.broadcast_to(np.arange(n_items), (hi - lo, n_items)))
        picked = np.take_along_axis(scores, best, axis=1)
        keep = np.isfinite(picked)
        out_rows.append(np.nonzero(keep)[0] + lo)
        out_cols.append(best[keep])
        out_scores.append(picked[keep])
    return np.concatenate(out_rows), np.concatenate(out_cols), np.concatenate(out_scores)
