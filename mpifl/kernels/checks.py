"""Input checks as single-pass kernels: no temporaries the size of the data."""

from __future__ import annotations

import numpy as np

from mpifl.jit import kernel


@kernel
def all_finite(values):
    """True when no value (of a 1-D view) is NaN or inf; one pass, no bool temporary."""
    bad = 0.0
    for i in range(values.size):
        bad += values[i] * 0.0  # NaN * 0 and inf * 0 are NaN; finite * 0 is 0
    return bad == 0.0


@kernel
def labels_in_range(y, n_classes):
    """Index of the first label that is not a whole number in [0, n_classes), else -1."""
    for i in range(y.size):
        v = y[i]
        if not (v >= 0 and v < n_classes and v == np.floor(v)):
            return i
    return -1
