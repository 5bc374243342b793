"""Choose each operation's kernel variant by timing them on the running machine.

The choice is made once per node, on a small sample in the job's dtype and
shape class (about 0.1 s), and cached next to Numba's JIT cache in a file keyed
by the CPU model and the code generated for it (mpifl.machine).  A later job
of the same class on the same kind of machine reads the cached choice and
times nothing, so the choice, and with it every result, is deterministic for
a given cache.  MPIFL_KERNEL_VARIANT pins one variant and skips all of this.

Timing the variants means compiling them all, seconds per variant on a cold
JIT cache, and the chunked variants take more than twice as long to compile
as the floor.  So a job is sized first (Workload): one whose kernels run for
less than a faster variant could save (at most MAX_GAIN of the floor's time)
runs on the floor; a longer one on the default variant; and one long enough
to repay compiling every variant measures them.  The first two cache nothing,
so the next, bigger job of the class still measures.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from mpifl import machine
from mpifl.numba_cache import kernel_sources_digest
from mpifl.kernels import ModelKernels
from mpifl.kernels.variants import (
    DEFAULT,
    FLOOR,
    GRADIENT,
    OPERATIONS,
    SGD,
    VARIANTS,
    Selection,
    Variant,
    pinned,
)
from mpifl.model import ModelSpec

# The full-batch sample streams from memory as a real shard does: twice the last-level cache, within these bounds.
# (A 4 MiB sample evicted before each pass ranked the variants differently from full-size data on Zen 4.)
SAMPLE_BYTES_MIN = 8 << 20
SAMPLE_BYTES_MAX = 128 << 20
SGD_SAMPLE_ROWS = 1024  # the mini-batch sample: a client's shard, in cache like one
REPEATS = 7  # alternating rounds; each variant keeps its best time
DEFAULT_BATCH = 32
# Sizing a job, from figures measured with benchmarks/kernels.py and benchmarks/first_run.py on the
# 2-core Xeon (AVX-512) and its AVX2 stand-in; they decide only what to compile, never a result's value.
# Re-measured on Zen 5 (2026-12-06): the largest saving over the floor was 0.49 of its time (the float32
# single pass, 1.88x to 1.99x the floor at 1M x 32 over five runs, with unsigned row indices) and the dense
# floor's rate 0.24 to 0.30 ns per multiply-add.
MAX_GAIN = 0.49  # the largest share of the floor's time a faster variant has saved (float32 logistic, Zen 5)
FLOOR_SECONDS_PER_MAC = 1.2e-9  # the floor, per row x (features + 1) x outputs per pass, memory-bound at its slowest
# A CSR nonzero costs a gather and a scatter at a random column: the floor took 2.4 ns a nonzero on the Xeon and
# 1.5 ns on Zen 5 (benchmarks/sparse.py, rcv1's shape).
FLOOR_SECONDS_PER_NONZERO = 2.4e-9
VARIANT_COMPILE_SECONDS = 6.0  # a cold compile of one chunked variant of a job's kernels (5.9 s: the default job)
FLOOR_COMPILE_SECONDS = 2.5  # the same for the floor (2.5 s)

def one_variant(spec: ModelSpec) -> Selection | None:
    """A kind whose kernels come in one variant: nothing to choose, and the reason the run records."""
    note = spec.kind.one_variant
    return Selection(how="default", note=note) if note else None

# measure(spec, threads, batch_size, operation, candidates) -> {variant name: seconds}
Measure = Callable[[ModelSpec, int, int, str, Sequence[Variant]], dict]


def cache_directory() -> Path:
    """Where the choices live: Numba's cache dir if set, else next to the kernels' own JIT cache."""
    if numba.config.CACHE_DIR:
        return Path(numba.config.CACHE_DIR)
    beside = Path(__file__).parent / "kernels" / "__pycache__"
    try:
        beside.mkdir(exist_ok=True)
        if os.access(beside, os.W_OK):
            return beside
    except OSError:
        pass
    return Path.home() / ".cache" / "mpifl"


class ChoiceStore:
    """One JSON file of choices per machine identity; written whole and atomically."""

    def __init__(self, directory: Path | None = None, ident: dict | None = None):
        self.identity = ident if ident is not None else {**machine.identity(), "kernels": kernels_fingerprint()}
        self.path = (directory or cache_directory()) / f"kernel-variants-{machine.identity_key(self.identity)}.json"

    def read(self) -> dict:
        """Every cached choice; an unreadable or foreign file counts as empty (it is only a cache)."""
        try:
            content = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(content, dict) or content.get("identity") != self.identity:
            return {}
        choices = content.get("choices")
        return choices if isinstance(choices, dict) else {}

    def get(self, key: str) -> dict | None:
        entry = self.read().get(key)
        if isinstance(entry, dict) and _valid_names(entry.get("variants")):
            return entry
        return None

    def put(self, key: str, entry: dict) -> None:
        """Add one choice; a write that fails leaves the job running with its choice, uncached."""
        choices = self.read()
        choices[key] = entry
        text = json.dumps({"identity": self.identity, "choices": choices}, indent=1, sort_keys=True, allow_nan=False)
        tmp = self.path.with_name(f".{self.path.name}.{socket.gethostname()}.{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text + "\n")
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)


def kernels_fingerprint() -> str:
    """A hash of the kernel sources: a release that changes a kernel measures its choices afresh."""
    return kernel_sources_digest()


def _valid_names(names) -> bool:
    """A cached entry names a known variant for one or both operations (a job chooses only those it trains with)."""
    known = {v.name for v in VARIANTS}
    return (isinstance(names, dict) and bool(names) and set(names) <= set(OPERATIONS)
            and all(names[op] in known for op in names))


def _bucket(value: int) -> int:
    """The next power of two at or above value: jobs in one bucket share a choice."""
    return 1 << max(int(value) - 1, 0).bit_length()


def choice_key(spec: ModelSpec, batch_size: int) -> str:
    """The shape class a choice holds for: kind, dtype, layout, and d, outputs and batch rounded up to 2^k."""
    layout = "csr" if spec.sparse else "dense"
    batch = _bucket(batch_size or DEFAULT_BATCH)
    return (f"{spec.name}/{spec.dtype.name}/{layout}/d{_bucket(spec.n_features)}/"
            f"c{_bucket(spec.n_outputs)}/b{batch}")


@dataclass(frozen=True)
class Workload:
    """How much kernel work a job does on one rank, to decide what compiling and choosing can pay for."""

    rows: int  # training rows per training rank
    passes: int  # passes of the training operation over them (rounds x epochs)

    def floor_seconds(self, spec: ModelSpec) -> float:
        """The kernel seconds of the job on the floor variant, from the floor's slowest measured rate.  A CSR
        row costs its nonzeros, not its dense width (rcv1: 70 of 47,236), taken as the chooser's sample
        assumes them (sample_nonzeros), since the job's are not known before its data is read."""
        if spec.sparse:
            per_row = FLOOR_SECONDS_PER_NONZERO * (sample_nonzeros(spec.n_features) + 1)
        else:
            per_row = FLOOR_SECONDS_PER_MAC * (spec.n_features + 1)
        return per_row * self.rows * spec.n_outputs * self.passes

    def decide(self, spec: ModelSpec, others: int) -> tuple[str, str]:
        """("measure", "") when measuring can repay compiling ``others`` more variants; else ("default" or
        "floor", why): the default variant when its speed repays its longer compile, else the floor."""
        seconds = self.floor_seconds(spec)
        saving = seconds * MAX_GAIN
        if saving >= VARIANT_COMPILE_SECONDS * others:
            return "measure", ""
        extra = VARIANT_COMPILE_SECONDS - FLOOR_COMPILE_SECONDS
        if saving >= extra:
            return "default", (f"not measured: the kernels run about {seconds:.2g} s, too short to repay "
                               f"compiling {others} more variants (about {VARIANT_COMPILE_SECONDS * others:.0f} s)")
        return "floor", (f"the floor: the kernels run about {seconds:.2g} s, so a faster variant would save under "
                         f"{saving:.2g} s and take about {extra:.1f} s longer to compile")


