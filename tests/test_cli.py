"""The command line as users run it: real mpiexec, real processes, real exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
MPIEXEC = shutil.which("mpiexec")


def mpirun(n, *args, cwd, timeout=120):
    if MPIEXEC is None:
        pytest.fail("mpiexec not found: install the 'mpich' wheel or load your cluster's MPI")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [MPIEXEC, "-n", str(n), sys.executable, *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=timeout,
    )


def test_default_job_on_8_ranks_reaches_90_percent(tmp_path):
    proc = mpirun(8, "-m", "mpifl", "--out", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("round")]
    assert len(lines) == 51 and "test acc" in lines[-1]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["final_accuracy"] >= 0.90
    assert summary["ranks"] == 8 and summary["mode"] == "federated" and summary["rounds"] == 50
    assert {"wall_seconds", "compile_seconds", "final_loss"} <= summary.keys()
    rows = [json.loads(ln) for ln in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 51
    assert {"round", "loss", "accuracy", "seconds", "compute_seconds", "comm_seconds"} <= rows[0].keys()
    assert (tmp_path / "out" / "config.toml").read_text().startswith('mode = "federated"')
    assert (tmp_path / "out" / "model.npz").stat().st_size > 0


def test_default_run_directory_is_made_under_runs(tmp_path):
    proc = mpirun(2, "-m", "mpifl", "--set", "rounds=2", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    made = list((tmp_path / "runs").glob("federated-*"))
    assert len(made) == 1 and (made[0] / "summary.json").exists()


def test_federated_on_one_rank_points_to_distributed_mode(tmp_path):
    proc = mpirun(1, "-m", "mpifl", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert "at least 2 ranks" in proc.stderr and "distributed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_distributed_mode_runs_as_a_plain_process(tmp_path):
    job = HERE.parent / "jobs" / "distributed_synthetic.toml"
    proc = subprocess.run(
        [sys.executable, "-m", "mpifl", "run", str(job), "--set", "rounds=2", "--set", "data.n_samples=5000", "--out", "o"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["ranks"] == 1


def test_bad_config_fails_every_rank_once_without_traceback(tmp_path):
    proc = mpirun(4, "-m", "mpifl", "--set", "train.lr=-1", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("The 'train.lr' parameter") == 1
    assert "Got -1 instead." in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_unknown_key_in_a_job_file(tmp_path):
    (tmp_path / "job.toml").write_text("[train]\nlearnig_rate = 0.1\n")
    proc = mpirun(2, "-m", "mpifl", "run", "job.toml", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "Unknown key 'train.learnig_rate' in job.toml" in proc.stderr


@pytest.mark.parametrize("how", [("--out", "out"), ("--api",), ("--api", "--rank", "0")],
                         ids=["command line, a client", "mpifl.run, a client", "mpifl.run, the server"])
def test_a_failing_rank_aborts_the_whole_job_quickly(tmp_path, how):
    rank = how[-1] if "--rank" in how else "2"
    started = time.monotonic()
    proc = mpirun(4, str(HERE / "fail_one_rank.py"), *how, cwd=tmp_path, timeout=60)
    elapsed = time.monotonic() - started
    assert proc.returncode != 0
    assert f"mpifl: rank {rank}: " in proc.stderr and f"injected failure on rank {rank}" in proc.stderr
    assert elapsed < 30


def test_info_reports_the_mpi_setup(tmp_path):
    proc = mpirun(2, "-m", "mpifl", "info", cwd=tmp_path, timeout=60)
    assert proc.returncode == 0
    assert "MPI library" in proc.stdout and ("MPICH" in proc.stdout or "Open MPI" in proc.stdout)
    assert proc.stdout.count("thread level") == 1


def test_info_shows_the_cpu_the_variants_and_the_pin(tmp_path):
    proc = mpirun(1, "-m", "mpifl", "info", cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    pin = os.environ["MPIFL_KERNEL_VARIANT"]  # conftest pins one unless the caller did
    assert f"kernel variants  tuned, prefetch, libm4, plain, fused, fused-libm; pinned to {pin} by MPIFL_KERNEL_VARIANT" in proc.stdout
    assert "cpu              " in proc.stdout and "LLVM target" in proc.stdout
    assert "chosen variants" in proc.stdout and "kernel-variants-" in proc.stdout


def test_a_misspelt_variant_pin_stops_every_rank_with_one_message(tmp_path):
    env = {**os.environ, "MPIFL_KERNEL_VARIANT": "fastest"}
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "mpifl", "--set", "rounds=2"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "MPIFL_KERNEL_VARIANT='fastest' is not a kernel variant; use one of tuned, prefetch, libm4, plain, fused, fused-libm" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_jit_cache_is_written_once_and_reused_when_8_ranks_start_together(tmp_path):
    cache = tmp_path / "numba-cache"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    cmd = [MPIEXEC, "-n", "8", sys.executable, "-m", "mpifl", "--set", "rounds=2", "--quiet"]
    first = subprocess.run([*cmd, "--out", "a"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "NumbaWarning" not in first.stderr
    files = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    assert any(p.suffix == ".nbi" for p in files) and any(p.suffix == ".nbc" for p in files)
    second = subprocess.run([*cmd, "--out", "b"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == files


def test_help_exits_cleanly_and_prints_once(tmp_path):
    proc = mpirun(2, "-m", "mpifl", "run", "--help", cwd=tmp_path, timeout=60)
    assert proc.returncode == 0 and proc.stdout.count("usage:") == 1 and "Abort" not in proc.stderr


def test_data_that_cannot_be_partitioned_fails_every_rank_with_one_message(tmp_path):
    proc = mpirun(8, "-m", "mpifl", "--set", "data.name=synthetic", "--set", "data.n_samples=6",
                  "--set", "data.n_classes=2", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("Cannot partition") == 1 and "Traceback" not in proc.stderr


def test_a_diverging_job_exits_3_with_one_message_and_strict_json(tmp_path):
    proc = mpirun(3, "-m", "mpifl", "run", str(HERE.parent / "jobs" / "distributed_synthetic.toml"), "--set", "train.lr=1e30",
                  "--set", "model.kind=linear", "--set", "train.momentum=0.99", "--out", "out", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    output = proc.stdout + proc.stderr
    assert output.count("training diverged: the parameters stopped being finite") == 1
    assert "Try a smaller train.lr" in output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert summary["status"] == "diverged"
    assert not (tmp_path / "out" / "model.npz").exists()


def test_a_run_directory_is_never_written_over_without_overwrite(tmp_path):
    first = mpirun(2, "-m", "mpifl", "--set", "rounds=2", "--quiet", "--out", "r", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    model = (tmp_path / "r" / "model.npz").read_bytes()
    again = mpirun(2, "-m", "mpifl", "--set", "rounds=3", "--quiet", "--out", "r", cwd=tmp_path)
    assert again.returncode == 2
    assert "The run directory r already holds a run" in again.stderr and "--resume r" in again.stderr
    assert "--overwrite" in again.stderr
    assert (tmp_path / "r" / "model.npz").read_bytes() == model
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["rounds"] == 2
    over = mpirun(2, "-m", "mpifl", "--set", "rounds=3", "--quiet", "--out", "r", "--overwrite", cwd=tmp_path)
    assert over.returncode == 0, over.stderr
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["rounds"] == 3


def test_the_progress_bar_on_a_terminal_and_lines_in_a_log(tmp_path):
    env = {**os.environ, "MPIFL_PROGRESS": "bar"}
    cmd = [MPIEXEC, "-n", "3", sys.executable, "-m", "mpifl", "--set", "rounds=6"]
    bar = subprocess.run([*cmd, "--out", "bar"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert bar.returncode == 0, bar.stderr
    assert "6/6 rounds" in bar.stdout + bar.stderr and "round    6  train loss" not in bar.stdout
    log = mpirun(3, "-m", "mpifl", "--set", "rounds=6", "--out", "log", cwd=tmp_path)  # stdout is a pipe here
    assert "round    6  train loss" in log.stdout and "rounds [" not in log.stdout + log.stderr
    quiet = mpirun(3, "-m", "mpifl", "--set", "rounds=6", "--out", "quiet", "--quiet", cwd=tmp_path)
    assert quiet.stdout == "" and quiet.returncode == 0


@pytest.mark.parametrize("example", ["fedexp", "meamed", "signsgd", "numpy_softmax"])
def test_each_example_runs_from_the_repository_root_under_mpiexec_3(example, tmp_path):
    """As the docs run them: the job names its class by module:Class, importable from the repository root."""
    root = HERE.parent
    proc = mpirun(3, "-m", "mpifl", "run", f"examples/{example}.toml", "--set", "rounds=3", "--out",
                  str(tmp_path / "run"), "--quiet", cwd=root)
    assert proc.returncode == 0, proc.stderr
    written = (tmp_path / "run" / "config.toml").read_text()
    assert f'"examples.{example}:' in written  # the class is recorded by its path, for --resume
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["rounds_run"] == 3


def test_a_job_pays_only_for_the_optional_stacks_it_uses(tmp_path):
    """The default job loads no accountant, crypto, plotting, SciPy signal or torch; a private job loads the
    accountant, and a secure one the crypto stack."""
    script = HERE / "loaded_modules.py"
    plain = mpirun(2, str(script), "--quiet", "--set", "rounds=2", "--out", "a", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip().splitlines()[-1] == "loaded:"
    one = mpirun(2, str(script), "--quiet", "--set", "rounds=2", "--set", "secagg.enabled=true", "--out", "c",
                 cwd=tmp_path)  # the default job on 2 ranks has one client: a sum of one would reveal it
    assert one.returncode == 2 and "secure aggregation needs at least 2 clients a round" in one.stderr
    private = mpirun(2, str(script), "--quiet", "--set", "rounds=2", "--set", "privacy.noise_multiplier=0.5",
                     "--set", "secagg.enabled=true", "--set", "data.clients=4", "--out", "b", cwd=tmp_path)
    assert private.returncode == 0, private.stderr
    loaded = private.stdout.strip().splitlines()[-1].split()[1:]
    assert "dp_accounting" in loaded and "cryptography" in loaded and "torch" not in loaded
