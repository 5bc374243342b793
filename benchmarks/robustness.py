"""The robustness study: every aggregator against no attack and every attack, as a table and a heat map.

    python benchmarks/robustness.py [--ranks 5] [--out benchmarks/results] [--figure docs/images/robustness.png]

The setup is jobs/sweeps/robustness.toml (digits, 20 clients, 4 of them
malicious, every client every round, 30 rounds).  Each attack runs as one
sweep over the aggregators, at the scale the study gives it:

- sign_flip: -4 x the update (at -1 x, 4 of 20 clients only slow the mean down);
- gaussian: N(0, 20^2) per coordinate (Blanchard et al. 2017 use sigma = 200;
  the mean is already at chance from 20 on);
- scaling: 20 x, Bagdasaryan et al.'s boost n / eta with eta = 1;
- ipm: epsilon = 4, where the colluders' -epsilon x mean nearly cancels the
  16 benign clients' contribution (Xie et al. 2020);
- label_flip and alie take no scale (alie's z follows from n and f).

Each cell is the final test accuracy; "div" marks a run that diverged.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, markdown_table, run_sweep, save_figure, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SWEEP = REPO / "jobs" / "sweeps" / "robustness.toml"
SCALES = {"none": 0.0, "label_flip": 0.0, "sign_flip": 4.0, "gaussian": 20.0, "scaling": 20.0, "alie": 0.0,
          "ipm": 4.0}


def run_attack(work: Path, base: dict, kind: str, ranks: int, rounds: int) -> list[dict]:
    """One sweep over the aggregators under one attack; the rows of its sweep.csv."""
    settings = {**base["set"], "attack.kind": kind, "attack.scale": SCALES[kind], **({"rounds": rounds} if rounds else {})}
    sweep = {**base, "job": str((SWEEP.parent / base["job"]).resolve()),
             "grid": {"server.aggregator": base["grid"]["server.aggregator"]}, "set": settings}
    return run_sweep(work, f"sweep-{kind}", sweep, ranks)


def cell(row: dict) -> float | None:
    return float(row["final_accuracy"]) if row["status"] == "finished" and row["final_accuracy"] else None


def heat_map(path: Path, aggregators: list[str], attacks: list[str], accuracy: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.array([[np.nan if accuracy[a, k] is None else accuracy[a, k] for k in attacks] for a in aggregators])
    fig, ax = plt.subplots(figsize=(1.2 * len(attacks) + 2.5, 0.5 * len(aggregators) + 1.8))
    image = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(attacks)), [f"{k}\n({SCALES[k]:g})" if SCALES[k] else k for k in attacks])
    ax.set_yticks(range(len(aggregators)), aggregators)
    for i in range(len(aggregators)):
        for j in range(len(attacks)):
            value = grid[i, j]
            ax.text(j, i, "div" if np.isnan(value) else f"{value:.2f}", ha="center", va="center",
                    color="white" if np.isnan(value) or value < 0.6 else "black", fontsize=8)
    fig.colorbar(image, ax=ax, label="final test accuracy")
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=5, help="ranks per sweep (the sweep file's ranks_per_job)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--figure", type=Path, default=Path("docs/images/robustness.png"))
    parser.add_argument("--rounds", type=int, default=0, help="rounds per run (0: the sweep file's)")
    parser.add_argument("--attacks", default="", help="comma-separated attacks to run (default: the sweep file's)")
    args = parser.parse_args()
    base = tomllib.loads(SWEEP.read_text())
    aggregators = base["grid"]["server.aggregator"]
    attacks = args.attacks.split(",") if args.attacks else base["grid"]["attack.kind"]
    accuracy, started = {}, time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for kind in attacks:
            for row in run_attack(Path(tmp), base, kind, args.ranks, args.rounds):
                accuracy[row["server.aggregator"], kind] = cell(row)
    seconds = time.perf_counter() - started
    header = ["aggregator", *(f"{k} ({SCALES[k]:g})" if SCALES[k] else k for k in attacks)]
    rows = ["| " + " | ".join([a, *("div" if accuracy[a, k] is None else f"{accuracy[a, k]:.3f}" for k in attacks)])
            + " |" for a in aggregators]
    title = (f"Final test accuracy, digits, 20 clients of which 4 malicious, {args.rounds or base['set']['rounds']} rounds "
             f"({len(aggregators) * len(attacks)} runs in {seconds:.0f} s); {machine()}")
    table = markdown_table(title, header, rows)
    print(table)
    heat_map(args.figure, aggregators, attacks, accuracy, title.split(";")[0])
    write_results(args.out, "robustness", table, {
        "accuracy": {f"{a}/{k}": accuracy[a, k] for a in aggregators for k in attacks}, "scales": SCALES,
        "sweep": str(SWEEP.relative_to(REPO)), "seconds": seconds, "machine": machine()})


if __name__ == "__main__":
    main()
