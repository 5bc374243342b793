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
from mpifl.models import MODELS  # noqa: E402

KINDS = {"linear": 1, "logistic": 2, "softmax": 5}


def make_problem(kind: str, n: int, d: int, dtype, seed: int = 0):
    rng = np.random.default_rng(seed)
    spec = ModelSpec(MODELS[kind], d, KINDS[kind], np.dtype(dtype))
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


# Kernel tests in the default run: every variant on the logistic model (it has the exp, the link and the single
# pass), every kind on the floor and the default variant.  The rest of the variant x kind matrix compiles a
# variant's loops again for another link: it runs in the slow tier (tests/run.sh --slow, which CI runs too).
MATRIX_EVERY_KIND = ("plain", "tuned")
MATRIX_EVERY_VARIANT = "logistic"
# The threaded walk (a prange over row ranges, one accumulator per thread) wraps every variant's range loop
# alike: by default it is tested over the floor, the default and the single pass, and over the rest in the slow tier.
THREADED_VARIANTS = ("plain", "tuned", "fused")


def same_walk_as_another(variant, kind: str, sparse: bool, whole_range: bool) -> bool:
    """Whether another parametrisation compiles and runs exactly these loops already.

    Dense softmax rows walk the single-pass variants as ``tuned`` does; the linear model has no exp, so its
    libm and polynomial variants of one walk are one walk; on CSR rows the single-pass variants differ from
    ``tuned`` only over whole ranges (mpifl.kernels.csr_single_pass), where both use libm's exp."""
    if variant.single_pass:
        if sparse:
            return not whole_range or variant.name != "fused"
        return kind == "softmax" or (kind == "linear" and not variant.poly_exp)
    return sparse and kind == "linear" and variant.name == "libm4"  # CSR: tuned's chunks, no exp to differ by


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group markers added here
def pytest_collection_modifyitems(config, items):
    """Test each code path once (same_walk_as_another), and put the kernel matrix beyond MATRIX_* in the slow
    tier."""
    keep, dropped = [], []
    for item in items:
        params = item.callspec.params if hasattr(item, "callspec") else {}
        variant = BY_NAME.get(params.get("variant", ""))
        kind = params.get("kind", "")
        if variant is not None:
            sparse = "sparse" in item.module.__name__
            if same_walk_as_another(variant, kind, sparse, item.get_closest_marker("whole_range") is not None):
                dropped.append(item)
                continue
            # the CSR single pass takes different loops for C = 1 and C > 1: every kind stays in the default run
            own_csr_walk = sparse and variant.single_pass
            if kind and kind != MATRIX_EVERY_VARIANT and variant.name not in MATRIX_EVERY_KIND and not own_csr_walk:
                item.add_marker(pytest.mark.slow)
            if "threaded" in item.name and variant.name not in THREADED_VARIANTS:
                item.add_marker(pytest.mark.slow)
            # under xdist --dist loadgroup: one worker compiles each variant's kernels
            item.add_marker(pytest.mark.xdist_group(f"variant-{variant.name}"))
        keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture
def built_clients(monkeypatch) -> list:
    """The ids of the clients whose rows the built-in synthetic source builds on this rank, as it builds them."""
    from mpifl.data.builtin_sources import PerRankSynthetic

    built = []
    real = PerRankSynthetic.clients

    def watched(self, ids, n_clients):
        built.extend(ids)
        return real(self, ids, n_clients)

    monkeypatch.setattr(PerRankSynthetic, "clients", watched)
    return built
