"""The output links (the task), and the integer codes the compiled kernels know them by."""

SQUARED, LOGISTIC, SOFTMAX = 0, 1, 2
KIND_CODES = {"linear": SQUARED, "logistic": LOGISTIC, "softmax": SOFTMAX}