def choose(
    spec: ModelSpec, batch_size: int, threads: int = 1, store: ChoiceStore | None = None,
    measure: Measure | None = None, candidates: Sequence[Variant] | None = None,
    operations: Sequence[str] = OPERATIONS, workload: Workload | None = None,
) -> Selection:
    """The pinned variant, else the cached choice for this shape class, else measure and cache one.

    Only ``operations`` (those the job trains with) are chosen; the others keep
    the default.  With a ``workload``, a job too short to repay measuring runs
    on the default variant or the floor instead, and nothing is cached (see Workload).
    """
    if one_variant(spec) is not None:
        return one_variant(spec)
    pin = pinned()
    if pin is not None:
        return Selection.everywhere(pin, "pinned")
    store = store if store is not None else ChoiceStore()
    candidates = candidates if candidates is not None else candidates_for(spec)
    key = choice_key(spec, batch_size)
    allowed = {v.name for v in candidates}
    cached = store.get(key)
    names = {op: name for op, name in (cached["variants"] if cached else {}).items() if name in allowed}
    missing = [op for op in operations if op not in names]
    if not missing:
        return Selection.from_names(names, "cached" if names else "default")
    measure = measure if measure is not None else measure_variants
    seconds = dict(cached.get("seconds", {})) if cached else {}
    kept = dict(names)  # what the cache holds and may hold: measured choices only
    verdict, why = workload.decide(spec, len(candidates) - 1) if workload is not None else ("measure", "")
    if verdict != "measure":
        # too short to measure: every operation not cached, evaluation included, runs the one variant
        chosen = (FLOOR if verdict == "floor" else DEFAULT).name
        names.update({op: chosen for op in OPERATIONS if op not in names})
        return Selection.from_names(names, "cached" if kept else "default", why)
    for op in missing:
        seconds[op] = measure(spec, threads, batch_size, op, candidates)
        names[op] = kept[op] = fastest(seconds[op], candidates).name
    store.put(key, {"variants": kept, "seconds": seconds, "chosen_on": machine.cpu_model()})
    return Selection.from_names(names, "measured")


