#!/usr/bin/env bash
# The test suite: serial tests under pytest (spread over the cores by pytest-xdist), then the MPI
# tests under mpiexec -n 2 and -n 4 (pytest-mpi). Fails if any part fails or collects nothing.
#   tests/run.sh              everything but the tests marked slow (a real Slurm, the benchmark
#                             scripts, kill-and-resume matrices): minutes
#   tests/run.sh --all        everything
#   tests/run.sh --slow       only the slow tests (CI runs tests/run.sh, then this)
# Other arguments go to every part: tests/run.sh -k plugins -x (then a part that no test matches is
# reported, not failed).
set -uo pipefail
cd "$(dirname "$0")/.."

MPIEXEC=${MPIEXEC:-mpiexec}
if ! command -v "$MPIEXEC" >/dev/null; then
    echo "tests/run.sh: '$MPIEXEC' not found; install the mpich wheel (pip install mpich) or load your MPI" >&2
    exit 1
fi

status=0
selection="not mpi and not slow"
mpi_parts=1
if [ "${1:-}" = "--all" ]; then
    selection="not mpi"
    shift
elif [ "${1:-}" = "--slow" ]; then
    selection="slow and not mpi"
    mpi_parts=0
    shift
fi
filtered=$(( $# > 0 ))
run() {
    echo "== $*"
    "$@"
    local rc=$?
    if [ "$rc" -eq 5 ] && [ "$filtered" -eq 1 ]; then
        echo "tests/run.sh: no test of this part matches the arguments"
    elif [ "$rc" -eq 5 ]; then
        echo "tests/run.sh: no tests were collected by: $*" >&2
        status=1
    elif [ "$rc" -ne 0 ]; then
        status=1
    fi
}

# Byte-compile mpifl once: the suite starts a few hundred Python processes (ranks under mpiexec, CLI runs), and
# where PYTHONDONTWRITEBYTECODE is set none of them would leave a .pyc for the next (0.1 s of CPU each).
python -m compileall -q mpifl >/dev/null || true

run python -m pytest -q -n auto --dist loadgroup -m "$selection" tests "$@"
for n in $( [ "$mpi_parts" -eq 1 ] && echo 2 4 ); do
    # Oversubscription is expected on small machines; mpifl picks a thread level that copes.  Every rank imports
    # what it collects, so only the MPI test files are collected (test_architecture.py keeps the MPI tests there).
    run "$MPIEXEC" -n "$n" python -m pytest -q -p no:cacheprovider --with-mpi -m mpi tests/test_mpi_*.py "$@"
done

if [ "$status" -eq 0 ]; then echo "tests/run.sh: all parts passed"; else echo "tests/run.sh: FAILED" >&2; fi
exit "$status"
