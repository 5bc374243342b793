"""The benchmark scripts still run (tiny sizes); their figures are never asserted."""

from __future__ import annotations

import pytest

import json
import shutil
import subprocess
import sys
from pathlib import Path

pytestmark = pytest.mark.slow  # every benchmark script at tiny sizes: minutes (tests/run.sh --all)

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_kernel_benchmark_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "kernels.py"), "--small", "--repeat", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "kernels.json").read_text())
    assert len(data["cases"]) == 4 and "speed vs NumPy" in (tmp_path / "kernels.md").read_text()


def test_collectives_benchmark_smoke(tmp_path):
    out = tmp_path / "c.json"
    proc = subprocess.run(
        [shutil.which("mpiexec"), "-n", "2", sys.executable, str(BENCH / "collectives.py"), "--iters", "20", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["ranks"] == 2 and "mpifl / raw" in proc.stdout


def test_sparse_benchmark_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "sparse.py"), "--rows", "3000", "--features", "700", "--nnz", "20",
         "--repeat", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "sparse.json").read_text())
    assert data["max_rel_diff"] < 1e-8
    variants = {"tuned", "prefetch", "libm4", "plain", "fused"}  # one single-pass variant: both walk CSR alike
    assert {f"mpifl {v}" for v in variants} | {"scipy", "read"} == set(data["seconds"])
    assert data["chosen"] in variants
    fastest = min(seconds for name, seconds in data["seconds"].items() if name.startswith("mpifl "))
    assert data["pick_over_fastest"] == pytest.approx(data["seconds"][f"mpifl {data['chosen']}"] / fastest)


def test_data_loading_benchmark_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "data_loading.py"), "--gigabytes", "0.005", "--clients", "12", "--ranks", "3",
         "--warm-only", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    first = json.loads((tmp_path / "data_loading.json").read_text())["first_round"]
    assert set(first) == {"true/warm JIT cache", "false/warm JIT cache"}
    assert all(v["first_round"] > v["round1"] > 0 for v in first.values())


