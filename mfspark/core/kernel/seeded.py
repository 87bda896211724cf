"""Seeded start vectors, compiled: each entry a function of ``(seed, key, coordinate)``.

A counter-based generator (SplitMix64's finalizer over the key's and the coordinate's
counters) gives two uniforms per pair of coordinates and the Box-Muller transform turns
them into standard normals, so a row's start depends on nothing but its key and the seed:
not on which block, partition or process draws it.  :func:`mfspark.core.state.seeded_factors`
is the NumPy twin (the same numbers) used where Numba is absent.
"""

from __future__ import annotations

import math

import numpy as np

from mfspark.core.kernel.compile import jit

from mfspark.core.packing import GOLDEN, MIX_A, MIX_B

#: The counter step between a key's coordinates.
STEP = 0x632BE59BD9B4E019
MASK = (1 << 64) - 1


@jit
def _mix(x):  # pragma: no cover - compiled
    x ^= x >> np.uint64(30)
    x *= np.uint64(MIX_A)
    x ^= x >> np.uint64(27)
    x *= np.uint64(MIX_B)
    x ^= x >> np.uint64(31)
    return x


@jit
def normals(keys, rank, seed, out):  # pragma: no cover - compiled
    # out[r, j]: standard normal j of key keys[r] (rank columns)
    two_pi = 2.0 * math.pi
    for r in range(keys.shape[0]):
        base = _mix(np.uint64(keys[r]) * np.uint64(GOLDEN) + np.uint64(seed))
        for j in range(0, rank, 2):
            a = _mix(base + np.uint64(STEP) * np.uint64(j + 1))
            b = _mix(base + np.uint64(STEP) * np.uint64(j + 2))
            u1 = (np.float64(a >> np.uint64(11)) + 0.5) / 9007199254740992.0
            u2 = (np.float64(b >> np.uint64(11)) + 0.5) / 9007199254740992.0
            radius = math.sqrt(-2.0 * math.log(u1))
            out[r, j] = radius * math.cos(two_pi * u2)
            if j + 1 < rank:
                out[r, j + 1] = radius * math.sin(two_pi * u2)
