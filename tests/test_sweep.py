"""python -m mpifl sweep under mpiexec (a refusal printed once, exit 2) and sweep files checked; the sweeps themselves
run in-process on real ranks in tests/test_mpi_sweep.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mpifl.errors import ConfigError
from mpifl.sweep import Sweep

REPO = Path(__file__).resolve().parents[1]
MPIEXEC = shutil.which("mpiexec")
SWEEP = '''
job = "{job}"
ranks_per_job = 2
schedule = "{schedule}"
out = "{out}"

[grid]
seed = [1, 2]
"train.lr" = [0.2, 1e12, 0.5]

[set]
rounds = 4
'''


def mpiexec(n, *args, cwd):
    if MPIEXEC is None:
        pytest.fail("mpiexec not found: install the 'mpich' wheel or load your cluster's MPI")
    return subprocess.run([MPIEXEC, "-n", str(n), sys.executable, "-m", "mpifl", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_the_sweep_command_refuses_a_rank_count_that_does_not_split_with_one_message_and_exit_2(tmp_path):
    (tmp_path / "sweep.toml").write_text(SWEEP.format(job=REPO / "jobs" / "distributed_synthetic.toml",
                                                      schedule="dynamic", out="out"))
    proc = mpiexec(3, "sweep", "sweep.toml", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("ranks_per_job=2 ranks, but the job has 3: start a multiple of 2 ranks") == 1
    assert "Traceback" not in proc.stderr


def test_sweep_files_are_checked_with_messages_that_name_the_file_and_key(tmp_path):
    path = tmp_path / "bad.toml"
    for text, message in [
        ("ranks_per_job = 0\n[grid]\nseed = [1]", "'ranks_per_job' parameter in .*bad.toml must be an int >= 1"),
        ("[grid]\nseed = []", "must give each key a non-empty list"),
        ('schedule = "random"\n[grid]\nseed = [1]', "'schedule' parameter in .*bad.toml must be one of"),
        ("grids = 1", "Unknown key\\(s\\) grids in .*bad.toml"),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            Sweep.read(path)


def test_points_are_the_product_of_the_grid_in_file_order(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[grid]\n"train.lr" = [0.1, 0.2]\nserver = {strategy = ["fedavg", "scaffold"]}\n')
    assert Sweep.read(path).points() == [
        {"train.lr": 0.1, "server.strategy": "fedavg"}, {"train.lr": 0.1, "server.strategy": "scaffold"},
        {"train.lr": 0.2, "server.strategy": "fedavg"}, {"train.lr": 0.2, "server.strategy": "scaffold"}]


def test_every_point_is_validated_before_any_runs_and_each_invalid_one_is_named(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(f'job = "{REPO / "jobs" / "default.toml"}"\n[grid]\n"train.lrr" = [0.1, 0.2]\n')
    with pytest.raises(ConfigError) as info:
        Sweep.read(path).check_points()
    text = str(info.value)
    assert text.startswith("2 of 2 sweep points are invalid; no point was run")
    assert "point 0 (train.lrr=0.1): Unknown key 'train.lrr'" in text and "point 1 (train.lrr=0.2)" in text
    path.write_text('[grid]\n"train.lr" = [0.1, -1.0]\n"server.strategy" = ["fedavg", "nope"]\n')
    with pytest.raises(ConfigError, match="3 of 4 sweep points are invalid") as info:
        Sweep.read(path).check_points()
    assert "point 1 (train.lr=0.1, server.strategy='nope')" in str(info.value)
    path.write_text('[grid]\n"train.lr" = [0.1, 0.2]\n')
    Sweep.read(path).check_points()  # valid points pass
