"""Registries: the one place each kind of plug-in (strategy, aggregator, codec) is looked up by name.

A job names a plug-in in one of three ways, and each ends here:

- a registered name (``"fedavg"``): the built-ins register themselves through
  the same ``register`` call a user's package can make;
- an entry point of an installed package
  (``[project.entry-points."mpifl.strategies"] fedexp = "my_fl.algos:FedExP"``),
  loaded the first time an unknown name is looked up;
- a ``module:Class`` path (``"my_fl.algos:FedExP"``), imported on every rank.

Whatever the way, the class is checked against its family's declarations
(``check``) before any rank trains, so a user's class gets the validation,
checkpoints and resume of the built-ins.  A class handed over from Python
(``mpifl.run(job, strategy=FedExP)``) is adopted under its ``module:Class``
path, which the run records so that ``--resume`` can import it again.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import Any, Generic, TypeVar

from mpifl.constraints import Constraint, violation
from mpifl.errors import ConfigError

T = TypeVar("T")
Parameters = dict[str, tuple[Any, Constraint]]


class Registry(Mapping[str, type], Generic[T]):
    """Names to classes of one family; ``registry[value]`` also imports a ``module:Class`` path."""

    def __init__(self, family: str, key: str, base: type, check: Callable[[type], str | None] | None = None,
                 group: str = ""):
        self.family = family  # "strategy", "aggregator", ...: for messages
        self.key = key  # the config key that chooses one, e.g. "server.strategy"
        self.base = base
        self.group = group or f"mpifl.{family}s"  # the entry-point group
        self._check = check
        self._classes: dict[str, type] = {}
        self._adopted: dict[str, type] = {}  # module:Class paths of classes handed over from Python
        self._entry_points_read = False

    def register(self, cls: type, name: str | None = None) -> type:
        """Add ``cls`` under ``name`` (default: its ``name`` attribute); usable as a class decorator."""
        name = name or getattr(cls, "name", None)
        if not isinstance(name, str) or not name or ":" in name:
            raise ConfigError(f"A {self.family} registers under a name without ':'; {cls.__qualname__} has "
                              f"{name!r}.")
        problem = self.problem(cls)
        if problem:
            raise ConfigError(f"{self.family} {name!r} ({path_of(cls)}): {problem}")
        self._classes[name] = cls
        return cls

    def adopt(self, cls: type) -> str:
        """Accept a class from Python code; returns the ``module:Class`` path the config records."""
        problem = self.problem(cls)
        if problem:
            raise ConfigError(f"The {self.family} class {path_of(cls)} handed to mpifl: {problem}")
        for name, known in self._classes.items():
            if known is cls:
                return name
        path = path_of(cls)
        self._adopted[path] = cls
        return path

    def problem(self, cls: Any) -> str | None:
        """Why ``cls`` cannot serve as one of this family, or None."""
        if not isinstance(cls, type) or not issubclass(cls, self.base):
            return f"it must be a subclass of {path_of(self.base)}; got {cls!r}."
        if getattr(cls, "__abstractmethods__", None):
            return "it does not implement " + ", ".join(sorted(cls.__abstractmethods__)) + "."
        problem = check_parameters(getattr(cls, "parameters", {}))
        if problem:
            return problem
        return self._check(cls) if self._check is not None else None

    def resolve(self, value: str, origin: str = "") -> type:
        """The class a config value names: a registered name, an entry point, or a module:Class path."""
        if value in self._classes:
            return self._classes[value]
        if value in self._adopted:
            return self._adopted[value]
        where = f"The '{self.key}' parameter" + (f" in {origin}" if origin else "")
        if ":" not in value:
            self._read_entry_points()
            if value in self._classes:
                return self._classes[value]
            raise ConfigError(f"{where} must be a registered {self.family} (" + ", ".join(map(repr, self))
                              + f") or a 'module:Class' path. Got {value!r} instead.")
        cls = import_path(value, where)
        problem = self.problem(cls)
        if problem:
            raise ConfigError(f"{where} names {value!r}, which is not a usable {self.family}: {problem}")
        self._adopted[value] = cls
        return cls

    def _read_entry_points(self) -> None:
        """Register the group's entry points of installed packages, once."""
        if self._entry_points_read:
            return
        self._entry_points_read = True
        for point in metadata.entry_points(group=self.group):
            if point.name not in self._classes:
                try:
                    cls = point.load()
                except Exception as exc:  # a broken plug-in package: name it
                    raise ConfigError(f"The entry point {point.name!r} of group {self.group} ({point.value}) "
                                      f"cannot be loaded: {type(exc).__name__}: {exc}.") from None
                self.register(cls, point.name)

    def __getitem__(self, value: str) -> type:
        return self.resolve(value)

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and (value in self._classes or value in self._adopted)

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)


