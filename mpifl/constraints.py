"""Declared parameter constraints, in scikit-learn's style.

A constraint says what a value must be and describes itself for the error
message: "The 'train.lr' parameter must be a float in the range (0, inf).
Got -1 instead."  The job schema (mpifl.config) and each federated strategy's
own parameters (mpifl.strategies) declare theirs with these classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

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


@dataclass(frozen=True)
class Widths:
    """A list of positive ints, e.g. an MLP's hidden layer widths; it may be empty."""

    most: int = 1 << 20

    def accepts(self, value: Any) -> bool:
        return isinstance(value, list) and all(
            isinstance(v, Integral) and not isinstance(v, bool) and 1 <= v <= self.most for v in value)

    def describe(self) -> str:
        return f"a list of ints in the range [1, {self.most}], such as [200, 200]"


@dataclass(frozen=True)
class Ids:
    """A list of distinct non-negative ints, e.g. client ids; it may be empty."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, list) and len(set(value)) == len(value) and all(
            isinstance(v, Integral) and not isinstance(v, bool) and v >= 0 for v in value)

    def describe(self) -> str:
        return "a list of distinct ints >= 0, such as [0, 3, 7]"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


Constraint = Interval | Choice | Text | Flag | Widths | Ids


def violation(key: str, origin: str, constraint: Constraint, value: Any) -> str | None:
    """The error message for ``value`` at ``key``, or None if the constraint accepts it."""
    if constraint.accepts(value):
        return None
    return f"The '{key}' parameter in {origin} must be {constraint.describe()}. Got {value!r} instead."
