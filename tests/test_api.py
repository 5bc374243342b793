"""The Python API: mpifl.job and mpifl.run, in process and as a user's script under mpiexec."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI

import mpifl
from mpifl.errors import ConfigError
from mpifl.runner import run_job

COMM = MPI.COMM_WORLD
ROOT = Path(__file__).parent.parent
SCRIPT = '''\
import mpifl

result = mpifl.run("jobs/fedprox_synthetic.toml", rounds=5, server__strategy="scaffold", out="scaffold")
for record in result.history:
    print(f"round {record['round']:2d}  loss {record['loss']:.4f}  accuracy {record['accuracy']:.3f}")
print(f"{result.summary['seconds_per_round'] * 1e3:.1f} ms per round; model {result.model.shape}")
try:
    mpifl.run("jobs/fedprox_synthetic.toml", train__lr=-1.0)
except mpifl.MpiflError as error:
    print(f"refused: {error}")
'''


def test_overrides_in_every_form_make_the_same_job():
    dotted = mpifl.job(None, rounds=7, train__lr=0.05, server__strategy="fedprox", server__proximal_mu=0.1)
    nested = mpifl.job({"rounds": 7, "train": {"lr": 0.05}}, server={"strategy": "fedprox", "proximal_mu": 0.1})
    from_dict = mpifl.job({"rounds": 7, "train.lr": 0.05, "server.strategy": "fedprox", "server.proximal_mu": 0.1})
    assert dotted.values == nested.values == from_dict.values
    assert mpifl.job(dotted, rounds=9)["rounds"] == 9 and mpifl.job(dotted, rounds=9)["train.lr"] == 0.05
    assert mpifl.job(ROOT / "jobs" / "fedprox_synthetic.toml", rounds=3)["data.name"] == "fedprox_synthetic"


def test_a_bad_override_is_the_same_config_error_as_on_the_command_line():
    with pytest.raises(ConfigError, match="train.lr") as caught:
        mpifl.job(None, train__lr=-1.0)
    with pytest.raises(ConfigError) as cli:
        from mpifl import config

        config.load(None, ["train.lr=-1.0"])
    assert str(caught.value).split(" in ")[0] == str(cli.value).split(" in ")[0]


def test_run_without_out_writes_nothing_and_refuses_checkpoints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = mpifl.run(None, comm=MPI.COMM_SELF, mode="distributed", rounds=3, log_every=1)
    assert result.run_dir is None and list(tmp_path.iterdir()) == []
    assert [r["round"] for r in result.history] == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="checkpoint.every needs a run directory"):
        mpifl.run(None, comm=MPI.COMM_SELF, mode="distributed", rounds=3, checkpoint__every=1)


@pytest.mark.mpi(min_size=2)
def test_run_returns_the_same_result_on_every_rank_as_the_command_line_path(tmp_path):
    root = COMM.bcast(tmp_path if COMM.rank == 0 else None)
    result = mpifl.run(ROOT / "jobs" / "fedprox_synthetic.toml", comm=COMM, rounds=4, log_every=2, out=root / "api")
    everyone = COMM.allgather((result.model.tobytes(), result.history, result.summary))
    assert all(e == everyone[0] for e in everyone)
    cfg = mpifl.job(ROOT / "jobs" / "fedprox_synthetic.toml", rounds=4, log_every=2)
    direct = run_job(COMM, cfg, root / "direct", verbose=False)
    assert np.array_equal(result.model, direct.theta)
    timings = {"seconds", "compute_seconds", "comm_seconds", "breakdown", "slowest_rank"}
    assert [{k: v for k, v in r.items() if k not in timings} for r in result.history] == [
        {k: v for k, v in r.as_json().items() if k not in timings} for r in direct.records]
    if COMM.rank == 0:  # rank 0 writes the files; the others may return before it has
        assert (root / "api" / "model.npz").read_bytes() == (root / "direct" / "model.npz").read_bytes()


@pytest.mark.mpi(min_size=2)
def test_errors_raise_the_same_typed_exception_on_every_rank():
    with pytest.raises(ConfigError) as caught:
        mpifl.run(None, comm=COMM, server__fraction=1.5)
    assert len(set(COMM.allgather(str(caught.value)))) == 1


def test_the_readme_script_runs_under_mpiexec_4(tmp_path):
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        pytest.fail("mpiexec not found: install the 'mpich' wheel or load your cluster's MPI")
    (tmp_path / "jobs").mkdir()
    shutil.copy(ROOT / "jobs" / "fedprox_synthetic.toml", tmp_path / "jobs")
    (tmp_path / "script.py").write_text(SCRIPT)
    proc = subprocess.run([mpiexec, "-n", "4", sys.executable, "script.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("round  5  loss") == 4  # every rank holds the same history
    assert proc.stdout.count("refused: ") == 4 and "train.lr" in proc.stdout
    assert (tmp_path / "scaffold" / "summary.json").exists()
