"""FedBuff against synchronous FedAvg and FedProx, and FedAsync, on the virtual clock of simulated client speeds.

    mpiexec -n 3 python benchmarks/async_study.py [--rounds 60] [--out benchmarks/results]

Setups: FedProx's Synthetic(1,1) (30 clients, softmax, E = 5, B = 10,
lr 0.01) and digits split over 30 clients by Dirichlet(0.1) (softmax,
E = 1, B = 16, lr 0.05), with lognormal client compute speeds of spread
sigma = 0.5 and 1.5 (median 1 ms an example, 20 Mb/s links).  At equal
concurrency (10 clients training at once: a synchronous round samples 10,
FedBuff keeps 10 in flight with a buffer of K = 5, FedAsync keeps 10 in
flight), the synchronous runs train R rounds x 10 client updates and the
asynchronous ones up to ASYNC_BUDGET (10) times as many (FedBuff: 20R versions of
5, FedAsync: 100R versions of 1): an asynchronous server spends no time
waiting for stragglers, so in the same virtual time it applies more
updates.  The table gives the virtual time each needs to first reach the
target accuracy (the best accuracy synchronous FedAvg reaches, less 2
points), its updates by then, and its final accuracy and virtual time.  Runs in-process on the ranks it is started on.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mpi4py import MPI

sys.path.insert(0, str(Path(__file__).parent))
from common import STUDY_SETUPS, machine, markdown_table, study_arguments, write_results  # noqa: E402

import mpifl  # noqa: E402

SETUPS = STUDY_SETUPS
CONCURRENCY, BUFFER = 10, 5
ASYNC_BUDGET = 10  # the asynchronous runs' client updates, in multiples of the synchronous runs' 


def runs(rounds: int) -> dict[str, dict]:
    return {
        "FedAvg (sync)": dict(server__strategy="fedavg", server__fraction=CONCURRENCY / 30, rounds=rounds),
        "FedProx (sync, mu 0.1)": dict(server__strategy="fedprox", server__proximal_mu=0.1,
                                       server__fraction=CONCURRENCY / 30, rounds=rounds),
        "FedBuff (K 5)": dict(server__strategy="fedbuff", server__mode="async", server__concurrency=CONCURRENCY,
                              server__buffer=BUFFER, rounds=ASYNC_BUDGET * rounds * CONCURRENCY // BUFFER),
        "FedAsync (hinge)": dict(server__strategy="fedasync", server__mode="async", server__concurrency=CONCURRENCY,
                                 server__staleness="hinge", server__staleness_a=1.0,
                                 rounds=ASYNC_BUDGET * rounds * CONCURRENCY),
    }


def time_to(history, target: float) -> tuple[float, int] | tuple[None, None]:
    """The virtual time and the server step at which the accuracy first reaches ``target``."""
    for h in history[1:]:
        if h["accuracy"] >= target:
            return h["server"]["virtual_time"], h["round"]
    return None, None


def main() -> None:
    args = study_arguments(__doc__, 60, "digits at one spread only (the smoke test)")
    comm = MPI.COMM_WORLD
    rows, data = [], {"machine": machine(), "cases": []}
    setups = dict(list(SETUPS.items())[1:]) if args.quick else SETUPS
    for setup, base in setups.items():
        for sigma in (1.5,) if args.quick else (0.5, 1.5):
            speeds = dict(clients__speed="lognormal", clients__speed_sigma=sigma)
            results = {name: mpifl.run(None, comm, seed=0, log_every=1, **base, **speeds, **extra)
                       for name, extra in runs(args.rounds).items()}
            if comm.rank:
                continue
            target = max(h["accuracy"] for h in results["FedAvg (sync)"].history) - 0.02
            sync_time, _ = time_to(results["FedAvg (sync)"].history, target)
            for name, result in results.items():
                reached, step = time_to(result.history, target)
                per_step = CONCURRENCY if "sync" in name else (BUFFER if "FedBuff" in name else 1)
                last = result.history[-1]
                head = f"| {setup} | {sigma} | {name} | {target:.3f} | "
                tail = f"{last['accuracy']:.3f} at {last['server']['virtual_time']:.0f} s |"
                rows.append(head + (f"{reached:.1f} s | {step * per_step} | {sync_time / reached:.2f}x | " + tail
                                    if reached else "not reached | | | " + tail))
                data["cases"].append({"setup": setup, "sigma": sigma, "run": name, "target": target,
                                      "virtual_seconds": reached, "final_accuracy": result.history[-1]["accuracy"]})
    if comm.rank == 0:
        table = markdown_table(
            f"Virtual time to the target accuracy at equal concurrency ({CONCURRENCY}); sync: {args.rounds} rounds, "
            f"async: up to {ASYNC_BUDGET}x the updates; {comm.Get_size()} ranks; {machine()}",
            ["setup", "speed spread sigma", "run", "target", "virtual time to target", "updates by then",
             "speed-up vs FedAvg", "final accuracy, at"], rows)
        print(table)
        write_results(args.out, "async_study", table, data)


if __name__ == "__main__":
    main()
