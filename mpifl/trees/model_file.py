"""model.json: a booster as a documented JSON file of its bin edges and trees, and back.

Strict JSON: every number is finite (a leaf has no threshold: null), and floats are written with Python's
shortest round-trip repr, so a model read back predicts the same bytes.  The format is in
docs/reference/tree-model.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mpifl.errors import DataError
from mpifl.trees.boosting import Booster
from mpifl.trees.grower import Tree

FORMAT, VERSION = "mpifl-trees", 1


def to_document(booster: Booster, params: dict) -> dict:
    """The JSON document of a booster; ``params`` are the settings it was grown with (for the record)."""
    features = booster.edges.shape[0]
    return {
        "format": FORMAT,
        "version": VERSION,
        "loss": booster.loss,
        "outputs": int(booster.base.size),
        "features": features,
        "params": params,
        "edges": [booster.edges[f, : booster.n_edges[f]].tolist() for f in range(features)],
        "base": booster.base.tolist(),
        "trees": [
            {"round": r, "output": k, "feature": t.feature.tolist(), "threshold_bin": t.threshold_bin.tolist(),
             "threshold": [None if f < 0 else float(v) for f, v in zip(t.feature, t.threshold)],
             "missing_left": t.missing_left.astype(bool).tolist(), "left": t.left.tolist(),
             "right": t.right.tolist(), "value": t.value.tolist()}
            for r, round_trees in enumerate(booster.trees) for k, t in enumerate(round_trees)
        ],
    }


def write(path: Path, booster: Booster, params: dict) -> None:
    text = json.dumps(to_document(booster, params), allow_nan=False, separators=(",", ":"))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def read(path: Path) -> Booster:
    """A booster from model.json; a file that is not one names what is wrong."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such model file.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a JSON model file ({exc}).") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DataError(f"{path}: not an mpifl tree model (its \"format\" is not {FORMAT!r}).")
    if doc.get("version") != VERSION:
        raise DataError(f"{path}: tree model version {doc.get('version')!r}; this mpifl reads version {VERSION}.")
    try:
        features, outputs = int(doc["features"]), int(doc["outputs"])
        most = max((len(e) for e in doc["edges"]), default=0)
        edges = np.full((features, max(most, 1)), np.inf)
        n_edges = np.zeros(features, dtype=np.int64)
        for f, e in enumerate(doc["edges"]):
            edges[f, : len(e)] = e
            n_edges[f] = len(e)
        booster = Booster(edges, n_edges, np.array(doc["base"], dtype=np.float64), doc["loss"])
        for entry in doc["trees"]:
            if entry["output"] == 0:
                booster.trees.append([])
            feature = np.array(entry["feature"], dtype=np.int64)
            booster.trees[-1].append(Tree(
                feature, np.array(entry["threshold_bin"], dtype=np.int64),
                np.array([np.nan if v is None else v for v in entry["threshold"]], dtype=np.float64),
                np.array(entry["missing_left"], dtype=np.int8), np.array(entry["left"], dtype=np.int64),
                np.array(entry["right"], dtype=np.int64), np.array(entry["value"], dtype=np.float64)))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise DataError(f"{path}: a malformed tree model ({type(exc).__name__}: {exc}).") from None
    if booster.base.size != outputs or any(len(r) != outputs for r in booster.trees):
        raise DataError(f"{path}: a malformed tree model (each round must have {outputs} trees).")
    return booster
