"""Timers, per-round records, and the run directory (written by one rank only)."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import tomli_w


@dataclass
class RoundTimer:
    """Seconds spent computing and communicating since the last reset."""

    compute_seconds: float = 0.0
    comm_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)

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

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def default_run_dir(mode: str) -> Path:
    return Path("runs") / f"{mode}-{time.strftime('%Y%m%d-%H%M%S')}"


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

    def record(self, row: dict[str, Any]) -> None:
        self._metrics.write(json.dumps(row) + "\n")

    def finish(self, summary: dict[str, Any], theta: np.ndarray) -> None:
        self._metrics.close()
        save_model(self.directory / "model.npz", theta)
        (self.directory / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    def close(self) -> None:
        if not self._metrics.closed:
            self._metrics.close()


def save_model(path: Path, theta: np.ndarray) -> None:
    """Write theta as .npz with fixed zip timestamps, atomically.

    np.savez stamps the current time into the archive, which would make two
    identical runs produce different bytes; determinism is checked bitwise.
    """
    payload = io.BytesIO()
    np.lib.format.write_array(payload, np.ascontiguousarray(theta), allow_pickle=False)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(zipfile.ZipInfo("theta.npy", date_time=(1980, 1, 1, 0, 0, 0)), payload.getvalue())
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
