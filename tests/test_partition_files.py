"""python -m mpifl partition: every method, every source format, and a manifest that matches the files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import dump_svmlight_file

from serial_tools import mpifl_command

from mpifl.data import partition as methods
from mpifl.data import store
from mpifl.data.sparse import CSR
from mpifl.rng import Purpose, stream


def cli(*args, cwd=None):
    return mpifl_command("partition", *args, cwd=cwd)


def load_all(root: Path):
    """(client X list, client y list, test X, test y) as dense arrays, straight from the files."""
    manifest = store.read_manifest(root)

    def dense(entry):
        X, y = store.load_part(manifest, entry, "test", np.dtype("float64"), verify=True)
        return (X.toarray() if isinstance(X, CSR) else np.asarray(X)), np.asarray(y)

    parts = [dense(manifest.client(k)) for k in range(manifest.n_clients)]
    if manifest.doc["test"]["rows"] == 0:
        test = (np.empty((0, manifest.n_features)), np.empty(0))
    else:
        test = dense(manifest.doc["test"])
    return [p[0] for p in parts], [p[1] for p in parts], *test


def rows_as_set(X, y):
    return sorted(map(tuple, np.column_stack([X, y]).round(12)))


def test_shards_give_each_client_few_labels():
    labels = np.repeat(np.arange(10), 100).astype(float)
    parts = methods.shards(labels, 20, 2, stream(0, Purpose.PARTITION))
    assert sorted(np.concatenate(parts).tolist()) == list(range(1000))
    assert max(np.unique(labels[p]).size for p in parts) <= 2


@pytest.mark.parametrize("distribution", ["lognormal", "powerlaw"])
def test_quantity_skew_covers_every_row_and_leaves_no_client_empty(distribution):
    parts = methods.quantity(5000, 50, stream(1, Purpose.PARTITION), distribution, 1.5)
    sizes = np.array([p.size for p in parts])
    assert sizes.sum() == 5000 and sizes.min() >= 1 and sizes.max() > 3 * np.median(sizes)
    assert sorted(np.concatenate(parts).tolist()) == list(range(5000))


def test_natural_makes_one_client_per_group():
    groups = np.array([5, 3, 5, 9, 3, 5])
    assert [p.tolist() for p in methods.natural(groups)] == [[1, 4], [0, 2, 5], [3]]


@pytest.mark.parametrize("method, extra", [("iid", []), ("dirichlet", ["--alpha", "0.3"]),
                                           ("shards", ["--shards-per-client", "2"]), ("quantity", [])])
def test_digits_partitions_hold_every_row_once_and_the_manifest_matches(method, extra, tmp_path):
    proc = cli("digits", "--clients", 10, "--method", method, *extra, "--out", tmp_path / "p", "--plot")
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "p"
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["n_features"] == 64 and manifest["n_classes"] == 10 and manifest["method"] == method
    assert len(manifest["clients"]) == 10 and manifest["test"]["rows"] == 359
    for entry in [*manifest["clients"], manifest["test"]]:
        for rel, digest in entry["files"].items():
            assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest
    Xs, ys, Xt, yt = load_all(root)
    for entry, X, y in zip(manifest["clients"], Xs, ys):
        assert entry["rows"] == y.size == X.shape[0]
        assert entry["label_counts"] == np.bincount(y.astype(int), minlength=10).tolist()
    from mpifl.data.builtin import load_digits

    X, y = load_digits()
    assert rows_as_set(np.vstack([*Xs, Xt]), np.concatenate([*ys, yt])) == rows_as_set(X, y)
    assert (root / "label_distribution.png").read_bytes()[:4] == b"\x89PNG"


def test_csv_with_a_named_label_column_and_natural_clients(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3)).round(6)
    writer = rng.integers(0, 5, 40)
    label = rng.choice([3, 7], 40)
    lines = ["f1,writer,f2,f3,digit"] + [f"{a},{w},{b},{c},{lab}" for (a, b, c), w, lab in zip(X, writer, label)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    proc = cli(tmp_path / "d.csv", "--method", "natural", "--id-column", "writer", "--label-column", "digit",
               "--test-fraction", "0", "--out", tmp_path / "p")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["n_features"] == 3 and manifest["label_values"] == [3.0, 7.0]
    Xs, ys, _, _ = load_all(tmp_path / "p")
    assert len(Xs) == np.unique(writer).size
    for entry, Xk, yk in zip(manifest["clients"], Xs, ys):
        rows = np.flatnonzero(writer == entry["group"])
        assert rows_as_set(Xk, yk) == rows_as_set(X[rows], (label[rows] == 7).astype(float))


def test_libsvm_stays_sparse_end_to_end(tmp_path):
    X = sp.random(300, 1000, density=0.01, random_state=0, format="csr")
    y = np.where(np.arange(300) % 3 == 0, 1, -1)
    dump_svmlight_file(X, y, str(tmp_path / "d.svm"))
    proc = cli(tmp_path / "d.svm", "--clients", 4, "--out", tmp_path / "p")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["sparse"] and manifest["n_features"] == 1000 and manifest["label_values"] == [-1.0, 1.0]
    assert {Path(f).name for f in manifest["clients"][0]["files"]} == {"data.npy", "indices.npy", "indptr.npy", "y.npy"}
    Xs, ys, Xt, yt = load_all(tmp_path / "p")
    assert rows_as_set(np.vstack([*Xs, Xt]), np.concatenate([*ys, yt])) == rows_as_set(X.toarray(), (y > 0) * 1.0)


def test_npy_and_npz_sources(tmp_path):
    table = np.column_stack([np.arange(60.0).reshape(20, 3), np.arange(20) % 2])
    np.save(tmp_path / "d.npy", table)
    np.savez(tmp_path / "d.npz", X=table[:, :3], y=table[:, 3])
    for name in ("d.npy", "d.npz"):
        proc = cli(tmp_path / name, "--clients", 2, "--out", tmp_path / name.replace(".", "_"))
        assert proc.returncode == 0, proc.stderr
        Xs, ys, Xt, yt = load_all(tmp_path / name.replace(".", "_"))
        assert rows_as_set(np.vstack([*Xs, Xt]), np.concatenate([*ys, yt])) == rows_as_set(table[:, :3], table[:, 3])


@pytest.mark.parametrize("content, message", [
    ("a,b,label\n1,2,0\n1,x,1\n", "line 3: a field is not a number"),
    ("a,b,label\n1,2,0\n1,2\n", "line 3: 2 fields, but the first row has 3"),
    ("a,b,label\n1,2,0\n3,4,0\n", "classification needs 2 or more classes"),
])
def test_bad_csv_names_the_file_and_line(content, message, tmp_path):
    (tmp_path / "d.csv").write_text(content)
    proc = cli(tmp_path / "d.csv", "--clients", 1, "--test-fraction", "0", "--out", tmp_path / "p")
    assert proc.returncode == 2 and message in proc.stderr and "d.csv" in proc.stderr, proc.stderr


def test_an_unknown_label_column_lists_the_columns(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,c\n1,2,0\n3,4,1\n")
    proc = cli(tmp_path / "d.csv", "--clients", 1, "--label-column", "digit", "--out", tmp_path / "p")
    assert proc.returncode == 2 and "no label column 'digit'" in proc.stderr and "a, b, c" in proc.stderr


def test_an_existing_partition_is_not_overwritten_without_force(tmp_path):
    assert cli("digits", "--clients", 2, "--out", tmp_path / "p").returncode == 0
    again = cli("digits", "--clients", 3, "--out", tmp_path / "p")
    assert again.returncode == 2 and "--force" in again.stderr
    assert cli("digits", "--clients", 3, "--out", tmp_path / "p", "--force").returncode == 0
    assert len(json.loads((tmp_path / "p" / "manifest.json").read_text())["clients"]) == 3