def candidates_for(spec: ModelSpec) -> tuple[Variant, ...]:
    """The variants that walk differently for this model, so that none is timed twice.

    Dense rows: the single-pass ones only for one-output models (softmax rows walk as the chunked ``tuned``
    does).  CSR rows: one single-pass variant, whatever the outputs (mpifl.kernels.csr_single_pass; its link
    uses libm's exp, so the two single-pass variants walk CSR rows alike)."""
    if spec.sparse:
        first_single = next(v for v in VARIANTS if v.single_pass)
        return tuple(v for v in VARIANTS if not v.single_pass or v is first_single)
    one_output = spec.n_outputs == 1
    return tuple(v for v in VARIANTS if one_output or not v.single_pass)


def recall(spec: ModelSpec, batch_size: int, operations: Sequence[str] = OPERATIONS,
           store: ChoiceStore | None = None) -> Selection:
    """The pinned or cached variants, timing nothing: what a job compiles before its data is loaded."""
    if one_variant(spec) is not None:
        return one_variant(spec)
    pin = pinned()
    if pin is not None:
        return Selection.everywhere(pin, "pinned")
    cached = (store if store is not None else ChoiceStore()).get(choice_key(spec, batch_size))
    names = cached["variants"] if cached else {}
    return Selection.from_names(names, "cached" if all(op in names for op in operations) else "default")


def fastest(seconds: dict, candidates: Sequence[Variant]) -> Variant:
    """The variant with the least time; a tie goes to the earlier candidate, so the choice is deterministic."""
    return min(candidates, key=lambda v: (seconds[v.name], candidates.index(v)))


