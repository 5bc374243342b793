"""Run a command and measure its wall time and the peak memory of its whole process tree.

Memory is the proportional set size (PSS) summed over the tree, sampled
every 0.1 s (reading smaps_rollup is not free, and the sampler shares the
cores with what it measures): shared pages are split between the processes that share them,
so 8 MPI ranks or a pool of simulation workers are counted fairly.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SAMPLE_SECONDS = 0.1


@dataclass
class Measured:
    returncode: int
    wall_seconds: float
    peak_pss_mib: float
    stdout: str
    stderr: str


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def tree_pss_kib(root: int) -> int:
    total, stack, seen = 0, [root], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
        stack += _children(pid)
    return total


def run(cmd: list[str], cwd=None, env=None, timeout: float = 1800) -> Measured:
    peak = [0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_pss_kib(proc.pid))
            done.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        done.set()
        sampler.join()
    return Measured(proc.returncode, time.perf_counter() - t0, peak[0] / 1024, out, err)
