"""The federated round's messages, laid out from what each algorithm declares.

An algorithm declares named fields; this module turns the declaration into
flat buffers and named views of them, identically on every rank, so that the
loops in mpifl.federated move bytes without knowing what they mean:

- **downlink**, one ``Bcast`` in the model's dtype:
  ``[theta | declared downlink fields | epochs (one per client) | stop | poll]``.
  ``epochs[k]`` is client k's number of local epochs this round; 0 means it
  does not train (not sampled, or a dropped straggler).  ``poll`` tells every
  rank how to wait in this round's collectives (mpifl.comm.wait_patiently).
- **payload**, one ``Gatherv`` row per client that trained, in the model's
  dtype: ``[delta | declared model-sized uplink fields]``; with uplink
  compression, delta's place is taken by its encoded ``message``, whose bytes
  fill as many model-dtype values as they need (mpifl.compression); when the
  clients keep their own head (FedRep, FedPer), delta is only the body's part,
  its first ``shared`` values.
- **stats**, one ``Gatherv`` of float64 from every client rank, every round:
  per hosted client the built-in statistics and the declared float64 uplink
  fields, then per rank its compute time, stop flag and last comm time, and
  what the stages on report of their work there.
"""

from __future__ import annotations

from collections.abc import Sequence
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
        senders: np.ndarray | None = None, rank_stats: Sequence[str] = (),
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
        self.rank_stats = (*RANK_STATS, *rank_stats)
        if len(set(self.rank_stats)) != len(self.rank_stats):
            raise ValueError(f"Duplicate per-rank statistics in {self.rank_stats}.")
        per_rank = [len(b) * self.client_stats.width + len(self.rank_stats) for b in self.blocks]
        self.stats_counts = [0, *per_rank]  # the server (rank 0) sends nothing
        offsets = np.cumsum([0, *per_rank])
        width = self.client_stats.width
        self._client_rows = np.concatenate(
            [off + np.arange(len(b) * width) for off, b in zip(offsets, self.blocks)]
        ).astype(np.int64) if self.n_clients else np.empty(0, np.int64)
        self._rank_rows = np.concatenate(
            [off + len(b) * width + np.arange(len(self.rank_stats)) for off, b in zip(offsets, self.blocks)]
        ).astype(np.int64)

    # -- downlink ---------------------------------------------------------------------------------------------

    def downlink_buffer(self) -> np.ndarray:
        return np.zeros(self.down.width + self.n_clients + 2, dtype=self.dtype)

    def downlink_views(self, buffer: np.ndarray) -> dict[str, np.ndarray]:
        """The declared fields (theta first), plus 'epochs' (one per client), 'stop' and 'poll' (one value each)."""
        views = self.down.views(buffer[: self.down.width])
        views["epochs"] = buffer[self.down.width : -2]
        views["stop"] = buffer[-2:-1]
        views["poll"] = buffer[-1:]
        return views

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
        """The clients whose payload row travels this round, in client order: those that train (and send)."""
        training = np.asarray(epochs) > 0
        return training if self.senders is None else training & self.senders

    def payload_counts(self, epochs: np.ndarray) -> list[int]:
        """Gatherv counts of one round's payload: a row per sending client, by rank."""
        sending = self.sending(epochs)
        return [0] + [int(sending[b.start : b.stop].sum()) * self.payload.width for b in self.blocks]

    # -- per-client statistics and per-rank timings -----------------------------------------------------------

    def stats_buffer(self, hosted: int) -> np.ndarray:
        """A client rank's send buffer: hosted x client-stat width, then the rank's own values."""
        return np.zeros(hosted * self.client_stats.width + len(self.rank_stats))

    def stats_views(self, buffer: np.ndarray, hosted: int) -> tuple[list[dict[str, np.ndarray]], dict[str, np.ndarray]]:
        """(one dict of named 1-value views per hosted client, the rank's named views)."""
        width = self.client_stats.width
        clients = [self.client_stats.views(buffer[j * width : (j + 1) * width]) for j in range(hosted)]
        own = buffer[hosted * width :]
        return clients, {name: own[i : i + 1] for i, name in enumerate(self.rank_stats)}

    def split_stats(self, gathered: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Gathered stats -> ({field: (K,) or (K, size)}, {rank stat: (hosts,)}) in client and rank order."""
        per_client = gathered[self._client_rows].reshape(self.n_clients, self.client_stats.width)
        columns = self.client_stats.columns(per_client)
        clients = {name: (v[:, 0] if v.shape[1] == 1 else v) for name, v in columns.items()}
        per_rank = gathered[self._rank_rows].reshape(len(self.blocks), len(self.rank_stats))
        return clients, {name: per_rank[:, i] for i, name in enumerate(self.rank_stats)}
