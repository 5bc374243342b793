"""Data sources by their config name (data.name): the one registry of them, and the one place that picks a job's.

A built-in is a DataSource subclass (mpifl.data.builtin_sources) registered
here; a user's own is named as ``data.name = "my_fl.data:MySource"`` and
gets the same checks.  data.path, when set, takes the files instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mpifl.data import files
from mpifl.data.builtin_sources import Digits, FedproxSynthetic, Synthetic
from mpifl.data.file_sources import NpyTable, PartitionFiles
from mpifl.data.shards import DataSource, Shard, spec_for
from mpifl.model import ModelSpec
from mpifl.registry import Registry

if TYPE_CHECKING:
    from mpifl.config.sections import Config

DATA_SOURCES: Registry = Registry("data source", "data.name", DataSource, group="mpifl.data_sources")
for _cls in (Digits, Synthetic, FedproxSynthetic):
    DATA_SOURCES.register(_cls)


def resolve(cfg: Config) -> DataSource:
    """The one place that decides where the job's data comes from."""
    path = cfg.data.path
    if path:
        return PartitionFiles(cfg) if files.is_partition(path) else NpyTable(cfg)
    return DATA_SOURCES[cfg.data.name].open(cfg)


def model_spec(cfg: Config, source: DataSource | None = None) -> ModelSpec:
    """The model the config asks for, sized to its data source (the job's own unless given)."""
    return spec_for(cfg, source or resolve(cfg))


# Shorthands for tests and tools that want one share without holding a source.

def client_shards(cfg: Config, clients: range, n_clients: int) -> list[Shard]:
    return [c.train for c in resolve(cfg).clients(clients, n_clients)]


def client_shard(cfg: Config, client: int, n_clients: int) -> Shard:
    return client_shards(cfg, range(client, client + 1), n_clients)[0]


def server_test_set(cfg: Config) -> Shard:
    return resolve(cfg).server_test()


def worker_shards(cfg: Config, worker: int, n_workers: int) -> tuple[Shard, Shard]:
    return resolve(cfg).worker(worker, n_workers)


def client_count(cfg: Config, size: int) -> int:
    return resolve(cfg).n_clients(size)
