"""A validated job as frozen, typed sections: ``cfg.train.lr``, ``cfg.server.strategy``, ``cfg.seed``.

``Config`` lives here, apart from the schema and the checks in
mpifl.config, so that modules the schema imports (the data sources) can
name the type without importing the schema back.  Each section is a frozen dataclass made from the keys the job holds (the
schema's, and those a chosen plug-in declares), typed by the validated
values: ints, floats, bools, strs, and tuples for lists.  Code outside the
config package reads these attributes, never a dotted string.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, make_dataclass
from typing import Any


def freeze(value: Any) -> Any:
    """Lists (hidden widths, client ids) become tuples, so a section holds no mutable value."""
    return tuple(value) if isinstance(value, list) else value


@functools.lru_cache(maxsize=256)
def section_class(name: str, fields: tuple[tuple[str, type], ...]) -> type:
    """One frozen dataclass per section name and set of typed keys (plug-ins add keys, so a job may differ)."""
    cls = make_dataclass(f"{name.title()}Section", list(fields), frozen=True)
    cls.pick = _pick
    cls.__doc__ = f"The job's [{name}] keys, validated."
    return cls


def _pick(self, names) -> dict[str, Any]:
    """The values of the named keys (a plug-in's declared parameters), as a dict."""
    return {name: getattr(self, name) for name in names}


def sections(values: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Every section of a validated job, built from its dotted values."""
    grouped: dict[str, dict[str, Any]] = {name: {} for name in names}
    for key, value in values.items():
        if "." in key:
            section, short = key.split(".", 1)
            grouped[section][short] = freeze(value)
    out = {}
    for name, keys in grouped.items():
        cls = section_class(name, tuple((key, type(value)) for key, value in keys.items()))
        out[name] = cls(**keys)
    return out


SECTIONS = ("data", "model", "train", "server", "checkpoint", "attack", "compress", "privacy", "secagg", "clients",
            "evaluate", "stop", "state")


@dataclass(frozen=True)
class Config:
    """A validated job: typed sections (``cfg.train.lr``) and the top-level keys (``cfg.seed``).

    ``values`` maps the dotted keys to values (what config.toml and the
    checkpoint fingerprint hold); ``source`` names the job's origin.
    ``cfg["train.lr"]`` still reads a value, for scripts and tests; the
    package itself reads attributes.
    """

    values: dict[str, Any]
    source: str = "<defaults>"

    def __post_init__(self):
        # plain attributes, so that reading cfg.train.lr in a loop costs an attribute lookup and no more
        for name, section in sections(self.values, SECTIONS).items():
            object.__setattr__(self, name, section)
        for key, value in self.values.items():
            if "." not in key:
                object.__setattr__(self, key, value)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"The job has no section or key {name!r}.")

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def __getstate__(self) -> dict[str, Any]:  # the sections' classes are made at run time: rebuild them
        return {"values": self.values, "source": self.source}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "values", state["values"])
        object.__setattr__(self, "source", state["source"])
        self.__post_init__()

    def as_nested(self) -> dict[str, Any]:
        """The config as TOML-shaped nested tables, for writing config.toml."""
        out: dict[str, Any] = {}
        for key, value in self.values.items():
            if "." in key:
                section, name = key.split(".", 1)
                out.setdefault(section, {})[name] = value
            else:
                out[key] = value
        return out
