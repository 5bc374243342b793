"""Timers, per-round records, and the run directory (written by one rank only)."""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from mpifl.errors import ConfigError, MpiflError
from mpifl.npzio import write_npz


@dataclass
class RoundTimer:
    """Seconds spent computing and communicating since the last reset, and the bytes the collectives
    moved: what this rank broadcast to the others or gathered from them (mpifl.comm counts them)."""

    compute_seconds: float = 0.0
    comm_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    downlink_bytes: int = 0
    uplink_bytes: int = 0
    uplink_bytes_saved: int = 0  # with [compress], distributed: what compression kept off the uplink

    @contextmanager
    def compute(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.compute_seconds += time.perf_counter() - t0

    @contextmanager
    def comm(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.comm_seconds += time.perf_counter() - t0

    def reset(self) -> None:
        self.compute_seconds = 0.0
        self.comm_seconds = 0.0
        self.started = time.perf_counter()
        self.downlink_bytes = 0
        self.uplink_bytes = 0
        self.uplink_bytes_saved = 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


RUN_FILES = ("config.toml", "metrics.jsonl", "summary.json", "model.npz", "model_best.npz", "model.pt", "checkpoint")


def default_run_dir(mode: str) -> Path:
    """runs/<mode>-<timestamp>, with -2, -3, ... when a run of the same second already has it."""
    base = Path("runs") / f"{mode}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def claim_run_dir(directory: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a directory that holds another run, unless resuming it or told to write over it."""
    held = [name for name in RUN_FILES if (directory / name).exists()]
    if not held or resume:
        return
    if not overwrite:
        raise ConfigError(
            f"The run directory {directory} already holds a run ({', '.join(held)}). Continue it with "
            f"--resume {directory}, write over it with --overwrite, or choose another --out."
        )
    for name in held:
        path = directory / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


CLIENTS_DIR = "clients"  # evaluate.per_client's files in a run directory


def read_client_figures(directory: Path, rnd: int | None = None) -> dict[str, np.ndarray]:
    """The per-client figures (evaluate.per_client) of round ``rnd``, or of the last recorded round."""
    folder = Path(directory) / CLIENTS_DIR
    files = sorted(folder.glob("round_*.npz"))
    if not files:
        raise MpiflError(f"{folder} holds no per-client figures: run with evaluate.per_client = true.")
    path = files[-1] if rnd is None else folder / f"round_{rnd:06d}.npz"
    if not path.is_file():
        raise MpiflError(f"{path} does not exist: round {rnd} was not recorded.")
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


class RunWriter:
    """Writes config.toml, metrics.jsonl, summary.json and model.npz into one directory.

    Only the rank that owns the writer touches the file system; metrics are
    flushed line by line so an interrupted run keeps every finished round.
    """

    def __init__(self, directory: Path, config: dict[str, Any]):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.toml").write_text(tomli_w.dumps(config))
        self._metrics = open(directory / "metrics.jsonl", "w", buffering=1)

    def record(self, record) -> None:
        """One round's line of metrics.jsonl (a progress.RoundRecord)."""
        self._metrics.write(record.json_line() + "\n")

    def client_detail(self, rnd: int, detail: dict[str, np.ndarray]) -> None:
        """A recorded round's per-client figures (evaluate.per_client), beside metrics.jsonl: one compact file per
        round, so that a record stays a few kilobytes whatever the population."""
        folder = self.directory / CLIENTS_DIR
        folder.mkdir(exist_ok=True)
        write_npz(folder / f"round_{rnd:06d}.npz", detail)

    def finish(self, summary: dict[str, Any], theta: np.ndarray, best: np.ndarray | None = None) -> None:
        """The final model, the best round's (mpifl.selection) where one was judged, and the summary."""
        self._metrics.close()
        write_npz(self.directory / "model.npz", {"theta": theta})
        if best is not None:
            write_npz(self.directory / "model_best.npz", {"theta": best, "round": np.array(summary["best_round"])})
        self._write_summary(summary)

    def stopped(self, summary: dict[str, Any]) -> None:
        """A run stopped by a signal or by divergence: its checkpoint, not model.npz, holds the state."""
        self._metrics.close()
        self._write_summary(summary)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """summary.json alone (a model kind that writes its own model file, mpifl.trees)."""
        self._write_summary(summary)

    def _write_summary(self, summary: dict[str, Any]) -> None:
        """Strict JSON: a NaN or infinity is written as null."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
        (self.directory / "summary.json").write_text(json.dumps(clean, indent=2, allow_nan=False) + "\n")

    def close(self) -> None:
        if not self._metrics.closed:
            self._metrics.close()
