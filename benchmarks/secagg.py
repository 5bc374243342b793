"""The cost of secure aggregation: SecAgg and SecAgg+ against plain FedAvg, in time and bytes per round.

    python benchmarks/secagg.py [--ranks 5] [--rounds 3] [--clients 8,64,512] [--out benchmarks/results]

Digits (IID), softmax (650 parameters), every client every round, on 1 server and
RANKS - 1 client ranks that host the clients (128 each at 512 clients); the
dropout rates 0 and 0.1.  Time per round is the run's train seconds over its
rounds; bytes per round are those counted at the collectives (uplink and
downlink).  The parts are the slowest client rank's seconds for key
agreement, sharing, masking and sending the unmasking shares, and the
server's unmasking.  The projection to 10,000 clients fits
T(n) = a n + b n deg(n) to the measured rounds (deg = n - 1 for SecAgg,
SecAgg+'s default k for SecAgg+); it is a model, not a measurement.
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

MODES = {"plain": [], "secagg": ["secagg.enabled=true"], "secagg+": ["secagg.enabled=true", "secagg.plus=true"]}
PARTS = ("agree", "share", "mask", "unmask", "server_unmask")


def degree(mode: str, n: int) -> int:
    return default_degree(n) if mode == "secagg+" else n - 1


def measure(work: Path, ranks: int, rounds: int, mode: str, n: int, dropout: float) -> dict:
    name = f"{mode}-{n}-{dropout}"
    overrides = [f"data.clients={n}", "data.partition=iid", f"rounds={rounds}", "log_every=1", *MODES[mode]]
    if mode != "plain":
        overrides.append(f"secagg.dropout={dropout}")
    proc = subprocess.run([shutil.which("mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpifl", "run",
                           *sum((["--set", o] for o in overrides), []), "--out", name, "--quiet"],
                          cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{name} failed:\n{proc.stderr}")
    summary = json.loads((work / name / "summary.json").read_text())
    rows = [json.loads(line) for line in (work / name / "metrics.jsonl").read_text().splitlines()][1:]
    parts = {p: float(np.mean([r["stages"]["secagg"]["seconds"][p] for r in rows
                               if (r.get("stages") or {}).get("secagg")]))
             for p in PARTS} if mode != "plain" else {}
    return {"mode": mode, "clients": n, "dropout": dropout, "seconds_per_round": summary["seconds_per_round"],
            "bytes_per_round": (summary["uplink_bytes"] + summary["downlink_bytes"]) / rounds,
            "uplink_per_round": summary["uplink_bytes"] / rounds, "parts": parts,
            "participants": float(np.mean([r["participants"] for r in rows]))}


def project(points: list[dict], mode: str, n: int, key: str) -> float:
    """Least squares of key ~ a n + b n deg(n) over the measured sizes, evaluated at n."""
    fit = [p for p in points if p["mode"] == mode and p["dropout"] == 0]
    A = np.array([[p["clients"], p["clients"] * degree(mode, p["clients"])] for p in fit], dtype=float)
    y = np.array([p[key] for p in fit])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    return float(np.array([n, n * degree(mode, n)]) @ coef)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", default="8,64,512")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.clients.split(",")]
    started = time.perf_counter()
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            points.append(measure(Path(tmp), args.ranks, args.rounds, "plain", n, 0.0))
            for mode in ("secagg", "secagg+"):
                for dropout in (0.0, 0.1):
                    points.append(measure(Path(tmp), args.ranks, args.rounds, mode, n, dropout))
    base = {p["clients"]: p for p in points if p["mode"] == "plain"}
    rows = []
    for p in points:
        b = base[p["clients"]]
        share = ""
        if p["parts"]:
            total = sum(p["parts"].values()) or 1.0
            share = " / ".join(f"{100 * p['parts'][k] / total:.0f}%" for k in PARTS)
        rows.append(f"| {p['mode']} | {p['clients']} | {degree(p['mode'], p['clients']) if p['mode'] != 'plain' else ''} "
                    f"| {p['dropout']:g} | {p['seconds_per_round'] * 1e3:.1f} | "
                    f"{p['seconds_per_round'] / b['seconds_per_round']:.1f}x | {p['bytes_per_round'] / 1e6:.3f} | "
                    f"{p['bytes_per_round'] / b['bytes_per_round']:.1f}x | {share} |")
    table = markdown_table(
        f"Secure aggregation per round, digits softmax, {args.ranks - 1} client ranks ({args.rounds} rounds each; "
        f"{time.perf_counter() - started:.0f} s in all); {machine()}",
        ["mode", "clients", "neighbours", "dropout", "ms / round", "vs plain", "MB / round", "vs plain",
         "agree / share / mask / unmask / server unmask"], rows)
    projection = {}
    lines = []
    for mode in ("secagg", "secagg+"):
        if len([p for p in points if p["mode"] == mode and p["dropout"] == 0]) >= 2:
            t = project(points, mode, 10_000, "seconds_per_round")
            b = project(points, mode, 10_000, "bytes_per_round")
            projection[mode] = {"seconds_per_round": t, "bytes_per_round": b, "neighbours": degree(mode, 10_000)}
            lines.append(f"| {mode} | {degree(mode, 10_000)} | {t:.1f} | {b / 1e9:.2f} |")
    projected = markdown_table(
        "PROJECTION (fitted T(n) = a n + b n deg(n), not a measurement) to 10,000 clients on the same ranks",
        ["mode", "neighbours", "s / round", "GB / round"], lines)
    print(table + "\n\n" + projected)
    write_results(args.out, "secagg", table + "\n\n" + projected,
                  {"points": points, "projection": projection, "ranks": args.ranks, "machine": machine()})


if __name__ == "__main__":
    main()
