"""One ALS half-step on Spark: one job that solves every block and writes its factors.

For the side being solved, each block (one grouped pandas UDF call, on blocks already
partitioned by ``block``: no shuffle of the ratings) gets its packed ratings and, in its
partition (:mod:`mfspark.engine.route`), the fixed-side rows it references, and

1. solves all its rows with :func:`mfspark.core.block.solve_block`;
2. scores its held-out ratings (the side solved last in an iteration holds them);
3. writes its new factors, its share of the side's Gram matrix (implicit feedback), the
   rows the other side's blocks asked for (when that side is routed) and its terms of the
   objective (:mod:`mfspark.io.factors`).

The objective and the test error are sums over the blocks, collected by an
``Observation`` of the same write: the driver receives scalars only, never a factor.
The seeded start (:func:`seed`) is a job of the same shape without a fixed side.
"""

from __future__ import annotations

import itertools
import tracemalloc
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F

from mfspark.core.block import solve_block
from mfspark.core.implicit import fixed_gramian
from mfspark.core.objective import Objective
from mfspark.core.packing import (FACTOR_TYPES, decode_chunk, decode_factors, decode_keys,
                                  decode_positions, encode_factors)
from mfspark.core.solvers import SolveError
from mfspark.core.state import seeded_factors
from mfspark.engine.blocks import (FIXED, NEEDS, REQUEST, TEST, TRAIN, needs_of,
                                   session_defaults)
from mfspark.io.factors import (FACTOR_WRITE_OPTIONS, FACTORS, GRAM, ROUTED,
                                SOLUTION_CHUNK_BYTES, SOLUTION_SCHEMA, STATS,
                                NonFiniteFactorsError)


SOLUTION_COLUMNS = [field.split()[0] for field in SOLUTION_SCHEMA.split(", ")]


class FixedRowsMissingError(RuntimeError):
    """A block references fixed-side rows that did not reach it (a bug, never data)."""


@dataclass(frozen=True)
class Step:
    """What one half-step (or the seeded start) of one side does, as plain data."""

    side: str
    """``user`` or ``item``: the side solved."""
    objective: Objective
    mu: float
    rank: int
    max_gather: int
    value_bytes: int = 8
    """Bytes per stored factor value: 8 (``float64``) or 4 (``float32``)."""
    gram: bool = False
    """Write the side's Gram matrix (the next half-step, implicit feedback, needs it)."""
    route: bool = False
    """Write the rows the other side's blocks asked for (the next half-step is routed)."""
    clip: tuple[float, float] | None = None
    """Clip held-out predictions to this range before their error is taken."""
    probe: bool = False
    """Measure each block's peak solver memory (``tracemalloc`` around
    :func:`~mfspark.core.block.solve_block`)."""
    seed: int = 0
    what: str = ""
    """Where in the run this is, for messages (``iteration 3, item step``)."""


def _train(pdf: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A block's training ratings (row keys, column positions, ratings), in chunk order."""
    chunks = pdf[pdf["kind"] == TRAIN].sort_values("chunk")
    parts = [decode_chunk(int(n), r, c, v) for n, r, c, v in
             zip(chunks["n"], chunks["rows"], chunks["cols"], chunks["ratings"])]
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0)
    if len(parts) == 1:
        return parts[0]
    return tuple(np.concatenate([p[i].astype(np.float64) if i == 2 else p[i]  # type: ignore
                                 for p in parts]) for i in range(3))


def _blobs(pdf: pd.DataFrame, column: str) -> list[bytes]:
    if column not in pdf:
        return []
    return [b for b in pdf[column] if b is not None and not (isinstance(b, float))]


class FixedRows:
    """The fixed-side rows a block references (``needs``: its training columns, sorted,
    then the columns only its held-out ratings reference, sorted), filled chunk by chunk as
    the chunks arrive: a chunk is scattered into place and dropped, so a worker holds one
    float64 copy of the rows the block needs, never the chunks they came in (nor, when the
    whole side is sent, the rows it does not need)."""

    def __init__(self, needs: np.ndarray, rank: int):
        self.needs = needs
        self.order = np.argsort(needs, kind="stable")
        self.sorted = needs[self.order]
        self.factors = np.zeros((len(needs), rank))
        self.bias = np.zeros(len(needs))
        self.known = np.zeros(len(needs), bool)

    def add(self, keys: np.ndarray, bias: np.ndarray, factors: np.ndarray) -> None:
        if not len(keys) or not len(self.needs):
            return
        pos = np.minimum(np.searchsorted(self.sorted, keys), len(self.sorted) - 1)
        hit = self.sorted[pos] == keys
        at = self.order[pos[hit]]
        self.factors[at] = factors[hit]
        self.bias[at] = bias[hit]
        self.known[at] = True


