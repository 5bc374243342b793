"""Mean-around-median (Xie, Koyejo and Gupta 2018, "Generalized Byzantine-tolerant SGD"): a user's aggregator.

Per coordinate, the mean of the n - f values nearest the coordinate's
median.  It tolerates f Byzantine values per coordinate, like the trimmed
mean, but trims around the median instead of at both ends.

A job names it as ``server.aggregator = "examples.meamed:MeanAroundMedian"``.
It reuses mpifl's ``server.byzantine`` key: the declaration is the same as
the built-ins', so the key is shared rather than duplicated.
"""

from __future__ import annotations

import numpy as np

from mpifl.constraints import Interval
from mpifl.strategies.aggregators import Aggregator, Combined


class MeanAroundMedian(Aggregator):
    parameters = {"byzantine": (1, Interval(int, 0, None))}

    def problem(self, n):
        f = self.params["byzantine"]
        if n - f < 1:
            return f"mean-around-median with server.byzantine = {f} keeps n - f = {n - f} of {n} values."
        return None

    def combine(self, rows, weights):
        keep = rows.shape[0] - self.params["byzantine"]
        median = np.median(rows, axis=0)
        nearest = np.argsort(np.abs(rows - median), axis=0, kind="stable")[:keep]
        return Combined(np.take_along_axis(rows, nearest, axis=0).mean(axis=0))
