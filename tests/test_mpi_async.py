"""FedBuff and FedAsync on real ranks: bitwise repeats, the same bytes on fewer ranks, and the combinations they
refuse (mpiexec -n 2, -n 4).  Killing one and resuming it is about the launcher: tests/test_checkpoint.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from mpi4py import MPI

from rank_counts import same_bytes_again_and_on_two_ranks

COMM = MPI.COMM_WORLD
HERE = Path(__file__).parent
ASYNC = {
    "fedbuff": dict(server__strategy="fedbuff", server__buffer=3),
    "fedasync": dict(server__strategy="fedasync", server__staleness="hinge", server__staleness_a=1.0),
}
COMMON = dict(mode="federated", server__mode="async", rounds=12, data__clients=10, server__concurrency=4,
              clients__speed="lognormal", train__momentum=0.5)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name", sorted(ASYNC))
def test_async_runs_repeat_bitwise_on_any_rank_count_and_record_the_clock(name):
    job = dict(COMMON, **ASYNC[name])
    first = same_bytes_again_and_on_two_ranks(COMM, **job)
    if COMM.rank == 0:
        server = [h["server"] for h in first.history[1:]]
        times = [s["virtual_time"] for s in server]
        assert times == sorted(times) and times[0] > 0
        assert [s["version"] for s in server] == list(range(1, 13))
        assert all(len(s["staleness"]) == (3 if name == "fedbuff" else 1) for s in server)
        assert first.history[-1]["accuracy"] > first.history[0]["accuracy"]
