"""Memory and time of rank 0: the Gatherv of rows against the exact integer Reduce of sums (server.exchange).

    python benchmarks/root_memory.py [--clients 64,256,1024] [--ranks 3] [--rounds 3] [--out benchmarks/results]

The FedAvg 2NN (784-200-200-10, 199,210 parameters, float32) with every
client sampled each round: K = 64, 256 and 1,024 clients of 8 synthetic
rows each (so compute stays small and the exchange shows), on ``--ranks``
ranks (a server and the client ranks).  For each K and each exchange it
reports rank 0's peak resident memory (its own ru_maxrss, from
summary.json) and the median seconds per round; then the alpha-beta
projection of the root's receive volume to 4,096 ranks.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from common import machine, markdown_table, write_results  # noqa: E402

from mpifl.data.partition_cli import write_partition  # noqa: E402

PARAMETERS = 784 * 200 + 200 + 200 * 200 + 200 + 200 * 10 + 10
ROWS_PER_CLIENT = 8


def run(parts: Path, out: Path, ranks: int, rounds: int, exchange: str) -> dict:
    cmd = [shutil.which("mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpifl", "run",
           "--set", f"data.path={parts}", "--set", "model.kind=mlp", "--set", "model.hidden=[200, 200]",
           "--set", "model.dtype=float32", "--set", "train.batch_size=8", "--set", f"rounds={rounds}",
           "--set", f"server.exchange={exchange}", "--set", f"log_every={rounds}", "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"{exchange} failed:\n{proc.stderr[-3000:]}")
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="64,256,1024")
    parser.add_argument("--ranks", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    rows, data = [], {"machine": machine(), "ranks": args.ranks, "cases": []}
    rng = np.random.default_rng(0)
    for k in (int(c) for c in args.clients.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            n = k * ROWS_PER_CLIENT + 256
            X = rng.random((n, 784), dtype=np.float32)
            y = rng.integers(0, 10, n).astype(np.float64)
            clients = np.array_split(np.arange(k * ROWS_PER_CLIENT), k)
            write_partition(work / "parts", X, y, clients, np.arange(k * ROWS_PER_CLIENT, n), np.dtype("float32"),
                            list(range(10)), {"source": "synthetic", "method": "iid"})
            result = {}
            for exchange in ("gather", "reduce"):
                s = run(work / "parts", work / exchange, args.ranks, args.rounds, exchange)
                assert s["exchange"] == exchange, s["exchange"]
                result[exchange] = (s["peak_memory_mib_rank0"], s["seconds_per_round"])
                data["cases"].append({"clients": k, "exchange": exchange, "peak_mib": s["peak_memory_mib_rank0"],
                                      "seconds_per_round": s["seconds_per_round"], "loss": s["final_loss"]})
            rows_mib = k * PARAMETERS * 4 / 2**20
            (gm, gt), (rm, rt) = result["gather"], result["reduce"]
            rows.append(f"| {k:,} | {rows_mib:.0f} MiB | {gm:.0f} MiB | {rm:.0f} MiB | {gm / rm:.2f}x | "
                        f"{gt * 1e3:.0f} ms | {rt * 1e3:.0f} ms | {gt / rt:.2f}x |")
    table = markdown_table(
        f"Rank 0 of a FedAvg 2NN round ({PARAMETERS:,} float32 parameters), every client each round, "
        f"{args.ranks} ranks, {args.rounds} rounds; {machine()}",
        ["clients a round", "their rows", "rank 0 peak RSS, Gatherv", "Reduce", "saved", "round, Gatherv",
         "Reduce", "speed-up"], rows)
    projection = alpha_beta(PARAMETERS)
    print(table + "\n\n" + projection)
    write_results(args.out, "root_memory", table + "\n\n" + projection, data)


def alpha_beta(parameters: int, ranks: int = 4096, clients_per_rank: int = 1, alpha: float = 2e-6,
               beta: float = 1 / 12.5e9) -> str:
    """The root's receive time and memory at ``ranks`` ranks: a Gatherv brings (p - 1) rows to one link; a
    binomial-tree Reduce of int64 sums takes ceil(log2 p) steps of one vector each (alpha: latency per message,
    beta: seconds per byte of a 100 Gb/s link)."""
    p = ranks
    row = parameters * 4
    gather = (p - 1) * alpha + (p - 1) * clients_per_rank * row * beta
    steps = int(np.ceil(np.log2(p)))
    reduce = steps * (alpha + parameters * 8 * beta)
    return (f"alpha-beta projection to {p:,} ranks ({clients_per_rank} client a rank, alpha {alpha * 1e6:.0f} us, "
            f"beta = 1 / 12.5 GB/s): the Gatherv brings {(p - 1) * clients_per_rank * row / 2**30:.1f} GiB to rank 0 "
            f"in {gather:.2f} s; the Reduce takes {steps} steps of {parameters * 8 / 2**20:.1f} MiB, "
            f"{reduce * 1e3:.1f} ms, and rank 0 holds one int64 vector ({parameters * 8 / 2**20:.1f} MiB).")


if __name__ == "__main__":
    main()
