"""Entry point: ``python -m mpifl``.

An MpiflError raised on every rank at once is printed once and exits with its
code.  Anything else, on any rank, is printed with the rank and ends the whole
job with MPI_Abort, so no rank is left waiting in a collective.
"""

from __future__ import annotations

import sys
import traceback

from mpifl.mpienv import prepare_process


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["scale"]:  # a driver that launches MPI jobs; it does not join one
        from mpifl.scaling.cli import main as scale

        return scale(args[1:])
    if args[:1] == ["privacy"]:  # the accountant alone: epsilon for a plan, or the noise for an epsilon; no MPI
        from mpifl.privacy.cli import main as privacy

        return privacy(args[1:])
    if args[:1] == ["partition"]:  # a serial tool: it writes files for jobs to read
        from mpifl.data.partition_cli import main as partition

        return partition(args[1:])
    if args[:1] == ["predict"]:  # a serial tool: a tree model's predictions for new rows
        from mpifl.trees.predict_cli import main as predict

        return predict(args[1:])
    if args[:1] in (["plot"], ["compare"]):  # serial tools over run directories
        from mpifl.report_cli import main as report

        return report(args[0], args[1:])
    prepare_process()
    from mpi4py import MPI

    from mpifl import cli
    from mpifl.agree import abort
    from mpifl.errors import EXIT_ABORTED, EXIT_USAGE, MpiflError

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    try:
        return cli.main(comm, argv)
    except SystemExit:  # --help: argparse exits cleanly; usage errors are ConfigErrors
        raise
    except MpiflError as exc:
        if exc.collective:
            if rank == 0:
                kind = "error: " if exc.exit_code == EXIT_USAGE else ""
                print(f"mpifl: {kind}{exc}", file=sys.stderr, flush=True)
            return exc.exit_code
        abort(comm, f"error: {exc}", exc.exit_code)
    except BaseException:  # noqa: BLE001 - any failure must end the job, not hang it
        abort(comm, traceback.format_exc(), EXIT_ABORTED)
    return EXIT_ABORTED


if __name__ == "__main__":
    sys.exit(main())
