"""LEAF-format data: small FEMNIST-style and FedProx-Synthetic-style directories written here, partitioned with
each user as one client and its own test rows, and every damaged file refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mpifl.data import leaf, partition_cli, store
from mpifl.errors import DataError


def write_leaf(root: Path, users: dict[str, tuple[int, int]], features: int, classes: int, seed: int = 0,
               files: int = 2) -> dict:
    """A LEAF directory: each user's (train, test) row counts, its users spread over ``files`` files a split."""
    rng = np.random.default_rng(seed)
    rows = {}
    for split, which in (("train", 0), ("test", 1)):
        (root / split).mkdir(parents=True, exist_ok=True)
        names = list(users)
        for f in range(files):
            mine = names[f::files]
            data = {}
            for u in mine:
                n = users[u][which]
                x = rng.random((n, features)).round(4)
                y = rng.integers(0, classes, n)
                rows[(split, u)] = (x, y)
                data[u] = {"x": x.tolist(), "y": y.tolist()}
            doc = {"users": mine, "num_samples": [users[u][which] for u in mine], "user_data": data}
            (root / split / f"part_{f}.json").write_text(json.dumps(doc))
    return rows


FEMNIST = {"f0001_23": (12, 3), "f0002_41": (7, 2), "f0107_11": (20, 5), "f0212_02": (5, 1), "f0500_99": (9, 4)}


def partition(source: Path, out: Path, *extra: str) -> dict:
    assert partition_cli.main([str(source), *extra, "--out", str(out)]) == 0
    return store.read_manifest(out).doc


@pytest.mark.parametrize("fmt", ["leaf", "auto"])
def test_each_leaf_user_becomes_one_client_with_its_own_test_rows(tmp_path, fmt):
    rows = write_leaf(tmp_path / "femnist", FEMNIST, features=16, classes=10)
    manifest = partition(tmp_path / "femnist", tmp_path / "parts", "--format", fmt)
    assert [c["user"] for c in manifest["clients"]] == ["f0001_23", "f0107_11", "f0500_99", "f0002_41", "f0212_02"]
    assert manifest["method"] == "natural" and manifest["params"]["format"] == "leaf"
    assert manifest["test"]["rows"] == sum(t for _, t in FEMNIST.values())
    root = store.read_manifest(tmp_path / "parts")
    labels = np.array(manifest["label_values"])
    for k, entry in enumerate(manifest["clients"]):
        X, y = store.load_part(root, entry, f"client {k}", np.dtype(np.float64), True)
        Xt, yt = store.load_part(root, entry["test"], f"client {k}'s test rows", np.dtype(np.float64), True)
        x_train, y_train = rows[("train", entry["user"])]
        x_test, y_test = rows[("test", entry["user"])]
        np.testing.assert_array_equal(X, x_train)
        np.testing.assert_array_equal(labels[y.astype(int)], y_train)
        np.testing.assert_array_equal(Xt, x_test)
        np.testing.assert_array_equal(labels[yt.astype(int)], y_test)


def test_fedprox_synthetic_files_in_leaf_format_read_as_they_are(tmp_path):
    users = {str(k): (18 + k, 2 + k % 3) for k in range(6)}
    write_leaf(tmp_path / "synthetic", users, features=60, classes=10, files=1)
    manifest = partition(tmp_path / "synthetic", tmp_path / "parts")
    assert manifest["n_features"] == 60 and len(manifest["clients"]) == 6
    assert [c["rows"] for c in manifest["clients"]] == [18 + k for k in range(6)]
    assert [c["test"]["rows"] for c in manifest["clients"]] == [2 + k % 3 for k in range(6)]