def read_block(batches: Iterator[pd.DataFrame], rank: int
               ) -> tuple[pd.DataFrame, FixedRows | None]:
    """A block's rows from its Arrow batches: every row but the fixed side's chunks (kept
    as they are: ratings, needs, requests, own factors), and the fixed rows it references,
    decoded as they arrive (:class:`FixedRows`; None when the step has no fixed side)."""
    kept: list[pd.DataFrame] = []
    early: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # chunks before all NEEDS
    needs: list[pd.DataFrame] = []
    fixed: FixedRows | None = None
    for pdf in batches:
        if "fixed" not in pdf:
            kept.append(pdf)
            continue
        if fixed is None and (pdf["kind"] == NEEDS).any():
            needs.append(pdf[pdf["kind"] == NEEDS])
            needed = needs_of(pd.concat(needs))
            if needed is not None:
                fixed = FixedRows(needed, rank)
                for part in early:
                    fixed.add(*part)
                early = []
        for blob in _blobs(pdf, "fixed"):
            keys, bias, factors = decode_factors(blob)
            if fixed is not None:
                fixed.add(keys, bias, factors)
            else:  # copied: the batch's bytes are not kept alive
                early.append((keys.copy(), bias.copy(), factors.copy()))
        kept.append(pdf[pdf["kind"] != FIXED].drop(columns="fixed"))
    rows = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame(
        {"block": [], "kind": []})
    if fixed is None and early:  # chunks but no NEEDS keys: the block references nothing
        fixed = FixedRows(np.zeros(0, np.int64), rank)
    return rows, fixed


def gather(blobs: list[bytes], needs: np.ndarray, rank: int) -> FixedRows | None:
    """The ``needs`` rows out of the factor chunks that arrived (None when none did)."""
    if not blobs:
        return None
    rows = FixedRows(needs, rank)
    for blob in blobs:
        rows.add(*decode_factors(blob))
    return rows


def _rounded(factors: np.ndarray, value_bytes: int) -> np.ndarray:
    """The factors as they are stored (``float32`` rounding with 4 bytes per value)."""
    return factors.astype(FACTOR_TYPES[value_bytes]).astype(np.float64)


