"""Finished run directories read back: config, per-round history and summary, for plots and comparisons."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpifl.config import flatten
from mpifl.errors import ConfigError


@dataclass(frozen=True)
class RunDir:
    path: Path
    config: dict[str, Any]  # dotted keys, as --set spells them
    history: list[dict]  # metrics.jsonl, one dict per recorded round
    summary: dict  # summary.json; {} for a run that is still going or was killed

    @classmethod
    def read(cls, path: Path) -> RunDir:
        """Read a run directory; a missing or damaged file is a clear error naming it."""
        path = Path(path)
        for name in ("config.toml", "metrics.jsonl"):
            if not (path / name).is_file():
                raise ConfigError(f"{path} is not a run directory: it has no {name}.")
        try:
            config = flatten(tomllib.loads((path / "config.toml").read_text()), str(path / "config.toml"))
            history = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if line]
            summary = json.loads((path / "summary.json").read_text()) if (path / "summary.json").is_file() else {}
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"Cannot read the run in {path}: {exc}.") from None
        return cls(path, config, history, summary)

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(rounds, values) of one per-round quantity, skipping rounds where it is missing (null)."""
        rows = [(r["round"], r[key]) for r in self.history if r.get(key) is not None]
        return [r for r, _ in rows], [v for _, v in rows]


# A finished run's config.toml, flattened as --set spells its keys (not a live, typed Config): labels name the
# strategy first.
STRATEGY_KEY = "server.strategy"


def labels(runs: list[RunDir]) -> list[str]:
    """Each run named by what differs between the runs and is set in it: the strategy, then the other keys by
    their last part (``fedprox proximal_mu=0.01``, ``fedadam lr=0.1``); the directory names when nothing
    differs or two runs would read alike."""
    differing = sorted({k for run in runs for k in run.config}
                       - {k for k in runs[0].config if all(r.config.get(k) == runs[0].config[k] for r in runs)})
    if not differing or len(runs) == 1:
        return [run.path.name for run in runs]
    named = [_label(run.config, differing) for run in runs]
    if len(set(named)) < len(named) or not all(named):
        return [run.path.name for run in runs]
    return named


def _label(config: dict[str, Any], keys: list[str]) -> str:
    """A run's label: keys at their strategy's declared default (config.toml holds every default) say nothing."""
    from mpifl.strategies import STRATEGIES

    name = str(config.get(STRATEGY_KEY))
    strategy = STRATEGIES[name] if name in STRATEGIES else None
    defaults = {f"server.{k}": v[0] for k, v in (strategy.parameters.items() if strategy else ())}
    keys = [k for k in keys if not (k in defaults and config.get(k) == defaults[k])]
    parts = [str(config[STRATEGY_KEY])] if STRATEGY_KEY in keys else []
    short = {k: k.rsplit(".", 1)[-1] for k in keys}
    clash = {name for name in short.values() if list(short.values()).count(name) > 1}
    for key in keys:
        value = config.get(key)
        if key == STRATEGY_KEY or value is None:
            continue
        parts.append(f"{key if short[key] in clash else short[key]}={value:g}" if isinstance(value, float)
                     else f"{key if short[key] in clash else short[key]}={value}")
    return " ".join(parts)
