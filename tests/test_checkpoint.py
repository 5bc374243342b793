"""Checkpoints and signals: a killed, stopped or finished run resumes to a bitwise-identical model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
MPIEXEC = shutil.which("mpiexec")

JOBS = {
    "federated": ["--set", "train.momentum=0.9", "--set", "server.fraction=0.5"],
    "distributed": ["--set", "mode=distributed", "--set", "train.momentum=0.9", "--set", "train.algorithm=local_sgd"],
    "lbfgs": ["--set", "mode=distributed", "--set", "train.optimizer=lbfgs", "--set", "train.tol=0"],
    # stateful federated algorithms: SCAFFOLD's client controls, FedAvgM's momentum, the FedOpt moments
    **{name: ["--set", f"server.strategy={name}", "--set", "server.fraction=0.5", "--set", "train.stragglers=0.5",
              "--set", "train.epochs=2"]
       for name in ("scaffold", "fedavgm", "fedadagrad", "fedadam", "fedyogi")},
    # the MLP: a flat parameter vector, seeded initial weights, and SCAFFOLD's controls of its shape
    "mlp_federated": ["--set", "model.kind=mlp", "--set", "model.hidden=[16]", "--set", "train.momentum=0.9",
                      "--set", "server.strategy=scaffold", "--set", "server.fraction=0.5", "--set", "train.lr=0.05"],
    # an aggregator whose per-round metrics are lists (the selected clients), checkpointed with the round
    "krum": ["--set", "server.aggregator=krum", "--set", "data.clients=6", "--set", "train.momentum=0.9"],
    # compressed updates: each client's error-feedback residual, and each worker's, carried across the cut
    "topk_feedback": ["--set", "compress.uplink=topk", "--set", "compress.error_feedback=true",
                      "--set", "server.fraction=0.5", "--set", "train.momentum=0.9"],
    "qsgd_distributed": ["--set", "mode=distributed", "--set", "train.algorithm=gradient_averaging",
                         "--set", "compress.uplink=qsgd", "--set", "compress.error_feedback=true"],
    # differential privacy: the adaptive clip and the rounds the accountant has composed, carried across the cut
    "dp_adaptive": ["--set", "privacy.noise_multiplier=0.3", "--set", "privacy.adaptive=true",
                    "--set", "server.sampling=poisson", "--set", "server.fraction=0.7", "--set", "data.clients=14"],
    # secure aggregation (SecAgg+, dropouts) carrying distributed DP noise: fresh keys every round, same sums
    "secagg_dp": ["--set", "secagg.enabled=true", "--set", "secagg.plus=true", "--set", "secagg.dropout=0.1",
                  "--set", "data.clients=9", "--set", "privacy.noise_multiplier=0.5", "--set", "privacy.noise=distributed"],
    # local DP: each client's noise from (seed, round, client) and its release count (its epsilon) across the cut
    "local_dp": ["--set", "privacy.where=local", "--set", "privacy.mechanism=laplace", "--set",
                 "privacy.noise_multiplier=0.05", "--set", "server.fraction=0.5", "--set", "train.momentum=0.9"],
    # a user's strategy from their own module (examples/fedexp.py, imported by module:Class on every rank)
    "plugin_fedexp": ["--set", "server.strategy=examples.fedexp:FedExP", "--set", "server.fraction=0.5",
                      "--set", "train.momentum=0.9", "--set", "server.epsilon=0.01"],
    # the CNN: a flat vector of convolution, pooling and dense layers, seeded He initialisation
    "cnn_federated": ["--set", "model.kind=cnn", "--set", "model.architecture=custom", "--set",
                      'model.layers=["conv 3 4 same", "pool", "dense 16"]', "--set", "train.momentum=0.9",
                      "--set", "server.fraction=0.5", "--set", "train.lr=0.05"],
    "mlp_distributed": ["--set", "model.kind=mlp", "--set", "model.hidden=[16, 8]", "--set", "mode=distributed",
                        "--set", "train.momentum=0.9", "--set", "train.algorithm=local_sgd", "--set", "train.lr=0.05"],
}


def mpifl(n, *args, cwd, script=None, timeout=120):
    head = [str(script)] if script else ["-m", "mpifl"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([MPIEXEC, "-n", str(n), sys.executable, *head, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


FAST = ("federated", "distributed", "local_dp")  # the rest of the matrix runs with tests/run.sh --all


@pytest.mark.parametrize("mode", [m if m in FAST else pytest.param(m, marks=pytest.mark.slow) for m in JOBS])
def test_killed_run_resumes_to_the_same_bytes(mode, tmp_path):
    common = ["--set", "rounds=30", "--set", "checkpoint.every=5", "--quiet", *JOBS[mode]]
    full = mpifl(4, *common, "--out", "full", cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    killed = mpifl(4, "23", "1", "SIGKILL", *common, "--out", "cut", cwd=tmp_path, script=HERE / "signal_at_round.py")
    assert killed.returncode != 0
    assert json.loads((tmp_path / "cut" / "checkpoint" / "latest.json").read_text())["round"] == 20
    assert not (tmp_path / "cut" / "model.npz").exists()
    resumed = mpifl(4, "--resume", "cut", *common, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "cut" / "model.npz").read_bytes() == (tmp_path / "full" / "model.npz").read_bytes()
    full_rows = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    cut_rows = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    for key in ("loss", "participants", "server", "downlink_bytes_total", "uplink_bytes_total",
                "uplink_bytes_uncompressed_total"):
        assert [json.loads(r).get(key) for r in cut_rows] == [json.loads(r).get(key) for r in full_rows]
    privacy = [[(json.loads(r).get("stages") or {}).get("privacy") for r in rows] for rows in (cut_rows, full_rows)]
    assert privacy[0] == privacy[1]  # epsilon (timings, the other stages' fields, differ from run to run)


def settings(**values) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


ASYNC = settings(**{"mode": "federated", "server.mode": "async", "rounds": 12, "data.clients": 10,
                    "server.concurrency": 4, "clients.speed": "lognormal", "train.momentum": 0.5})
PERSONAL = settings(**{"rounds": 12, "data.clients": 6, "data.alpha": 0.1, "data.client_test_fraction": 0.25,
                       "server.fraction": 0.5, "train.momentum": 0.5})
# state beyond the model: FedBuff's buffer and FedAsync's staleness clock on the server; Ditto's personal
# models and FedRep's heads in each client rank's checkpoint file
STATEFUL = {
    "fedbuff": [*ASYNC, *settings(**{"server.strategy": "fedbuff", "server.buffer": 3})],
    "fedasync": [*ASYNC, *settings(**{"server.strategy": "fedasync", "server.staleness": "hinge",
                                     "server.staleness_a": 1.0})],
    "ditto": [*PERSONAL, *settings(**{"server.strategy": "ditto"})],
    "fedrep": [*PERSONAL, *settings(**{"server.strategy": "fedrep", "model.kind": "mlp", "model.hidden": "[16]",
                                       "server.head_epochs": 3})],
    # per-client state spilled to disk (mpifl.client_state): SCAFFOLD's control variates and the clients' momentum
    # in memory-mapped files, changed in place after the checkpoint and put back from the undo journal
    "scaffold_disk": [*PERSONAL, *settings(**{"server.strategy": "scaffold", "state.store": "disk"})],
    "scaffold_disk_bfloat16": [*PERSONAL, *settings(**{"server.strategy": "scaffold", "state.store": "disk",
                                                       "state.dtype": "bfloat16"})],
}


@pytest.mark.parametrize("name", [name if name in ("fedbuff", "ditto", "scaffold_disk")
                                  else pytest.param(name, marks=pytest.mark.slow)
                                  for name in STATEFUL])  # server state, client state, and client state on disk
def test_a_killed_async_or_personal_run_resumes_to_the_same_bytes(name, tmp_path):
    common = [*STATEFUL[name], "--set", "checkpoint.every=4", "--quiet"]
    full = mpifl(3, "run", *common, "--out", "full", cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    killed = mpifl(3, "10", "2", "SIGKILL", "run", *common, "--out", "cut", cwd=tmp_path,
                   script=HERE / "signal_at_round.py")
    assert killed.returncode != 0
    assert json.loads((tmp_path / "cut" / "checkpoint" / "latest.json").read_text())["round"] == 8
    resumed = mpifl(3, "run", "--resume", "cut", *common, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "cut" / "model.npz").read_bytes() == (tmp_path / "full" / "model.npz").read_bytes()
    full, cut = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("full", "cut"))
    assert cut.get("final_mean_personal_accuracy") == full.get("final_mean_personal_accuracy")


@pytest.mark.parametrize("mode, signame, expected_round", [
    # all ranks agree at the end of the round the signal arrived in (the slow tier: the same handler and
    # checkpoint as the federated case, which runs by default)
    pytest.param("distributed", "SIGUSR1", 12, marks=pytest.mark.slow),
    ("federated", "SIGTERM", 13),  # a client's flag reaches the server with the next round's results
])
def test_signal_finishes_the_round_checkpoints_and_exits_75(mode, signame, expected_round, tmp_path):
    common = ["--set", "rounds=30", "--quiet", *JOBS[mode]]
    full = mpifl(4, *common, "--out", "full", cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    stopped = mpifl(4, "12", "2", signame, *common, "--out", "cut", cwd=tmp_path, script=HERE / "signal_at_round.py")
    assert stopped.returncode == 75, stopped.stderr
    assert stopped.stderr.count(f"stopped by a signal after round {expected_round}") == 1
    assert "Resume with: mpiexec -n 4 python -m mpifl run cut/config.toml --resume cut" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    summary = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["after_round"] == expected_round
    assert not (tmp_path / "cut" / "model.npz").exists()
    resumed = mpifl(4, "--resume", "cut", *common, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "cut" / "model.npz").read_bytes() == (tmp_path / "full" / "model.npz").read_bytes()


def test_sigterm_to_mpiexec_stops_every_rank_gracefully(tmp_path):
    proc = subprocess.Popen(
        [MPIEXEC, "-n", "4", sys.executable, "-m", "mpifl", "--set", "rounds=10000000", "--set", "log_every=500",
         "--out", "r"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    metrics = tmp_path / "r" / "metrics.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 75, err
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["status"] == "stopped"
    assert json.loads((tmp_path / "r" / "checkpoint" / "latest.json").read_text())["round"] > 0
