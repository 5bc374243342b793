"""Job configuration: declared constraints, TOML loading, --set overrides.

Each key's constraint is declared once in ``SCHEMA``; every error names the
key, the constraint and the value received, in scikit-learn's style:
"The 'train.lr' parameter must be a float in the range (0, inf). Got -1 instead."
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import tomllib

from mpifl.errors import ConfigError


@dataclass(frozen=True)
class Interval:
    """A numeric range; ``kind`` is int or float."""

    kind: type
    low: float | None
    high: float | None
    closed: str = "both"  # "both" | "left" | "right" | "neither"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if self.kind is int and not isinstance(value, Integral):
            return False
        if self.kind is float and not isinstance(value, Real):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        left_ok = self.low is None or (value >= self.low if self.closed in ("both", "left") else value > self.low)
        right_ok = self.high is None or (value <= self.high if self.closed in ("both", "right") else value < self.high)
        return left_ok and right_ok

    def describe(self) -> str:
        lo = "-inf" if self.low is None else _num(self.low)
        hi = "inf" if self.high is None else _num(self.high)
        left = "[" if self.closed in ("both", "left") and self.low is not None else "("
        right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        return f"{'an int' if self.kind is int else 'a float'} in the range {left}{lo}, {hi}{right}"


@dataclass(frozen=True)
class Choice:
    options: tuple[Any, ...]

    def accepts(self, value: Any) -> bool:
        return isinstance(value, type(self.options[0])) and value in self.options

    def describe(self) -> str:
        return "a str among {" + ", ".join(repr(o) for o in self.options) + "}"


@dataclass(frozen=True)
class Text:
    """Any string, e.g. a path."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str)

    def describe(self) -> str:
        return "a str"


@dataclass(frozen=True)
class Flag:
    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)

    def describe(self) -> str:
        return "a bool (true or false)"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


# The default values are the default job: federated softmax on digits, 7 clients.
SCHEMA: dict[str, tuple[Any, Interval | Choice | Text | Flag]] = {
    "mode": ("federated", Choice(("federated", "distributed"))),
    "seed": (0, Interval(int, 0, 2**63 - 1)),
    "rounds": (50, Interval(int, 1, None)),
    "log_every": (1, Interval(int, 1, None)),
    "data.name": ("digits", Choice(("digits", "synthetic"))),
    "data.partition": ("dirichlet", Choice(("iid", "dirichlet"))),
    "data.alpha": (0.5, Interval(float, 0, None, "neither")),
    "data.test_fraction": (0.2, Interval(float, 0, 1, "left")),
    "data.n_samples": (10_000, Interval(int, 2, None)),
    "data.n_features": (20, Interval(int, 1, None)),
    "data.n_classes": (2, Interval(int, 2, None)),
    "data.noise": (0.1, Interval(float, 0, None)),
    # files: a directory from 'python -m mpifl partition', or one .npy (distributed mode); "" = data.name
    "data.path": ("", Text()),
    "data.verify": (True, Flag()),  # check every file's sha256 against the manifest before training
    "data.label_column": (-1, Interval(int, None, None)),  # the label column of a single .npy file
    "data.clients": (0, Interval(int, 0, None)),  # federated clients K of a built-in set; 0 = one per client rank
    "data.rows_per_rank": (0, Interval(int, 0, None)),  # synthetic: generate this many rows per worker/client
    "model.kind": ("softmax", Choice(("linear", "logistic", "softmax"))),
    "model.l2": (0.0, Interval(float, 0, None)),
    "model.dtype": ("float64", Choice(("float32", "float64"))),
    "train.algorithm": ("local_sgd", Choice(("gradient_averaging", "local_sgd"))),
    "train.optimizer": ("sgd", Choice(("sgd", "lbfgs"))),  # lbfgs: distributed full-batch L-BFGS
    "train.tol": (1e-6, Interval(float, 0, None)),  # lbfgs: stop when max |gradient| <= tol
    "train.history": (10, Interval(int, 1, 1000)),  # lbfgs: (s, y) pairs kept
    "train.epochs": (1, Interval(int, 1, None)),
    "train.batch_size": (32, Interval(int, 0, None)),
    "train.lr": (0.5, Interval(float, 0, None, "neither")),
    "train.momentum": (0.0, Interval(float, 0, 1, "left")),
    "train.threads": (0, Interval(int, 0, 1024)),
    "server.strategy": ("fedavg", Choice(("fedavg",))),
    "server.fraction": (1.0, Interval(float, 0, 1, "right")),
    "checkpoint.every": (0, Interval(int, 0, None)),
}

