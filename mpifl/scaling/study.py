"""A scaling study as data: the job, the rank counts, the kind, the repeats.

A study file is TOML with a [study] table (see slurm/studies/); the same
fields can be given on the command line for a plain job file.  Strong scaling
runs the job as written at every rank count.  Weak scaling keeps the rows per
worker of the smallest point: the source's size key (synthetic's data.n_samples) grows with the worker count, or,
with data.rows_per_rank, every worker generates its own rows and nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from mpifl import config
from mpifl.config import Config, read_toml
from mpifl.data.catalog import DATA_SOURCES
from mpifl.modes import MODES
from mpifl.errors import ConfigError
from mpifl.scaling.traffic import workers

KINDS = ("strong", "weak")


@dataclass(frozen=True)
class SlurmOptions:
    """How rendered sbatch files ask for resources; empty strings are left out."""

    tasks_per_node: int = 0  # 0: let Slurm place the tasks
    cpus_per_task: int = 1
    time: str = "00:30:00"
    partition: str = ""
    account: str = ""
    launcher: str = "srun"  # or "mpiexec"
    srun_mpi: str = "pmi2"
    exclusive: bool = False


@dataclass(frozen=True)
class Study:
    job: Path | None  # None: the built-in default job
    kind: str
    ranks: tuple[int, ...]
    repeat: int = 1
    overrides: tuple[str, ...] = ()
    slurm: SlurmOptions = field(default_factory=SlurmOptions)

    def config(self, ranks: int) -> Config:
        """The job config of the point at ``ranks`` ranks."""
        return config.load(self.job, [*self.overrides, *self.point_overrides(ranks)])

    def base(self) -> Config:
        return config.load(self.job, list(self.overrides))

    def point_overrides(self, ranks: int) -> list[str]:
        if self.kind == "strong":
            return []
        base = self.base()
        if base.data.rows_per_rank:  # every worker already makes its own rows: nothing to scale
            return []
        key = DATA_SOURCES[base.data.name].size_key
        rows = getattr(base.data, key) * workers(base.mode, ranks) // workers(base.mode, self.ranks[0])
        grown = f"data.{key}={rows}"  # an override, as --set writes it
        return [grown]

    def validate(self) -> None:
        """Check everything before a single point runs, so a study never fails half-way on input."""
        if self.kind not in KINDS:
            raise ConfigError(f"The study kind must be one of {KINDS}. Got {self.kind!r} instead.")
        if not self.ranks or any(r < 1 for r in self.ranks) or list(self.ranks) != sorted(set(self.ranks)):
            raise ConfigError(f"The study ranks must be distinct positive ints in increasing order. Got {list(self.ranks)}.")
        if self.repeat < 1:
            raise ConfigError(f"The study repeat must be an int >= 1. Got {self.repeat} instead.")
        base = self.base()
        if self.ranks[0] < MODES[base.mode].min_ranks:
            raise ConfigError(f"{MODES[base.mode](base).too_few_ranks(self.ranks[0])} The study asks for "
                              f"{self.ranks[0]}.")
        if self.kind == "weak" and (base.data.path or not DATA_SOURCES[base.data.name].size_key):
            growing = ", ".join(repr(name) for name, cls in DATA_SOURCES.items() if cls.size_key)
            raise ConfigError(
                f"Weak scaling grows the data with the worker count, which needs a source whose size a key sets "
                f"(data.name = {growing}); the job uses {base.data.path or base.data.name!r}, whose size is fixed."
            )
        for ranks in self.ranks:
            self.config(ranks)


def parse_ranks(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--ranks expects comma-separated ints such as 1,2,4,8. Got {text!r}.") from None


def load(path: Path | None, cli: dict[str, Any]) -> Study:
    """A study from a study file or a job file, with command-line fields taking precedence."""
    table: dict[str, Any] = {}
    job = path
    if path is not None:
        doc = read_toml(path, "study or job file")
        if "study" in doc:
            table = dict(doc["study"])
            job = _job_path(path, table.pop("job", None))
            slurm = doc.get("slurm", {})
            unknown = set(table) - {"kind", "ranks", "repeat", "set"} | set(slurm) - set(SlurmOptions.__dataclass_fields__)
            if unknown:
                raise ConfigError(f"Unknown keys in study file {path}: {', '.join(sorted(unknown))}.")
            table["slurm"] = SlurmOptions(**slurm)
    fields = {
        "kind": cli.get("kind") or table.get("kind"),
        "ranks": cli.get("ranks") or tuple(table.get("ranks", ())),
        "repeat": cli.get("repeat") or table.get("repeat", 1),
        "overrides": (*table.get("set", ()), *cli.get("overrides", ())),
    }
    missing = [name for name in ("kind", "ranks") if not fields[name]]
    if missing:
        raise ConfigError(f"A scaling study needs --{' and --'.join(missing)} (or a study file that gives them).")
    return Study(job=job, slurm=table.get("slurm", SlurmOptions()), **fields)


def _job_path(study_path: Path, job: str | None) -> Path | None:
    """A study's job path: as given (absolute, or relative to the current directory), else relative to
    the study file's directory or one of its parents (so slurm/studies/*.toml can name jobs/...)."""
    if job is None:
        return None
    candidate = Path(job)
    if candidate.is_absolute() or candidate.exists():
        return candidate
    for parent in Path(study_path).resolve().parents:
        if (parent / candidate).exists():
            return parent / candidate
    return candidate  # config.load names it in its error