def emit(block: int, keys: np.ndarray, factors: np.ndarray, bias: np.ndarray, step: Step,
         requests: pd.DataFrame, stats: dict) -> Iterator[pd.DataFrame]:
    """A block's output rows (:data:`mfspark.io.factors.SOLUTION_SCHEMA`), encoded as they
    are yielded, :data:`OUTPUT_BATCH_ROWS` at a time."""
    per_chunk = max(1, SOLUTION_CHUNK_BYTES // (step.value_bytes * max(step.rank, 1) + 16))

    def factor_chunks(kind: int, dest: int, sel: np.ndarray) -> Iterator[tuple]:
        for k, lo in enumerate(range(0, len(sel), per_chunk)):
            part = sel[lo:lo + per_chunk]
            yield (block, k, kind, dest, encode_factors(keys[part], bias[part], factors[part],
                                                        step.value_bytes),
                   0.0, 0.0, 0.0, 0.0, 0, None, 0, 0, 0)

    def rows() -> Iterator[tuple]:
        yield from factor_chunks(FACTORS, -1, np.arange(len(keys)))
        if step.gram:
            gram = fixed_gramian(_rounded(factors, step.value_bytes), bias,
                                 step.objective.biases)
            yield (block, 0, GRAM, -1, np.ascontiguousarray(gram).tobytes(), 0.0, 0.0, 0.0,
                   0.0, 0, None, 0, 0, 0)
        if step.route and len(keys):
            for target, wanted in zip(requests["target"], requests["rows"]):
                wanted = decode_keys(wanted)
                pos = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
                yield from factor_chunks(ROUTED, int(target), pos[keys[pos] == wanted])
        yield (block, 0, STATS, -1, None, stats.get("sse", 0.0), stats.get("penalty", 0.0),
               stats.get("test_sse", 0.0), stats.get("test_sae", 0.0), stats.get("test_n", 0),
               stats.get("error"), stats.get("peak", 0), stats.get("ratings", 0), len(keys))

    out = rows()
    while batch := list(itertools.islice(out, OUTPUT_BATCH_ROWS)):
        yield pd.DataFrame(batch, columns=SOLUTION_COLUMNS)


def held_out_error(pdf: pd.DataFrame, factors: np.ndarray, bias: np.ndarray,
                   fixed: np.ndarray | None, fixed_bias: np.ndarray | None,
                   known: np.ndarray, step: Step) -> dict:
    """Squared and absolute errors of the block's held-out ratings: ``mu + b + c + u . v``
    where both sides are known, falling back to what is known (docs/model.md)."""
    tests = pdf[pdf["kind"] == TEST]
    if not len(tests):
        return {}
    out = {"test_sse": 0.0, "test_sae": 0.0, "test_n": 0}
    for n, r, c, v in zip(tests["n"], tests["rows"], tests["cols"], tests["ratings"]):
        rows, cols, ratings = decode_positions(int(n), r, c, v)
        has_row = rows >= 0
        has_col = (cols >= 0) & known[np.maximum(cols, 0)] if len(known) else cols < -1
        ri, ci = np.maximum(rows, 0), np.maximum(cols, 0)
        pred = np.full(len(rows), step.mu)
        if len(bias):
            pred += np.where(has_row, bias[ri], 0.0)
        if fixed is not None:
            pred += np.where(has_col, fixed_bias[ci], 0.0)
            both = has_row & has_col
            if both.any() and len(factors):
                pred[both] += np.einsum("nk,nk->n", factors[ri[both]], fixed[ci[both]])
        if step.clip is not None:
            pred = np.clip(pred, *step.clip)
        err = np.asarray(ratings, dtype=np.float64) - pred
        out["test_sse"] += float(err @ err)
        out["test_sae"] += float(np.abs(err).sum())
        out["test_n"] += len(err)
    return out


def _own(pdf: pd.DataFrame, keys: np.ndarray, k1: int, biases: bool) -> np.ndarray | None:
    """The block's previous unknowns (factors, then the bias with biases), aligned with
    ``keys``; None when none arrived."""
    given = gather(_blobs(pdf, "own"), keys, k1 - int(biases))
    if given is None:
        return None
    return np.column_stack([given.factors, given.bias]) if biases else given.factors


def solve_group(batches: Iterator[pd.DataFrame], step: Step) -> Iterator[pd.DataFrame]:
    """The grouped UDF of a half-step: one block's batches in, its output rows out."""
    pdf, arrived = read_block(batches, step.rank)
    block = int(pdf["block"].iloc[0])
    requests = pdf[pdf["kind"] == REQUEST]
    stats: dict = {}
    keys, factors, bias = np.zeros(0, np.int64), np.zeros((0, step.rank)), np.zeros(0)
    try:
        rows, cols, ratings = _train(pdf)
        stats["ratings"] = len(rows)
        needs = needs_of(pdf)
        needs = np.zeros(0, np.int64) if needs is None else needs
        # the training columns come first in the needs, and each occurs in a rating
        n_train = int(cols.max()) + 1 if len(cols) else 0
        if arrived is None or len(arrived.needs) != len(needs):  # none arrived for them
            arrived = FixedRows(needs, step.rank)
        fixed, fixed_bias, known = arrived.factors, arrived.bias, arrived.known
        if not known[:n_train].all():
            missing = needs[:n_train][~known[:n_train]]
            raise FixedRowsMissingError(
                f"{step.what}: {step.side} block {block} did not receive the fixed rows of "
                f"{len(missing)} keys it references (first: {missing[:5].tolist()})")
        grams = [np.frombuffer(b, dtype=np.float64) for b in _blobs(pdf, "gram")]
        gram = None
        if step.objective.implicit:
            k2 = step.rank + (2 if step.objective.biases else 0)
            gram = np.sum(grams, axis=0).reshape(k2, k2) if grams else np.zeros((k2, k2))
        if len(rows):
            starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
            keys = rows[starts]
            position = np.repeat(np.arange(len(keys)), np.diff(np.r_[starts, len(rows)]))
            k1 = step.rank + int(step.objective.biases)
            previous = (_own(pdf, keys, k1, step.objective.biases)
                        if step.objective.cg_steps else None)
            if step.probe:  # the solver's own allocations (its memory bound's subject)
                tracemalloc.start()
            try:
                sol = solve_block(position, cols, ratings, fixed[:n_train],
                                  fixed_bias[:n_train], step.mu, step.objective,
                                  step.max_gather, fixed_gram=gram, previous=previous)
            finally:
                if step.probe:
                    stats["peak"] = tracemalloc.get_traced_memory()[1]
                    tracemalloc.stop()
            factors, bias = sol.factors, sol.bias
            stats["sse"], stats["penalty"] = float(sol.sse.sum()), float(sol.penalty.sum())
            if not (np.isfinite(factors).all() and np.isfinite(bias).all()
                    and np.isfinite(stats["sse"])):
                raise NonFiniteFactorsError(
                    f"{step.what}: NaN or infinite values in {step.side} block {block}; lower "
                    "the rank or raise the regularization")
        stats.update(held_out_error(pdf, factors, bias, fixed, fixed_bias, known, step))
    except (SolveError, NonFiniteFactorsError) as err:
        stats["error"] = f"{type(err).__name__}: {step.what}: {step.side} block {block}: {err}"
    pdf = arrived = fixed = fixed_bias = known = None  # the output is encoded without them
    yield from emit(block, keys, factors, bias, step, requests, stats)


def seed_group(batches: Iterator[pd.DataFrame], step: Step) -> Iterator[pd.DataFrame]:
    """The grouped UDF of the seeded start: each row starts from the factors that reached
    its block as ``OWN`` rows when given, else from :func:`mfspark.core.state.seeded_factors` of
    its key (``|.|`` for nonnegative factors), with a zero bias; its penalty is recorded."""
    pdf = pd.concat(list(batches), ignore_index=True)
    block = int(pdf["block"].iloc[0])
    rows, _, ratings = _train(pdf)
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if len(rows) else np.zeros(0, int)
    keys = rows[starts]
    factors = seeded_factors(keys, step.rank, step.seed)
    if step.objective.nonnegative:
        factors = np.abs(factors)
    bias = np.zeros(len(keys))
    given = gather(_blobs(pdf, "own"), keys, step.rank)
    if given is not None:
        factors[given.known], bias[given.known] = (given.factors[given.known],
                                                   given.bias[given.known])
    counts = np.diff(np.r_[starts, len(rows)])
    if step.objective.implicit:  # lambda scales with the values > 0 (MLlib's numExplicits)
        counts = np.add.reduceat((ratings > 0).astype(np.int64), starts) if len(starts) \
            else counts
    stored = _rounded(factors, step.value_bytes)
    penalty = float(step.objective.penalty(stored, bias, counts).sum())
    yield from emit(block, keys, stored, bias, step, pdf[pdf["kind"] == REQUEST],
                    {"penalty": penalty, "ratings": len(rows)})


#: Output rows (factor chunks of at most ``SOLUTION_CHUNK_BYTES``) per Arrow batch.
OUTPUT_BATCH_ROWS = 32
#: Session settings of a half-step's job (unless the user has made them): a block's rows
#: cross to its Python worker a few chunks at a time, and a union of frames partitioned
#: alike keeps their partitions together (the routed rows reach the partition of their
#: block, and grouping by block needs no shuffle).
HALF_STEP_SETTINGS = {"spark.sql.execution.arrow.maxRecordsPerBatch": str(OUTPUT_BATCH_ROWS),
                      "spark.sql.unionOutputPartitioning": "true"}


def _metrics() -> tuple:
    """What the driver collects from every half-step's write: sums over the blocks."""
    return (F.sum("sse").alias("sse"), F.sum("penalty").alias("penalty"),
            F.sum("test_sse").alias("test_sse"), F.sum("test_sae").alias("test_sae"),
            F.sum("test_n").alias("test_n"), F.max("error").alias("error"),
            F.max("peak").alias("peak"), F.sum("rows").alias("rows"))


def run(frame: DataFrame, step: Step, path: str, group=solve_group) -> dict:
    """Run ``group`` over every block of ``frame`` (packed blocks with their joins), write
    the result to ``path`` and return the observed sums; a block's failure (a singular
    system, non-finite factors) is raised here, on the driver, with its message."""

    def udf(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        # the iterator form: a block's rows arrive in Arrow batches (the fixed chunks are
        # decoded as they come), and its output (the factor chunks, and their routed copies)
        # leaves in batches of a few chunks, so that no buffer on either side of the worker
        # holds a block's share at once
        return group(batches, step)

    observation = Observation()
    with session_defaults(frame.sparkSession, HALF_STEP_SETTINGS):
        (frame.groupBy("block").applyInPandas(udf, SOLUTION_SCHEMA)
         .observe(observation, *_metrics())
         .write.mode("overwrite").options(**FACTOR_WRITE_OPTIONS).parquet(path))
    got = dict(observation.get)
    error = got.get("error")
    if error:
        kind, _, message = error.partition(": ")
        raise (NonFiniteFactorsError if kind == "NonFiniteFactorsError" else SolveError)(message)
    return {k: (v if v is not None else 0) for k, v in got.items()}
