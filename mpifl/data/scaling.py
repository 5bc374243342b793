"""Feature scaling for ``python -m mpifl partition --scale``: fitted on the training rows only, kept in the manifest.

Raw features (0-255 pixels, sensor readings in their units) slow SGD or
make it diverge at any one learning rate.  The scaler is fitted on the rows
the clients train on, never the test rows, and each feature is mapped by
``(x - shift) / scale``:

- ``standard``: shift the mean, scale the standard deviation (scikit-learn's
  StandardScaler, population variance);
- ``minmax``: shift the minimum, scale the range, so features lie in [0, 1]
  on the training rows (MinMaxScaler);
- ``maxabs``: no shift, scale the largest magnitude, so sparse rows stay
  sparse (MaxAbsScaler): the one method CSR data takes.

A constant feature has scale 1, as in scikit-learn.  The manifest's
``scaler`` entry holds the method and both vectors, so ``--scaler-from``
scales a later file exactly as the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpifl.data.sparse import CSR
from mpifl.errors import DataError

METHODS = ("standard", "minmax", "maxabs")


@dataclass(frozen=True)
class Scaler:
    method: str
    shift: np.ndarray  # (features,) float64
    scale: np.ndarray  # (features,) float64, never 0

    @classmethod
    def fit(cls, method: str, X) -> Scaler:
        """Fit on the training rows ``X`` (dense, or CSR for maxabs)."""
        if method not in METHODS:
            raise DataError(f"--scale must be one of {', '.join(METHODS)}. Got {method!r}.")
        if isinstance(X, CSR):
            if method != "maxabs":
                raise DataError(f"--scale {method} would shift every zero of the sparse rows; use --scale maxabs.")
            peak = np.zeros(X.n_features)
            np.maximum.at(peak, X.indices, np.abs(X.data))
            return cls(method, np.zeros(X.n_features), _nonzero(peak))
        X = np.asarray(X, dtype=np.float64)
        if X.shape[0] == 0:
            raise DataError("--scale has no training rows to fit on.")
        if method == "standard":
            return cls(method, X.mean(axis=0), _nonzero(X.std(axis=0)))
        if method == "minmax":
            low = X.min(axis=0)
            return cls(method, low, _nonzero(X.max(axis=0) - low))
        return cls(method, np.zeros(X.shape[1]), _nonzero(np.abs(X).max(axis=0)))

    def apply(self, X, source: str):
        """X scaled, as float64 (CSR: its values only); refuses a width other than the fitted one."""
        width = X.n_features if isinstance(X, CSR) else X.shape[1]
        if width != self.scale.size:
            raise DataError(f"{source} has {width} features; the scaler was fitted on {self.scale.size}.")
        if isinstance(X, CSR):
            if self.shift.any():
                raise DataError(f"{source} is sparse; a {self.method} scaler would shift its zeros. Use maxabs.")
            return CSR(X.data / self.scale[X.indices], X.indices, X.indptr, X.n_features)
        return (np.asarray(X, dtype=np.float64) - self.shift) / self.scale

    def entry(self) -> dict:
        """The manifest's record of it (plain lists: JSON)."""
        return {"method": self.method, "shift": self.shift.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_manifest(cls, manifest, where: Path) -> Scaler:
        entry = manifest.doc.get("scaler")
        if not entry:
            raise DataError(f"--scaler-from {where}: its manifest holds no scaler (it was written without --scale).")
        return cls(entry["method"], np.asarray(entry["shift"], dtype=np.float64),
                   np.asarray(entry["scale"], dtype=np.float64))


def _nonzero(scale: np.ndarray) -> np.ndarray:
    """A constant feature keeps its values' spread: scale 1 (scikit-learn does the same)."""
    return np.where(scale > 0, scale, 1.0)
