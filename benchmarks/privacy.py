"""The privacy-utility trade-off: test accuracy against epsilon at delta = 1e-5, for several noise multipliers.

    python benchmarks/privacy.py [--ranks 5] [--rounds 60] [--out benchmarks/results]
                                 [--figure docs/images/privacy.png]

DP-FedAvg on the digits with 100 clients (IID), Poisson sampling at q = 0.2
(20 clients a round on average), clip C = 0.5, FedAvg's server step, RDP
accountant; one sweep over the noise multiplier z, once with a fixed clip and
once with adaptive clipping (target quantile 0.5).  z = 0 is the clipped,
baseline without DP (plain FedAvg: no clipping, no noise, epsilon infinite).  Each point's epsilon is the run's own
(dp-accounting's, recorded in its summary).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, markdown_table, run_sweep, save_figure, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NOISE = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0]
SETTINGS = {"data.clients": 100, "data.partition": "iid", "server.fraction": 0.2, "server.sampling": "poisson",
            "privacy.clip": 0.5, "privacy.delta": 1e-5, "privacy.accountant": "rdp", "log_every": 20}


def study(ranks: int, rounds: int) -> dict[str, list[dict]]:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, adaptive in (("fixed clip", False), ("adaptive clip", True)):
            # adaptive clipping spends noise on the count, sigma_b = m / 20 = 1, and needs z < 2 sigma_b
            noise = [z for z in NOISE if not adaptive or 0 < z < 2.0]
            rows = run_sweep(work, f"dp-{adaptive}", {
                "job": str(REPO / "jobs" / "default.toml"), "ranks_per_job": ranks,
                "grid": {"privacy.noise_multiplier": noise},
                "set": {**SETTINGS, "rounds": rounds, "privacy.adaptive": adaptive},
            }, ranks)
            points = []
            for row in rows:
                finished = row["status"] == "finished"
                summary = json.loads((work / row["run_dir"] / "summary.json").read_text()) if finished else {}
                privacy = summary.get("privacy") or {}
                points.append({"noise_multiplier": float(row["privacy.noise_multiplier"]), "status": row["status"],
                               "accuracy": summary.get("final_accuracy"), "epsilon": privacy.get("epsilon"),
                               "final_clip": privacy.get("final_clip")})
            results[name] = points
    return results


def plot(path: Path, results: dict[str, list[dict]], rounds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for (name, points), marker in zip(results.items(), ("o", "s")):
        noised = [p for p in points if p["epsilon"] and p["accuracy"] is not None]
        ax.plot([p["epsilon"] for p in noised], [p["accuracy"] for p in noised], marker=marker, label=name)
        for p in noised:
            ax.annotate(f"z={p['noise_multiplier']:g}", (p["epsilon"], p["accuracy"]), fontsize=7,
                        xytext=(3, -9), textcoords="offset points")
        base = next((p for p in points if p["noise_multiplier"] == 0 and p["accuracy"] is not None), None)
        if base:
            ax.axhline(base["accuracy"], color="grey", linestyle="--", linewidth=1,
                       label="FedAvg without DP (epsilon infinite)")
    ax.set_xscale("log")
    ax.set_xlabel("epsilon at delta = 1e-5 (dp-accounting, RDP)")
    ax.set_ylabel("final test accuracy")
    ax.set_title(f"DP-FedAvg, digits, 100 clients, q = 0.2, {rounds} rounds", fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--figure", type=Path, default=Path("docs/images/privacy.png"))
    args = parser.parse_args()
    started = time.perf_counter()
    results = study(args.ranks, args.rounds)
    plot(args.figure, results, args.rounds)
    rows = []
    for name, points in results.items():
        for p in points:
            eps = "inf" if not p["epsilon"] else f"{p['epsilon']:.2f}"
            acc = "failed" if p["accuracy"] is None else f"{p['accuracy']:.3f}"
            clip = "" if p["final_clip"] is None else f"{p['final_clip']:.3f}"
            rows.append(f"| {name} | {p['noise_multiplier']:g} | {eps} | {acc} | {clip} |")
    table = markdown_table(
        f"DP-FedAvg on digits, 100 clients, Poisson q = 0.2, clip 0.5, {args.rounds} rounds, delta 1e-5 "
        f"({time.perf_counter() - started:.0f} s); {machine()}",
        ["clipping", "noise multiplier z", "epsilon", "test accuracy", "final clip"], rows)
    print(table)
    write_results(args.out, "privacy", table, {"results": results, "rounds": args.rounds, "settings": SETTINGS,
                                               "machine": machine()})


if __name__ == "__main__":
    main()
