"""Project round time and efficiency to rank counts beyond the machine: a model, not a measurement.

round(p) = compute(p) + sum over the round's collectives of count * fit(p, bytes)

compute(p) is the smallest point's measured compute per rank, divided by
w(p)/w0 for strong scaling and kept for weak scaling.  Load imbalance,
evaluation rounds, network contention and the server's aggregation are not
modelled; efficiency is compute / round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mpifl.config import Config
from mpifl.scaling import alphabeta, traffic
from mpifl.scaling.alphabeta import Fit

DEFAULT_RANKS = (64, 128, 256, 512, 1024, 2048, 4096)


@dataclass(frozen=True)
class Projected:
    ranks: int
    workers: int
    compute_seconds: float
    comm_seconds: float
    measured_seconds: float | None = None  # the measured round time at this rank count, if any

    @property
    def seconds(self) -> float:
        return self.compute_seconds + self.comm_seconds

    @property
    def efficiency(self) -> float:
        return self.compute_seconds / self.seconds if self.seconds > 0 else math.nan


@dataclass(frozen=True)
class Inputs:
    """Everything the projection depends on, printed with it."""

    kind: str
    base_ranks: int
    base_workers: int
    base_compute_seconds: float
    base_train_rows: float
    model_size: int
    fits: dict[str, Fit]
    probe_ranks: list[int]  # the rank counts whose probes the fits used


def compute_at(inputs: Inputs, workers: int) -> float:
    if inputs.kind == "weak":
        return inputs.base_compute_seconds
    return inputs.base_compute_seconds * inputs.base_workers / workers


def rows_per_worker(inputs: Inputs, workers: int) -> float:
    if inputs.kind == "weak":
        return inputs.base_train_rows / inputs.base_workers
    return inputs.base_train_rows / workers


def project(cfg: Config, inputs: Inputs, ranks: int, measured: float | None = None) -> Projected:
    w = traffic.workers(cfg.mode, ranks)
    comm = sum(
        c.count * inputs.fits[c.name].seconds(ranks, c.nbytes)
        for c in traffic.per_round(cfg, ranks, rows_per_worker(inputs, w), inputs.model_size)
    )
    return Projected(ranks, w, compute_at(inputs, w), comm, measured)


def fit_all(samples: list[tuple[int, str, float, float]]) -> dict[str, Fit]:
    return {
        name: alphabeta.fit(name, [(p, m, t) for p, c, m, t in samples if c == name])
        for name in alphabeta.COLLECTIVES
    }


def describe(inputs: Inputs, rows: list[Projected]) -> str:
    """The projection as text: labelled as a model, with its inputs, then the table."""
    lines = [
        "PROJECTION (alpha-beta model, not a measurement)",
        (
            f"  inputs: {inputs.kind} scaling from the {inputs.base_ranks}-rank point "
            f"({inputs.base_workers} workers, {inputs.base_compute_seconds * 1e3:.3f} ms compute per round), "
            f"model of {inputs.model_size} parameters, collectives fitted to probes on "
            f"{', '.join(map(str, inputs.probe_ranks))} ranks"
        ),
    ]
    for fit in inputs.fits.values():
        lines.append(
            f"  {fit.collective:<9} alpha {fit.alpha * 1e6:8.2f} us/step  beta {fit.beta * 1e9:8.4f} ns/byte "
            f"({1 / fit.beta / 1e9 if fit.beta > 0 else math.inf:.2f} GB/s)  "
            f"fitted to {fit.points} samples, rms error {fit.rms_relative_error:.0%}"
        )
    lines.append("  not modelled: load imbalance, evaluation rounds, contention, server aggregation")
    lines.append(f"  {'ranks':>6} {'round ms':>10} {'compute ms':>11} {'comm ms':>9} {'efficiency':>10} {'measured ms':>12} {'measured/model':>15}")
    for row in rows:
        measured = "" if row.measured_seconds is None else f"{row.measured_seconds * 1e3:12.3f}"
        ratio = "" if row.measured_seconds is None else f"{row.measured_seconds / row.seconds:15.2f}"
        lines.append(
            f"  {row.ranks:6d} {row.seconds * 1e3:10.3f} {row.compute_seconds * 1e3:11.3f} "
            f"{row.comm_seconds * 1e3:9.3f} {row.efficiency:10.1%} {measured:>12} {ratio:>15}"
        )
    return "\n".join(lines)
