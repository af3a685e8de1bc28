"""Losses on a simulation's named outputs, for every physics.

A loss is any callable ``outputs -> (value, cotangents)``: ``outputs`` maps output names
to arrays (what ``Simulation.simulate()`` returns), ``cotangents`` maps output names to
``∂loss/∂output`` shaped like that output (outputs it does not read may be left out).
The classes here add three optional hooks that :meth:`Simulation.value_and_grad` uses:

- ``bind(simulation)``: check the loss against the simulation (shapes, dimension) before
  anything runs, and read constants it needs (masses);
- ``times(steps)``: the time levels the loss reads (a physics may record only those;
  the loss then sees its outputs at those levels, in that order);
- ``reads()``: the output names the loss reads (a physics may record only those);
- ``partials()``: direct derivatives ``∂loss/∂parameter`` of a loss that reads a
  parameter itself (the centre of mass reads the masses), added to the gradient.

Example::

    from diffsim.losses import L2
    res = sim.value_and_grad(L2(observed))          # acoustic: observed [shot, receiver, nt]
    res = sim.value_and_grad(lambda out: (float(out["traces"].sum()),
                                          {"traces": np.ones_like(out["traces"])}))
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike

from diffsim._validate import check_positions

__all__ = ["L2", "CenterOfMass", "FinalPosition", "Loss", "Tracking"]


class _Simulation(Protocol):
    """What a loss may ask of the simulation it is bound to."""

    def output_shapes(self) -> dict[str, tuple[int, ...]]: ...

    def parameters(self) -> dict[str, np.ndarray]: ...


class Loss(abc.ABC):
    """Base of the loss classes: a callable ``outputs -> (value, cotangents)`` with hooks."""

    def bind(self, simulation: _Simulation) -> None:  # noqa: B027
        """Check the loss against ``simulation``; raise ValueError naming the mismatch."""

    def times(self, steps: int) -> tuple[int, ...] | None:  # noqa: ARG002
        """Time levels read, increasing; ``None`` for every level (the default)."""
        return None

    def partials(self) -> dict[str, np.ndarray]:
        """Direct ``∂loss/∂parameter`` of the last evaluation (default: none)."""
        return {}

    def reads(self) -> tuple[str, ...] | None:
        """Names of the outputs read; ``None`` for every output (the default).

        A physics may then record only those (springs record velocities only when read).
        """
        return None

    @abc.abstractmethod
    def __call__(self, outputs: Mapping[str, np.ndarray]
                 ) -> tuple[float, dict[str, np.ndarray]]:
        """``(value, cotangents)``."""


def _output(simulation: _Simulation, name: str) -> tuple[int, ...]:
    shapes = simulation.output_shapes()
    if name not in shapes:
        raise ValueError(f"the loss reads output {name!r}; this simulation's outputs are "
                         f"{sorted(shapes)}")
    return tuple(shapes[name])


class L2(Loss):
    """``0.5 * sum((output - observed)^2)``: the waveform (or any data) misfit.

    Args:
        observed: array shaped like the output (acoustic traces: ``[shot, receiver, nt]``).
        output: the output's name (default ``"traces"``).
    """

    def __init__(self, observed: ArrayLike, output: str = "traces") -> None:
        obs = np.asarray(observed, dtype=np.float64)
        if not np.all(np.isfinite(obs)):
            raise ValueError(f"observed {output} contain NaN or Inf")
        self.observed = obs
        self.output = output

    def reads(self) -> tuple[str, ...]:
        """The one output compared with the data."""
        return (self.output,)

    def bind(self, simulation: _Simulation) -> None:
        """The observed data must have the output's shape."""
        shape = _output(simulation, self.output)
        if self.observed.shape != shape:
            raise ValueError(f"observed has shape {self.observed.shape}; expected {shape} "
                             f"(the shape of the output {self.output!r})")

    def __call__(self, outputs: Mapping[str, np.ndarray]
                 ) -> tuple[float, dict[str, np.ndarray]]:
        """Value and the residual as the cotangent."""
        residual = np.asarray(outputs[self.output], dtype=np.float64) - self.observed
        return 0.5 * float(np.sum(residual * residual)), {self.output: residual}


# -- trajectory losses (outputs "positions" [levels, n, d]) ----------------------------------
def _subset(particles: Sequence[int] | None, n: int) -> np.ndarray | None:
    if particles is None:
        return None
    idx = np.asarray(particles, dtype=np.int64).reshape(-1)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"particles {idx.tolist()} must be indices in [0, {n - 1}]")
    return idx


def _particle_l2(outputs: Mapping[str, np.ndarray], particles: Sequence[int] | None,
                 levels: int | slice, reference: np.ndarray
                 ) -> tuple[float, dict[str, np.ndarray]]:
    """``0.5 |x[levels, particles] - reference|^2`` and its cotangent on ``"positions"``."""
    positions = np.asarray(outputs["positions"], dtype=np.float64)
    idx = _subset(particles, positions.shape[1])
    sel = slice(None) if idx is None else idx
    cot = np.zeros_like(positions)
    r = positions[levels, sel] - reference
    cot[levels, sel] = r
    return 0.5 * float(np.sum(r * r)), {"positions": cot}


def _positions(simulation: _Simulation) -> tuple[int, int, int]:
    """``(steps, n, d)`` of the simulation's ``"positions"`` output ``[steps + 1, n, d]``."""
    levels, n, d = _output(simulation, "positions")
    return levels - 1, n, d


