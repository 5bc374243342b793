"""Run mpifl from your own script: ``mpifl.run(job, **overrides)`` under ``mpiexec -n N python script.py``.

Every rank calls run() with the same arguments and gets the same Result
back.  A bad job, bad data or divergence raises the same MpiflError subclass
on every rank, with the message the command line prints; nothing here exits
or aborts the job (the command line does that).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from mpifl import config
from mpifl.config import Config
from mpifl.errors import MpiflError

Job = Config  # a validated job: mpifl.job(...) makes one
JobLike = Union[str, Path, dict, Config, None]


@dataclass(frozen=True)
class Result:
    """What a run returns on every rank."""

    history: list[dict]  # one dict per recorded round, as in metrics.jsonl (null for what is missing)
    summary: dict  # as in summary.json
    model: np.ndarray  # the final parameters, shape (outputs, features + 1); empty for trees
    run_dir: Path | None  # where the files went, or None when out was not given
    trees: object = None  # model.kind = "gbdt": the booster (mpifl.trees.boosting.Booster: predict, raw_scores)

    def clients(self, rnd: int | None = None) -> dict[str, np.ndarray]:
        """Each evaluated client's figures of a recorded round (the last by default): its id, rows, loss, accuracy,
        own test and personal accuracy, validation figures (NaN where it had none).  They are written beside the
        run with ``out`` and ``evaluate__per_client=True``."""
        from mpifl.metrics import read_client_figures

        if self.run_dir is None:
            raise MpiflError("Per-client figures are written to the run directory: run with out=DIR and "
                             "evaluate__per_client=True.")
        return read_client_figures(self.run_dir, rnd)


# Keywords that hand over a class (Flower's way: the strategy object itself), and the key each one sets.
PLUGIN_KEYWORDS = {"strategy": "server.strategy", "aggregator": "server.aggregator", "codec": "compress.uplink",
                   "model": "model.kind", "source": "data.name", "attack": "attack.kind",
                   "mechanism": "privacy.mechanism"}


def job(source: JobLike = None, **overrides: Any) -> Config:
    """A validated job from a TOML path, a dict (nested or dotted keys) or another job, with overrides.

    Overrides use the keys of ``--set``: ``train__lr=0.1`` or ``train={"lr": 0.1}``.  Your own classes
    go in as ``strategy=``, ``aggregator=``, ``codec=``, ``model=``, ``source=``, ``attack=`` or
    ``mechanism=``: they are checked like the built-ins and recorded by their ``module:Class`` path.
    """
    classes = {k: overrides.pop(k) for k in list(overrides) if k in PLUGIN_KEYWORDS and isinstance(overrides[k], type)}
    settings = {**_settings(overrides), **_plugins(classes)}
    if isinstance(source, Config):
        return config.build(source.as_nested(), source.source, settings=settings)
    if isinstance(source, dict):
        return config.build(_nested(source), "<dict>", settings=settings)
    if source is None:
        return config.build(None, "<defaults>", settings=settings)
    base = config.load(source)
    return config.build(base.as_nested(), base.source, settings=settings)


def run(source: JobLike = None, comm=None, *, out: str | Path | None = None, resume: bool = False,
        overwrite: bool = False, verbose: bool = False, **overrides: Any) -> Result:
    """Run one job on ``comm`` (default: every rank of the job) and return its Result on every rank.

    With ``out``, the run directory is written as by ``--out``; without it,
    nothing is written (and checkpoints, which need a directory, are refused).
    An error that every rank raises together (a bad config, divergence) is
    raised; one raised on some ranks only prints its traceback with the rank
    and ends the job with MPI_Abort, as ``python -m mpifl`` does.
    ``strategy=``, ``aggregator=``, ``codec=``, ``model=`` ... hand over your own classes, as in ``job``.
    """
    if comm is None:
        if "mpi4py.MPI" not in sys.modules:
            from mpifl.mpienv import prepare_process

            prepare_process()
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
    from mpifl.agree import collectively, or_abort
    from mpifl.runner import run_job

    cfg = collectively(comm, lambda: job(source, **overrides))
    # an error on some ranks only (a bug, a lost file mid-run) ends the job, as under python -m mpifl: never a hang
    result = or_abort(comm, lambda: run_job(comm, cfg, Path(out) if out is not None else None, verbose=verbose,
                                            resume=resume, overwrite=overwrite, write=out is not None))
    return Result([r.as_json() for r in result.records], result.summary, result.theta, result.run_dir,
                  result.trees)


def _plugins(classes: dict[str, type]) -> dict[str, str]:
    """Your classes, adopted by their registries, as the config values that name them."""
    from mpifl.config import PLUGINS

    return {PLUGIN_KEYWORDS[word]: PLUGINS[PLUGIN_KEYWORDS[word]][0].adopt(cls) for word, cls in classes.items()}


def _settings(overrides: dict[str, Any]) -> dict[str, Any]:
    """train__lr=0.1 and train={"lr": 0.1} both become {"train.lr": 0.1}."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        key = key.replace("__", ".")
        if isinstance(value, dict):
            out.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            out[key] = value
    return out


def _nested(table: dict[str, Any]) -> dict[str, Any]:
    """A job dict as TOML-shaped tables; dotted keys ("train.lr") are accepted too."""
    nested: dict[str, Any] = {}
    for key, value in table.items():
        if "." in key:
            section, name = key.split(".", 1)
            nested.setdefault(section, {})[name] = value
        elif isinstance(value, dict):
            nested.setdefault(key, {}).update(value)
        else:
            nested[key] = value
    return nested