def path_of(cls: type) -> str:
    """``module:QualName``, the form a job file names a class by."""
    return f"{cls.__module__}:{cls.__qualname__}"


def import_path(path: str, where: str) -> type:
    """Import ``module:Class``; every failure is a ConfigError that says which part failed and why."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"{where} must be a name or 'module:Class'. Got {path!r} instead.")
    if module_name == "__main__":
        raise ConfigError(
            f"{where} names {path!r}, a class defined in a script's __main__, which no other process can import "
            "by that path (a resumed run, for one). Define the class in a module on PYTHONPATH and name it "
            f"'module:{attribute}', or hand the class over again: mpifl.run(..., resume=True) with the class.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{where} names {path!r}, but module {module_name!r} cannot be imported: {exc}. "
                          "It must be importable on every rank (installed, or on PYTHONPATH).") from None
    except Exception as exc:
        raise ConfigError(f"{where} names {path!r}, and importing module {module_name!r} raised "
                          f"{type(exc).__name__}: {exc}.") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            known = sorted(n for n, v in vars(module).items() if isinstance(v, type) and not n.startswith("_"))
            raise ConfigError(f"{where} names {path!r}, but module {module_name!r} has no {attribute!r}. "
                              f"Its classes: {', '.join(known) or 'none'}.")
        target = getattr(target, part)
    return target


def check_parameters(parameters: Any) -> str | None:
    """A class's ``parameters`` must map names to (default, constraint) with the default accepted."""
    if not isinstance(parameters, Mapping):
        return f"its 'parameters' must be a dict of name: (default, constraint); got {type(parameters).__name__}."
    for name, declared in parameters.items():
        if not isinstance(name, str) or not name.isidentifier():
            return f"its parameter name {name!r} must be an identifier."
        if not (isinstance(declared, tuple) and len(declared) == 2):
            return f"its parameter {name!r} must be declared as (default, constraint); got {declared!r}."
        default, constraint = declared
        if not (hasattr(constraint, "accepts") and hasattr(constraint, "describe")):
            return (f"its parameter {name!r} has no constraint (use mpifl.constraints: Interval, Choice, Flag, "
                    f"Text); got {constraint!r}.")
        message = violation(name, "its declaration", constraint, default)
        if message:
            return f"the default of parameter {name!r} breaks its own constraint: {message}"
    return None


def defaults(cls: type) -> dict[str, Any]:
    """A class's declared parameters at their defaults."""
    return {name: default for name, (default, _) in getattr(cls, "parameters", {}).items()}


class Plugin:
    """The constraint of a key that chooses a plug-in: a registered name or a module:Class path.

    ``accepts`` checks the form only; the config then resolves the value
    through the registry, whose errors say what failed (an unknown name, a
    module that cannot be imported, a class with a bad declaration).
    """

    def __init__(self, registry: Registry):
        self.registry = registry

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and bool(value)

    def describe(self) -> str:
        return (f"a registered {self.registry.family} among {{" + ", ".join(map(repr, self.registry))
                + "} or a 'module:Class' path")

    @property
    def options(self) -> tuple[str, ...]:
        return tuple(self.registry)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plugin) and other.registry is self.registry

    def __hash__(self) -> int:
        return id(self.registry)
