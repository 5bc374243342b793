"""Per-client state at population scale: the rows each hosted client keeps between its rounds.

SCAFFOLD's control variates, Ditto's personal models, FedRep's heads, a
client's momentum and a torch module's local buffers are one row per
client.  A million 2NN-sized rows are 800 GB, so the rows live in a
``ClientStore``:

- ``memory``: arrays of zeros that the OS commits page by page, so a client
  costs memory once it has trained; a checkpoint saves them whole, as
  before.
- ``disk``: memory-mapped files on the rank's local disk (``state.dir``,
  by default the run directory's ``state/``).  They are written in place,
  and a checkpoint copies nothing.  Before a row first changes after
  checkpoint R, its old bytes are appended to the undo journal
  ``undo_R.bin``, so resuming from R (after kill -9 too) puts back every row
  as R saw it.  A kill loses only the page cache's writes, not the kernel's,
  so the journal needs no fsync.  Power loss is not covered.

``state.dtype`` stores the rows in float32, float16 or bfloat16.  The
clients compute in the model's dtype and lose the storage's precision at
each write (measured in benchmarks/population.py).  ``state.store =
"auto"`` keeps the rows in memory while they fit a share of the node's
available memory, and spills them to disk beyond it.  A store that fits
neither is refused before round 1, with the bytes it needs.
"""

from __future__ import annotations

import mmap
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mpi4py import MPI

from mpifl.agree import collectively
from mpifl.errors import ConfigError, MpiflError
from mpifl.local import LocalSettings, keeps_optimizer_state

VELOCITY, CARRIED, STATE = "velocity", "carried", "state."  # a client's fields, as checkpoint files name them
STORAGE = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16), "bfloat16": np.dtype(np.uint16)}
MEMORY_SHARE = 0.5  # of the node's available memory, split among its ranks, that auto keeps in memory


@dataclass(frozen=True)
class StateField:
    """One per-client row: its shape, compute dtype and storage dtype (None: the compute dtype; bfloat16 is
    stored as uint16 bits), and where a client starts (None: zeros)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    initial: np.ndarray | None = None
    storage: np.dtype | None = None

    @property
    def stored(self) -> np.dtype:
        return np.dtype(self.storage if self.storage is not None else self.dtype)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


def to_bfloat16(values: np.ndarray) -> np.ndarray:
    """float -> bfloat16 bits (uint16), rounding to nearest even; NaN stays NaN."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    out = (rounded >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(values.reshape(-1)) if values.dtype.kind == "f" else None
    if nan is not None and nan.any():
        out.reshape(-1)[nan] = 0x7FC0
    return out


def from_bfloat16(bits: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32).astype(dtype)


def storage_dtype(name: str, model: np.dtype) -> np.dtype:
    return np.dtype(model) if name == "model" else STORAGE[name]


