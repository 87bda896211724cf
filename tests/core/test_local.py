"""The in-process fit (the benchmark's floor) against the pure-NumPy reference."""

from __future__ import annotations

import numpy as np

from mfspark.core import reference
from mfspark.core.local import fit_in_memory
from mfspark.core.objective import Objective
from mfspark.core.state import init_factors

from conftest import random_ratings, rel_err


def test_in_memory_floor_equals_reference():
    users, items, ratings = random_ratings(30, 20, 0.3, seed=5)
    V0 = init_factors(20, 3, seed=1)
    got = fit_in_memory(users, items, ratings, 30, 20, Objective(0.5, "none"), rank=3,
                        iterations=3, initial_items=V0)
    ref = reference.als(users, items, ratings, 30, 20, V0, 0.5, "none", 3)
    assert rel_err(got.users.factors, ref.user_factors) <= 1e-9
    assert rel_err(got.items.bias, ref.item_bias) <= 1e-9
    np.testing.assert_allclose([h["objective"] for h in got.history], ref.objectives, rtol=1e-9)
