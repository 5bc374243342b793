"""Local against central differential privacy: test accuracy at the same epsilon, and the gap the noise predicts.

    python benchmarks/local_privacy.py [--ranks 5] [--out benchmarks/results]

Two jobs: the default job (digits softmax, FedAvg) with 100 clients, 20 a
round, 50 rounds; and Synthetic(1,1) as jobs/fedprox_synthetic.toml has it
(30 clients, 10 a round, 200 rounds of 20 local epochs).  For each epsilon
per release (1, 4, 16), local DP (privacy.where = "local", Gaussian noise,
clip C) runs first; its worst client's epsilon after the rounds it took
part in is then the target epsilon of central DP-FedAvg (the server adds
the noise to the sum, with sampling amplification), so that both end at
the same overall epsilon (delta 1e-5, RDP).  Without DP, FedAvg's accuracy
is the ceiling.

The expected gap: the noise on the averaged update of m clients has std
z_local C / sqrt(m) under local DP (each client's own noise, sensitivity
2C) and z_central C / m under central DP (one noise on the sum).  Their
ratio is printed beside the accuracies.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, markdown_table, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EPSILONS = (1.0, 4.0, 16.0)
JOBS = {
    "default job (digits, 100 clients, 20 a round)": (
        REPO / "jobs" / "default.toml",
        {"data.clients": 100, "server.fraction": 0.2, "rounds": 50, "log_every": 10, "privacy.clip": 1.0}, 20),
    "Synthetic(1,1) (30 clients, 10 a round)": (
        REPO / "jobs" / "fedprox_synthetic.toml", {"log_every": 50, "privacy.clip": 1.0}, 10),
}


def run(work: Path, ranks: int, name: str, job: Path, settings: dict) -> dict:
    overrides = sum((["--set", f"{k}={v}"] for k, v in settings.items()), [])
    proc = subprocess.run([shutil.which("mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpifl", "run", str(job),
                           *overrides, "--out", name, "--quiet"], cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{name} failed:\n{proc.stderr}")
    return json.loads((work / name / "summary.json").read_text())


def study(ranks: int, quick: bool) -> list[dict]:
    points = []
    epsilons = (4.0,) if quick else EPSILONS
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for j, (title, (job, settings, cohort)) in enumerate(list(JOBS.items())[:1] if quick else JOBS.items()):
            settings = {**settings, "rounds": 3, "log_every": 1} if quick else settings
            plain = {k: v for k, v in settings.items() if not k.startswith("privacy.")}
            base = run(work, ranks, f"plain-{j}", job, plain)
            points.append({"job": title, "kind": "none", "accuracy": base["final_accuracy"]})
            for eps in epsilons:
                local = run(work, ranks, f"local-{j}-{eps:g}", job, {**settings, "privacy.where": "local",
                                                                     "privacy.target_epsilon": eps})
                overall = local["privacy"]["epsilon_max"]
                central = run(work, ranks, f"central-{j}-{eps:g}", job, {**settings, "privacy.target_epsilon": overall})
                z_local, z_central = local["privacy"]["noise_multiplier"], central["privacy"]["noise_multiplier"]
                points.append({"job": title, "kind": "local", "epsilon_per_release": eps, "epsilon": overall,
                               "epsilon_median": local["privacy"]["epsilon_median"], "noise_multiplier": z_local,
                               "accuracy": local["final_accuracy"]})
                points.append({"job": title, "kind": "central", "epsilon": central["privacy"]["epsilon"],
                               "noise_multiplier": z_central, "accuracy": central["final_accuracy"],
                               "noise_ratio": (z_local / math.sqrt(cohort)) / (z_central / cohort)})
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--quick", action="store_true", help="the default job, 3 rounds, epsilon 4: a smoke test")
    args = parser.parse_args()
    started = time.perf_counter()
    points = study(args.ranks, args.quick)
    rows = []
    for p in points:
        if p["kind"] == "none":
            rows.append(f"| {p['job']} | no DP | | | | {p['accuracy']:.3f} | |")
        elif p["kind"] == "local":
            rows.append(f"| {p['job']} | local | {p['epsilon_per_release']:g} | {p['epsilon']:.1f} "
                        f"(median {p['epsilon_median']:.1f}) | {p['noise_multiplier']:.2f} | {p['accuracy']:.3f} | |")
        else:
            rows.append(f"| {p['job']} | central | | {p['epsilon']:.1f} | {p['noise_multiplier']:.3f} | "
                        f"{p['accuracy']:.3f} | {p['noise_ratio']:.0f}x |")
    table = markdown_table(
        f"Local against central DP at the same overall epsilon (delta 1e-5, RDP), Gaussian noise, clip 1.0, "
        f"{args.ranks - 1} client ranks ({time.perf_counter() - started:.0f} s); {machine()}",
        ["job", "DP", "epsilon per release", "overall epsilon (worst client)", "noise multiplier", "test accuracy",
         "local noise over central, on the mean"], rows)
    print(table)
    write_results(args.out, "local_privacy", table, {"points": points, "machine": machine()})


if __name__ == "__main__":
    main()