def measure_variants(spec: ModelSpec, threads: int, batch_size: int, operation: str,
                     candidates: Sequence[Variant]) -> dict:
    """Best-of-REPEATS seconds per variant for one operation, the variants run in turn.

    A full-batch gradient streams a shard too big for the caches, so its
    sample is twice the last-level cache (sample_bytes): every timed pass
    reads it from memory, as the job will.  Mini-batch epochs run on a
    sample that stays in cache, as a client's does.
    """
    sample = _sample(spec, operation)
    runs = {v.name: _runner(spec, threads, batch_size, operation, v, sample) for v in candidates}
    best = {name: float("inf") for name in runs}
    for run in runs.values():
        run()  # first call: page in the sample
    for _ in range(REPEATS):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def last_level_cache_bytes() -> int:
    """The largest CPU cache on this node (Linux sysfs), or 32 MiB where it cannot be read."""
    sizes = []
    for entry in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = entry.read_text().strip().upper() if entry.exists() else ""
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes, default=32 << 20)


def sample_bytes() -> int:
    """The full-gradient sample's size: twice the last-level cache, bounded (see SAMPLE_BYTES_MIN/MAX)."""
    return int(np.clip(2 * last_level_cache_bytes(), SAMPLE_BYTES_MIN, SAMPLE_BYTES_MAX))


def sample_nonzeros(n_features: int) -> int:
    """Nonzeros a row in a CSR sample: text data (rcv1, news20) has tens of nonzeros a row."""
    return min(max(1, n_features // 20), 64)


def sample_rows(spec: ModelSpec, operation: str) -> int:
    """Rows in the timing sample: a client's shard for SGD, about sample_bytes() of rows for the full gradient
    (of their nonzeros and column indices, for CSR rows: a dense row's size would leave a few hundred rows,
    whose timing is the O(d) set-up around them rather than the walk over them)."""
    if spec.sparse:
        row_bytes = sample_nonzeros(spec.n_features) * (spec.dtype.itemsize + np.dtype(np.int32).itemsize)
    else:
        row_bytes = max(spec.n_features, 1) * spec.dtype.itemsize
    return SGD_SAMPLE_ROWS if operation == SGD else int(np.clip(sample_bytes() // row_bytes, 512, 1 << 24))


def _sample(spec: ModelSpec, operation: str):
    """Random rows of the job's width, dtype and layout, with labels the kind accepts."""
    rng = np.random.default_rng(0)
    d = spec.n_features
    rows = sample_rows(spec, operation)
    if spec.link == "linear":  # a regression: real-valued labels
        y = rng.standard_normal(rows)
    else:
        y = rng.integers(0, spec.n_classes, rows).astype(np.float64)
    y = y.astype(spec.dtype)
    if spec.sparse:
        from mpifl.data.sparse import CSR

        per_row = sample_nonzeros(d)
        indices = np.sort(rng.integers(0, d, (rows, per_row)), axis=1).astype(np.int32)
        data = rng.standard_normal((rows, per_row)).astype(spec.dtype)
        indptr = np.arange(0, rows * per_row + 1, per_row, dtype=np.int64)
        X = CSR(data.reshape(-1), indices.reshape(-1), indptr, d)
    else:
        X = rng.standard_normal((rows, d), dtype=np.float32).astype(spec.dtype)
    theta = (0.1 * rng.standard_normal(spec.shape)).astype(spec.dtype)
    return X, y, theta


def _runner(spec, threads, batch_size, operation, variant, sample) -> Callable[[], None]:
    """One timed call of ``operation`` with ``variant``, on buffers made up front."""
    X, y, theta = sample
    kernels = ModelKernels(spec, threads, Selection.everywhere(variant, "measuring"))
    grad = spec.zeros()
    if operation == GRADIENT:
        return lambda: kernels.full_gradient_sum(X, y, theta, grad)
    start, velocity = theta.copy(), spec.zeros()
    work = theta.copy()
    order = np.arange(y.shape[0], dtype=np.int64)
    batch = batch_size or DEFAULT_BATCH

    def epoch():
        work[...] = start
        kernels.sgd_epoch(X, y, work, velocity, grad, order, batch, 1e-3, 0.0, 0.0)

    return epoch