def test_side_by_side_runner_smoke(tmp_path):
    """The runner's tiny version, as CI runs it: peers that are not installed are reported, not required."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--smoke", "--only", "federated,algorithms,sklearn", "--out",
         str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "bench.json").read_text())
    assert {"mpifl, 9 ranks", "numpy"} <= set(data["federated"]["8"])
    assert data["sklearn"]["mpifl lbfgs, 2 ranks"]["seconds"] > 0
    for algorithm in ("fedprox", "fedadam"):  # the same clients, orders and maths: the same accuracy
        assert data["algorithms"][algorithm]["mpifl"]["accuracy"] == data["algorithms"][algorithm]["numpy"]["accuracy"]
    assert data["algorithms"]["scaffold"]["mpifl"]["accuracy"] > 0
    assert "Machine:" in (tmp_path / "bench.md").read_text()


def test_heterogeneity_study_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "heterogeneity.py"), "--smoke", "--ranks", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "heterogeneity.json").read_text())
    assert len(data["synthetic"]) == 5 and len(data["digits"]) == 5
    assert all(len(r["curve"]) == 4 for r in data["synthetic"])  # rounds 0..3
    assert (tmp_path / "heterogeneity.png").stat().st_size > 0
    assert set(data["cost"]) == {"digits", "Synthetic(1,1)"}
    assert set(data["cost"]["digits"]) == {"fedavg", "fedprox", "scaffold", "fednova", "fedavgm", "fedadagrad",
                                           "fedadam", "fedyogi"}


def test_sweep_benchmark_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "sweep.py"), "--ranks", "4", "--points", "2", "--rounds", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert data["points"] == 2 and data["sweep_seconds"] > 0 and "time vs the sweep" in proc.stdout


def test_forest_selection_benchmark_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "forest_selection.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "forest_selection.json").read_text())
    assert [p["n_estimators"] for p in data["points"]] == [5, 10] and data["mpifl_best"] in (5, 10)
    assert all(0.5 < p["mpifl_mean"] <= 1.0 for p in data["points"]) and 0.5 < data["mpifl_test"] <= 1.0


def test_private_trees_benchmark_smoke(tmp_path):
    proc = subprocess.run([shutil.which("mpiexec"), "-n", "3", sys.executable, str(BENCH / "private_trees.py"),
                           "--quick", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    runs = json.loads((tmp_path / "private_trees.json").read_text())["runs"]
    assert [r["target_epsilon"] for r in runs] == [1.0, 4.0, 16.0, None]
    assert all(r["privacy"]["epsilon"] <= r["target_epsilon"] for r in runs[:3]) and runs[3]["privacy"] is None


def test_local_privacy_benchmark_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "local_privacy.py"), "--quick", "--ranks", "3", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    points = json.loads((tmp_path / "local_privacy.json").read_text())["points"]
    assert [p["kind"] for p in points] == ["none", "local", "central"]
    local, central = points[1], points[2]
    assert local["epsilon_per_release"] == 4.0 and central["epsilon"] <= local["epsilon"] * 1.0001


def test_secagg_malicious_benchmark_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "secagg_malicious.py"), "--clients", "6", "--repeat", "1",
                           "--rounds", "1", "--ranks", "3", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    points = json.loads((tmp_path / "secagg_malicious.json").read_text())["points"]
    assert [p["graph"] for p in points] == ["secagg", "secagg+"]
    assert all(p["active_uplink_per_round"] > p["semi-honest_uplink_per_round"] for p in points)


def test_first_run_benchmark_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "first_run.py"), "--ranks", "2", "--warm", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "first_run.json").read_text())["results"]["this tree"]
    assert data["cold"]["compile"] > 0 and data["warm_wall"] > 0 and "cold: empty NUMBA_CACHE_DIR" in proc.stdout


def test_mlp_benchmark_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "mlp.py"), "--rows", "30", "--repeat", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    cases = json.loads((tmp_path / "mlp.json").read_text())["cases"]
    assert {c["batch"] for c in cases} == {10, 50, 30} and {"mpifl", "NumPy"} <= {c["system"] for c in cases}


def test_cnn_benchmark_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "cnn.py"), "--rows", "16", "--repeat", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| fedavg | B = 10 | mpifl |" in (tmp_path / "cnn.md").read_text()


def test_federated_mlp_benchmark_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "mlp_federated.py"), "--clients", "4", "--rows", "700", "--rounds", "2",
         "--mpifl-only", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "mlp_federated.json").read_text())["results"]
    (mpifl,) = results.values()
    assert mpifl["seconds_per_round"] > 0 and mpifl["peak_mib"] > 0


def test_mlp_products_benchmark_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "mlp_products.py"), "--repeat", "2", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    cases = json.loads((tmp_path / "mlp_products.json").read_text())["cases"]
    assert len(cases) == 18 and all(c["blas"] > 0 and c["loops"] > 0 for c in cases)


def test_robustness_study_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "robustness.py"), "--rounds", "2", "--attacks", "none,ipm", "--out", str(tmp_path),
         "--figure", str(tmp_path / "robustness.png")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "robustness.json").read_text())
    assert len(data["accuracy"]) == 18 and (tmp_path / "robustness.png").stat().st_size > 0


def test_compression_study_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "compression.py"), "--rounds", "2", "--repeat", "1", "--setups", "digits",
         "--methods", "topk,qsgd", "--out", str(tmp_path),
         "--figure", str(tmp_path / "compression.png")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "compression.json").read_text())
    assert len(data["accuracy"]["digits"]) == 13 and "PROJECTION" in proc.stdout
    assert (tmp_path / "compression.png").stat().st_size > 0


def test_privacy_study_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "privacy.py"), "--rounds", "2", "--out", str(tmp_path),
         "--figure", str(tmp_path / "privacy.png")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "privacy.json").read_text())
    noised = [p for p in data["results"]["fixed clip"] if p["noise_multiplier"] > 0]
    assert all(p["epsilon"] > 0 for p in noised) and (tmp_path / "privacy.png").stat().st_size > 0


def test_secagg_cost_benchmark_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "secagg.py"), "--clients", "4,8", "--rounds", "1", "--ranks", "3",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "secagg.json").read_text())
    assert len(data["points"]) == 10 and set(data["projection"]) == {"secagg", "secagg+"}


def test_root_memory_benchmark_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "root_memory.py"), "--clients", "4", "--rounds", "1",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cases = json.loads((tmp_path / "root_memory.json").read_text())["cases"]
    assert [c["exchange"] for c in cases] == ["gather", "reduce"] and "alpha-beta projection" in proc.stdout


def test_async_study_smoke(tmp_path):
    proc = subprocess.run([shutil.which("mpiexec"), "-n", "2", sys.executable, str(BENCH / "async_study.py"),
                           "--rounds", "2", "--quick", "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {c["run"] for c in json.loads((tmp_path / "async_study.json").read_text())["cases"]}
    assert {"FedAvg (sync)", "FedBuff (K 5)", "FedAsync (hinge)"} <= runs


def test_personal_study_smoke(tmp_path):
    proc = subprocess.run([shutil.which("mpiexec"), "-n", "2", sys.executable, str(BENCH / "personal_study.py"),
                           "--quick", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cases = json.loads((tmp_path / "personal_study.json").read_text())["cases"]
    assert len(cases) == 8 and all(0 <= c["personal"]["worst"] <= c["personal"]["mean"] <= 1 for c in cases)
    assert {"FedPer, MLP", "FedRep (head 5 epochs), MLP"} <= {c["run"] for c in cases}


def test_hierarchy_benchmark_smoke(tmp_path):
    proc = subprocess.run([shutil.which("mpiexec"), "-n", "4", sys.executable, str(BENCH / "hierarchy.py"),
                           "--quick", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cases = json.loads((tmp_path / "hierarchy.json").read_text())["cases"]
    flat, edges, longer = (c["uplink_bytes"] for c in cases)
    assert len(cases) == 3 and edges < flat and cases[0]["final_accuracy"] == cases[1]["final_accuracy"]


def test_torch_examples_and_gpu_benchmarks_smoke(tmp_path):
    pytest.importorskip("torch")
    # the examples themselves, LoRA's included, run in tests/test_mpi_torch_examples.py; here the script's plumbing
    proc = subprocess.run([sys.executable, str(BENCH / "torch_examples.py"), "--rounds", "1", "--ranks", "3",
                           "--examples", "batchnorm", "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BatchNorm CNN, FedBN (buffers local)" in proc.stdout
    assert (tmp_path / "torch_examples.json").exists()
    proc = subprocess.run([sys.executable, str(BENCH / "gpu.py"), "--rounds", "1", "--ranks", "2", "--no-lora",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("device: ")


def test_cnn_federated_benchmark_smoke(tmp_path):
    pytest.importorskip("flwr")
    proc = subprocess.run([sys.executable, str(BENCH / "cnn_federated.py"), "--rows", "700", "--clients", "4",
                           "--rounds", "2", "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "cnn_federated.json").read_text())
    assert len(data["results"]) == 3 and all(r["seconds_per_round"] > 0 for r in data["results"].values())


def test_selection_benchmark_smoke(tmp_path):
    pytest.importorskip("optuna")
    proc = subprocess.run([sys.executable, str(BENCH / "selection.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "selection.json").read_text())
    assert data["gridsearch"]["breast_cancer"]["mpifl_best"] == data["gridsearch"]["breast_cancer"]["sklearn_best"]
    assert len(data["adaptive"]["optuna"]["client_rounds"]) == 4


def test_population_benchmark_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "population.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "population.json").read_text())
    recorded = data["scale"]["10000/100"]["recorded"]
    assert recorded["summary"]["rounds_run"] == 10 and recorded["record_bytes"] < 20_000


def test_trees_benchmark_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "trees.py"), "--rows", "20000", "--trees", "5",
                           "--federated-rounds", "2", "--forest-trees", "10", "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "trees.json").read_text())
    assert data["mpifl"]["accuracy"] > 0.75 and data["distributed"]["2"]["trees"] == 5
    assert data["distributed"]["1"]["final_accuracy"] == data["distributed"]["2"]["final_accuracy"]
    federated = data["federated"]
    assert len(federated) == 7  # central, 64 and 512 clients at two fractions, and both sizes masked
    for k, split in ((64, "dirichlet"), (512, "iid")):  # masks cancel: the same trees
        plain, masked = (federated[f"federated, {k} clients ({split}), fraction 1.0{tail}"]
                         for tail in ("", ", masked (secagg)"))
        assert masked["final_accuracy"] == plain["final_accuracy"] and masked["final_test_loss"] == plain["final_test_loss"]
    assert set(data["forest"]) == {"breast_cancer", "digits"} and data["forest"]["digits"]["mpifl"][0] > 0.9
