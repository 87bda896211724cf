"""The search space of model selection: which values of ``rank``, ``reg``, ``reg_scale`` and
``iterations`` to try, as a full grid or a seeded random sample of it.

A space is a mapping from parameter name to a non-empty list of values; a parameter left out
keeps the base configuration's value.  Candidates are ``ALSParams`` field dictionaries.
Bad input raises :class:`GridError` naming the parameter and the value.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from mfspark.config import ALSParams, ConfigError
from mfspark.errors import MfsparkValueError

#: The parameters a search may vary.
TUNABLE = ("rank", "reg", "reg_scale", "iterations")

Candidate = dict[str, Any]


class GridError(MfsparkValueError):
    """A search space is empty, names an unknown parameter or holds a bad value."""


def validate_space(space: Mapping[str, Sequence[Any]], base: ALSParams) -> dict[str, list[Any]]:
    """Check ``space`` and return it with sorted, de-duplicated value lists.

    Every value is checked by building the ``ALSParams`` it would give (so ``reg=-1`` is
    refused here, before any fitting, with the config's message).
    """
    unknown = sorted(set(space) - set(TUNABLE))
    if unknown:
        raise GridError(f"unknown search parameter(s) {unknown}; tunable: {list(TUNABLE)}")
    out: dict[str, list[Any]] = {}
    for name in TUNABLE:
        if name not in space:
            continue
        values = space[name]
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise GridError(f"search parameter {name!r} needs a list of values, got {values!r}")
        if not values:
            raise GridError(f"search parameter {name!r} has an empty list of values")
        for value in values:
            try:
                dataclasses.replace(base, **{name: value})
            except (ConfigError, TypeError) as err:
                raise GridError(f"search parameter {name!r}: {err}") from None
        out[name] = sorted(set(values), key=lambda v: (str(type(v)), v))
    if not out:
        raise GridError(f"the search space is empty: give values for at least one of "
                        f"{list(TUNABLE)}")
    return out


def grid_candidates(space: Mapping[str, Sequence[Any]], base: ALSParams) -> list[Candidate]:
    """Every combination of the space's values (the other tunables from ``base``)."""
    space = validate_space(space, base)
    names = list(TUNABLE)
    lists = [space.get(n, [getattr(base, n)]) for n in names]
    return [dict(zip(names, combo)) for combo in itertools.product(*lists)]


def random_candidates(space: Mapping[str, Sequence[Any]], base: ALSParams, trials: int,
                      seed: int = 0,
                      reg_range: tuple[float, float] | None = None) -> list[Candidate]:
    """``trials`` distinct candidates drawn with a seeded generator.

    Each parameter is drawn uniformly from its list; with ``reg_range=(lo, hi)``, ``reg`` is
    drawn log-uniformly from that interval instead (rounded to 4 significant digits).  When the
    grid has fewer than ``trials`` points, the whole grid is returned.
    """
    if not isinstance(trials, int) or trials < 1:
        raise GridError(f"random search needs trials >= 1, got {trials!r}")
    if reg_range is not None:
        lo, hi = reg_range
        if not (0 < lo <= hi and math.isfinite(hi)):
            raise GridError(f"reg_range must be 0 < low <= high, got {reg_range!r}")
        if "reg" in space:
            raise GridError("give reg either as a list or as reg_range, not both")
    fixed = {k: v for k, v in space.items()}
    if reg_range is None:
        full = grid_candidates(fixed, base)
        if len(full) <= trials:
            return full
        return random.Random(seed).sample(full, trials)
    lists = validate_space(fixed, base) if fixed else {}
    rng = random.Random(seed)
    seen: list[Candidate] = []
    for _ in range(trials * 100):
        if len(seen) == trials:
            break
        cand = {n: rng.choice(lists[n]) if n in lists else getattr(base, n) for n in TUNABLE}
        cand["reg"] = float(f"{math.exp(rng.uniform(math.log(lo), math.log(hi))):.4g}")
        if cand not in seen:
            seen.append(cand)
    return seen
