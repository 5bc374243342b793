"""Choose each operation's kernel variant by timing them on the running machine.

The choice is made once per node, on a small sample in the job's dtype and
shape class (about 0.1 s), and cached next to Numba's JIT cache in a file keyed
by the CPU model and the code generated for it (mpifl.machine).  A later job
of the same class on the same kind of machine reads the cached choice and
times nothing, so the choice, and with it every result, is deterministic for
a given cache.  MPIFL_KERNEL_VARIANT pins one variant and skips all of this.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numba
import numpy as np

from mpifl import machine
from mpifl.kernels import ModelKernels
from mpifl.kernels.prefetch import evict
from mpifl.kernels.variants import GRADIENT, OPERATIONS, SGD, VARIANTS, Selection, Variant, pinned
from mpifl.model import ModelSpec

SAMPLE_BYTES = 4 << 20  # the full-batch sample, evicted from the caches before every timed pass
SGD_SAMPLE_ROWS = 1024  # the mini-batch sample: a client's shard, in cache like one
REPEATS = 7  # alternating rounds; each variant keeps its best time
DEFAULT_BATCH = 32

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
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted([root / "jit.py", *(root / "kernels").glob("*.py")]):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _valid_names(names) -> bool:
    known = {v.name for v in VARIANTS}
    return isinstance(names, dict) and all(names.get(op) in known for op in OPERATIONS)


def _bucket(value: int) -> int:
    """The next power of two at or above value: jobs in one bucket share a choice."""
    return 1 << max(int(value) - 1, 0).bit_length()


def choice_key(spec: ModelSpec, batch_size: int) -> str:
    """The shape class a choice holds for: kind, dtype, layout, and d, outputs and batch rounded up to 2^k."""
    layout = "csr" if spec.sparse else "dense"
    batch = _bucket(batch_size or DEFAULT_BATCH)
    return (f"{spec.kind}/{spec.dtype.name}/{layout}/d{_bucket(spec.n_features)}/"
            f"c{_bucket(spec.n_outputs)}/b{batch}")


def choose(
    spec: ModelSpec, batch_size: int, threads: int = 1, store: ChoiceStore | None = None,
    measure: Measure | None = None, candidates: Sequence[Variant] = VARIANTS,
) -> Selection:
    """The pinned variant, else the cached choice for this shape class, else measure and cache one."""
    pin = pinned()
    if pin is not None:
        return Selection.everywhere(pin, "pinned")
    store = store if store is not None else ChoiceStore()
    key = choice_key(spec, batch_size)
    cached = store.get(key)
    if cached is not None and all(cached["variants"][op] in {v.name for v in candidates} for op in OPERATIONS):
        return Selection.from_names(cached["variants"], "cached")
    measure = measure if measure is not None else measure_variants
    seconds = {op: measure(spec, threads, batch_size, op, candidates) for op in OPERATIONS}
    names = {op: fastest(seconds[op], candidates).name for op in OPERATIONS}
    store.put(key, {"variants": names, "seconds": seconds, "chosen_on": machine.cpu_model()})
    return Selection.from_names(names, "measured")


def fastest(seconds: dict, candidates: Sequence[Variant]) -> Variant:
    """The variant with the least time; a tie goes to the earlier candidate, so the choice is deterministic."""
    return min(candidates, key=lambda v: (seconds[v.name], candidates.index(v)))


def measure_variants(spec: ModelSpec, threads: int, batch_size: int, operation: str,
                     candidates: Sequence[Variant]) -> dict:
    """Best-of-REPEATS seconds per variant for one operation, the variants run in turn.

    A full-batch gradient streams a shard too big for the caches, so its
    sample is evicted before every timed pass (a last-level cache can hold
    the whole sample, and then a prefetching variant would look useless).
    Mini-batch epochs run on a sample that stays in cache, as a client's does.
    """
    sample = _sample(spec, operation)
    runs = {v.name: _runner(spec, threads, batch_size, operation, v, sample) for v in candidates}
    cold = operation == GRADIENT
    best = {name: float("inf") for name in runs}
    for run in runs.values():
        run()  # first call: page in the sample
    for _ in range(REPEATS):
        for name, run in runs.items():
            if cold:
                _evict(sample[0])
            t0 = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def _evict(X) -> None:
    for part in (X.data, X.indices) if hasattr(X, "indptr") else (X,):
        evict(part)


def _sample(spec: ModelSpec, operation: str):
    """Random rows of the job's width, dtype and layout, with labels the kind accepts."""
    rng = np.random.default_rng(0)
    d = spec.n_features
    row_bytes = max(d, 1) * spec.dtype.itemsize
    rows = SGD_SAMPLE_ROWS if operation == SGD else int(np.clip(SAMPLE_BYTES // row_bytes, 512, 1 << 16))
    if spec.kind == "linear":
        y = rng.standard_normal(rows)
    else:
        y = rng.integers(0, spec.n_classes, rows).astype(np.float64)
    y = y.astype(spec.dtype)
    if spec.sparse:
        from mpifl.data.sparse import CSR

        per_row = min(max(1, d // 20), 64)  # text data (rcv1, news20) has tens of nonzeros a row
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