def _damage(root: Path, how: str) -> str:
    path = root / "train" / "part_0.json"
    doc = json.loads(path.read_text())
    if how == "truncated":
        path.write_text(path.read_text()[:-40])
        return "is not valid JSON (truncated?)"
    if how == "no user_data":
        del doc["user_data"]
        path.write_text(json.dumps(doc))
        return "is not a LEAF file: it lacks user_data"
    if how == "count":
        doc["num_samples"][0] += 1
        path.write_text(json.dumps(doc))
        return "num_samples says 13"
    if how == "ragged":
        doc["user_data"]["f0001_23"]["x"][2] = [0.5]
        path.write_text(json.dumps(doc))
        return "are not numeric, or not all of one length"
    if how == "text":
        doc["user_data"]["f0001_23"]["x"] = ["to be or not"] * 12
        doc["user_data"]["f0001_23"]["y"] = ["!"] * 12
        path.write_text(json.dumps(doc))
        return "some users' x hold text and others numbers"
    if how == "missing in test":
        test = root / "test" / "part_0.json"
        other = json.loads(test.read_text())
        gone = other["users"].pop(0)
        other["num_samples"].pop(0)
        del other["user_data"][gone]
        test.write_text(json.dumps(other))
        return "1 user(s) only in train/: 'f0001_23'"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["truncated", "no user_data", "count", "ragged", "text", "missing in test"])
def test_damaged_leaf_files_are_refused_naming_the_file_or_the_user(tmp_path, how, capsys):
    write_leaf(tmp_path / "femnist", FEMNIST, features=16, classes=10)
    message = _damage(tmp_path / "femnist", how)
    with pytest.raises(DataError) as info:
        leaf.read(tmp_path / "femnist")
    assert message in str(info.value)
    if how not in ("missing in test", "text"):
        assert "part_0.json" in str(info.value)
    assert partition_cli.main([str(tmp_path / "femnist"), "--format", "leaf", "--out", str(tmp_path / "p")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "p" / "manifest.json").exists()


def write_shakespeare(root: Path, users: dict[str, tuple[int, int]], length: int = 12, seed: int = 0) -> None:
    """LEAF's Shakespeare layout: x lines of ``length`` characters, y the character after each."""
    rng = np.random.default_rng(seed)
    text = "".join(rng.choice(list("to be or not, that is the Question:\n")) for _ in range(4000))
    for split, which in (("train", 0), ("test", 1)):
        (root / split).mkdir(parents=True, exist_ok=True)
        data, at = {}, 0
        for u, counts in users.items():
            starts = rng.integers(0, len(text) - length - 1, counts[which])
            data[u] = {"x": [text[s:s + length] for s in starts], "y": [text[s + length] for s in starts]}
        doc = {"users": list(users), "num_samples": [c[which] for c in users.values()], "user_data": data}
        (root / split / "all_data.json").write_text(json.dumps(doc))


def test_shakespeare_text_is_encoded_as_leafs_character_codes_with_every_letter_a_class(tmp_path):
    write_shakespeare(tmp_path / "shakespeare", {"HAMLET": (9, 3), "OPHELIA": (6, 2)})
    doc = json.loads((tmp_path / "shakespeare" / "train" / "all_data.json").read_text())
    manifest = partition(tmp_path / "shakespeare", tmp_path / "parts")
    assert manifest["n_features"] == 12 and manifest["n_classes"] == len(leaf.LETTERS) == 80
    assert manifest["params"]["text"] is True
    root = store.read_manifest(tmp_path / "parts")
    X, y = store.load_part(root, manifest["clients"][0], "client 0", np.dtype(np.float64), True)
    decoded = ["".join(leaf.LETTERS[int(c)] for c in row) for row in X]
    assert decoded == doc["user_data"]["HAMLET"]["x"]
    assert "".join(leaf.LETTERS[int(c)] for c in y) == "".join(doc["user_data"]["HAMLET"]["y"])


@pytest.mark.parametrize("how, message", [
    ("ragged", "must be strings of one length"),
    ("label", "must be single characters"),
    ("letter", "outside LEAF's vocabulary: ['~']"),
])
def test_bad_shakespeare_text_is_refused_naming_the_file_and_user(tmp_path, how, message):
    write_shakespeare(tmp_path / "s", {"HAMLET": (4, 2), "OPHELIA": (3, 1)})
    path = tmp_path / "s" / "train" / "all_data.json"
    doc = json.loads(path.read_text())
    entry = doc["user_data"]["OPHELIA"]
    if how == "ragged":
        entry["x"][1] = entry["x"][1][:-1]
    elif how == "label":
        entry["y"][0] = "ab"
    else:
        entry["x"][0] = "~" + entry["x"][0][1:]
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError) as info:
        leaf.read(tmp_path / "s")
    assert message in str(info.value) and "all_data.json" in str(info.value) and "'OPHELIA'" in str(info.value)
