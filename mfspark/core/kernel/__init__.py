"""The compiled per-row loops of :func:`mfspark.core.block.solve_block` (Numba).

Each row of a block is gathered, built and solved in machine code calling SciPy's BLAS and
LAPACK (:mod:`~mfspark.core.kernel.compile`), so a row costs its flops and not about 10 us
of Python calls (``benchmarks/gram_methods.py`` times it against the NumPy methods of
:mod:`mfspark.core.normal`):

- :func:`row_solve` (:mod:`~mfspark.core.kernel.rows`): exact solves, dual form for short
  rows, weighted systems with a base matrix and a shift (implicit feedback), and the
  nonnegative solve of every row;
- :func:`cg_rows` (:mod:`~mfspark.core.kernel.cg`): conjugate-gradient steps, matrix-free.

Numba is optional: without it, or with ``MFSPARK_KERNEL=python`` in the environment (read
in each Python worker), :func:`available` is False and the solver runs the NumPy path.
"""

from __future__ import annotations

import os

from mfspark.core.kernel.cg import cg_rows
from mfspark.core.kernel.compile import READY
from mfspark.core.kernel.rows import NNLS_TOLERANCE, row_solve

__all__ = ["KERNEL_ENV", "NNLS_TOLERANCE", "available", "cg_rows", "row_solve"]

#: Set to ``python`` to run the NumPy path even where Numba is installed.
KERNEL_ENV = "MFSPARK_KERNEL"


def available() -> bool:
    """Whether :func:`mfspark.core.block.solve_block` may use the compiled loops in this
    process: Numba and SciPy's BLAS/LAPACK entry points were found, and
    :data:`KERNEL_ENV` is not ``python``."""
    return READY and os.environ.get(KERNEL_ENV, "").lower() != "python"
