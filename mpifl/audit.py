"""A record of every file a rank opens, from Python's "open" audit events.

This is how mpifl shows its privacy boundary: with --audit (or MPIFL_AUDIT=1)
each rank writes the files it opened during the run to
RUN_DIR/audit/rank_RRRRR.txt.  open(), io.open, os.open, np.load and
np.memmap all raise the event; file descriptors (ints) are skipped, since
the path was recorded when they were opened.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "MPIFL_AUDIT"


class OpenedFiles:
    """Paths opened while recording, in first-open order, with the first mode seen."""

    def __init__(self) -> None:
        self.recording = False
        self.opened: dict[str, str] = {}
        self._installed = False

    def _hook(self, event: str, args: tuple) -> None:
        if not self.recording or event != "open":
            return
        path = args[0]
        if isinstance(path, int) or path is None:
            return
        mode = args[1] if len(args) > 1 and isinstance(args[1], str) else "r"
        self.opened.setdefault(os.path.abspath(os.fsdecode(path)), mode)

    def start(self) -> None:
        if not self._installed:  # an audit hook cannot be removed, so install one per process
            sys.addaudithook(self._hook)
            self._installed = True
        self.opened = {}
        self.recording = True

    def stop(self) -> dict[str, str]:
        self.recording = False
        return dict(self.opened)


RECORDER = OpenedFiles()


def requested(flag: bool = False) -> bool:
    return flag or os.environ.get(ENV, "") not in ("", "0")


def audit_file(run_dir: Path, rank: int) -> Path:
    return Path(run_dir) / "audit" / f"rank_{rank:05d}.txt"


def write(run_dir: Path, rank: int, opened: dict[str, str]) -> Path:
    path = audit_file(run_dir, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{mode}\t{name}\n" for name, mode in opened.items()))
    return path


def read(run_dir: Path, rank: int) -> dict[str, str]:
    lines = audit_file(run_dir, rank).read_text().splitlines()
    return {name: mode for mode, name in (line.split("\t", 1) for line in lines)}
