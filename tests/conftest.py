"""Shared fixtures: random problems for every model kind and dtype."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Whole runs are compared with serial references built from ModelKernels(spec),
# so both sides must walk rows the same way: pin one variant unless the caller
# pinned another (MPIFL_KERNEL_VARIANT=plain tests/run.sh runs the suite on the
# floor).  Kernel tests name their variant; test_tuning.py unpins to test the chooser.
os.environ.setdefault("MPIFL_KERNEL_VARIANT", "tuned")

from mpifl.kernels import ModelKernels  # noqa: E402
from mpifl.kernels.variants import BY_NAME, Selection  # noqa: E402
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


@pytest.fixture(params=list(BY_NAME))
def variant(request):
    return request.param


def kernels_for(spec: ModelSpec, variant: str, threads: int = 1) -> ModelKernels:
    """Kernels that run ``variant`` for every operation."""
    return ModelKernels(spec, threads, Selection.everywhere(BY_NAME[variant], "test"))


def pytest_collection_modifyitems(config, items):
    """Test each code path once: the single-pass variants walk softmax rows and CSR rows as the chunked ones do
    (mpifl.kernels.fused), so those parametrisations would compile and run the same loops again."""
    keep, dropped = [], []
    for item in items:
        params = item.callspec.params if hasattr(item, "callspec") else {}
        variant = BY_NAME.get(params.get("variant", ""))
        same_walk = params.get("kind") == "softmax" or "sparse" in item.module.__name__
        (dropped if variant is not None and variant.single_pass and same_walk else keep).append(item)
        if variant is not None:  # under xdist --dist loadgroup: one worker compiles each variant's kernels
            item.add_marker(pytest.mark.xdist_group(f"variant-{variant.name}"))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
