"""Hugging Face datasets as a partition source: save_to_disk directories, Parquet and Arrow files, cut by mpifl's
partitioners into the same per-client files.  The datasets are built here; nothing is downloaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mpi4py import MPI

import mpifl

datasets = pytest.importorskip("datasets")

from test_partition_files import cli, load_all, rows_as_set  # noqa: E402


def text_dataset(n: int = 120, seed: int = 0):
    """Token ids padded to 6, a ClassLabel of three topics, a string writer id, and a column to leave out."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 50, (n, 6))
    labels = rng.integers(0, 3, n)
    writers = rng.choice(["ann", "bo", "cy", "di"], n)
    features = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int64"), length=6),
                                  "label": datasets.ClassLabel(names=["sport", "news", "arts"]),
                                  "writer": datasets.Value("string"), "text": datasets.Value("string")})
    data = datasets.Dataset.from_dict({"input_ids": ids.tolist(), "label": labels.tolist(), "writer": writers.tolist(),
                                       "text": ["..."] * n}, features=features)
    return data, ids, labels, writers


def test_a_saved_dataset_is_cut_by_writer_and_every_row_lands_once(tmp_path):
    data, ids, labels, writers = text_dataset()
    data.save_to_disk(str(tmp_path / "ds"))
    proc = cli(tmp_path / "ds", "--features", "input_ids", "--id-column", "writer", "--method", "natural",
               "--test-fraction", "0", "--out", tmp_path / "p")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["n_features"] == 6 and manifest["n_classes"] == 3
    Xs, ys, _, _ = load_all(tmp_path / "p")
    codes = {name: k for k, name in enumerate(sorted(set(writers)))}
    assert len(Xs) == 4
    for entry, Xk, yk in zip(manifest["clients"], Xs, ys):
        rows = np.flatnonzero(np.array([codes[w] for w in writers]) == entry["group"])
        assert rows_as_set(Xk, yk) == rows_as_set(ids[rows], labels[rows])


@pytest.mark.parametrize("kind", ["parquet", "arrow", "dict"])
def test_parquet_arrow_and_a_datasetdicts_splits_train_a_model(tmp_path, kind):
    data, ids, labels, _ = text_dataset(200)
    test, test_ids, test_labels, _ = text_dataset(60, seed=1)
    if kind == "parquet":
        data.to_parquet(str(tmp_path / "d.parquet"))
        test.to_parquet(str(tmp_path / "t.parquet"))
        source, extra = tmp_path / "d.parquet", ["--test-source", tmp_path / "t.parquet"]
    elif kind == "arrow":
        saved = data.save_to_disk(str(tmp_path / "ds")) or next((tmp_path / "ds").glob("*.arrow"))
        source, extra = saved, ["--test-fraction", "0.25"]
    else:
        datasets.DatasetDict({"train": data, "test": test}).save_to_disk(str(tmp_path / "dd"))
        source, extra = tmp_path / "dd", ["--test-source", tmp_path / "dd"]
    proc = cli(source, "--features", "input_ids", "--method", "dirichlet", "--alpha", "0.5", "--clients", "5",
               *extra, "--out", tmp_path / "p")
    assert proc.returncode == 0, proc.stderr
    Xs, ys, Xt, yt = load_all(tmp_path / "p")
    train_rows = sum(len(y) for y in ys)
    if kind == "arrow":
        assert train_rows + len(yt) == 200
    else:
        assert train_rows == 200 and rows_as_set(Xt, yt) == rows_as_set(test_ids, test_labels)
    result = mpifl.run(None, MPI.COMM_SELF, mode="distributed", rounds=2, data__path=str(tmp_path / "p"))
    assert result.history[-1]["accuracy"] is not None


def test_a_missing_column_or_split_is_named(tmp_path):
    data, *_ = text_dataset()
    data.save_to_disk(str(tmp_path / "ds"))
    proc = cli(tmp_path / "ds", "--features", "tokens", "--out", tmp_path / "p")
    assert proc.returncode != 0 and "has no feature column 'tokens'" in proc.stderr
    proc = cli(tmp_path / "ds", "--features", "text", "--out", tmp_path / "q")
    assert proc.returncode != 0 and "column 'text' does not hold numbers" in proc.stderr
    datasets.DatasetDict({"train": data}).save_to_disk(str(tmp_path / "dd"))
    proc = cli(tmp_path / "dd", "--split", "validation", "--out", tmp_path / "r")
    assert proc.returncode != 0 and "--split 'validation' is not one of them" in proc.stderr
    assert not (tmp_path / "p").exists() and not (tmp_path / "r").exists()
