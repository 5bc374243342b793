"""What the active-adversary protocol adds to secure aggregation: time and bytes per round, side by side.

    python benchmarks/secagg_malicious.py [--ranks 5] [--rounds 2] [--clients 64,512] [--out benchmarks/results]
    python benchmarks/secagg_malicious.py --clients 512 --graphs secagg --full-up-to 512 --rounds 1 --repeat 1 \
        --name secagg_malicious_full      # SecAgg (every pair) at 512 clients: a minute a round

Digits (IID), softmax (650 parameters), every client every round, on 1
server and RANKS - 1 client ranks.  Each size runs SecAgg+ (its default k
neighbours) and, up to 64 clients, SecAgg (every pair), once semi-honest
(Bonawitz et al. 2017, §3) and once with secagg.malicious = true (§4:
Ed25519-signed adverts and the consistency round), alternating so that
both see the same machine.  Time per round is the run's train seconds over
its rounds; bytes are those counted at the collectives (uplink and
downlink), the PKI's one Allgatherv of public keys aside: a deployment
hands those out once, at enrolment, and the simulation repeats it each
round only because it makes no long-lived clients.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, markdown_table, write_results  # noqa: E402

from mpifl.secagg.graph import default_degree  # noqa: E402

PROTOCOLS = {"semi-honest": [], "active": ["secagg.malicious=true"]}


def measure(work: Path, ranks: int, rounds: int, plus: bool, n: int, protocol: str, repeat: int) -> dict:
    name = f"{'plus' if plus else 'all'}-{n}-{protocol}-{repeat}"
    overrides = [f"data.clients={n}", "data.partition=iid", f"rounds={rounds}", "log_every=1", "secagg.enabled=true",
                 f"secagg.plus={str(plus).lower()}", *PROTOCOLS[protocol]]
    proc = subprocess.run([shutil.which("mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpifl", "run",
                           *sum((["--set", o] for o in overrides), []), "--out", name, "--quiet"],
                          cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{name} failed:\n{proc.stderr}")
    summary = json.loads((work / name / "summary.json").read_text())
    return {"seconds_per_round": summary["seconds_per_round"], "uplink_per_round": summary["uplink_bytes"] / rounds,
            "downlink_per_round": summary["downlink_bytes"] / rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", default="64,512")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each, alternating; the median is kept")
    parser.add_argument("--full-up-to", type=int, default=64, help="run SecAgg (every pair) up to this many clients")
    parser.add_argument("--graphs", default="secagg,secagg+", help="which graphs to run (SecAgg only up to "
                        "--full-up-to clients)")
    parser.add_argument("--name", default="secagg_malicious", help="the results file's name")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    graphs = args.graphs.split(",")
    started = time.perf_counter()
    points, rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.clients.split(",")):
            for plus in ([False] if n <= args.full_up_to and "secagg" in graphs else []) + (
                    [True] if "secagg+" in graphs else []):
                runs = {p: [] for p in PROTOCOLS}
                for i in range(args.repeat):
                    for protocol in PROTOCOLS:
                        runs[protocol].append(measure(Path(tmp), args.ranks, args.rounds, plus, n, protocol, i))
                got = {p: {k: float(np.median([r[k] for r in rs])) for k in rs[0]} for p, rs in runs.items()}
                semi, active = got["semi-honest"], got["active"]
                k = default_degree(n) if plus else n - 1
                point = {"clients": n, "graph": "secagg+" if plus else "secagg", "neighbours": k, **{
                    f"{p}_{key}": value for p, v in got.items() for key, value in v.items()}}
                points.append(point)
                added_up = active["uplink_per_round"] - semi["uplink_per_round"]
                added_down = active["downlink_per_round"] - semi["downlink_per_round"]
                rows.append(f"| {n} | {point['graph']} | {k} | {semi['seconds_per_round'] * 1e3:.0f} | "
                            f"{active['seconds_per_round'] * 1e3:.0f} | "
                            f"{active['seconds_per_round'] / semi['seconds_per_round']:.2f}x | "
                            f"{added_up / n / 1e3:.2f} | {added_down / n / 1e3:.2f} | "
                            f"{(active['uplink_per_round'] + active['downlink_per_round']) / (semi['uplink_per_round'] + semi['downlink_per_round']):.2f}x |")
    table = markdown_table(
        f"Secure aggregation against an active server (signed adverts, consistency round) beside the semi-honest "
        f"protocol, digits softmax, {args.ranks - 1} client ranks, {args.rounds} rounds, median of {args.repeat} "
        f"alternating runs ({time.perf_counter() - started:.0f} s in all); {machine()}",
        ["clients", "graph", "neighbours", "semi-honest ms / round", "active ms / round", "time ratio",
         "added uplink kB / client / round", "added downlink kB / client / round", "bytes ratio"], rows)
    print(table)
    write_results(args.out, args.name, table,
                  {"points": points, "ranks": args.ranks, "rounds": args.rounds, "machine": machine()})


if __name__ == "__main__":
    main()
