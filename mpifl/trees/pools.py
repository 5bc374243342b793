"""Who holds the rows of a fit and how their sums combine: one participant alone; ranks whose integer sums and
maxima an Allreduce combines (distributed mode); or client ranks whose histograms and sketches reach the server
alone, which decides and sends down only its decisions (federated mode: AtServer, with masks and noise where
the job asks).  The booster asks its pool; it never touches a communicator."""

from __future__ import annotations

import numpy as np

from mpifl.ranks import ROOT, is_root
from mpifl.trees.binning import edges_from_counts


class Alone:
    """The sums and maxima of one participant that holds every row."""

    decides = True  # this participant chooses the splits from the sums it holds
    privacy = None  # a private job's mpifl.trees.privacy.TreePrivacy (federated, at the server)

    def sum_histogram(self, hist: np.ndarray, criterion=None) -> None:
        """hist = what this participant decides from: the sum over the participants (int64, in place), noised by
        the ``criterion`` (mpifl.trees.grower) where the job is private."""
        self.sum_ints(hist)

    def release(self, values: np.ndarray, sensitivity: float, *key: int) -> None:
        """values = their sum over the participants (int64, in place), noised where the job is private: counts
        whose L2 sensitivity to one row is ``sensitivity``, the release's noise drawn from ``key``."""
        self.sum_ints(values)

    def edges(self, counts: np.ndarray, lo: np.ndarray, hi: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
        """Every participant's bin edges from the sum of their sketch counts (mpifl.trees.binning)."""
        self.sum_ints(counts)
        return edges_from_counts(counts, lo, hi, bins)

    def decide(self, values: np.ndarray) -> None:
        """values = the deciding participant's (float64, in place): splits and leaf values."""

    def begin_round(self, rnd: int) -> None:
        """Round ``rnd``'s trees are about to grow."""

    def sum_ints(self, values: np.ndarray) -> None:
        """values = their sum over the participants, in place (int64: exact in any order)."""

    def maximum(self, values: np.ndarray) -> None:
        """values = their maximum over the participants, in place."""

    def agree(self, step) -> None:
        """Run a check on every participant; if it fails on any, it fails on all."""
        step()


class Allreduced(Alone):
    """Ranks that each hold some rows (distributed mode): one Allreduce each; ``sent`` counts the bytes of the
    integer sums (the histograms, mostly) each rank contributed."""

    def __init__(self, comm):
        from mpi4py import MPI

        self.comm, self.MPI, self.sent = comm, MPI, 0

    def sum_ints(self, values):
        self.sent += values.nbytes
        self.comm.Allreduce(self.MPI.IN_PLACE, values, op=self.MPI.SUM)

    def maximum(self, values):
        self.comm.Allreduce(self.MPI.IN_PLACE, values, op=self.MPI.MAX)

    def agree(self, step):
        from mpifl.agree import collectively

        collectively(self.comm, step)


class AtServer(Allreduced):
    """Federated mode: the client ranks' histograms are summed at the server alone (one Reduce, the server's own
    buffer holding nothing), which decides each split and leaf value and broadcasts them; with ``masks`` (a
    function of the round giving this rank's mpifl.trees.secure.RoundMasks) each client rank sends its histogram
    masked, so the server reads the sum and no rank's share of it.  With ``privacy`` the server noises every sum
    it releases (mpifl.trees.privacy), and the sketch and counts come to it alone too.  Without, small sums (row
    counts, sketches, gradient peaks) are Allreduced as in distributed mode."""

    def __init__(self, comm, masks=None, privacy=None):
        super().__init__(comm)
        self.decides = is_root(comm)
        self.masks_for, self.masks, self.privacy = masks, None, privacy
        self.round, self.counter = 0, 0

    def begin_round(self, rnd: int) -> None:
        self.round, self.counter = rnd, 0
        if self.masks_for is not None:
            self.masks = self.masks_for(rnd)

    def sum_histogram(self, hist, criterion=None):
        send = hist.reshape(-1).view(np.uint64)
        if self.masks is not None:
            send = self.masks.mask(hist)
        if self.decides:
            self.comm.Reduce(self.MPI.IN_PLACE, send, op=self.MPI.SUM, root=ROOT)  # uint64: wraps, the ring's sum
            if self.privacy is not None:
                criterion.add_noise(hist, self.privacy, 2, self.round, self.counter)
        else:
            self.sent += send.nbytes
            self.comm.Reduce(send, None, op=self.MPI.SUM, root=ROOT)
        self.counter += 1

    def release(self, values, sensitivity, *key):
        if self.privacy is None:
            return self.sum_ints(values)
        flat = values.reshape(-1)
        if self.decides:
            self.comm.Reduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM, root=ROOT)
            self.privacy.noised_counts(flat, sensitivity, *key)
        else:
            self.sent += flat.nbytes
            self.comm.Reduce(flat.copy(), None, op=self.MPI.SUM, root=ROOT)
        self.comm.Bcast(flat, root=ROOT)

    def edges(self, counts, lo, hi, bins):
        """The sketches are summed at the server alone, which sends down only the edges."""
        if self.privacy is not None:  # a private job's counts are released noised (mpifl.trees.privacy)
            return super().edges(counts, lo, hi, bins)
        edges, n_edges = np.empty((counts.shape[0], bins - 1)), np.empty(counts.shape[0], dtype=np.int64)
        if self.decides:
            self.comm.Reduce(self.MPI.IN_PLACE, counts, op=self.MPI.SUM, root=ROOT)
            edges[:], n_edges[:] = edges_from_counts(counts, lo, hi, bins)
        else:
            self.sent += counts.nbytes
            self.comm.Reduce(counts, None, op=self.MPI.SUM, root=ROOT)
        self.comm.Bcast(edges, root=ROOT)
        self.comm.Bcast(n_edges, root=ROOT)
        return edges, n_edges

    def decide(self, values):
        self.comm.Bcast(values, root=ROOT)
