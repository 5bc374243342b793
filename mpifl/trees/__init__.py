"""Histogram trees over MPI: gradient-boosted trees grown from summed integer histograms.

Each participant (a rank in distributed mode) bins its own rows once, from edges that every participant's
sketch of its rows fixes together (mpifl.trees.binning); each node's split needs only the sums of fixed-point
gradients and Hessians per feature bin, which add exactly in any order (mpifl.trees.kernels), so the trees are
the same bytes on any rank count.  mpifl.trees.boosting runs the rounds; mpifl.trees.model_file writes and reads
the model.
"""