class FinalPosition(Loss):
    """``0.5 * ||x[steps] - target||^2`` over all particles, or over ``particles``.

    Args:
        target: ``[n, d]`` in m (or ``[len(particles), d]``).
        particles: optional indices of the particles the target is for.
    """

    def __init__(self, target: ArrayLike, particles: Sequence[int] | None = None) -> None:
        self.target = check_positions("target", target)
        self.particles = particles

    def reads(self) -> tuple[str, ...]:
        """The positions only."""
        return ("positions",)

    def times(self, steps: int) -> tuple[int, ...]:
        """The final time level."""
        return (steps,)

    def bind(self, simulation: _Simulation) -> None:
        """Target shape against the system."""
        _, n, d = _positions(simulation)
        idx = _subset(self.particles, n)
        count = n if idx is None else idx.size
        if self.target.shape != (count, d):
            raise ValueError(f"target has shape {self.target.shape}; expected {(count, d)}")

    def __call__(self, outputs: Mapping[str, np.ndarray]
                 ) -> tuple[float, dict[str, np.ndarray]]:
        """Value and ``∂/∂positions`` (nonzero at the last level read)."""
        return _particle_l2(outputs, self.particles, -1, self.target)


class Tracking(Loss):
    """``0.5 * sum_t ||x[t] - observed[t]||^2`` over every time level.

    Args:
        observed: ``[steps + 1, n, d]`` in m (or ``[steps + 1, len(particles), d]``).
        particles: optional indices of the observed particles.
    """

    def __init__(self, observed: ArrayLike, particles: Sequence[int] | None = None) -> None:
        obs = np.asarray(observed, dtype=np.float64)
        if obs.ndim != 3 or not np.all(np.isfinite(obs)):
            raise ValueError(f"observed must be a finite array [steps + 1, n, d]; got shape "
                             f"{obs.shape}")
        self.observed = obs
        self.particles = particles

    def reads(self) -> tuple[str, ...]:
        """The positions only."""
        return ("positions",)

    def times(self, steps: int) -> tuple[int, ...]:
        """Every time level."""
        return tuple(range(steps + 1))

    def bind(self, simulation: _Simulation) -> None:
        """Observed shape against the system and the step count."""
        steps, n, d = _positions(simulation)
        idx = _subset(self.particles, n)
        count = n if idx is None else idx.size
        if self.observed.shape != (steps + 1, count, d):
            raise ValueError(f"observed has shape {self.observed.shape}; expected "
                             f"{(steps + 1, count, d)} ([steps + 1, particles, d])")

    def __call__(self, outputs: Mapping[str, np.ndarray]
                 ) -> tuple[float, dict[str, np.ndarray]]:
        """Value and the residual at every level."""
        return _particle_l2(outputs, self.particles, slice(None), self.observed)


class CenterOfMass(Loss):
    """``-direction · (com[steps] - com[0])``: minimising it moves the centre of mass along ``direction``.

    ``com[t] = sum_i m_i x_i[t] / sum_i m_i``; the masses come from the bound simulation's
    ``"mass"`` parameter and their direct derivative is part of the gradient.

    Args:
        direction: a ``d``-vector (e.g. ``(1, 0)`` to walk right); it is not normalised.
    """

    def __init__(self, direction: Sequence[float]) -> None:
        self.direction = np.asarray(direction, dtype=np.float64)
        if self.direction.ndim != 1 or not np.all(np.isfinite(self.direction)):
            raise ValueError(f"direction must be a finite vector; got {direction!r}")
        self.mass: np.ndarray | None = None
        self._dmass = np.zeros(0)

    def reads(self) -> tuple[str, ...]:
        """The positions only."""
        return ("positions",)

    def times(self, steps: int) -> tuple[int, ...]:
        """The first and the last time level."""
        return (0, steps)

    def bind(self, simulation: _Simulation) -> None:
        """Direction length against the dimension; read the particle masses."""
        _, n, d = _positions(simulation)
        if self.direction.shape != (d,):
            raise ValueError(f"direction has shape {self.direction.shape}; expected ({d},)")
        self.mass = np.broadcast_to(np.asarray(simulation.parameters()["mass"],
                                               dtype=np.float64), (n,)).copy()

    def __call__(self, outputs: Mapping[str, np.ndarray]
                 ) -> tuple[float, dict[str, np.ndarray]]:
        """Value and ``∂/∂positions`` at the first and last level read."""
        if self.mass is None:
            raise RuntimeError("CenterOfMass needs the masses: pass it to a simulation's "
                               "value_and_grad (which binds it) or call bind(simulation)")
        positions = np.asarray(outputs["positions"], dtype=np.float64)
        total = float(self.mass.sum())
        w = self.mass / total
        disp = positions[-1] - positions[0]                      # [n, d]
        value = -float(self.direction @ (w @ disp))
        cot = np.zeros_like(positions)
        cot[-1] = -np.outer(w, self.direction)
        cot[0] = np.outer(w, self.direction)
        proj = disp @ self.direction                             # [n]
        self._dmass = -(proj - float(w @ proj)) / total
        return value, {"positions": cot}

    def partials(self) -> dict[str, np.ndarray]:
        """``∂loss/∂mass`` ``[n]`` through the weights of the centre of mass."""
        return {"mass": self._dmass.copy()}
