"""FedBuff and FedAsync on real ranks: bitwise repeats, the same bytes on fewer ranks, kill and resume, and the
combinations they refuse (mpiexec -n 2, -n 4)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
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


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name", sorted(ASYNC))
def test_a_killed_async_run_resumes_to_the_same_bytes(name, tmp_path_factory):
    if COMM.rank != 0:
        return
    tmp = tmp_path_factory.mktemp(name)
    sets = [f"{key.replace('__', '.')}={value}" for key, value in dict(COMMON, **ASYNC[name]).items()]
    common = [arg for s in sets + ["checkpoint.every=4"] for arg in ("--set", s)] + ["--quiet"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI", "MPI_", "HYDRA", "OMPI"))}

    def launch(*args, script=None):
        head = [str(script)] if script else ["-m", "mpifl"]
        return subprocess.run([shutil.which("mpiexec"), "-n", "3", sys.executable, *head, *args], cwd=tmp, env=env,
                              capture_output=True, text=True, timeout=300)

    full = launch("run", *common, "--out", "full")
    assert full.returncode == 0, full.stderr
    killed = launch("10", "1", "SIGKILL", "run", *common, "--out", "cut", script=HERE / "signal_at_round.py")
    assert killed.returncode != 0
    assert json.loads((tmp / "cut" / "checkpoint" / "latest.json").read_text())["round"] == 8
    resumed = launch("run", "--resume", "cut", *common)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp / "cut" / "model.npz").read_bytes() == (tmp / "full" / "model.npz").read_bytes()
    assert np.load(tmp / "cut" / "model.npz") is not None
