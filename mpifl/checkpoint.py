"""Checkpoint files: atomic writes, and a fingerprint of what a run depends on.

A checkpoint of round r is committed in two steps:
1. every rank writes ``rank_RRRRR_round_NNNNNNNN.npz`` with its own state
   (its momentum buffer, for example), which never leaves that rank;
2. after a barrier, rank 0 writes ``state_round_NNNNNNNN.npz`` (round, global
   parameters, server state, metrics so far) and then atomically replaces
   ``latest.json``, the pointer that --resume reads.
Rank files of the last two checkpoints are kept, so a crash between the two
steps still leaves the checkpoint that latest.json names complete.
Random streams are keyed by (seed, round, client), so the round number is the
whole RNG state.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from mpifl.config import Config
from mpifl.errors import MpiflError
from mpifl.npzio import read_npz, write_npz
from mpifl.stopping import resume_command

__all__ = ["read_npz", "write_npz"]

FORMAT_VERSION = 1
# Keys a resumed run may change without changing what it computes.
_FREE_KEYS = ("rounds", "log_every", "checkpoint.every", "data.verify")


def fingerprint(cfg: Config) -> str:
    """sha256 of every config value that affects the trained parameters."""
    items = {k: v for k, v in cfg.values.items() if k not in _FREE_KEYS}
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()


def rank_file(directory: Path, rank: int, rnd: int) -> Path:
    return directory / f"rank_{rank:05d}_round_{rnd:08d}.npz"


def state_file(directory: Path, rnd: int) -> Path:
    return directory / f"state_round_{rnd:08d}.npz"


def write_latest(directory: Path, meta: dict) -> None:
    tmp = directory / "latest.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, directory / "latest.json")


def read_latest(directory: Path) -> dict:
    path = directory / "latest.json"
    try:
        meta = json.loads(path.read_text())
    except OSError:
        raise MpiflError(f"No checkpoint to resume from: {path} does not exist.") from None
    except json.JSONDecodeError as exc:
        raise MpiflError(f"Checkpoint pointer {path} is corrupt: {exc}.") from None
    if meta.get("format") != FORMAT_VERSION:
        raise MpiflError(f"Checkpoint {path} has format {meta.get('format')!r}; this mpifl reads {FORMAT_VERSION}.")
    return meta


def check_compatible(meta: dict, cfg: Config, ranks: int, directory: Path) -> None:
    """Refuse a checkpoint from another config or another rank count."""
    if meta["ranks"] != ranks:
        raise MpiflError(
            f"The checkpoint in {directory} was written by {meta['ranks']} ranks; this job has {ranks}. "
            f"Resume with: {resume_command(directory, meta['ranks'])}"
        )
    if meta["fingerprint"] != fingerprint(cfg):
        raise MpiflError(
            f"The checkpoint in {directory} was written with a different config; only "
            + ", ".join(_FREE_KEYS) + " may change on resume."
        )
    if meta["round"] >= cfg.rounds:
        raise MpiflError(
            f"The checkpoint in {directory} is at round {meta['round']} and the job has rounds = "
            f"{cfg.rounds}: nothing is left to run. Raise rounds (--set rounds=N) to continue."
        )


def remove_older(directory: Path, pattern: str, keep_from: int) -> None:
    """Delete this rank's files of rounds before ``keep_from``."""
    for path in directory.glob(pattern):
        if int(path.stem.rsplit("_", 1)[1]) < keep_from:
            path.unlink(missing_ok=True)
