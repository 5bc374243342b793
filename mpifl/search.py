"""How a sweep proposes its points: a grid, random draws from a space, or Optuna's TPE sampler.

A sweep file's ``[space]`` gives each searched key a range, as
``{low = 1e-3, high = 1.0, log = true}``, ``{low = 1, high = 5, int = true}``
or ``{choices = [...]}``.  ``search = "random"`` draws ``trials`` points,
trial t from the stream (seed, t), so a trial's point does not depend on
how many trials or groups there are.  ``search = "optuna"`` asks Optuna's
TPE sampler, seeded, through its ask-and-tell interface on rank 0 alone, in
waves of as many trials as the groups can run at once: the same seed and
group count give the same trials in the same order.  Optuna is imported
only by a sweep that asks for it (the ``optuna`` extra).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from mpifl.errors import ConfigError
from mpifl.rng import Purpose, stream

SEARCHES = ("grid", "random", "optuna")
PRUNERS = ("none", "median", "halving")


@dataclass(frozen=True)
class Dimension:
    """One searched key: a numeric range (log scale, integers) or a list of choices."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple | None = None

    @classmethod
    def read(cls, key: str, spec: Any, where: str) -> Dimension:
        """A [space] entry, checked: an empty range or choice list, or a log scale through 0, is refused."""
        if not isinstance(spec, dict):
            raise ConfigError(f"The [space] entry {key!r} in {where} must be a table: {{low, high[, log][, int]}} "
                              "or {choices = [...]}.")
        unknown = set(spec) - {"low", "high", "log", "int", "choices"}
        if unknown:
            raise ConfigError(f"Unknown field(s) {', '.join(sorted(unknown))} in the [space] entry {key!r} of "
                              f"{where}. Valid: low, high, log, int, choices.")
        if "choices" in spec:
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"The [space] entry {key!r} in {where} has an empty list of choices.")
            return cls(key, choices=tuple(choices))
        try:
            low, high = float(spec["low"]), float(spec["high"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"The [space] entry {key!r} in {where} needs numeric low and high.") from None
        if not low < high:
            raise ConfigError(f"The [space] entry {key!r} in {where} has an empty range: low = {low:g} is not "
                              f"below high = {high:g}.")
        log = bool(spec.get("log", False))
        if log and low <= 0:
            raise ConfigError(f"The [space] entry {key!r} in {where} is on a log scale, so low must be > 0. "
                              f"Got {low:g}.")
        integer = bool(spec.get("int", False))
        if integer and math.floor(high) < math.ceil(low):
            raise ConfigError(f"The [space] entry {key!r} in {where} holds no integer between {low:g} and {high:g}.")
        return cls(key, low, high, log, integer)

    def draw(self, u: float) -> Any:
        """The value at quantile u in [0, 1) of this dimension (random search)."""
        if self.choices is not None:
            return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]
        if self.integer:
            lo, hi = math.ceil(self.low), math.floor(self.high)
            if self.log:
                return min(hi, int(math.floor(math.exp(math.log(lo) + u * (math.log(hi + 1) - math.log(lo))))))
            return lo + min(int(u * (hi - lo + 1)), hi - lo)
        if self.log:
            return math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        return self.low + u * (self.high - self.low)

    def distribution(self):
        """The dimension as an Optuna distribution."""
        import optuna

        if self.choices is not None:
            return optuna.distributions.CategoricalDistribution(list(self.choices))
        if self.integer:
            return optuna.distributions.IntDistribution(math.ceil(self.low), math.floor(self.high), log=self.log)
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log)


def grid_points(grid: dict[str, list]) -> list[dict[str, Any]]:
    """The product of the grid's lists, in file order."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*grid.values())]


def random_points(space: list[Dimension], trials: int, seed: int) -> list[dict[str, Any]]:
    """``trials`` points, point t drawn from the stream (seed, t) alone."""
    points = []
    for t in range(trials):
        u = stream(seed, Purpose.SEARCH, t).random(len(space))
        points.append({dim.key: dim.draw(float(x)) for dim, x in zip(space, u)})
    return points


class OptunaSearch:
    """Optuna's TPE sampler on rank 0, asked in waves and told each trial's score (or that it was pruned)."""

    def __init__(self, space: list[Dimension], direction: str, seed: int, pruner: str):
        try:
            import optuna
        except ImportError:
            raise ConfigError("search = \"optuna\" needs Optuna: pip install 'mpifl[optuna]'.") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.space = space
        self.study = optuna.create_study(direction="minimize" if direction == "min" else "maximize",
                                         sampler=optuna.samplers.TPESampler(seed=seed), pruner=make_pruner(pruner))
        self.asked: dict[int, Any] = {}

    def ask(self) -> tuple[int, dict[str, Any]]:
        trial = self.study.ask({dim.key: dim.distribution() for dim in self.space})
        self.asked[trial.number] = trial
        return trial.number, dict(trial.params)

    def tell(self, number: int, score: float, curve: list[tuple[int, float]], pruned: bool) -> None:
        """A finished trial's score, or a pruned trial's curve up to where it stopped (a failed one: FAIL)."""
        trial = self.asked.pop(number)
        for step, value in curve:
            trial.report(value, step)
        state = self.optuna.trial.TrialState
        if pruned:
            self.study.tell(trial, state=state.PRUNED)
        elif math.isfinite(score):
            self.study.tell(trial, score)
        else:
            self.study.tell(trial, state=state.FAIL)

    def history(self) -> list:
        """The finished trials, for the groups' pruners (FrozenTrials pickle; sent once per wave)."""
        return [t for t in self.study.trials if t.state.is_finished()]


def make_pruner(name: str):
    """Optuna's pruner of that name: the median rule (after 2 finished trials and 3 recorded rounds), successive
    halving, or none."""
    import optuna

    pruners = {"none": optuna.pruners.NopPruner,
               "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=3),
               "halving": optuna.pruners.SuccessiveHalvingPruner}
    return pruners[name]()


class TrialPruner:
    """A group's judge of its running trial: a copy of the study's finished trials, frozen at the wave's start,
    and Optuna's pruner on them; every rank of the group that asks decides alike."""

    def __init__(self, history: list, direction: str, pruner: str, metric: str):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.metric = metric
        self.study = optuna.create_study(direction="minimize" if direction == "min" else "maximize",
                                         pruner=make_pruner(pruner))
        self.study.add_trials(history)
        self.trial = self.study.ask()

    def __call__(self, record) -> bool:
        value = getattr(record, self.metric)
        if value is None or not math.isfinite(value):
            return False
        self.trial.report(float(value), record.round)
        return self.trial.should_prune()
