"""``python -m mpifl privacy``: what a DP-FedAvg plan costs, before running it (no MPI).

    python -m mpifl privacy --rounds 100 --rate 0.1 --clients 100 --noise 1.0 --delta 1e-5
    python -m mpifl privacy --rounds 100 --rate 0.1 --clients 100 --epsilon 2 --delta 1e-5

The first prints epsilon; the second the noise multiplier that reaches it.
The sampling defaults to a job's (``server.sampling = "fixed"``, which needs
the number of clients); ``--sampling poisson`` accounts for Poisson
sampling, as a job with ``server.sampling = "poisson"`` runs.

Local DP (``privacy.where = "local"``) asks per client, with no sampling:

    python -m mpifl privacy --local gaussian --rounds 20 --noise 3.0 --delta 1e-5
    python -m mpifl privacy --local laplace --rounds 20 --epsilon 4

The first prints a client's epsilon after 20 releases (the rounds it took
part in); the second the noise multiplier whose one release costs epsilon 4,
and what 20 releases of it cost.
"""

from __future__ import annotations

import argparse
import sys

from mpifl.privacy.accounting import ACCOUNTANTS, SAMPLINGS, Sampling, epsilon, noise_for
from mpifl.privacy.mechanisms import PRIVACY_MECHANISMS, local_mechanisms


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpifl privacy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, required=True,
                        help="rounds that release a noised aggregate (with --local: one client's releases)")
    parser.add_argument("--rate", type=float, default=0.0, help="q: each round's share of the clients (central DP)")
    parser.add_argument("--local", choices=local_mechanisms(), default=None,
                        help="local DP with this noise (privacy.where = \"local\", privacy.mechanism)")
    parser.add_argument("--clients", type=int, default=0,
                        help="N, the number of clients (fixed sampling draws round(q N) of them; Poisson: unused)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--noise", type=float, help="the noise multiplier z: print epsilon")
    which.add_argument("--epsilon", type=float, help="a target epsilon: print the noise multiplier")
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--sampling", choices=SAMPLINGS, default="fixed",
                        help="as the job's server.sampling (default: fixed, as a job's)")
    parser.add_argument("--accountant", choices=ACCOUNTANTS, default="rdp")
    args = parser.parse_args(argv)
    if args.local is not None:
        return local(parser, args)
    if args.rounds < 1 or not 0 < args.rate <= 1 or not 0 < args.delta < 1:
        parser.error("--rounds must be >= 1, --rate in (0, 1] and --delta in (0, 1)")
    if args.sampling == "fixed" and args.clients < 1:
        parser.error("fixed sampling (a job's default server.sampling) needs --clients N, the job's clients; "
                     "for a job with server.sampling = \"poisson\", pass --sampling poisson")
    sampling = Sampling(args.sampling, max(args.clients, 1), args.rate)
    plan = (f"{args.rounds} rounds, {args.sampling} sampling at rate {args.rate:g}"
            + (f" of {args.clients} clients" if args.clients else "") + f", delta {args.delta:g}, "
            f"{args.accountant} accountant")
    try:
        if args.noise is not None:
            eps = epsilon(args.rounds, args.noise, sampling, args.delta, args.accountant)
            print(f"epsilon {eps:.6f} for noise multiplier {args.noise:g}: {plan}")
        else:
            z = noise_for(args.epsilon, args.rounds, sampling, args.delta, args.accountant)
            print(f"noise multiplier {z:.6f} for epsilon {args.epsilon:g}: {plan}")
    except ValueError as exc:
        print(f"mpifl privacy: {exc}", file=sys.stderr)
        return 2
    return 0


def local(parser: argparse.ArgumentParser, args) -> int:
    """Local DP: a client's epsilon after --rounds releases, or the noise whose one release costs --epsilon."""
    from mpifl.privacy import local as local_dp

    if args.rounds < 1 or not 0 < args.delta < 1 or (args.epsilon is not None and args.epsilon <= 0) or (
            args.noise is not None and args.noise <= 0):
        parser.error("--rounds must be >= 1, --delta in (0, 1), and --epsilon or --noise above 0")
    plan = f"{args.local} noise, sensitivity 2C (any two updates), delta {args.delta:g}, {args.accountant} accountant"
    mechanism = PRIVACY_MECHANISMS[args.local]
    try:
        z = args.noise if args.noise is not None else local_dp.noise_for(mechanism, args.epsilon, args.delta,
                                                                          args.accountant)
        one = local_dp.epsilon_after(mechanism, z, 1, args.delta, args.accountant)
        after = local_dp.epsilon_after(mechanism, z, args.rounds, args.delta, args.accountant)
    except (ValueError, RuntimeError) as exc:
        print(f"mpifl privacy: {exc}", file=sys.stderr)
        return 2
    if args.noise is None:
        print(f"noise multiplier {z:.6f} for epsilon {args.epsilon:g} per release: {plan}")
    print(f"epsilon {one:.6f} per release and {after:.6f} after {args.rounds} releases for noise multiplier {z:g}: "
          f"{plan}")
    return 0
