"""How a half-step's UDF reads a block: the fixed rows it needs, out of the chunks that
arrive (no Spark: the batches are built here as Spark would hand them over)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mfspark.core.packing import encode_factors, encode_keys
from mfspark.engine.blocks import FIXED, NEEDS, TRAIN
from mfspark.engine.halfstep import read_block


def _rows(kind: int, **values) -> pd.DataFrame:
    row = {"block": 3, "chunk": 0, "kind": kind, "n": 0, "rows": b"", "fixed": None}
    row.update(values)
    return pd.DataFrame([row])


def test_fixed_rows_land_where_the_needs_list_them_whenever_they_arrive():
    """A block's needs are its training columns (sorted), then the columns only its
    held-out ratings reference (sorted): not one sorted list.  Every needed row gets its
    factors and bias whether its chunk arrives before, between or after the NEEDS rows
    (the needs in two rows, in any order); rows the block does not need are dropped, and a
    needed row no chunk holds stays unknown."""
    rng = np.random.default_rng(0)
    keys = np.arange(0, 200, 2)  # the fixed side: even keys
    factors, bias = rng.standard_normal((len(keys), 3)), rng.standard_normal(len(keys))
    needs = np.r_[[4, 10, 50, 120], [2, 60, 198, 199]]  # train part, then held-out part
    chunk = lambda sel: _rows(FIXED, fixed=encode_factors(keys[sel], bias[sel],  # noqa: E731
                                                           factors[sel]))
    halves = [_rows(NEEDS, chunk=k, n=len(needs), rows=encode_keys(part))
              for k, part in enumerate((needs[:5], needs[5:]))]
    for order in ("before", "after", "around"):
        batches = [_rows(TRAIN, n=1), chunk(slice(0, 40))]
        batches = {"before": halves[::-1] + batches, "after": batches + halves,
                   "around": halves[1:] + batches + halves[:1]}[order] \
            + [pd.concat([chunk(slice(40, 80)), chunk(slice(80, 100))])]
        rows, fixed = read_block(iter(batches), rank=3)
        assert sorted(rows["kind"]) == [TRAIN, NEEDS, NEEDS] and "fixed" not in rows
        np.testing.assert_array_equal(fixed.needs, needs)
        assert fixed.known.tolist() == [True] * 7 + [False]  # 199 is odd: nowhere
        at = needs[:7] // 2
        np.testing.assert_array_equal(fixed.factors[:7], factors[at])
        np.testing.assert_array_equal(fixed.bias[:7], bias[at])
        assert not fixed.factors[7].any() and fixed.bias[7] == 0.0