SECTIONS = ("data", "model", "train", "server", "checkpoint")


@dataclass(frozen=True)
class Config:
    """A validated job: ``values`` maps dotted keys to values; ``source`` names its origin."""

    values: dict[str, Any]
    source: str = "<defaults>"

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

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


def defaults() -> dict[str, Any]:
    return {key: copy.deepcopy(default) for key, (default, _) in SCHEMA.items()}


def flatten(table: dict[str, Any], source: str) -> dict[str, Any]:
    """Nested TOML tables -> dotted keys; unknown sections and keys are errors."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            if key not in SECTIONS:
                raise ConfigError(
                    f"Unknown section [{key}] in {source}. Valid sections: "
                    + ", ".join(f"[{s}]" for s in SECTIONS) + "."
                )
            for name, inner in value.items():
                flat[f"{key}.{name}"] = inner
        else:
            flat[key] = value
    for key in flat:
        if key not in SCHEMA:
            section = key.split(".", 1)[0] if "." in key else None
            siblings = sorted(k for k in SCHEMA if (k.split(".", 1)[0] if "." in k else None) == section)
            raise ConfigError(
                f"Unknown key '{key}' in {source}. Valid keys"
                + (f" in [{section}]" if section else " at the top level")
                + ": " + ", ".join(siblings) + "."
            )
    return flat


def parse_override(text: str) -> tuple[str, Any]:
    """'section.key=value' -> (key, value); the value is read as TOML, else as a string."""
    if "=" not in text:
        raise ConfigError(f"--set expects section.key=value. Got {text!r} instead.")
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def check(values: dict[str, Any], origins: dict[str, str], source: str) -> None:
    """Check every key against its declared constraint and the cross-key rules."""
    for key, value in values.items():
        constraint = SCHEMA[key][1]
        if not constraint.accepts(value):
            raise ConfigError(
                f"The '{key}' parameter in {origins.get(key, source)} must be "
                f"{constraint.describe()}. Got {value!r} instead."
            )
        if isinstance(constraint, Interval) and constraint.kind is float:
            values[key] = float(value)
    if values["data.rows_per_rank"] and values["data.name"] != "synthetic":
        raise ConfigError(
            f"The 'data.rows_per_rank' parameter in {source} generates synthetic rows on each rank; "
            f"it needs data.name = 'synthetic'. Got data.name = {values['data.name']!r}."
        )
    if values["train.optimizer"] == "lbfgs" and values["mode"] != "distributed":
        raise ConfigError(
            f"The 'train.optimizer' parameter in {origins.get('train.optimizer', source)} is 'lbfgs', which runs "
            "in distributed mode (every rank takes the same L-BFGS steps on Allreduced gradients). "
            "Set mode = \"distributed\"."
        )
    if values["data.path"]:
        return
    if values["data.name"] == "digits" and values["model.kind"] == "logistic":
        raise ConfigError(
            f"The 'model.kind' parameter in {source} is 'logistic' (binary), but data.name "
            "'digits' has 10 classes. Use model.kind = \"softmax\"."
        )
    if values["data.name"] == "digits" and values["model.kind"] == "linear":
        raise ConfigError(
            f"The 'model.kind' parameter in {source} is 'linear' (regression), but data.name "
            "'digits' is a classification task. Use model.kind = \"softmax\"."
        )
    if values["data.name"] == "synthetic" and values["model.kind"] == "logistic" and values["data.n_classes"] != 2:
        raise ConfigError(
            f"The 'data.n_classes' parameter in {source} must be 2 for model.kind 'logistic'. "
            f"Got {values['data.n_classes']} instead."
        )


def load(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Read a job file (or the defaults), apply --set overrides and validate."""
    values = defaults()
    origins: dict[str, str] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"Cannot read job file {source}: {exc.strerror}.") from None
        try:
            table = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"Job file {source} is not valid TOML: {exc}.") from None
        values.update(flatten(table, source))
        origins.update(dict.fromkeys(flatten(table, source), source))
    for text in overrides:
        key, value = parse_override(text)
        values.update(flatten(_nest(key, value), "--set"))
        origins[key] = f"--set {text}"
    check(values, origins, source)
    return Config(values=values, source=source)


def _nest(key: str, value: Any) -> dict[str, Any]:
    if "." in key:
        section, name = key.split(".", 1)
        return {section: {name: value}}
    return {key: value}
