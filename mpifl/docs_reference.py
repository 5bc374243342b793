"""Generated reference pages: the command line (every command's --help) and the fields of metrics.jsonl.

    python -m mpifl.docs_reference docs/reference

writes ``cli.md`` and ``metrics.md`` there; tests/test_docs.py fails when a
page differs from what the code generates.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
from dataclasses import fields
from pathlib import Path

WIDTH = "100"  # argparse wraps help to $COLUMNS


def cli() -> str:
    """Every command's help, in the order the README introduces them."""
    os.environ["COLUMNS"] = WIDTH
    from mpi4py import MPI

    from mpifl import cli as run_cli

    parser = run_cli.build_parser(MPI.COMM_SELF)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    pages = [("python -m mpifl", parser.format_help())]
    pages += [(f"python -m mpifl {name}", p.format_help()) for name, p in sub.choices.items()]
    for name, call in _serial_tools():
        pages.append((f"python -m mpifl {name}", _help_of(call)))
    out = ["# Command line", "", "Generated from the parsers (`python -m mpifl.docs_reference docs/reference`).",
           "Commands that join an MPI job run under `mpiexec`; `partition`, `scale`, `privacy`, `plot`,",
           "`compare` and `predict` are serial tools.", ""]
    for title, text in pages:
        out += [f"## `{title}`", "", "```text", _normalise(text).rstrip(), "```", ""]
    return "\n".join(out)


def _serial_tools():
    from mpifl.data import partition_cli
    from mpifl.privacy import cli as privacy_cli
    from mpifl.report_cli import main as report
    from mpifl.scaling import cli as scale_cli
    from mpifl.trees import predict_cli

    return [("partition", lambda: partition_cli.main(["--help"])), ("scale", lambda: scale_cli.main(["--help"])),
            ("privacy", lambda: privacy_cli.main(["--help"])), ("plot", lambda: report("plot", ["--help"])),
            ("compare", lambda: report("compare", ["--help"])), ("predict", lambda: predict_cli.main(["--help"]))]


def _help_of(call) -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
        call()
    return buffer.getvalue()


def _normalise(text: str) -> str:
    """argparse says "options:" or "optional arguments:" by Python version; keep one."""
    return re.sub(r"^optional arguments:", "options:", text, flags=re.M)


def metrics() -> str:
    """The fields of a metrics.jsonl record, with the comments the code gives them."""
    from mpifl.progress import RoundRecord

    source = Path(sys.modules[RoundRecord.__module__].__file__).read_text()
    body = source[source.index("class RoundRecord"):]
    notes = {}
    for line in body.splitlines():
        m = re.match(r"\s+(\w+): [^#]*?(?:#\s*(.*))?$", line)
        if m and m.group(1) not in notes:
            notes[m.group(1)] = (m.group(2) or "").strip()
    out = ["# metrics.jsonl", "", "One JSON object per recorded round (round 0 is the initial model), flushed as it",
           "goes; values that are not finite are written as `null`. Generated from `mpifl.progress.RoundRecord`.", "",
           "| field | type | meaning |", "|---|---|---|"]
    for f in fields(RoundRecord):
        kind = str(f.type).replace("|", "or")
        out.append(f"| `{f.name}` | {kind} | {notes.get(f.name, '')} |")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else Path("docs/reference")
    (target / "cli.md").write_text(cli())
    (target / "metrics.md").write_text(metrics())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
