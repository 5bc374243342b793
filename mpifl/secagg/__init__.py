"""Secure aggregation (Bonawitz et al. 2017; SecAgg+ of Bell et al. 2020): the server learns only the sum.

crypto.py: the primitives, all from ``cryptography``; shamir.py: t-of-n secret
sharing; graph.py: who shares with whom; encoding.py: fixed point in Z_(2^bits);
protocol.py: one round's client and server steps as pure functions of bytes;
transport.py: those bytes over MPI.
"""
