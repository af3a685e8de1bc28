"""Linear time-invariant systems ``x[t+1] = A x[t] + B u[t]``: the costate in its purest form.

With the whole state as output and a loss ``L = sum_t l_t(x[t])``, the tape's adjoint is
the costate of discrete optimal control: ``λ[t] = Aᵀ λ[t+1] + ∂l_t/∂x[t]``. The spectral
radius of ``A`` decides whether ``‖λ‖`` decays (vanishing gradients), grows (exploding)
or stays level going back in time: the system the gradient-health diagnostics
(:mod:`diffsim.diagnostics`) are tested on, and the linear-quadratic chain of the
lessons example.

Units are the user's; nothing here is physical.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from diffsim._runtime import np_real
from diffsim._simulation import KeptStepperSimulation
from diffsim._tape import Launch, TaichiStepper
from diffsim._validate import as_array
from diffsim.kernels.linear import linear_adjoint, linear_record, linear_step

__all__ = ["LinearSystem", "Simulation", "rotation"]


class LinearSystem(TaichiStepper):
    """``x[t+1] = A x[t] + B u[t]`` for ``t = 0 … steps-1`` (hand-written gather adjoint).

    Args:
        a: ``[n, n]`` state matrix.
        b: ``[n, m]`` input matrix.
        controls: ``[steps, m]`` inputs ``u[t]``; their length sets the step count.
        x0: ``[n]`` initial state (zero by default).

    Output ``"states"`` ``[steps + 1, n]``. Parameters (gradients): ``"a"``, ``"b"``,
    ``"controls"``; :meth:`initial_state_gradient` gives ``∂L/∂x[0]``.
    """

    def __init__(self, *, a: ArrayLike, b: ArrayLike, controls: ArrayLike,
                 x0: ArrayLike = 0.0) -> None:
        a_arr = np.asarray(a, dtype=np.float64)
        if a_arr.ndim != 2 or a_arr.shape[0] != a_arr.shape[1] or a_arr.shape[0] < 1:
            raise ValueError(f"a must be a square [n, n] matrix; got shape {a_arr.shape}")
        n = a_arr.shape[0]
        u = np.asarray(controls, dtype=np.float64)
        if u.ndim != 2 or u.shape[0] < 1 or u.shape[1] < 1:
            raise ValueError(f"controls must be [steps, m] with steps, m >= 1; got shape {u.shape}")
        steps, m = u.shape
        super().__init__(steps=steps)
        self.n, self.m = n, m
        self.x = self._state("x", (n,))
        self.a = self._param("a", (n, n))
        self.b = self._param("b", (n, m))
        self.u = self._param("controls", (steps, m))
        self.y = self._output("states", (n,))
        self._finalize()
        self.set_param("a", a_arr)
        self.set_param("b", as_array("b", b, (n, m), positive=False))
        self.set_param("controls", u)
        self._x0 = as_array("x0", x0, (n,), positive=False).astype(np_real())

    def load_initial(self) -> None:
        """Write ``x0`` into the level of time 0."""
        x = np.zeros(self.x.shape, dtype=np_real())
        x[self.level(0)] = self._x0
        self.x.from_numpy(x)

    def substeps(self, step: int) -> tuple[Launch, ...]:
        """One launch: the matrix-vector products."""
        return ((linear_step, (self.x, self.a, self.b, self.u, self.level(step),
                               self.level(step + 1), step)),)

    def record(self, t: int) -> tuple[Launch, ...]:
        """The whole state at time ``t``."""
        return ((linear_record, (self.x, self.y, self.level(t), t)),)

    def reverse_step(self, step: int) -> None:
        """``λ[t] = Aᵀ λ[t+1]`` and the parameters' gradients (gathers, deterministic)."""
        linear_adjoint(self.x, self.a, self.b, self.u, self.level(step), self.level(step + 1),
                       step)


class Simulation(KeptStepperSimulation):
    """A :class:`LinearSystem` behind the one front-end shape (same keyword arguments).

    Output ``"states"`` ``[steps + 1, n]``; parameters ``"a"``, ``"b"``, ``"controls"``.
    """

    parameter_names = ("a", "b", "controls")
    default_wrt = ("controls",)

    def __init__(self, **system: Any) -> None:
        self.system = self.stepper = LinearSystem(**system)

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """``"states"``: ``(steps + 1, n)``."""
        return {"states": (self.system.steps + 1, self.system.n)}


def rotation(n: int, radius: float, angle: float = 0.3) -> np.ndarray:
    """A block-diagonal ``[n, n]`` matrix of 2x2 rotations by ``angle`` scaled by ``radius``.

    Its eigenvalues all have modulus ``radius``: ``< 1`` contracts (vanishing gradients
    over long horizons), ``> 1`` expands (exploding), ``= 1`` conserves the norm. ``n``
    must be even.
    """
    if n < 2 or n % 2:
        raise ValueError(f"n={n} must be an even number >= 2 (2x2 rotation blocks)")
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros((n, n))
    for k in range(0, n, 2):
        out[k:k + 2, k:k + 2] = radius * np.array([[c, -s], [s, c]])
    return out
