"""The Python API: mpifl.job and mpifl.run, in process and as a user's script under mpiexec."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mpi4py import MPI

import mpifl
from mpifl.errors import ConfigError

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
