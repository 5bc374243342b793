"""Shared fixtures: random problems for every model kind and dtype."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from mpifl.model import ModelSpec  # noqa: E402

KINDS = {"linear": 1, "logistic": 2, "softmax": 5}


def make_problem(kind: str, n: int, d: int, dtype, seed: int = 0):
    rng = np.random.default_rng(seed)
    spec = ModelSpec(kind, d, KINDS[kind], np.dtype(dtype))
    X = rng.standard_normal((n, d)).astype(dtype)
    if kind == "linear":
        y = rng.standard_normal(n)
    else:
        y = rng.integers(0, KINDS[kind], n).astype(np.float64)
    theta = (0.3 * rng.standard_normal(spec.shape)).astype(dtype)
    return spec, X, y.astype(dtype), theta


@pytest.fixture(params=list(KINDS))
def kind(request):
    return request.param


@pytest.fixture(params=["float64", "float32"])
def dtype(request):
    return request.param
