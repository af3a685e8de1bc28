"""Gradient checks users can run on their own simulations.

Three tests, all on plain NumPy callables so they work with any stepper:

* :func:`fd_sweep`: central finite differences of ``J`` along a direction for a sweep
  of step sizes, compared with the directional derivative ``<∇J, d>``. The error first
  falls like ``h²`` (truncation) and then rises like ``ε/h`` (round-off): the V-curve.
  Its bottom is the check.
* :func:`taylor_test`: the remainders ``|J(x+hd) - J(x)|`` (slope 1 in ``h``) and
  ``|J(x+hd) - J(x) - h<∇J, d>|`` (slope 2 when the gradient is right).
* :func:`dot_product_test`: ``<A x, y> == <x, Aᵀ y>`` for a linear map and its adjoint.

Use float64 and a tiny problem.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["FDSweep", "DotProductResult", "TaylorResult", "dot_product_test", "fd_sweep",
           "taylor_test"]


def _as_pair(x: np.ndarray, direction: np.ndarray, grad: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    d = np.asarray(direction, dtype=np.float64)
    if d.shape != x.shape:
        raise ValueError(f"direction has shape {d.shape}; expected the shape of x, {x.shape}")
    if grad is not None and np.shape(grad) != x.shape:
        raise ValueError(f"grad has shape {np.shape(grad)}; expected the shape of x, {x.shape}")
    if not np.any(d):
        raise ValueError("direction is all zeros; pass a nonzero perturbation direction")
    return x, d


def _scale(x: np.ndarray, d: np.ndarray) -> float:
    """A step size of 1 in these units moves x by its own size."""
    nx = float(np.linalg.norm(x))
    nd = float(np.linalg.norm(d))
    return nx / nd if nx > 0 else 1.0 / nd


class FDSweep(NamedTuple):
    """Result of :func:`fd_sweep`.

    Attributes:
        steps: the step sizes ``h`` (absolute, along ``direction``), ``[k]``.
        fd: central differences ``(J(x+hd) - J(x-hd)) / 2h``, ``[k]``.
        directional: ``<∇J, d>`` from the gradient under test.
        errors: ``|fd - directional| / max(|directional|, tiny)``, ``[k]``.
        best_step: the ``h`` at the bottom of the V-curve.
        best_error: the smallest relative error.
    """

    steps: np.ndarray
    fd: np.ndarray
    directional: float
    errors: np.ndarray
    best_step: float
    best_error: float

    def table(self) -> str:
        """The V-curve as text, one step size a line."""
        lines = [f"{'h':>12} {'fd':>22} {'rel. error':>12}"]
        for h, fd, err in zip(self.steps, self.fd, self.errors, strict=True):
            lines.append(f"{h:12.3e} {fd:22.15e} {err:12.3e}")
        lines.append(f"directional derivative <grad, d> = {self.directional:.15e}")
        return "\n".join(lines)


def fd_sweep(
    fun: Callable[[np.ndarray], float],
    x: np.ndarray,
    direction: np.ndarray,
    grad: np.ndarray,
    *,
    steps: Sequence[float] | None = None,
) -> FDSweep:
    """Compare a gradient with central finite differences over a sweep of step sizes.

    Args:
        fun: ``J(x) -> float``.
        x: the point, any shape.
        direction: perturbation direction, shaped like ``x``.
        grad: ``∇J(x)`` under test, shaped like ``x``.
        steps: step sizes ``h``; default ``s * 10**-k`` for ``k = 1 … 10`` where ``s``
            is ``‖x‖ / ‖d‖`` (so ``h = 1e-3 s`` perturbs ``x`` by 0.1 %).

    Returns:
        The V-curve; see :class:`FDSweep`.
    """
    x, d = _as_pair(x, direction, grad)
    if steps is None:
        s = _scale(x, d)
        steps = [s * 10.0 ** (-k) for k in range(1, 11)]
    hs = np.asarray(steps, dtype=np.float64)
    directional = float(np.vdot(np.asarray(grad, dtype=np.float64), d))
    fd = np.array([(fun(x + h * d) - fun(x - h * d)) / (2.0 * h) for h in hs])
    denom = max(abs(directional), np.finfo(np.float64).tiny)
    errors = np.abs(fd - directional) / denom
    best = int(np.argmin(errors))
    return FDSweep(hs, fd, directional, errors, float(hs[best]), float(errors[best]))


class TaylorResult(NamedTuple):
    """Result of :func:`taylor_test`.

    Attributes:
        steps: step sizes ``h``, halving, ``[k]``.
        first: ``|J(x+hd) - J(x)|``, ``[k]`` (falls like ``h``).
        second: ``|J(x+hd) - J(x) - h<∇J, d>|``, ``[k]`` (falls like ``h²``).
        first_slopes, second_slopes: log2 ratios of consecutive remainders, ``[k-1]``.
        first_order, second_order: median slopes (about 1 and 2 when the gradient is right).
    """

    steps: np.ndarray
    first: np.ndarray
    second: np.ndarray
    first_slopes: np.ndarray
    second_slopes: np.ndarray
    first_order: float
    second_order: float

    def table(self) -> str:
        """The remainders and their slopes as text."""
        lines = [f"{'h':>12} {'|R0|':>12} {'slope':>6} {'|R1|':>12} {'slope':>6}"]
        for i, h in enumerate(self.steps):
            s0 = f"{self.first_slopes[i - 1]:6.2f}" if i else " " * 6
            s1 = f"{self.second_slopes[i - 1]:6.2f}" if i else " " * 6
            lines.append(f"{h:12.3e} {self.first[i]:12.3e} {s0} {self.second[i]:12.3e} {s1}")
        return "\n".join(lines)


def taylor_test(
    fun: Callable[[np.ndarray], float],
    x: np.ndarray,
    direction: np.ndarray,
    grad: np.ndarray,
    *,
    h0: float | None = None,
    count: int = 6,
) -> TaylorResult:
    """Taylor-remainder convergence test of a gradient.

    Args:
        fun: ``J(x) -> float``.
        x: the point.
        direction: perturbation direction, shaped like ``x``.
        grad: ``∇J(x)`` under test, shaped like ``x``.
        h0: the largest step; default ``1e-2 ‖x‖/‖d‖``.
        count: number of halvings (>= 3).

    Returns:
        Remainders and slopes; see :class:`TaylorResult`. A correct gradient gives
        ``second_order`` close to 2, a wrong one close to 1.
    """
    x, d = _as_pair(x, direction, grad)
    if count < 3:
        raise ValueError(f"count={count} must be >= 3 to estimate slopes")
    h0 = 1e-2 * _scale(x, d) if h0 is None else float(h0)
    j0 = fun(x)
    directional = float(np.vdot(np.asarray(grad, dtype=np.float64), d))
    hs = h0 * 0.5 ** np.arange(count)
    jh = np.array([fun(x + h * d) for h in hs])
    first = np.abs(jh - j0)
    second = np.abs(jh - j0 - hs * directional)
    tiny = np.finfo(np.float64).tiny
    s0 = np.log2(np.maximum(first[:-1], tiny) / np.maximum(first[1:], tiny))
    s1 = np.log2(np.maximum(second[:-1], tiny) / np.maximum(second[1:], tiny))
    return TaylorResult(hs, first, second, s0, s1, float(np.median(s0)), float(np.median(s1)))


class DotProductResult(NamedTuple):
    """Result of :func:`dot_product_test`: ``<Ax, y>``, ``<x, Aᵀy>`` and their relative gap."""

    forward: float
    adjoint: float
    relative_error: float


def dot_product_test(
    apply: Callable[[np.ndarray], np.ndarray],
    apply_adjoint: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
) -> DotProductResult:
    """Check that ``apply_adjoint`` is the adjoint of the linear map ``apply``.

    Args:
        apply: ``x -> A x``.
        apply_adjoint: ``y -> Aᵀ y``.
        x: a vector in the domain (random is best).
        y: a vector in the range.

    Returns:
        ``<A x, y>``, ``<x, Aᵀ y>`` and ``|difference| / max(|both|)``: about 1e-15 in f64
        for an exact adjoint.
    """
    ax = np.asarray(apply(np.asarray(x, dtype=np.float64)), dtype=np.float64)
    aty = np.asarray(apply_adjoint(np.asarray(y, dtype=np.float64)), dtype=np.float64)
    if ax.shape != np.shape(y):
        raise ValueError(f"apply(x) has shape {ax.shape} but y has shape {np.shape(y)}")
    if aty.shape != np.shape(x):
        raise ValueError(f"apply_adjoint(y) has shape {aty.shape} but x has shape {np.shape(x)}")
    lhs = float(np.vdot(ax, y))
    rhs = float(np.vdot(x, aty))
    scale = max(abs(lhs), abs(rhs), np.finfo(np.float64).tiny)
    return DotProductResult(lhs, rhs, abs(lhs - rhs) / scale)
