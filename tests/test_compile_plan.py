"""Compile only what a job uses: the plan read from the config, and the specialisations a real job compiles.

The job tests start from an empty Numba cache (NUMBA_CACHE_DIR in a temporary
directory), so every kernel a job needs is compiled in front of the test and
shows in its dispatcher's signatures; tests/compiled_kernels.py reports them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mpifl import config
from mpifl.modes import mode_of
from mpifl.kernels.variants import GRADIENT, PIN_VARIABLE, SGD, TUNING_VARIABLE
from mpifl.links import LOGISTIC

REPORTER = Path(__file__).with_name("compiled_kernels.py")


@pytest.mark.parametrize("overrides, operations, tuned", [
    ([], {"cohort_sgd", "evaluate"}, (SGD,)),  # the default job: federated, its clients trained as cohorts
    (["server.strategy=fedprox"], {"sgd_epoch", "evaluate"}, (SGD,)),  # a proximal term: client by client
    (["train.finetune_epochs=1"], {"cohort_sgd", "sgd_epoch", "evaluate"}, (SGD,)),
    (["mode=distributed", "train.algorithm=local_sgd"], {"sgd_epoch", "evaluate"}, (SGD,)),
    (["mode=distributed", "train.algorithm=gradient_averaging", "train.batch_size=0"],
     {"full_gradient", "evaluate"}, (GRADIENT,)),
    (["mode=distributed", "train.algorithm=gradient_averaging", "train.batch_size=64"],
     {"batch_gradient", "evaluate"}, (SGD,)),
    (["mode=distributed", "train.optimizer=lbfgs"], {"full_gradient", "evaluate"}, (GRADIENT,)),
])
def test_the_plan_names_the_calls_of_the_configured_loop(overrides, operations, tuned):
    plan = mode_of(config.load(overrides=["rounds=7", "train.epochs=3", *overrides])).kernel_plan(threads=1)
    assert plan.operations == operations and plan.tuned == tuned
    assert plan.finishes_gradients == bool(operations & {"full_gradient", "batch_gradient"})
    assert plan.passes == (14 if "train.optimizer=lbfgs" in overrides else 21)


def compiled_by(tmp_path: Path, ranks: int, overrides: list[str], env: dict | None = None) -> list[dict]:
    """Every rank's report of a job's compiled kernels, after warm-up and after training, with the JIT cache in
    ``tmp_path/numba``: cold on a test's first call, warm on the next."""
    launcher = [shutil.which("mpiexec") or pytest.fail("mpiexec not found"), "-n", str(ranks)] if ranks > 1 else []
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    environment.pop(PIN_VARIABLE, None)  # the job chooses its variants as a user's would, unless a test pins one
    environment.update(env or {})
    proc = subprocess.run([*launcher, sys.executable, str(REPORTER), *overrides], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_default_job_is_sized_to_the_floor_and_compiles_nothing_else_nor_during_training(tmp_path):
    reports = compiled_by(tmp_path, 2, ["rounds=2"], {TUNING_VARIABLE: "auto"})
    for report in reports:  # nothing was left to compile in the training loop
        assert report["after_warm_up"] == report["after_training"]
        assert report["after_training"]["entries"] == ["dense/softmax/plain/cohort_sgd", "dense/softmax/plain/evaluate"]
    # the node's first rank compiled these four and the two entries: every specialisation the job needed
    assert reports[0]["after_training"]["functions"] == {
        "rowwise.plain_range": 1, "drivers.l2_penalty": 1, "checks.all_finite": 1, "checks.labels_in_range": 1,
    }
    # the other rank loaded the entries from the cache and compiled no range kernel
    assert set(reports[1]["after_training"]["functions"]) <= {"drivers.l2_penalty", "checks.all_finite",
                                                                "checks.labels_in_range"}
    # only the rank that compiled loaded Numba's compiler registries
    assert [report["registries_loaded"] for report in reports] == [True, False]
    warm = compiled_by(tmp_path, 2, ["rounds=2"], {TUNING_VARIABLE: "auto"})
    assert [report["registries_loaded"] for report in warm] == [False, False]
    assert [report["model"] for report in warm] == [report["model"] for report in reports]
    assert warm[0]["after_training"]["entries"] == reports[0]["after_training"]["entries"]


@pytest.mark.slow
def test_threaded_kernels_load_from_the_cache_without_the_registries_and_give_the_same_model(tmp_path):
    job = ["mode=distributed", "data.name=synthetic", "model.kind=logistic", "train.algorithm=gradient_averaging",
           "train.batch_size=0", "train.threads=2", "rounds=3"]
    (cold,) = compiled_by(tmp_path, 1, job, {PIN_VARIABLE: "plain"})
    (warm,) = compiled_by(tmp_path, 1, job, {PIN_VARIABLE: "plain"})
    assert cold["registries_loaded"] and not warm["registries_loaded"]
    assert warm["model"] == cold["model"]


def test_the_default_variant_compiles_its_kind_and_blocks_only(tmp_path):
    reports = compiled_by(tmp_path, 2, ["rounds=2"], {TUNING_VARIABLE: "never"})
    for report in reports:
        assert report["after_warm_up"] == report["after_training"]
        assert report["after_training"]["entries"] == ["dense/softmax/tuned/cohort_sgd", "dense/softmax/tuned/evaluate"]
    # tuned: 8-row dots and 4-row axpys, the softmax link and the polynomial exp; no other kind, block or layout
    assert reports[0]["after_training"]["functions"] == {
        "losses._logits8": 1, "losses._gradient4": 1, "losses._softmax_link": 1, "losses.chunked_range": 1,
        "expo.exp_block": 1, "drivers.l2_penalty": 1, "checks.all_finite": 1, "checks.labels_in_range": 1,
    }


def test_a_full_batch_job_on_the_floor_variant_compiles_the_row_loop_and_not_the_chunked_one(tmp_path):
    (report,) = compiled_by(tmp_path, 1, ["mode=distributed", "data.name=synthetic", "model.kind=logistic",
                                          "model.dtype=float32", "train.algorithm=gradient_averaging",
                                          "train.batch_size=0", "rounds=2"], {PIN_VARIABLE: "plain"})
    assert report["after_warm_up"] == report["after_training"]
    assert report["after_training"]["entries"] == ["dense/logistic/plain/evaluate", "dense/logistic/plain/full_gradient"]
    functions = report["after_training"]["functions"]
    assert functions.get("rowwise.one_output_range") == 1  # the floor's loop for a one-output model
    assert not {"losses.chunked_range", "losses._logits8", "losses._softmax_link", "sparse.chunked_range_csr",
                "rowwise.plain_range", "fused.fused_range"} & set(functions)


def test_a_float64_single_pass_job_compiles_the_row_pairs_and_not_the_float32_blocks(tmp_path):
    (report,) = compiled_by(tmp_path, 1, ["mode=distributed", "data.name=synthetic", "model.kind=logistic",
                                          "train.algorithm=gradient_averaging", "train.batch_size=0", "rounds=2"],
                            {PIN_VARIABLE: "fused"})
    functions = report["after_training"]["functions"]
    # float64 walks rows in pairs, compiled for the logistic link and the polynomial exp alone
    assert {name: count for name, count in functions.items() if name.startswith("fused.")} == {
        f"fused._pair_range[kind {LOGISTIC}, poly exp]": 1}
    assert not {"losses.chunked_range", "losses._logits8"} & set(functions)


def test_the_cli_compiles_without_blas_and_scipy_still_imports_afterwards(tmp_path):
    """A cache miss loads Numba's registries with scipy.linalg hidden, as the CLI asks for a linear model."""
    pytest.importorskip("scipy")
    script = (
        "import sys, numba, numpy as np\n"
        "from mpifl.numba_setup import compile_without_blas\n"
        "compile_without_blas()\n"
        "from mpifl.kernels.checks import all_finite\n"
        "assert 'numba.np.arraymath' not in sys.modules\n"
        "assert all_finite(np.ones(3))\n"  # a miss in the empty cache: the registries load, then it compiles
        "import numba.np.arraymath as arraymath\n"
        "assert arraymath._HAVE_BLAS is False, 'Numba found a BLAS'\n"
        "import scipy.linalg\n"
        "assert numba.njit(lambda x: x.sum())(np.ones(3)) == 3.0\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
