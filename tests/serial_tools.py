"""mpifl's serial commands (partition, plot, compare, privacy) run in this process, as ``python -m mpifl
COMMAND`` would run them: they start no MPI job, so a test needs no new Python process to call them."""

from __future__ import annotations

import io
import os
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path


def mpifl_command(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m mpifl ARGS`` in this process: its exit code and what it printed, as subprocess.run returns them."""
    from mpifl.__main__ import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's usage errors and --help
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(["python", "-m", "mpifl", *argv], code, out.getvalue(), err.getvalue())
