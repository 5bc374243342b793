"""The FedProx paper's heterogeneity study, and digits with Dirichlet alpha = 0.1 over 64 clients.

    python benchmarks/heterogeneity.py [--ranks 3] [--only synthetic,digits] [--out benchmarks/results/heterogeneity]
    python benchmarks/heterogeneity.py --smoke      # 3 rounds of a few points (what the tests run)

Synthetic-IID, Synthetic(0,0), (0.5,0.5) and (1,1) with the paper's settings
(jobs/fedprox_synthetic.toml: 30 devices, 10 per round, batch 10, lr 0.01,
20 local epochs, 200 rounds) and straggler shares 0, 0.5 and 0.9, for FedAvg
(dropping stragglers, as the paper's baseline does), FedProx (mu = 1),
SCAFFOLD, FedNova and FedAdam.  Each point is an ordinary mpifl run
(mpiexec -n RANKS python -m mpifl run ...), kept under --out/runs/.  Writes
heterogeneity.csv, heterogeneity.md and heterogeneity.png (test accuracy per
round, one panel per data set and straggler share), and the same for digits
(digits.csv with rounds to 0.90).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from common import machine  # noqa: E402

DATASETS = {
    "Synthetic-IID": ["data.fedprox_iid=true"],
    "Synthetic(0,0)": ["data.fedprox_alpha=0", "data.fedprox_beta=0"],
    "Synthetic(0.5,0.5)": ["data.fedprox_alpha=0.5", "data.fedprox_beta=0.5"],
    "Synthetic(1,1)": ["data.fedprox_alpha=1", "data.fedprox_beta=1"],
}
STRAGGLERS = (0.0, 0.5, 0.9)
ALGORITHMS = {
    "FedAvg (drops stragglers)": ["server.strategy=fedavg", "server.drop_stragglers=true"],
    "FedProx (mu=1)": ["server.strategy=fedprox", "server.proximal_mu=1"],
    "SCAFFOLD": ["server.strategy=scaffold"],
    "FedNova": ["server.strategy=fednova"],
    "FedAdam": ["server.strategy=fedadam"],
}
DIGITS = ["data.name=digits", "data.partition=dirichlet", "data.alpha=0.1", "data.clients=64",
          "server.fraction=0.25", "rounds=100", "train.epochs=1", "train.batch_size=32", "train.lr=0.5"]
DIGITS_TARGET = 0.90
ALL_STRATEGIES = ("fedavg", "fedprox", "scaffold", "fednova", "fedavgm", "fedadagrad", "fedadam", "fedyogi")


def run_point(ranks: int, job: Path, overrides: list[str], out: Path) -> list[dict]:
    """One mpifl run; returns its metrics.jsonl rows."""
    if out.exists():
        shutil.rmtree(out)
    cmd = [shutil.which("mpiexec") or "mpiexec", "-n", str(ranks), sys.executable, "-m", "mpifl", "run", str(job),
           "--quiet", "--out", str(out)]
    for o in overrides:
        cmd += ["--set", o]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def summarise(rows: list[dict], target: float | None = None) -> dict:
    acc = [r["accuracy"] for r in rows]
    client = [r.get("mean_client_accuracy") for r in rows]
    reached = next((r["round"] for r in rows if target is not None and r["accuracy"] >= target), None)
    return {"final": acc[-1], "best": max(acc), "final_client_mean": client[-1],
            "ms_per_round": 1e3 * sum(r["seconds"] for r in rows[1:]) / max(len(rows) - 1, 1),
            "rounds_to_target": reached, "curve": acc}


def synthetic(args, out: Path, datasets: dict[str, list[str]], shares: tuple[float, ...]) -> list[dict]:
    job = ROOT / "jobs" / "fedprox_synthetic.toml"
    results = []
    for data, data_set in datasets.items():
        for share in shares:
            for algo, algo_set in ALGORITHMS.items():
                name = f"{data}-s{share}-{algo.split()[0]}".replace("(", "").replace(")", "").replace(",", "_")
                extra = [f"rounds={args.rounds}"] if args.rounds else []
                rows = run_point(args.ranks, job, [*data_set, f"train.stragglers={share}", *algo_set, *extra],
                                 out / "runs" / name)
                results.append({"data": data, "stragglers": share, "algorithm": algo, **summarise(rows)})
                print(f"{data:20s} stragglers {share:3.1f}  {algo:26s} final {results[-1]['final']:.4f} "
                      f"best {results[-1]['best']:.4f}  {results[-1]['ms_per_round']:.1f} ms/round", flush=True)
    return results


def digits(args, out: Path) -> list[dict]:
    results = []
    for algo, algo_set in ALGORITHMS.items():
        extra = [f"rounds={args.rounds}"] if args.rounds else []
        rows = run_point(args.ranks, ROOT / "jobs" / "default.toml", [*DIGITS, *algo_set, *extra],
                         out / "runs" / f"digits-{algo.split()[0]}")
        results.append({"data": "digits, Dirichlet 0.1, 64 clients", "algorithm": algo,
                        **summarise(rows, DIGITS_TARGET)})
        print(f"digits  {algo:26s} final {results[-1]['final']:.4f} rounds to {DIGITS_TARGET}: "
              f"{results[-1]['rounds_to_target']}", flush=True)
    return results


COST_WORKLOADS = {
    # latency-bound: about 22 rows and one SGD step per client and round
    "digits": (ROOT / "jobs" / "default.toml", ["data.clients=64", "rounds=100", "log_every=100"]),
    # compute-bound: the FedProx benchmark's local work (20 epochs of batch 10) on 64 clients
    "Synthetic(1,1)": (ROOT / "jobs" / "fedprox_synthetic.toml",
                       ["data.clients=64", "server.fraction=1", "rounds=5", "log_every=5"]),
}


def round_cost(args, out: Path) -> dict:
    """Per-round time of every algorithm with 64 clients all training, alternating runs, median of 3."""
    import statistics

    costs = {}
    for workload, (job, sets) in COST_WORKLOADS.items():
        times: dict[str, list[float]] = {name: [] for name in ALL_STRATEGIES}
        for rep in range(1 if args.smoke else 3):
            for name in ALL_STRATEGIES:
                run_dir = out / "runs" / f"cost-{workload}-{name}-{rep}"
                extra = [f"rounds={args.rounds}", f"log_every={args.rounds}"] if args.rounds else []
                run_point(args.ranks, job, [*sets, f"server.strategy={name}", *extra], run_dir)
                times[name].append(json.loads((run_dir / "summary.json").read_text())["seconds_per_round"])
        costs[workload] = {name: statistics.median(t) for name, t in times.items()}
    return costs


def cost_table(costs: dict) -> str:
    head = "| strategy | " + " | ".join(f"{w}: ms per round | vs FedAvg" for w in costs) + " |\n"
    head += "|---|" + "---|---|" * len(costs) + "\n"
    return head + "\n".join(
        f"| {name} | " + " | ".join(f"{c[name] * 1e3:.2f} | {c[name] / c['fedavg']:.2f}x" for c in costs.values()) + " |"
        for name in ALL_STRATEGIES) + "\n"


def write_csv(path: Path, results: list[dict]) -> None:
    keys = [k for k in results[0] if k != "curve"]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows({k: r[k] for k in keys} for r in results)


def synthetic_table(results: list[dict]) -> str:
    head = "| data | stragglers | " + " | ".join(ALGORITHMS) + " |\n|---|---|" + "---|" * len(ALGORITHMS) + "\n"
    lines = []
    for data in DATASETS:
        for share in STRAGGLERS:
            cells = [f"{r['final']:.3f} / {r['best']:.3f}" for r in results
                     if r["data"] == data and r["stragglers"] == share]
            if cells:
                lines.append(f"| {data} | {share:.0%} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n\n(final / best test accuracy on the pooled test set)\n"


def headline(results: list[dict]) -> str:
    """FedProx minus FedAvg, in absolute test accuracy, in the heterogeneous settings."""
    gains = []
    for data in ("Synthetic(0,0)", "Synthetic(0.5,0.5)", "Synthetic(1,1)"):
        for share in (0.5, 0.9):
            pick = {r["algorithm"]: r["final"] for r in results if r["data"] == data and r["stragglers"] == share}
            if len(pick) == len(ALGORITHMS):
                gains.append(pick["FedProx (mu=1)"] - pick["FedAvg (drops stragglers)"])
    if not gains:
        return ""
    return (f"FedProx (mu=1) minus FedAvg (dropping stragglers), final test accuracy, over the non-IID sets "
            f"with 50% and 90% stragglers: mean {100 * sum(gains) / len(gains):+.1f} points "
            f"(min {100 * min(gains):+.1f}, max {100 * max(gains):+.1f}).\n")


def digits_table(results: list[dict]) -> str:
    head = "| algorithm | final | best | rounds to 0.90 | ms/round |\n|---|---|---|---|---|\n"
    return head + "\n".join(
        f"| {r['algorithm']} | {r['final']:.3f} | {r['best']:.3f} | {r['rounds_to_target'] or 'not reached'} | "
        f"{r['ms_per_round']:.2f} |" for r in results) + "\n"


def plot(results: list[dict], path: Path, datasets: list[str], shares: tuple[float, ...]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(shares), len(datasets), figsize=(4 * len(datasets), 3 * len(shares)),
                             sharey=True, squeeze=False)
    for i, share in enumerate(shares):
        for j, data in enumerate(datasets):
            ax = axes[i][j]
            for r in results:
                if r["data"] == data and r["stragglers"] == share:
                    ax.plot(r["curve"], label=r["algorithm"], linewidth=1)
            ax.set_title(f"{data}, {share:.0%} stragglers", fontsize=9)
            ax.set_xlabel("round")
            ax.grid(alpha=0.3)
        axes[i][0].set_ylabel("test accuracy")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, default=3)
    p.add_argument("--only", default="synthetic,digits,cost")
    p.add_argument("--rounds", type=int, default=0, help="override the rounds (0 = the study's)")
    p.add_argument("--smoke", action="store_true", help="3 rounds, Synthetic(1,1) and 90%% stragglers only")
    p.add_argument("--out", type=Path, default=HERE / "results" / "heterogeneity")
    args = p.parse_args()
    datasets, shares = DATASETS, STRAGGLERS
    if args.smoke:
        args.rounds = 3
        datasets, shares = {"Synthetic(1,1)": DATASETS["Synthetic(1,1)"]}, (0.9,)
    args.out.mkdir(parents=True, exist_ok=True)
    report = [f"# Heterogeneity study\n\nMachine: {machine()}; {args.ranks} ranks per run.\n"]
    everything = {}
    if "synthetic" in args.only:
        results = synthetic(args, args.out, datasets, shares)
        write_csv(args.out / "heterogeneity.csv", results)
        plot(results, args.out / "heterogeneity.png", list(datasets), shares)
        report += ["## FedProx Synthetic(alpha, beta)\n", synthetic_table(results), headline(results)]
        everything["synthetic"] = results
    if "digits" in args.only:
        results = digits(args, args.out)
        write_csv(args.out / "digits.csv", results)
        report += ["## Digits, Dirichlet 0.1, 64 clients, 16 per round\n", digits_table(results)]
        everything["digits"] = results
    if "cost" in args.only:
        cost = round_cost(args, args.out)
        report += [f"## Round time with 64 clients, all training, {args.ranks} ranks (median of 3)\n",
                   cost_table(cost)]
        everything["cost"] = cost
    (args.out / "heterogeneity.md").write_text("\n".join(report))
    (args.out / "heterogeneity.json").write_text(json.dumps(everything, indent=1) + "\n")
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
