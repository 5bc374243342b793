"""The variant chooser: measures once per shape class, caches per machine, honours the pin.

A fake timer (a ``measure`` that returns set times) makes every choice here
deterministic; one test runs the real timer to check it measures every variant.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from mpi4py import MPI

from mpifl import config, tuning
from mpifl.errors import ConfigError
from mpifl.kernels.variants import BY_NAME, GRADIENT, OPERATIONS, PIN_VARIABLE, SGD, TUNING_VARIABLE, VARIANTS
from mpifl.model import ModelSpec
from mpifl.models import MODELS
from mpifl.runner import run_job

SPEC = ModelSpec(MODELS["logistic"], 30, 2, np.dtype("float64"))
IDENTITY = {"cpu": "Test CPU", "llvm_cpu": "testcpu", "vector_flags": ["avx2"], "features_sha256": "0",
            "triple": "x86_64", "numba": "0"}


@pytest.fixture(autouse=True)
def unpinned(monkeypatch):
    monkeypatch.delenv(PIN_VARIABLE, raising=False)
    monkeypatch.delenv(TUNING_VARIABLE, raising=False)


class FakeTimer:
    """Returns set seconds per (operation, variant) and counts the measurements asked of it."""

    def __init__(self, seconds: dict):
        self.seconds = seconds
        self.calls = 0

    def __call__(self, spec, threads, batch_size, operation, candidates):
        self.calls += 1
        return {v.name: self.seconds[operation].get(v.name, 9.0) for v in candidates}  # unnamed: slowest


def timer(gradient: dict, sgd: dict) -> FakeTimer:
    return FakeTimer({GRADIENT: gradient, SGD: sgd})


def test_choose_picks_the_fastest_per_operation_and_records_it(tmp_path):
    store = tuning.ChoiceStore(tmp_path, IDENTITY)
    fake = timer({"tuned": 3.0, "prefetch": 1.5, "libm4": 1.0, "plain": 2.0},
                 {"tuned": 1.0, "prefetch": 1.5, "libm4": 5.0, "plain": 4.0})
    selection = tuning.choose(SPEC, 32, store=store, measure=fake)
    assert (selection.gradient.name, selection.sgd.name, selection.how) == ("libm4", "tuned", "measured")
    entry = json.loads(store.path.read_text())["choices"][tuning.choice_key(SPEC, 32)]
    assert entry["variants"] == {GRADIENT: "libm4", SGD: "tuned"}
    assert entry["seconds"][GRADIENT]["plain"] == 2.0


def test_a_cached_choice_is_reused_without_timing_again(tmp_path):
    store = tuning.ChoiceStore(tmp_path, IDENTITY)
    first = timer({"tuned": 3.0, "prefetch": 3.0, "libm4": 1.0, "plain": 2.0},
                  {"tuned": 3.0, "prefetch": 3.0, "libm4": 2.0, "plain": 1.0})
    tuning.choose(SPEC, 32, store=store, measure=first)
    # the second timer would choose differently, so a re-measurement would show
    second = timer({"tuned": 1.0, "prefetch": 3.0, "libm4": 3.0, "plain": 3.0},
                   {"tuned": 1.0, "prefetch": 3.0, "libm4": 3.0, "plain": 3.0})
    again = tuning.choose(SPEC, 32, store=tuning.ChoiceStore(tmp_path, IDENTITY), measure=second)
    assert second.calls == 0
    assert (again.gradient.name, again.sgd.name, again.how) == ("libm4", "plain", "cached")


def test_the_pin_wins_and_nothing_is_timed_or_written(tmp_path, monkeypatch):
    monkeypatch.setenv(PIN_VARIABLE, "plain")
    store = tuning.ChoiceStore(tmp_path, IDENTITY)
    fake = timer({v.name: 1.0 for v in VARIANTS}, {v.name: 1.0 for v in VARIANTS})
    selection = tuning.choose(SPEC, 32, store=store, measure=fake)
    assert (selection.gradient.name, selection.sgd.name, selection.how) == ("plain", "plain", "pinned")
    assert fake.calls == 0 and not store.path.exists()


def test_an_unknown_pin_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(PIN_VARIABLE, "avx9000")
    with pytest.raises(ConfigError, match=f"{PIN_VARIABLE}='avx9000' is not a kernel variant; use one of tuned"):
        tuning.choose(SPEC, 32, store=None, measure=None)


def test_a_tie_goes_to_the_earlier_candidate(tmp_path):
    fake = timer({v.name: 1.0 for v in VARIANTS}, {v.name: 1.0 for v in VARIANTS})
    selection = tuning.choose(SPEC, 32, store=tuning.ChoiceStore(tmp_path, IDENTITY), measure=fake)
    assert selection.gradient is VARIANTS[0] and selection.sgd is VARIANTS[0]


def test_choose_only_from_the_candidates_given(tmp_path):
    store = tuning.ChoiceStore(tmp_path, IDENTITY)
    fake = timer({"tuned": 1.0, "prefetch": 1.0, "libm4": 2.0, "plain": 3.0},
                 {"tuned": 1.0, "prefetch": 1.0, "libm4": 2.0, "plain": 3.0})
    only = (BY_NAME["libm4"], BY_NAME["plain"])
    selection = tuning.choose(SPEC, 32, store=store, measure=fake, candidates=only)
    assert selection.gradient.name == "libm4" and selection.sgd.name == "libm4"
    # a cached choice outside the candidates is measured again
    tuning.choose(SPEC, 32, store=store, measure=fake, candidates=(BY_NAME["plain"],))
    assert fake.calls == 4


def test_choices_are_kept_apart_by_machine_and_shape_class(tmp_path):
    fake = timer({"tuned": 2.0, "prefetch": 2.0, "libm4": 1.0, "plain": 3.0},
                 {"tuned": 2.0, "prefetch": 2.0, "libm4": 1.0, "plain": 3.0})
    tuning.choose(SPEC, 32, store=tuning.ChoiceStore(tmp_path, IDENTITY), measure=fake)
    other_cpu = tuning.ChoiceStore(tmp_path, {**IDENTITY, "vector_flags": ["avx512f", "avx2"]})
    assert other_cpu.path != tuning.ChoiceStore(tmp_path, IDENTITY).path and other_cpu.read() == {}
    store = tuning.ChoiceStore(tmp_path, IDENTITY)
    assert store.get(tuning.choice_key(ModelSpec(MODELS["logistic"], 32, 2, np.dtype("float64")), 20)) is not None
    assert store.get(tuning.choice_key(ModelSpec(MODELS["logistic"], 33, 2, np.dtype("float64")), 32)) is None
    assert store.get(tuning.choice_key(ModelSpec(MODELS["logistic"], 30, 2, np.dtype("float32")), 32)) is None
    assert store.get(tuning.choice_key(ModelSpec(MODELS["logistic"], 30, 2, np.dtype("float64"), sparse=True), 32)) is None
    assert store.get(tuning.choice_key(SPEC, 64)) is None


def test_a_corrupt_cache_is_ignored_and_rewritten(tmp_path):
    store = tuning.ChoiceStore(tmp_path, IDENTITY)
    store.path.write_text("{ not json")
    fake = timer({"tuned": 2.0, "prefetch": 2.0, "libm4": 1.0, "plain": 3.0},
                 {"tuned": 2.0, "prefetch": 2.0, "libm4": 1.0, "plain": 3.0})
    assert tuning.choose(SPEC, 32, store=store, measure=fake).how == "measured"
    assert json.loads(store.path.read_text())["identity"] == IDENTITY


@pytest.mark.parametrize("spec", [
    ModelSpec(MODELS["logistic"], 12, 2, np.dtype("float64")),  # the kernel tests' default tier compiles these already
    pytest.param(ModelSpec(MODELS["softmax"], 12, 4, np.dtype("float32")), marks=pytest.mark.slow),
    pytest.param(ModelSpec(MODELS["linear"], 5, 1, np.dtype("float64"), sparse=True), marks=pytest.mark.slow),
])
def test_the_real_timer_measures_every_variant_for_every_operation(spec):
    for operation in OPERATIONS:
        seconds = tuning.measure_variants(spec, 1, 8, operation, VARIANTS)
        assert set(seconds) == {v.name for v in VARIANTS}
        assert all(0.0 < s < 1.0 for s in seconds.values())


def test_a_run_records_its_measured_then_cached_variants_and_repeats_bitwise(tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "cache_directory", lambda: tmp_path / "cache")
    monkeypatch.setenv(TUNING_VARIABLE, "always")
    cfg = config.load(overrides=["mode=distributed", "rounds=3", "log_every=1"])
    first = run_job(MPI.COMM_SELF, cfg, tmp_path / "first", verbose=False)
    second = run_job(MPI.COMM_SELF, cfg, tmp_path / "second", verbose=False)
    recorded = [json.loads((tmp_path / run / "summary.json").read_text())["kernel_variants"]
                for run in ("first", "second")]
    assert [r["how"] for r in recorded] == ["measured", "cached"]
    assert recorded[0][GRADIENT] == recorded[1][GRADIENT] in BY_NAME
    assert recorded[0][SGD] == recorded[1][SGD] in BY_NAME
    assert np.array_equal(first.theta, second.theta)


def test_the_machine_identity_names_the_cpu_and_changes_with_its_flags(monkeypatch):
    from mpifl import machine

    ident = machine.identity()
    assert ident["cpu"] and ident["llvm_cpu"] and isinstance(ident["vector_flags"], list)
    assert machine.identity_key(ident) == machine.identity_key(dict(ident))
    assert machine.identity_key(ident) != machine.identity_key({**ident, "vector_flags": ["sse4.2"]})
    monkeypatch.setattr(machine, "codegen_target", lambda: ("x86_64", "znver3", "+avx,+avx2,+fma,-avx512f,+sse4.2"))
    assert machine.vector_flags() == ["avx2", "fma", "avx", "sse4.2"]
    assert "LLVM target znver3 (avx2, fma, avx, sse4.2)" in machine.describe()


def test_a_new_kernel_source_gets_a_new_choice_file(tmp_path, monkeypatch):
    before = tuning.ChoiceStore(tmp_path)
    monkeypatch.setattr(tuning, "kernels_fingerprint", lambda: "a different release")
    assert tuning.ChoiceStore(tmp_path).path != before.path


@pytest.mark.parametrize("algorithm", [
    ["train.algorithm=gradient_averaging", "train.batch_size=0"],  # full-batch gradients
    ["train.algorithm=local_sgd"],  # SGD epochs
])
def test_a_whole_run_agrees_across_variants_to_rounding(tmp_path, monkeypatch, algorithm):
    """The variant changes loop structure only: whole runs end in models that differ by rounding."""
    models = {}
    for variant in BY_NAME:
        monkeypatch.setenv(PIN_VARIABLE, variant)
        cfg = config.load(overrides=["mode=distributed", "rounds=4", "log_every=4", *algorithm])
        models[variant] = run_job(MPI.COMM_SELF, cfg, tmp_path / variant, verbose=False).theta
    reference = models["plain"]
    for variant, theta in models.items():
        assert np.max(np.abs(theta - reference)) <= 1e-10 * np.max(np.abs(reference)), variant


def test_only_the_operations_a_job_trains_with_are_measured_and_cached(tmp_path):
    store = tuning.ChoiceStore(tmp_path, IDENTITY)
    fake = timer({"tuned": 3.0, "prefetch": 1.0, "libm4": 2.0, "plain": 4.0},
                 {"tuned": 3.0, "prefetch": 2.0, "libm4": 1.0, "plain": 4.0})
    selection = tuning.choose(SPEC, 32, store=store, measure=fake, operations=(SGD,))
    assert (selection.gradient.name, selection.sgd.name, selection.how) == ("tuned", "libm4", "measured")
    assert fake.calls == 1
    assert store.get(tuning.choice_key(SPEC, 32))["variants"] == {SGD: "libm4"}
    assert tuning.recall(SPEC, 32, (SGD,), store).how == "cached"
    # a full-batch job of the same class measures the gradient alone and keeps the SGD choice
    later = tuning.choose(SPEC, 32, store=store, measure=fake, operations=(GRADIENT,))
    assert (later.gradient.name, later.sgd.name, later.how, fake.calls) == ("prefetch", "libm4", "measured", 2)
    assert store.get(tuning.choice_key(SPEC, 32))["variants"] == {SGD: "libm4", GRADIENT: "prefetch"}


def test_recall_times_nothing_and_says_what_it_found(tmp_path, monkeypatch):
    store = tuning.ChoiceStore(tmp_path, IDENTITY)
    assert tuning.recall(SPEC, 32, OPERATIONS, store) == tuning.Selection()  # the default, how "default"
    store.put(tuning.choice_key(SPEC, 32), {"variants": {GRADIENT: "plain", SGD: "libm4"}})
    found = tuning.recall(SPEC, 32, OPERATIONS, store)
    assert (found.gradient.name, found.sgd.name, found.how) == ("plain", "libm4", "cached")
    monkeypatch.setenv(PIN_VARIABLE, "prefetch")
    assert tuning.recall(SPEC, 32, OPERATIONS, store).describe() == "gradient: prefetch, sgd: prefetch (pinned)"


def test_a_job_is_sized_to_the_floor_the_default_or_a_measured_choice(tmp_path):
    store = tuning.ChoiceStore(tmp_path, IDENTITY)
    fake = timer({"tuned": 2.0, "prefetch": 1.0, "libm4": 3.0, "plain": 3.0},
                 {"tuned": 2.0, "prefetch": 1.0, "libm4": 3.0, "plain": 3.0})
    spec = ModelSpec(MODELS["softmax"], 63, 10, np.dtype("float64"))  # 64 x 10 multiply-adds a row
    per_pass = tuning.FLOOR_SECONDS_PER_MAC * 640
    # 10,000 row-passes: about 8 ms of kernels; a faster variant cannot repay its longer compile
    short = tuning.choose(spec, 32, store=store, measure=fake, operations=(SGD,),
                          workload=tuning.Workload(rows=1_000, passes=10))
    assert (short.gradient.name, short.sgd.name, short.how, fake.calls) == ("plain", "plain", "default", 0)
    assert short.note.startswith(f"the floor: the kernels run about {per_pass * 1e4:.2g} s")
    # about 15 s: the default variant's speed repays its compile, measuring all four would not
    middle = tuning.choose(spec, 32, store=store, measure=fake, operations=(SGD,),
                           workload=tuning.Workload(rows=20_000, passes=1_000))
    assert (middle.gradient.name, middle.sgd.name, middle.how, fake.calls) == ("tuned", "tuned", "default", 0)
    assert "too short to repay compiling 3 more variants" in middle.note
    assert not store.path.exists()  # neither is a measurement, so neither is cached
    # about 150 s: measure, choose and cache
    long = tuning.choose(spec, 32, store=store, measure=fake, operations=(SGD,),
                         workload=tuning.Workload(rows=200_000, passes=1_000))
    assert (long.sgd.name, long.how, long.note, fake.calls) == ("prefetch", "measured", "", 1)
    assert store.get(tuning.choice_key(spec, 32))["variants"] == {SGD: "prefetch"}


def test_an_unknown_tuning_mode_is_a_clear_error(monkeypatch):
    from mpifl.kernels.variants import tuning_mode

    monkeypatch.setenv(TUNING_VARIABLE, "sometimes")
    with pytest.raises(ConfigError, match=f"{TUNING_VARIABLE}='sometimes' is not a tuning mode; use one of auto"):
        tuning_mode()


def test_a_short_run_runs_on_the_floor_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "cache_directory", lambda: tmp_path / "cache")
    cfg = config.load(overrides=["mode=distributed", "rounds=3", "log_every=1"])
    run_job(MPI.COMM_SELF, cfg, tmp_path / "run", verbose=False)
    recorded = json.loads((tmp_path / "run" / "summary.json").read_text())["kernel_variants"]
    assert (recorded["how"], recorded[GRADIENT], recorded[SGD]) == ("default", "plain", "plain")
    assert recorded["note"].startswith("the floor: the kernels run about")
    assert not list((tmp_path / "cache").glob("kernel-variants-*.json"))


def test_single_pass_variants_are_timed_only_where_they_walk_differently():
    one_output = tuning.candidates_for(SPEC)
    assert [v.name for v in one_output] == [v.name for v in VARIANTS]
    softmax = tuning.candidates_for(ModelSpec(MODELS["softmax"], 30, 10, np.dtype("float64")))
    assert "fused" not in {v.name for v in softmax} and "tuned" in {v.name for v in softmax}
    for outputs, kind in ((1, "logistic"), (10, "softmax")):  # CSR rows: one single pass, for every kind
        csr = tuning.candidates_for(ModelSpec(MODELS[kind], 30, outputs, np.dtype("float64"), sparse=True))
        assert [v.name for v in csr if v.single_pass] == ["fused"]
        assert {"plain", "tuned", "prefetch", "libm4"} <= {v.name for v in csr}


def test_the_full_gradient_sample_streams_from_memory(monkeypatch):
    """Twice the last-level cache, so every timed pass reads memory as a full-size shard does."""
    monkeypatch.setattr(tuning, "last_level_cache_bytes", lambda: 32 << 20)
    assert tuning.sample_rows(SPEC, GRADIENT) == (64 << 20) // (30 * 8)
    monkeypatch.setattr(tuning, "last_level_cache_bytes", lambda: 1 << 30)  # capped
    assert tuning.sample_rows(SPEC, GRADIENT) == tuning.SAMPLE_BYTES_MAX // (30 * 8)
    assert tuning.sample_rows(SPEC, SGD) == tuning.SGD_SAMPLE_ROWS
    assert tuning.last_level_cache_bytes() >= 1 << 20


def test_a_csr_sample_is_sized_by_its_nonzeros_not_its_dense_width(monkeypatch):
    """rcv1's 47,236 features make a dense row 378 KB: sized by that, the sample would be 169 rows, and the
    timing would be the O(d) set-up around them.  Its nonzeros and indices fill the same bytes instead."""
    monkeypatch.setattr(tuning, "last_level_cache_bytes", lambda: 32 << 20)
    spec = ModelSpec(MODELS["logistic"], 47_236, 1, np.dtype("float64"), sparse=True)
    nonzeros = tuning.sample_nonzeros(47_236)
    assert nonzeros == 64
    assert tuning.sample_rows(spec, GRADIENT) == (64 << 20) // (nonzeros * (8 + 4))
    X, y, theta = tuning._sample(spec, GRADIENT)
    assert X.nnz == tuning.sample_rows(spec, GRADIENT) * nonzeros and y.shape[0] == X.shape[0]


def test_a_csr_job_is_sized_by_its_nonzeros_not_its_dense_width():
    """rcv1's width is 47,236 and its rows hold about 70 nonzeros: sized by the width, every CSR job would
    look long enough to measure every variant."""
    dense = ModelSpec(MODELS["logistic"], 47_236, 2, np.dtype("float64"))
    sparse = ModelSpec(MODELS["logistic"], 47_236, 2, np.dtype("float64"), sparse=True)
    job = tuning.Workload(rows=100_000, passes=20)
    assert job.floor_seconds(sparse) == pytest.approx(tuning.FLOOR_SECONDS_PER_NONZERO * 65 * 100_000 * 20)
    assert job.floor_seconds(dense) > 300 * job.floor_seconds(sparse)
    assert job.decide(dense, 4)[0] == "measure"
    assert job.decide(sparse, 4)[0] == "floor"
