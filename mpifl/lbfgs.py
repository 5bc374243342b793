"""L-BFGS with a strong-Wolfe line search, on a flat parameter vector.

Pure NumPy and deterministic: given the same objective values it takes the
same steps, so every rank of a distributed run, evaluating the same
Allreduced loss and gradient, keeps an identical copy of the state and no
parameters ever need to be broadcast (as in Spark MLlib's L-BFGS).
Nocedal and Wright, Numerical Optimization (2006), algorithms 7.4, 3.5, 3.6.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]  # theta -> (loss, gradient), both new objects

C1, C2 = 1e-4, 0.9  # sufficient decrease and curvature constants
# Near the optimum the loss stops changing in floating point long before the
# gradient does; there the approximate Wolfe test of Hager and Zhang (2005),
# which trusts slopes, lets L-BFGS keep converging to full precision.
ROUNDING = 1e-12
MAX_LINE_SEARCH = 40


class Lbfgs:
    """State of one L-BFGS run: the last ``history`` (s, y) pairs, the iterate's loss and gradient."""

    def __init__(self, size: int, history: int = 10, tol: float = 1e-6):
        self.S = np.zeros((history, size))
        self.Y = np.zeros((history, size))
        self.rho = np.zeros(history)
        self.count = 0  # pairs stored so far (the newest is at (count - 1) % history)
        self.loss = np.nan
        self.grad = np.zeros(size)
        self.started = False
        self.evaluations = 0
        self.tol = tol
        self.converged = False  # max |gradient| <= tol, or no step decreases the loss any more

    def direction(self) -> np.ndarray:
        """-H g by the two-loop recursion, with H0 = (s.y / y.y) I."""
        q = -self.grad.copy()
        m = self.S.shape[0]
        newest = range(self.count - 1, max(self.count - m, 0) - 1, -1)
        alphas = {}
        for i in newest:
            j = i % m
            alphas[j] = self.rho[j] * (self.S[j] @ q)
            q -= alphas[j] * self.Y[j]
        if self.count:
            j = (self.count - 1) % m
            q *= (self.S[j] @ self.Y[j]) / (self.Y[j] @ self.Y[j])
        for i in reversed(newest):
            j = i % m
            beta = self.rho[j] * (self.Y[j] @ q)
            q += (alphas[j] - beta) * self.S[j]
        return q

    def step(self, theta: np.ndarray, objective: Objective) -> None:
        """One iteration: update theta (flat, float64) in place; sets ``converged`` when done."""
        if not self.started:
            self.loss, self.grad = self._call(objective, theta)
            self.started = True
        if self.converged or np.abs(self.grad).max() <= self.tol:
            self.converged = True
            return
        p = self.direction()
        slope = float(self.grad @ p)
        if slope >= 0:  # not a descent direction (rounding): restart from steepest descent
            self.count = 0
            p = -self.grad
            slope = float(self.grad @ p)
        first = 1.0 if self.count else min(1.0, 1.0 / max(np.abs(self.grad).sum(), 1e-300))
        alpha, loss, grad = self._line_search(theta, p, slope, first, objective)
        if loss > self.loss + self._rounding(self.loss) or alpha == 0.0:  # no step helps: optimal to precision
            self.converged = True
            return
        s = alpha * p
        y = grad - self.grad
        sy = float(s @ y)
        if sy > 1e-10 * float(y @ y):
            j = self.count % self.S.shape[0]
            self.S[j], self.Y[j], self.rho[j] = s, y, 1.0 / sy
            self.count += 1
        theta += s
        self.loss, self.grad = loss, grad
        self.converged = bool(np.abs(grad).max() <= self.tol)

    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to continue bitwise-identically after a restart."""
        return {"lbfgs.S": self.S, "lbfgs.Y": self.Y, "lbfgs.rho": self.rho, "lbfgs.grad": self.grad,
                "lbfgs.scalars": np.array([self.count, self.loss, self.started, self.evaluations, self.converged])}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.S[:], self.Y[:], self.rho[:], self.grad[:] = (state[f"lbfgs.{k}"] for k in ("S", "Y", "rho", "grad"))
        count, loss, started, evaluations, converged = state["lbfgs.scalars"]
        self.count, self.loss, self.started = int(count), float(loss), bool(started)
        self.evaluations, self.converged = int(evaluations), bool(converged)

    @staticmethod
    def _rounding(f: float) -> float:
        return ROUNDING * max(abs(f), 1e-300)

    def _acceptable(self, f0: float, slope0: float, alpha: float, f: float, slope: float) -> bool:
        """Strong Wolfe, or approximate Wolfe where the loss is flat to rounding."""
        if f <= f0 + C1 * alpha * slope0 and abs(slope) <= -C2 * slope0:
            return True
        return f <= f0 + self._rounding(f0) and C2 * slope0 <= slope <= (2 * C1 - 1) * slope0

    def _call(self, objective: Objective, theta: np.ndarray) -> tuple[float, np.ndarray]:
        self.evaluations += 1
        return objective(theta)

    def _line_search(self, theta, p, slope0, alpha, objective):
        """Strong-Wolfe step length: bracket, then zoom by safeguarded cubic interpolation."""
        f0 = self.loss
        prev_alpha, prev_f, prev_slope = 0.0, f0, slope0
        for i in range(MAX_LINE_SEARCH):
            f, g = self._call(objective, theta + alpha * p)
            slope = float(g @ p)
            if self._acceptable(f0, slope0, alpha, f, slope):
                return alpha, f, g
            if f > f0 + C1 * alpha * slope0 or (i > 0 and f >= prev_f):
                return self._zoom(theta, p, f0, slope0, prev_alpha, prev_f, prev_slope, alpha, f, slope, objective)
            if abs(slope) <= -C2 * slope0:
                return alpha, f, g
            if slope >= 0:
                return self._zoom(theta, p, f0, slope0, alpha, f, slope, prev_alpha, prev_f, prev_slope, objective)
            prev_alpha, prev_f, prev_slope = alpha, f, slope
            alpha *= 2.0
        return alpha, f, g

    def _zoom(self, theta, p, f0, slope0, lo, f_lo, s_lo, hi, f_hi, s_hi, objective):
        best = (lo, f_lo, None)
        for _ in range(MAX_LINE_SEARCH):
            alpha = _cubic_min(lo, f_lo, s_lo, hi, f_hi, s_hi)
            f, g = self._call(objective, theta + alpha * p)
            slope = float(g @ p)
            if self._acceptable(f0, slope0, alpha, f, slope):
                return alpha, f, g
            if f > f0 + C1 * alpha * slope0 or f >= f_lo:
                hi, f_hi, s_hi = alpha, f, slope
            else:
                if abs(slope) <= -C2 * slope0:
                    return alpha, f, g
                if slope * (hi - lo) >= 0:
                    hi, f_hi, s_hi = lo, f_lo, s_lo
                lo, f_lo, s_lo = alpha, f, slope
                best = (alpha, f, g)
            if abs(hi - lo) < 1e-16 * max(1.0, abs(lo)):
                break
        alpha, f, g = best
        if g is None:  # no point with sufficient decrease: take the bracket's low end
            f, g = self._call(objective, theta + alpha * p)
        return alpha, f, g


def _cubic_min(a, fa, da, b, fb, db) -> float:
    """Minimiser of the cubic through (a, fa, da) and (b, fb, db), kept inside the interval's middle."""
    d1 = da + db - 3.0 * (fa - fb) / (a - b)
    radicand = d1 * d1 - da * db
    lo, hi = min(a, b), max(a, b)
    if radicand >= 0:
        d2 = np.sign(b - a) * np.sqrt(radicand)
        x = b - (b - a) * (db + d2 - d1) / (db - da + 2.0 * d2)
        margin = 0.1 * (hi - lo)
        if lo + margin <= x <= hi - margin:
            return float(x)
    return 0.5 * (a + b)
