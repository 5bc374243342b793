"""The federated round's messages, laid out from what each algorithm declares.

An algorithm declares named fields; this module turns the declaration into
flat buffers and named views of them, identically on every rank, so that the
loops in mpifl.federated move bytes without knowing what they mean:

- **downlink**, one ``Bcast`` in the model's dtype:
  ``[theta | declared downlink fields | stop | poll | cohort | plan]``.
  The plan names the round's cohort, the clients that train, as two int32
  arrays (ids, local epochs) in ``capacity`` slots: its bytes grow with the
  cohort, never with the population.  A cohort larger than the slots (a
  Poisson draw's tail, an asynchronous server's dispatches) sends the rest
  in a second ``Bcast`` that every rank expects from ``cohort``.  ``poll``
  tells every rank how to wait in this round's collectives
  (mpifl.comm.wait_patiently).
- **payload**, one ``Gatherv`` row per client that trained, in the model's
  dtype: ``[delta | declared model-sized uplink fields]``; with uplink
  compression, delta's place is taken by its encoded ``message``, whose bytes
  fill as many model-dtype values as they need (mpifl.compression); when the
  clients keep their own head (FedRep, FedPer), delta is only the body's part,
  its first ``shared`` values.
- **stats**, one ``Gatherv`` of float64 from every client rank, every round:
  per *active* client (one that trains or evaluates this round, in client
  order) the built-in statistics and the declared float64 uplink fields,
  then per rank its compute time, stop flag and last comm time, and what the
  stages on report of their work there.  Which clients are active is a pure
  function of the plan and of (seed, round) (mpifl.strategies.sampling), so
  every rank computes the counts and none is sent.  A chain that seals them
  (secure aggregation, local DP: ``sealed_stats``) sends no client's row,
  only the ranks' own values (mpifl.round_members).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MODEL = "model"  # a field as large as theta, or in theta's dtype
FLOAT64 = "float64"


@dataclass(frozen=True)
class Field:
    """One named entry of a message: ``size`` values (MODEL: theta's size) of ``dtype`` (MODEL or FLOAT64).

    Model-dtype fields travel in the downlink Bcast or the payload Gatherv;
    float64 fields travel with the per-client statistics.
    """

    name: str
    size: int | str = MODEL
    dtype: str = MODEL

    def count(self, model_size: int) -> int:
        return model_size if self.size == MODEL else int(self.size)


class Plan(np.ndarray):
    """A round's local epochs, one per client (0: does not train), that knows its cohort: the ids of the clients
    that train, found once a round instead of by every part of the round that asks (the downlink, the exchange,
    the records), each a pass over the population."""

    def __new__(cls, epochs: np.ndarray, ids: np.ndarray | None = None) -> Plan:
        if isinstance(epochs, Plan) and ids is None:
            return epochs
        plan = np.asarray(epochs, dtype=np.int64).view(cls)
        plan._cohort = None if ids is None else np.asarray(ids, dtype=np.int64)
        return plan

    def __array_finalize__(self, obj) -> None:
        self._cohort = None  # a view or the result of arithmetic knows nothing

    @property
    def cohort(self) -> np.ndarray:
        if self._cohort is None:
            self._cohort = np.flatnonzero(np.asarray(self))
        return self._cohort


def cohort(epochs: np.ndarray) -> np.ndarray:
    """The ids of the clients that train in a round's plan (ascending)."""
    return epochs.cohort if isinstance(epochs, Plan) else np.flatnonzero(epochs)


THETA = Field("theta")
DELTA = Field("delta")
MESSAGE = "message"  # a compressed delta's bytes, in the payload instead of delta
# Every client reports these each round; weight is the rows it trained on (0 if it did not train); personal_correct:
# its own test rows predicted right after local fine-tuning (train.finetune_epochs), else the global model's; val_*:
# the sums over its validation rows, where it was sampled to evaluate (federated evaluation, evaluate.fraction).
CLIENT_STATS = tuple(
    Field(name, 1, FLOAT64)
    for name in ("weight", "loss", "correct", "rows", "test_loss", "test_correct", "test_rows", "personal_correct",
                 "val_loss", "val_correct", "val_rows", "val_personal_correct")
)
# per client rank, every round: compute seconds, stop requested, comm seconds; the stages on add their own
# (mpifl.stages.base.Stage.rank_stat_names: the compress stage's encoding seconds, secure aggregation's parts)
RANK_STATS = ("compute", "stop", "comm")


class Layout:
    """Offsets of fields packed one after another; views give each field by name."""

    def __init__(self, fields: Sequence[Field], shape: tuple[int, ...]):
        self.fields = tuple(fields)
        self.shape = shape
        size = int(np.prod(shape))
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"Duplicate field names in {names}.")
        self.slices: dict[str, slice] = {}
        offset = 0
        for f in self.fields:
            n = f.count(size)
            self.slices[f.name] = slice(offset, offset + n)
            offset += n
        self.width = offset
        self._model = {f.name for f in self.fields if f.size == MODEL}

    def views(self, row: np.ndarray) -> dict[str, np.ndarray]:
        """Each field of one packed row: model-sized fields in theta's shape, others as 1-D."""
        return {name: self._view(row[s], name) for name, s in self.slices.items()}

    def lazy_views(self, row: np.ndarray) -> RowViews:
        """The fields of one packed row, each view made when first asked for: a client that trains in a round of
        thousands pays for the fields its strategy and stages read, not for all of them."""
        return RowViews(self, row)

    def columns(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Each field of a stack of packed rows (m, width): (m, *shape) or (m, size)."""
        m = rows.shape[0]
        out = {}
        for name, s in self.slices.items():
            block = rows[:, s]
            out[name] = block.reshape(m, *self.shape) if name in self._model else block
        return out

    def _view(self, flat: np.ndarray, name: str) -> np.ndarray:
        return flat.reshape(self.shape) if name in self._model else flat


class RowViews(Mapping):
    """A packed row's fields by name (Layout.lazy_views); writing into a field writes into the row."""

    __slots__ = ("layout", "row", "made")

    def __init__(self, layout: Layout, row: np.ndarray):
        self.layout, self.row, self.made = layout, row, {}

    def __getitem__(self, name: str) -> np.ndarray:
        view = self.made.get(name)
        if view is None:
            view = self.made[name] = self.layout._view(self.row[self.layout.slices[name]], name)
        return view

    def __iter__(self):
        return iter(self.layout.slices)

    def __len__(self) -> int:
        return len(self.layout.slices)


def check_declaration(owner: str, downlink: Sequence[Field], uplink: Sequence[Field]) -> None:
    """Refuse declarations the transport cannot carry; called when an algorithm is registered."""
    reserved = {THETA.name, DELTA.name, MESSAGE} | {f.name for f in CLIENT_STATS}
    for f in (*downlink, *uplink):
        if f.name in reserved:
            raise ValueError(f"{owner} declares the field {f.name!r}, which every round already carries.")
        if f.dtype not in (MODEL, FLOAT64):
            raise ValueError(f"{owner}: field {f.name!r} has dtype {f.dtype!r}; use 'model' or 'float64'.")
    for f in downlink:
        if f.dtype != MODEL:
            raise ValueError(f"{owner}: downlink field {f.name!r} must be in the model's dtype (one Bcast buffer).")
    for f in uplink:
        if f.dtype == FLOAT64 and f.size == MODEL:
            raise ValueError(f"{owner}: model-sized uplink field {f.name!r} must be in the model's dtype.")


class Wire:
    """Every buffer of a federated round, the same on every rank.

    Built from the algorithm's declared fields, the model's shape and dtype,
    which client rank hosts which clients (``blocks``, one range per client
    rank), the size of a compressed delta's message (0: no compression), and
    how many leading values of delta travel (None: all; FedRep and FedPer send
    the body only), which clients send a row when they train (None:
    every one; two-level averaging: each edge's first client), and the
    per-rank values the stages report beyond RANK_STATS.  Nothing here
    communicates.
    """

    def __init__(
        self, downlink: Sequence[Field], uplink: Sequence[Field], shape: tuple[int, ...], dtype: np.dtype,
        blocks: Sequence[range], message_bytes: int = 0, shared: int | None = None,
        senders: np.ndarray | None = None, rank_stats: Sequence[str] = (), capacity: int | None = None,
        sealed_stats: bool = False,
    ):
        check_declaration("this algorithm", downlink, uplink)
        self.dtype = np.dtype(dtype)
        self.blocks = list(blocks)
        self.n_clients = sum(len(b) for b in self.blocks)
        self.shape = shape
        self.senders = senders
        self.shared = shared if shared is not None and shared < int(np.prod(shape)) else None
        self.down = Layout((THETA, *downlink), shape)
        update = DELTA if self.shared is None else Field(DELTA.name, self.shared)
        update = update if not message_bytes else Field(MESSAGE, -(-message_bytes // self.dtype.itemsize))
        self.payload = Layout((update, *(f for f in uplink if f.dtype == MODEL)), shape)
        self.uncompressed_payload = Layout((DELTA, *(f for f in uplink if f.dtype == MODEL)), shape)
        self.client_stats = Layout((*CLIENT_STATS, *(f for f in uplink if f.dtype == FLOAT64)), shape)
        self.uplink_names = tuple(f.name for f in uplink)
        # no client's statistics row leaves its rank (secure aggregation, local DP): only the ranks' own values
        # travel in the Gatherv, and the clients' figures reach the server as a masked sum or not at all
        self.sealed_stats = sealed_stats
        self.rank_stats = (*RANK_STATS, *rank_stats)
        if len(set(self.rank_stats)) != len(self.rank_stats):
            raise ValueError(f"Duplicate per-rank statistics in {self.rank_stats}.")
        self._starts = np.array([b.start for b in self.blocks] + [self.n_clients], dtype=np.int64)
        # the plan's slots: the cohort a round can name in the one Bcast (more go in a second)
        self.capacity = self.n_clients if capacity is None else max(1, min(int(capacity), self.n_clients))
        head = self.down.width + 3  # stop, poll, cohort
        per_slot = 8 // self.dtype.itemsize  # two int32 values (id, epochs) per slot
        self._plan_at = head + (-head % per_slot)  # int32 views need 4-byte alignment, and the slots 8
        self._plan_width = self.capacity * per_slot

    # -- downlink ---------------------------------------------------------------------------------------------

    def downlink_buffer(self) -> np.ndarray:
        return np.zeros(self._plan_at + self._plan_width, dtype=self.dtype)

    def downlink_views(self, buffer: np.ndarray) -> dict[str, np.ndarray]:
        """The declared fields (theta first), plus 'stop', 'poll' and 'cohort' (one value each) and 'plan' (the
        capacity slots as an int32 (2, capacity) array: ids, then epochs)."""
        width = self.down.width
        views = self.down.views(buffer[:width])
        views["stop"] = buffer[width : width + 1]
        views["poll"] = buffer[width + 1 : width + 2]
        views["cohort"] = buffer[width + 2 : width + 3]
        views["plan"] = buffer[self._plan_at :].view(np.int32).reshape(2, self.capacity)
        return views

    def put_plan(self, views: dict[str, np.ndarray], epochs: np.ndarray) -> np.ndarray | None:
        """Write a round's plan (dense epochs, one per client) into the downlink; returns the overflow that a second
        Bcast carries (int32 (2, m)), or None when the slots hold the whole cohort."""
        ids = cohort(epochs)
        views["cohort"][0] = ids.size
        held = min(ids.size, self.capacity)
        plan = views["plan"]
        plan[0, :held] = ids[:held]
        plan[1, :held] = epochs[ids[:held]]
        if ids.size <= self.capacity:
            return None
        rest = ids[self.capacity :]
        return np.ascontiguousarray(np.stack([rest, epochs[rest]]).astype(np.int32))

    def overflow_buffer(self, views: dict[str, np.ndarray]) -> np.ndarray | None:
        """Where a client rank receives the plan's overflow, or None when the slots held the cohort."""
        extra = int(views["cohort"][0]) - self.capacity
        return np.empty((2, extra), dtype=np.int32) if extra > 0 else None

    @staticmethod
    def cohort_of(views: dict[str, np.ndarray], overflow: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, epochs) of the round's cohort, ascending ids, from the downlink and its overflow."""
        held = int(views["cohort"][0]) if overflow is None else views["plan"].shape[1]
        plan = views["plan"][:, :held]
        if overflow is not None:
            plan = np.concatenate([plan, overflow], axis=1)
        return plan[0].astype(np.int64), plan[1].astype(np.int64)

    # -- payload: one row per client that trained -------------------------------------------------------------

    def whole_deltas(self, deltas: np.ndarray) -> np.ndarray:
        """The payload's deltas (m, *shape), or (m, shared) when only the body travels, as (m, *shape): a head
        that never travelled has a zero delta."""
        if self.shared is None:
            return deltas
        m = deltas.shape[0]
        whole = np.zeros((m, *self.shape), dtype=deltas.dtype)
        whole.reshape(m, int(np.prod(self.shape)))[:, : self.shared] = deltas
        return whole

    def payload_buffer(self, rows: int) -> np.ndarray:
        return np.zeros((rows, self.payload.width), dtype=self.dtype)  # zeros: a message's padding is defined

    def saved_bytes(self, rows: int) -> int:
        """Bytes that ``rows`` payload rows are smaller than without compression."""
        return rows * (self.uncompressed_payload.width - self.payload.width) * self.dtype.itemsize

    def sending(self, epochs: np.ndarray) -> np.ndarray:
        """The ids of the clients whose payload row travels this round, ascending: those that train (and send)."""
        ids = cohort(epochs)
        return ids if self.senders is None else ids[self.senders[ids]]

    def payload_counts(self, epochs: np.ndarray) -> list[int]:
        """Gatherv counts of one round's payload: a row per sending client, by rank."""
        sending = self.sending(epochs)
        return [0] + [int(n) * self.payload.width for n in np.diff(np.searchsorted(sending, self._starts))]

    # -- per-client statistics and per-rank timings -----------------------------------------------------------

    def active_counts(self, active: np.ndarray) -> np.ndarray:
        """How many of the (ascending) active clients each client rank hosts."""
        return np.diff(np.searchsorted(active, self._starts))

    def stats_counts(self, active: np.ndarray) -> list[int]:
        """Gatherv counts of one round's statistics: a row per active client (none when sealed), then the rank's own
        values."""
        width = 0 if self.sealed_stats else self.client_stats.width
        return [0, *(int(n) * width + len(self.rank_stats) for n in self.active_counts(active))]

    def sent_stats(self, buffer: np.ndarray, rows: int) -> np.ndarray:
        """What a client rank sends of its statistics buffer: all of it, or its own values only when sealed."""
        return buffer[rows * self.client_stats.width:] if self.sealed_stats else buffer

    def stats_buffer(self, rows: int) -> np.ndarray:
        """A client rank's send buffer: ``rows`` client-stat rows (its active clients), then the rank's own values."""
        return np.zeros(rows * self.client_stats.width + len(self.rank_stats))

    def stats_rows(self, buffer: np.ndarray, rows: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(the active clients' rows as a (rows, width) view, the rank's named views): named views per client cost
        microseconds each, which a rank evaluating thousands of clients a round does not pay."""
        width = self.client_stats.width
        own = buffer[rows * width : rows * width + len(self.rank_stats)]
        return buffer[: rows * width].reshape(rows, width), {name: own[i : i + 1] for i, name in enumerate(self.rank_stats)}

    def split_stats(self, gathered: np.ndarray, active: np.ndarray) -> tuple[ClientStats, dict[str, np.ndarray]]:
        """Gathered stats -> (the active clients' columns, {rank stat: (hosts,)}) in client and rank order; sealed,
        the columns are zeros: no client's row travelled."""
        width, extra = (0 if self.sealed_stats else self.client_stats.width), len(self.rank_stats)
        counts = self.active_counts(active)
        per_rank = np.empty((len(self.blocks), extra))
        rows, at = [], 0
        for h, n in enumerate(counts):
            rows.append(gathered[at : at + n * width])
            per_rank[h] = gathered[at + n * width : at + n * width + extra]
            at += n * width + extra
        per_client = (np.zeros((active.size, self.client_stats.width)) if self.sealed_stats
                      else np.concatenate(rows).reshape(active.size, width) if rows else np.empty((0, width)))
        columns = self.client_stats.columns(per_client)
        clients = ClientStats(active, {name: (v[:, 0] if v.shape[1] == 1 else v) for name, v in columns.items()})
        return clients, {name: per_rank[:, i] for i, name in enumerate(self.rank_stats)}


class ClientStats(dict):
    """The round's per-client statistics, one entry per active client (``ids``, ascending), by field name."""

    def __init__(self, ids: np.ndarray, columns: dict[str, np.ndarray]):
        super().__init__(columns)
        self.ids = ids

    def at(self, clients: np.ndarray) -> np.ndarray:
        """Where each of ``clients`` (ascending, all active) sits among the columns' entries."""
        return np.searchsorted(self.ids, clients)
