"""Every kind of bad partition fails on every rank, within seconds, with one message naming the file and client."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from serial_tools import mpifl_command

from mpifl.data import store

MPIEXEC = shutil.which("mpiexec")


def partition(tmp_path: Path, clients: int = 4) -> Path:
    out = tmp_path / "parts"
    proc = mpifl_command("partition", "digits", "--clients", clients, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out


def rewrite(root: Path, k: int, X: np.ndarray, y: np.ndarray) -> None:
    """Replace client k's arrays and keep the manifest consistent with them (rows and checksums)."""
    manifest = json.loads((root / "manifest.json").read_text())
    entry = manifest["clients"][k]
    entry["files"] = store.write_part(root, entry["dir"], X, y, np.dtype("float64"))
    entry["rows"] = int(y.size)
    (root / "manifest.json").write_text(json.dumps(manifest))


def client_arrays(root: Path, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = root / store.client_dir(k)
    return np.load(d / "X.npy"), np.load(d / "y.npy")


def with_nan(root):
    X, y = client_arrays(root, 2)
    X[5, 7] = np.nan
    rewrite(root, 2, X, y)


def with_extra_feature(root):
    X, y = client_arrays(root, 1)
    rewrite(root, 1, np.hstack([X, X[:, :1]]), y)


def with_bad_label(root):
    X, y = client_arrays(root, 3)
    y[0] = 12
    rewrite(root, 3, X, y)


def with_empty_client(root):
    X, y = client_arrays(root, 2)
    rewrite(root, 2, X[:0], y[:0])


def with_changed_bytes(root):
    path = root / "client_00002" / "y.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))


def truncated(root):
    path = root / "client_00000" / "X.npy"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


CASES = {
    "missing file": (lambda r: (r / "client_00001" / "X.npy").unlink(), [], "client 1:", "client_00001/X.npy is missing"),
    "checksum mismatch": (with_changed_bytes, [], "client 2:", "client_00002/y.npy does not match its sha256"),
    "truncated file": (truncated, ["data.verify=false"], "client 0:", "client_00000/X.npy cannot be read as .npy"),
    "NaN values": (with_nan, [], "client 2:", "client_00002 contains NaN or inf values"),
    "feature count": (with_extra_feature, [], "client 1:", "client_00001 has 65 features, not the manifest's n_features = 64"),
    "label outside classes": (with_bad_label, [], "client 3:", "has label 12, outside the manifest's 10 classes"),
    "empty client": (with_empty_client, [], "client 2 has no rows", "client_00002"),
}


@pytest.fixture(scope="module")
def clean_partition(tmp_path_factory) -> Path:
    """One clean partition of 4 clients; each case damages its own copy."""
    return partition(tmp_path_factory.mktemp("clean"))


@pytest.mark.xdist_group("damaged-partitions")  # one worker, so the clean partition is made once
@pytest.mark.parametrize("case", list(CASES))
def test_bad_partition_fails_everywhere_with_one_message(case, tmp_path, clean_partition):
    damage, overrides, who, what = CASES[case]
    root = tmp_path / "parts"
    shutil.copytree(clean_partition, root)
    damage(root)
    sets = [arg for o in [f"data.path={root}", "rounds=3", *overrides] for arg in ("--set", o)]
    started = time.monotonic()
    # 3 ranks: the server and two client ranks of two clients each, so the damaged client's rank fails while
    # the other client rank and the server must learn of it
    proc = subprocess.run([MPIEXEC, "-n", "3", sys.executable, "-m", "mpifl", "run", *sets, "--out", "run", "--quiet"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert time.monotonic() - started < 60
    assert proc.returncode == 2, proc.stderr
    assert who in proc.stderr and what in proc.stderr, proc.stderr
    assert proc.stderr.count("mpifl: error:") == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_more_client_ranks_than_clients_is_refused(tmp_path):
    root = partition(tmp_path, clients=3)
    proc = subprocess.run([MPIEXEC, "-n", "6", sys.executable, "-m", "mpifl", "run", "--set", f"data.path={root}",
                           "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert "3 clients cannot fill 5 client ranks" in proc.stderr and proc.stderr.count("mpifl: error:") == 1


def test_a_partition_without_a_manifest_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "mpifl", "run", "--set",
                           f"data.path={tmp_path / 'empty'}", "--quiet"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "manifest.json is missing" in proc.stderr, proc.stderr
