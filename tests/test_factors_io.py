"""Factor Parquet round trip and the non-finite guard naming the iteration and side."""

from __future__ import annotations

import numpy as np
import pytest

from mfspark.halfstep import Side
from mfspark.io.factors import NonFiniteFactorsError, read_side, write_side


def test_round_trip_is_exact(spark, tmp_path):
    rng = np.random.default_rng(0)
    side = Side(rng.standard_normal((5, 3)), rng.standard_normal(5), np.arange(5))
    write_side(spark, str(tmp_path / "f"), side)
    back, sse = read_side(spark, str(tmp_path / "f"), side.counts, 3)
    np.testing.assert_array_equal(back.factors, side.factors)
    np.testing.assert_array_equal(back.bias, side.bias)
    assert sse == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_factors_name_iteration_and_side(spark, tmp_path, bad):
    side = Side(np.ones((4, 2)), np.zeros(4), np.ones(4, dtype=np.int64))
    side.factors[2, 1] = bad
    write_side(spark, str(tmp_path / "f"), side)
    with pytest.raises(NonFiniteFactorsError, match="iteration 3, item step: NaN or infinite"):
        read_side(spark, str(tmp_path / "f"), side.counts, 2, what="iteration 3, item step")
