"""A validated job as frozen, typed sections: ``cfg.train.lr``, ``cfg.server.strategy``, ``cfg.seed``.

Each section is a frozen dataclass made from the keys the job holds (the
schema's, and those a chosen plug-in declares), typed by the validated
values: ints, floats, bools, strs, and tuples for lists.  Code outside the
config package reads these attributes, never a dotted string.
"""

from __future__ import annotations

import functools
from dataclasses import make_dataclass
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
