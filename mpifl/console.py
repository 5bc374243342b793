"""What rank 0 shows while a job runs: a live progress bar on a terminal, plain lines in a batch log.

A bar redraws in place, which is what a person at a terminal wants and what
a Slurm output file does not: there every recorded round stays one line, as
before.  tqdm draws the bar and estimates the time left.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

from mpifl.progress import RoundRecord


LAUNCHERS = ("mpiexec", "mpirun", "mpiexec.hydra", "orterun", "prterun", "prun")  # whose stdout a person may watch
PROXIES = ("hydra_pmi_proxy", "orted", "prted")  # between a launcher and its ranks


def watched(stream: TextIO) -> bool:
    """Whether a person is watching: MPIFL_PROGRESS=bar or lines decides, else a terminal at the end of stdout.

    Under mpiexec every rank writes into a pipe to the launcher, so the
    launcher's own stdout (found through /proc, on Linux) is what tells a
    terminal from a log file or a pipe.  srun, sbatch and redirections give lines.
    """
    choice = os.environ.get("MPIFL_PROGRESS", "").strip().lower()
    if choice in ("bar", "lines"):
        return choice == "bar"
    if stream.isatty():
        return True
    pid = os.getppid()
    for _ in range(4):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            if name in LAUNCHERS:
                return os.readlink(f"/proc/{pid}/fd/1").startswith(("/dev/pts/", "/dev/tty"))
            if name not in PROXIES:
                return False
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


class Console:
    """Shows the recorded rounds of one run; only the rank that prints makes one."""

    def __init__(self, rounds: int, first_round: int = 0, stream: TextIO | None = None, live: bool | None = None):
        self.stream = stream if stream is not None else sys.stdout
        self.live = watched(self.stream) if live is None else live
        self._bar = None
        if self.live:
            from tqdm import tqdm

            self._bar = tqdm(total=rounds, initial=first_round, unit="round", file=self.stream, leave=True,
                             dynamic_ncols=True, bar_format="{l_bar}{bar}| {n}/{total} rounds [{elapsed}<{remaining}{postfix}]")

    def show(self, record: RoundRecord) -> None:
        if self._bar is None:
            print(record.line(), file=self.stream, flush=True)
            return
        acc = "n/a" if record.accuracy is None or record.accuracy != record.accuracy else f"{record.accuracy:.4f}"
        self._bar.set_postfix_str(f"loss {record.loss:.5f}, acc {acc}, {record.seconds * 1e3:.2f} ms/round",
                                  refresh=False)
        self._bar.update(record.round - self._bar.n)

    def say(self, text: str) -> None:
        """A message between rounds, printed above the bar instead of through it."""
        if self._bar is None:
            print(text, file=self.stream, flush=True)
        else:
            self._bar.write(text, file=self.stream)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
