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


def partition(*args) -> int:
    """The partition command in this process (its files are what it wrote)."""
    from mpifl.data.partition_cli import main

    return main([str(a) for a in args])


def pixels_csv(path: Path, rows: int, seed: int) -> np.ndarray:
    """A raw table as a user brings it: 0-255 pixels (one column constant) and a label column."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (rows, 5)).astype(np.float64)
    X[:, 2] = 7.0
    y = rng.integers(0, 3, rows)
    path.write_text("\n".join(",".join(f"{v:g}" for v in (*x, label)) for x, label in zip(X, y)) + "\n")
    return X


@pytest.mark.parametrize("method, scaler", [("minmax", "MinMaxScaler"), ("standard", "StandardScaler"),
                                            ("maxabs", "MaxAbsScaler")])
def test_scaling_is_fitted_on_the_training_rows_only_as_scikit_learn_fits_it(method, scaler, tmp_path):
    import sklearn.preprocessing

    X = pixels_csv(tmp_path / "d.csv", 200, 0)
    assert partition(tmp_path / "d.csv", "--clients", 4, "--scale", method, "--out", tmp_path / "p") == 0
    train, test = methods.split_train_test(200, 0.2, stream(0, Purpose.SPLIT))
    reference = getattr(sklearn.preprocessing, scaler)().fit(X[train])
    Xs, _, Xt, _ = load_all(tmp_path / "p")
    assert rows_as_set(np.vstack(Xs), np.zeros(train.size)) == rows_as_set(reference.transform(X[train]),
                                                                         np.zeros(train.size))
    np.testing.assert_allclose(Xt, reference.transform(X[test]), rtol=1e-12, atol=1e-12)  # with the train fit
    assert json.loads((tmp_path / "p" / "manifest.json").read_text())["scaler"]["method"] == method


def test_a_later_file_is_scaled_by_the_first_partitions_scaler(tmp_path):
    first = pixels_csv(tmp_path / "a.csv", 120, 1)
    later = pixels_csv(tmp_path / "b.csv", 50, 2)
    assert partition(tmp_path / "a.csv", "--clients", 2, "--scale", "minmax", "--out", tmp_path / "a") == 0
    assert partition(tmp_path / "b.csv", "--clients", 1, "--test-fraction", "0", "--scaler-from", tmp_path / "a",
                     "--out", tmp_path / "b") == 0
    train, _ = methods.split_train_test(120, 0.2, stream(0, Purpose.SPLIT))
    low, high = first[train].min(axis=0), first[train].max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    (Xb,), _, _, _ = load_all(tmp_path / "b")
    assert rows_as_set(Xb, np.zeros(50)) == rows_as_set((later - low) / span, np.zeros(50))
    scaler = json.loads((tmp_path / "b" / "manifest.json").read_text())["scaler"]
    assert scaler == json.loads((tmp_path / "a" / "manifest.json").read_text())["scaler"]


def test_scaling_sparse_rows_keeps_them_sparse_and_refuses_a_shift(tmp_path, capsys):
    X = sp.random(100, 50, density=0.05, random_state=1, format="csr") * 10
    dump_svmlight_file(X, np.arange(100) % 2, str(tmp_path / "d.svm"))
    assert partition(tmp_path / "d.svm", "--clients", 2, "--scale", "standard", "--out", tmp_path / "s") == 2
    assert "use --scale maxabs" in capsys.readouterr().err and not (tmp_path / "s").exists()
    assert partition(tmp_path / "d.svm", "--clients", 2, "--scale", "maxabs", "--out", tmp_path / "m") == 0
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["sparse"]
    Xs, _, Xt, _ = load_all(tmp_path / "m")
    assert np.abs(np.vstack([*Xs, Xt])).max() <= 10.0  # the test rows may exceed 1; the training rows do not
    assert np.abs(np.vstack(Xs)).max() == pytest.approx(1.0)


def test_plot_without_matplotlib_is_refused_before_any_file_is_written(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as on a machine without it
    assert partition("digits", "--clients", 2, "--out", tmp_path / "p", "--plot") == 2
    assert "nothing was written" in capsys.readouterr().err and not (tmp_path / "p").exists()
    assert partition("digits", "--clients", 2, "--out", tmp_path / "p") == 0  # no --force needed: nothing was left


def test_a_validation_fraction_writes_each_clients_own_validation_rows_that_a_run_uses(tmp_path):
    assert partition("digits", "--clients", 4, "--validation-fraction", 0.25, "--out", tmp_path / "p") == 0
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    root = tmp_path / "p"
    for entry in manifest["clients"]:
        held = entry["validation"]
        assert held["dir"] == f"{entry['dir']}/validation"
        assert held["rows"] == round(0.25 * (held["rows"] + entry["rows"]))
        for rel, digest in held["files"].items():
            assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest
    import mpifl

    result = mpifl.run(None, rounds=2, data__path=str(root), mode="distributed")  # distributed: the clients' rows
    assert result.history[0]["val_loss"] is None
    from mpifl.data.files import client_validation_parts

    parts = client_validation_parts(str(root), range(4), np.dtype(np.float64), True)
    assert [p[1].size for p in parts] == [e["validation"]["rows"] for e in manifest["clients"]]