class ClientStore:
    """The per-client rows of the ``hosted`` clients of one rank, by field name; row j is hosted client j's.

    ``open(j)`` gives the rows a client may change (journalled on disk first)
    and ``close(j, rows)`` keeps them; ``peek(j)`` reads without changing.
    """

    def __init__(self, fields: dict[str, StateField], hosted: int, directory: Path | None,
                 resume_round: int | None):
        self.fields, self.hosted = fields, hosted
        self.directory = directory
        self.arrays: dict[str, np.ndarray] = {}
        self._journal = None
        self._journalled: set[int] = set()
        self.journal_round = 0
        fresh = directory is None or resume_round is None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        for name, field in fields.items():
            shape = (hosted, *field.shape)
            if directory is None:
                self.arrays[name] = _anonymous(shape, field.stored)
            else:
                path = directory / f"{name}.bin"
                if fresh or not path.exists():
                    with open(path, "wb") as fh:  # a sparse file: disk blocks come as rows are written
                        fh.truncate(int(np.prod(shape)) * field.stored.itemsize)
                self.arrays[name] = np.memmap(path, dtype=field.stored, mode="r+", shape=shape)
            if field.initial is not None and fresh:
                self.arrays[name][...] = self._stored(name, np.broadcast_to(field.initial, shape))
        if directory is not None:
            if fresh:
                self._start_journal(0)
            else:
                self.roll_back(resume_round)

    @property
    def on_disk(self) -> bool:
        return self.directory is not None

    @property
    def converts(self) -> bool:
        return any(f.stored != f.dtype for f in self.fields.values())

    def _stored(self, name: str, values: np.ndarray) -> np.ndarray:
        storage = self.fields[name].stored
        if storage == STORAGE["bfloat16"]:
            return to_bfloat16(values)
        return values.astype(storage)

    def _working(self, name: str, stored: np.ndarray) -> np.ndarray:
        field = self.fields[name]
        if field.stored == field.dtype:
            return stored
        if field.stored == STORAGE["bfloat16"]:
            return from_bfloat16(stored, field.dtype)
        return stored.astype(field.dtype)

    def peek(self, j: int) -> dict[str, np.ndarray]:
        """Client j's rows to read (views when stored in the compute dtype: do not change them)."""
        return {name: self._working(name, array[j]) for name, array in self.arrays.items()}

    def open(self, j: int) -> dict[str, np.ndarray]:
        """Client j's rows to change; close(j, rows) keeps the changes."""
        if self.on_disk and j not in self._journalled:
            self._journal_row(j)
        return self.peek(j)

    def close(self, j: int, rows: dict[str, np.ndarray]) -> None:
        if self.converts:
            for name, value in rows.items():
                if self.fields[name].stored != self.fields[name].dtype:
                    self.arrays[name][j] = self._stored(name, value)

    # -- checkpoints -------------------------------------------------------------------------------------------

    def saved(self) -> dict[str, np.ndarray]:
        """What a checkpoint's rank file holds: the rows themselves in memory; nothing on disk (they are in place)."""
        return {} if self.on_disk else dict(self.arrays)

    def load(self, local: dict[str, np.ndarray]) -> None:
        """Rows from a checkpoint's rank file (memory); rows on disk were put back by roll_back."""
        if self.on_disk:
            return
        for name, array in self.arrays.items():
            if name in local:
                array[...] = local[name]

    def checkpoint(self, rnd: int) -> None:
        """Round rnd is being saved: flush the rows and start journal rnd.  Journals before the previous one go:
        a save that does not complete leaves the run to resume from the previous round, which its journal and
        this one (applied newest first) restore."""
        if not self.on_disk or rnd == self.journal_round:
            return
        for array in self.arrays.values():
            array.flush()
        previous = self.journal_round
        self._start_journal(rnd)
        for path in self.directory.glob("undo_*.bin"):
            if _round_of(path) < previous:
                path.unlink()

    def roll_back(self, rnd: int) -> None:
        """Put back every row as round rnd's checkpoint saw it: journals from rnd on, newest first, first entries
        last (a row is journalled once per journal, so any order within one is the same)."""
        row_bytes = {name: f.size * f.stored.itemsize for name, f in self.fields.items()}
        for path in sorted(self.directory.glob("undo_*.bin"), key=_round_of, reverse=True):
            if _round_of(path) < rnd:
                continue
            for j, values in _journal_entries(path, row_bytes):
                for name, raw in values.items():
                    field = self.fields[name]
                    self.arrays[name][j] = np.frombuffer(raw, dtype=field.stored).reshape(field.shape)
        for array in self.arrays.values():
            array.flush()
        for path in self.directory.glob("undo_*.bin"):
            path.unlink()
        self._start_journal(rnd)

    def _start_journal(self, rnd: int) -> None:
        if self._journal is not None:
            self._journal.close()
        self.journal_round = rnd
        self._journal = open(self.directory / f"undo_{rnd:09d}.bin", "ab", buffering=0)
        self._journalled = set()

    def _journal_row(self, j: int) -> None:
        """Append row j's bytes (every field) before it first changes; one write, so a kill leaves it whole or
        absent (a torn tail is ignored)."""
        parts = [np.int64(j).tobytes()] + [np.ascontiguousarray(array[j]).tobytes() for array in self.arrays.values()]
        self._journal.write(b"".join(parts))
        self._journalled.add(j)

    def close_files(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


def _anonymous(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Zeros in an anonymous mapping of small pages: a client costs a page of memory once it has trained.  NumPy's
    own large arrays ask for transparent huge pages, where touching one client's row would commit (and zero) 2 MiB:
    a round of 500 scattered clients would commit a gigabyte."""
    size = max(int(np.prod(shape)) * dtype.itemsize, 1)
    region = mmap.mmap(-1, size)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        region.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(region, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


def _round_of(path: Path) -> int:
    return int(path.stem.split("_", 1)[1])


def _journal_entries(path: Path, row_bytes: dict[str, int]):
    width = 8 + sum(row_bytes.values())
    data = path.read_bytes()
    for at in range(0, len(data) - width + 1, width):  # a torn last entry was never followed by a change
        j = int(np.frombuffer(data[at : at + 8], dtype=np.int64)[0])
        values, offset = {}, at + 8
        for name, n in row_bytes.items():
            values[name] = data[offset : offset + n]
            offset += n
        yield j, values


def needed_bytes(fields: dict[str, StateField], hosted: int) -> int:
    return hosted * sum(f.size * f.stored.itemsize for f in fields.values())


def memory_budget(node_ranks: int, limit_mib: int) -> int:
    """Bytes of per-client state one rank keeps in memory: state.memory_mib, or a share of the node's available
    memory split among its ranks."""
    if limit_mib:
        return limit_mib * 2**20
    return int(MEMORY_SHARE * available_memory() / max(node_ranks, 1))


def available_memory() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB" if n < 2**40 else f"{n / 2**40:,.1f} TiB"


def choose_backing(store: str, need: int, budget: int, directory: Path) -> bool:
    """Whether the rows go to disk (True) or stay in memory, for state.store; refuses what fits neither."""
    if store == "memory" or (store == "auto" and need <= budget):
        if need > budget:
            raise ConfigError(
                f"The per-client state of this rank's clients needs {_mib(need)}, more than the {_mib(budget)} "
                f"of memory it may use (state.memory_mib, or half the node's available memory over its ranks). "
                f"Keep it on local disk instead: state.store = \"disk\" (state.dir names where), a narrower "
                f"state.dtype, or more ranks.")
        return False
    probe = directory
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need > free:
        raise ConfigError(
            f"The per-client state of this rank's clients needs {_mib(need)}: more than the {_mib(budget)} of "
            f"memory it may use, and more than the {_mib(free)} free on {probe} (state.dir). Point state.dir at "
            f"a larger local disk, store it narrower (state.dtype = \"bfloat16\"), or spread the clients over "
            f"more ranks.")
    return True


def open_store(fields: dict[str, StateField], hosted: int, state_cfg, run_dir: Path | None, rank: int,
               node_ranks: int, resume_round: int | None) -> ClientStore:
    """The store of this rank's per-client rows, as [state] asks (called on every client rank, collectively)."""
    base = Path(state_cfg.dir) if state_cfg.dir else (run_dir / "state" if run_dir is not None else None)
    need = needed_bytes(fields, hosted)
    budget = memory_budget(node_ranks, state_cfg.memory_mib)
    if base is None and (state_cfg.store == "disk" or (state_cfg.store == "auto" and need > budget)):
        raise ConfigError(f"The per-client state needs {_mib(need)} on disk, but the run has no directory: set "
                          "state.dir, or give the run an output directory.")
    on_disk = bool(fields) and choose_backing(state_cfg.store, need, budget, base or Path("."))
    try:
        return ClientStore(fields, hosted, base / f"rank_{rank:05d}" if on_disk else None, resume_round)
    except OSError as exc:
        raise MpiflError(f"Cannot open the per-client state in {base}: {exc.strerror}.") from None


def open_for_rank(loop, state_names, settings: LocalSettings, hosted: int) -> ClientStore:
    """A client rank's store for its ``hosted`` clients: their kept optimizer state, a module's own buffers and the
    strategy's rows (``state_names``).  Called on every client rank while the server calls server_side(), so
    that a store that does not fit fails every rank before round 1 with what it needs."""
    comm, cfg, kernels = loop.comm, loop.cfg, loop.kernels
    spec = kernels.spec
    storage = storage_dtype(cfg.state.dtype, spec.dtype)
    fields = {}
    if keeps_optimizer_state(settings):
        velocity = kernels.optimizer_state(settings.optimizer)
        fields[VELOCITY] = StateField(velocity.shape, velocity.dtype, storage=storage)
    carried = kernels.carried_state()
    if carried is not None:  # a module's own buffers start as built, and keep their dtype
        fields[CARRIED] = StateField(carried.shape, carried.dtype, initial=carried)
    for name in state_names:
        fields[STATE + name] = StateField(spec.shape, spec.dtype, storage=storage)
    node_ranks = _node_ranks(comm)
    checkpoints = loop.checkpoints
    run_dir = checkpoints.directory.parent if checkpoints.directory is not None else None
    return collectively(comm, lambda: open_store(fields, hosted, cfg.state, run_dir, comm.Get_rank(), node_ranks,
                                                 checkpoints.start_round if checkpoints.resumed else None))


def server_side(comm) -> None:
    """The server's part in open_for_rank: the same collectives, no store."""
    _node_ranks(comm)
    collectively(comm, lambda: None)


def _node_ranks(comm) -> int:
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    size = node.Get_size()
    node.Free()
    return size
