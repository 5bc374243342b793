"""Shared benchmark plumbing: alternating timing, machine label, result files."""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {len(os.sched_getaffinity(0))} usable cores, {platform.system()} {platform.machine()}"


def alternate(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median seconds of each callable, running them in turn so drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for fn in runs.values():
        fn()  # warm caches and JIT
    for _ in range(repeat):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: sorted(ts)[len(ts) // 2] for name, ts in times.items()}


# The federated studies' setups (async_study.py, personal_study.py): FedProx's Synthetic(1,1) and digits under
# Dirichlet(0.1), 30 clients each, softmax regression, as mpifl.run keyword overrides.
STUDY_SETUPS = {
    "Synthetic(1,1)": dict(data__name="fedprox_synthetic", data__fedprox_alpha=1.0, data__fedprox_beta=1.0,
                           data__clients=30, model__kind="softmax", train__epochs=5, train__batch_size=10,
                           train__lr=0.01),
    "digits, Dirichlet(0.1)": dict(data__name="digits", data__partition="dirichlet", data__alpha=0.1,
                                   data__clients=30, model__kind="softmax", train__epochs=1, train__batch_size=16,
                                   train__lr=0.05),
}
RESULTS = Path(__file__).parent / "results"  # the scripts' default --out
PUBLISHED = Path(__file__).parent.parent / "docs" / "benchmarks" / "results"  # pages the docs site includes


def write_results(out: Path, name: str, table: str, data: dict) -> None:
    """The table and its data under ``out``; a run into the default directory also publishes the table as a docs
    page, stamped with the machine, the commit and the date (docs/benchmarks/results.md includes it)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(table + "\n")
    (out / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    if out.resolve() == RESULTS.resolve():
        PUBLISHED.mkdir(parents=True, exist_ok=True)
        (PUBLISHED / f"{name}.md").write_text(f"{table}\n\n_{stamp()}_\n")


def stamp() -> str:
    """Where and when a figure was measured: the machine, the commit (+ if the tree had changes), the date."""
    import datetime

    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    dirty = "+" if git("status", "--porcelain", "--", ":/mpifl") else ""  # the package, from the top
    return f"measured on {machine()}, commit {commit}{dirty}, {datetime.date.today().isoformat()}"


def markdown_table(title: str, header: list[str], rows: list[str]) -> str:
    """A titled markdown table from pre-formatted '| a | b |' rows."""
    return "\n".join([title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header), *rows])


def run_sweep(work: Path, name: str, sweep: dict, ranks: int) -> list[dict]:
    """Write ``sweep`` (a sweep file's tables) as work/NAME.toml, run it on ``ranks`` ranks, return sweep.csv's rows.

    The sweep's output goes to work/NAME; a failed sweep ends the benchmark with its error."""
    import tomli_w

    path = work / f"{name}.toml"
    path.write_text(tomli_w.dumps({**sweep, "out": name}))
    proc = subprocess.run([shutil.which("mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpifl", "sweep",
                           str(path), "--quiet"], cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"the sweep {name} failed:\n{proc.stderr}")
    with open(work / name / "sweep.csv") as handle:
        return list(csv.DictReader(handle))


def save_figure(fig, path: Path) -> None:
    """Lay out, write (making the directory) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def study_arguments(doc: str, rounds: int, quick_help: str = "a few rounds of the smaller setups (the smoke test)"):
    """The studies' shared command line: --rounds, --quick and --out (benchmarks/results by default)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args()
