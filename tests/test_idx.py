"""MNIST-format IDX files: read (gzipped or not), partitioned with the FedAvg paper's splits, and refused when bad."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from serial_tools import mpifl_command

from mpifl.data import idx
from mpifl.errors import DataError
from test_partition_files import load_all


def write_idx(path: Path, array: np.ndarray, gzipped: bool) -> Path:
    """An IDX file of ubyte values, as MNIST ships them."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gzipped else raw)
    return path


def mnist_like(root: Path, name: str, n: int, gzipped: bool, seed: int) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 4, 4))
    labels = np.arange(n) % 10
    suffix = ".gz" if gzipped else ""
    path = write_idx(root / f"{name}-images-idx3-ubyte{suffix}", images, gzipped)
    write_idx(root / f"{name}-labels-idx1-ubyte{suffix}", labels, gzipped)
    return path, images, labels


def partition(*args, cwd: Path):
    return mpifl_command("partition", *args, cwd=cwd)


@pytest.mark.parametrize("gzipped", [True, False])
def test_images_become_rows_of_pixels_in_0_1_with_their_labels(gzipped, tmp_path):
    path, images, labels = mnist_like(tmp_path, "train", 30, gzipped, 0)
    X, y = idx.read_images_and_labels(path)
    assert X.shape == (30, 16) and X.min() >= 0.0 and X.max() <= 1.0
    np.testing.assert_array_equal(X, images.reshape(30, 16) / 255.0)
    np.testing.assert_array_equal(y, labels)


def test_the_fedavg_pathological_split_with_mnist_s_own_test_file(tmp_path):
    train, images, labels = mnist_like(tmp_path, "train", 200, True, 0)
    test, test_images, test_labels = mnist_like(tmp_path, "t10k", 50, False, 1)
    proc = partition(train, "--test-source", test, "--clients", 10, "--method", "shards", "--shards-per-client", 2,
                     "--dtype", "float32", "--out", tmp_path / "p", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["n_features"] == 16 and manifest["n_classes"] == 10 and manifest["test"]["rows"] == 50
    assert manifest["test_source"] == str(test)
    Xs, ys, Xt, yt = load_all(tmp_path / "p")
    assert [len(y) for y in ys] == [20] * 10  # 200 rows, 20 shards of 10 rows, 2 shards a client
    assert all(len(np.unique(y)) <= 2 for y in ys)  # label-sorted shards: at most two labels a client
    np.testing.assert_array_equal(yt, test_labels)
    np.testing.assert_allclose(Xt, test_images.reshape(50, 16) / 255.0, rtol=1e-7)
    assert sorted(np.concatenate(ys).tolist()) == sorted(labels.tolist())


def test_the_fedavg_iid_split_gives_every_client_the_same_rows(tmp_path):
    train, _, _ = mnist_like(tmp_path, "train", 120, False, 0)
    proc = partition(train, "--test-fraction", 0.25, "--clients", 3, "--method", "iid", "--out", tmp_path / "p",
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert [c["rows"] for c in manifest["clients"]] == [30, 30, 30] and manifest["test"]["rows"] == 30


@pytest.mark.parametrize("damage, message", [
    (lambda raw: b"\x00\x00\x07\x03" + raw[4:], "is not an IDX file: its first bytes are 00000703"),
    (lambda raw: raw[:-5], "should hold 480 bytes of values for shape (30, 4, 4) after its header; it holds 475"),
    (lambda raw: raw[:6], "truncated IDX header"),
])
def test_a_damaged_file_is_refused_with_its_name(damage, message, tmp_path):
    path, _, _ = mnist_like(tmp_path, "train", 30, False, 0)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=rf"{path}.*") as caught:
        idx.read_images_and_labels(path)
    assert message in str(caught.value)


def test_labels_that_do_not_match_the_images_or_are_missing_are_refused(tmp_path):
    path, _, _ = mnist_like(tmp_path, "train", 30, False, 0)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(29), False)
    with pytest.raises(DataError, match="holds labels of shape \\(29,\\); .* holds 30 images"):
        idx.read_images_and_labels(path)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="No labels file for .*train-images-idx3-ubyte: looked for"):
        idx.read_images_and_labels(path)
    proc = partition(path, "--clients", 2, "--out", tmp_path / "p", cwd=tmp_path)
    assert proc.returncode != 0 and "No labels file for" in proc.stderr
