"""The data of the clients one rank hosts, built where they are used and when they are used.

A source that can make one client's rows without the others' (a pure
function of (seed, client): the per-client synthetic rows, FedProx's
Synthetic, a partition directory's files) declares ``builds_clients_alone``;
its clients are then built the first time they train or evaluate, and a
cache of ``data.cache_mib`` per rank keeps the most recently used.  A
population of millions then costs set-up nothing and memory the cache.
Other sources (one seeded table cut into clients) build the rank's clients
together at set-up and keep them, since building one means building the
table.

A client's rows are the same bytes whichever way they are built, so the
models are those of a run that built every client up front.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from mpifl.data.shards import ClientData, Shard

Build = Callable[[range], list[ClientData]]


def nbytes(data: ClientData) -> int:
    return sum(_shard_bytes(s) for s in (data.train, data.test, data.validation) if s is not None)


def _shard_bytes(shard: Shard) -> int:
    X = shard.X
    size = X.nbytes if hasattr(X, "nbytes") else X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    return size + shard.y.nbytes


class ClientPool:
    """Client k's data (``pool[k]``) for the clients ``hosted``; ``built`` counts the builds, for the audit."""

    def __init__(self, build: Build, hosted: range, alone: bool, cache_bytes: int):
        self.build, self.hosted, self.alone, self.cache_bytes = build, hosted, alone, cache_bytes
        self.steps: list[Callable[[list[ClientData], range], list[ClientData]]] = []
        self.cache: OrderedDict[int, ClientData] = OrderedDict()
        self.cached_bytes = 0
        self.built = 0
        if not alone:
            for k, data in zip(hosted, self._make(hosted)):
                self.cache[k] = data

    def then(self, step: Callable[[list[ClientData], range], list[ClientData]]) -> ClientPool:
        """Pass every client's data through ``step`` (the chain's data poisoning, say) as it is built."""
        self.steps.append(step)
        if not self.alone:
            ids = range(self.hosted.start, self.hosted.stop)
            for k, data in zip(ids, step([self.cache[k] for k in ids], ids)):
                self.cache[k] = data
        return self

    def _make(self, ids: range) -> list[ClientData]:
        data = self.build(ids)
        self.built += len(ids)
        return data

    def __getitem__(self, k: int) -> ClientData:
        data = self.cache.get(k)
        if data is not None:
            if self.alone:
                self.cache.move_to_end(k)
            return data
        if k not in self.hosted:
            raise KeyError(f"client {k} is not hosted here ({self.hosted.start}..{self.hosted.stop - 1})")
        ids = range(k, k + 1)
        data = self._make(ids)
        for step in self.steps:
            data = step(data, ids)
        data = data[0]
        self._keep(k, data)
        return data

    def _keep(self, k: int, data: ClientData) -> None:
        size = nbytes(data)
        if size > self.cache_bytes:
            return
        self.cache[k] = data
        self.cached_bytes += size
        while self.cached_bytes > self.cache_bytes:
            _, dropped = self.cache.popitem(last=False)
            self.cached_bytes -= nbytes(dropped)

    def __len__(self) -> int:
        return len(self.hosted)
