"""A compressed-sparse-row matrix as three plain arrays, the form the CSR kernels take.

scipy.sparse is used to read LIBSVM files and in tests, but training needs
only these arrays, which can be memory-mapped straight from .npy files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CSR:
    """Rows of a sparse matrix: row i's entries are data[indptr[i]:indptr[i+1]] at columns indices[...]."""

    data: np.ndarray  # (nnz,) the model's dtype
    indices: np.ndarray  # (nnz,) int32 column indices
    indptr: np.ndarray  # (n + 1,) int64 offsets
    n_features: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.indptr.size - 1, self.n_features)

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1] - self.indptr[0])

    def take(self, rows: np.ndarray) -> CSR:
        """The given rows, in order, as a new CSR with zero-based offsets."""
        starts, stops = self.indptr[rows], self.indptr[rows + 1]
        lengths = stops - starts
        indptr = np.zeros(rows.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        pick = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1], dtype=np.int64)
        return CSR(self.data[pick], self.indices[pick], indptr, self.n_features)

    def astype(self, dtype) -> CSR:
        if self.data.dtype == dtype:
            return self
        return CSR(np.ascontiguousarray(self.data, dtype=dtype), self.indices, self.indptr, self.n_features)

    def toarray(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=self.data.dtype)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        out[rows, self.indices[self.indptr[0] : self.indptr[-1]]] = self.data[self.indptr[0] : self.indptr[-1]]
        return out

    @classmethod
    def from_scipy(cls, matrix) -> CSR:
        m = matrix.tocsr()
        m.sort_indices()
        return cls(np.ascontiguousarray(m.data), m.indices.astype(np.int32), m.indptr.astype(np.int64), m.shape[1])

    @classmethod
    def from_dense(cls, X: np.ndarray) -> CSR:
        rows, cols = np.nonzero(X)
        indptr = np.zeros(X.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=X.shape[0]), out=indptr[1:])
        return cls(np.ascontiguousarray(X[rows, cols]), cols.astype(np.int32), indptr, X.shape[1])
