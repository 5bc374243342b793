"""Data sources by their config name (data.name): the one registry of them.

A built-in is a DataSource subclass (mpifl.data.builtin_sources) registered
here; a user's own is named as ``data.name = "my_fl.data:MySource"`` and
gets the same checks.  data.path, when set, takes the files instead.
"""

from __future__ import annotations

from mpifl.data.builtin_sources import Digits, FedproxSynthetic, Synthetic
from mpifl.data.shards import DataSource
from mpifl.registry import Registry

DATA_SOURCES: Registry = Registry("data source", "data.name", DataSource, group="mpifl.data_sources")
for _cls in (Digits, Synthetic, FedproxSynthetic):
    DATA_SOURCES.register(_cls)
