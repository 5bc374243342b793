"""Scaling studies: run a job at several rank counts, tabulate, plot and project.

The driver (``python -m mpifl scale``) is a plain process that launches one
MPI job per point; only ``probe`` runs under MPI.
"""
