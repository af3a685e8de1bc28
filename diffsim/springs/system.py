"""Mass-spring systems: the system description, its checks and the trajectory type."""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from diffsim._simulation import ValueAndGrad
from diffsim._validate import as_array, check_positions

#: Names ``wrt`` accepts.
PARAMETERS = ("stiffness", "rest_length", "damping", "mass", "positions", "velocities",
              "actuation")


# -- the system ----------------------------------------------------------------------
def _floats(name: str, value: ArrayLike, shape: tuple[int, ...], *, minimum: float | None = None,
            strict: bool = False, what: str = "") -> np.ndarray:
    """``value`` as float64, a scalar (shape ``()``) or ``shape``, finite, optionally bounded."""
    return as_array(name, value, shape, keep_scalar=True, minimum=minimum, strict=strict, what=what)


class SpringSystem:
    """A mass-spring system: particles, springs and the world they live in.

    Args:
        positions: particle positions in m, ``[n, d]`` with ``d`` 2 or 3, e.g. ``[40, 2]``;
            column 1 is height.
        springs: particle index pairs, integer ``[m, 2]``; no self-loops.
        stiffness: spring stiffness in N/m, a scalar or ``[m]``, >= 0.
        rest_length: rest lengths in m, a scalar or ``[m]``, > 0 (default: the lengths
            in ``positions``).
        damping: dashpot coefficient along each spring in N s/m, a scalar or ``[m]``, >= 0.
        mass: particle masses in kg, a scalar or ``[n]``, > 0.
        fixed: bool ``[n]``: pinned particles keep their position and have zero velocity.
        gravity: acceleration in m/s^2, a ``d``-vector (default: none).
        ground: height in m of the ground (``x[:, 1] >= ground``), or ``None`` for none.
        friction: Coulomb friction coefficient of the ground, >= 0.
        actuators: integer ``[m]``: the actuation channel of each spring, ``-1`` for a
            passive spring. An actuated spring's rest length at step ``t`` is
            ``rest_length * (1 + actuation[t, channel])``.

    Raises:
        ValueError: indices out of range, self-loops, coincident spring ends, non-positive
            mass, negative stiffness or damping, NaN or Inf anywhere, wrong shapes.
        TypeError: non-numeric input.

    Parameters keep the shape they were given (scalar or per-element), and gradients
    come back in that shape: the gradient with respect to a scalar stiffness is the sum
    of the per-spring gradients.
    """

    def __init__(
        self,
        positions: ArrayLike,
        springs: ArrayLike,
        *,
        stiffness: ArrayLike,
        rest_length: ArrayLike | None = None,
        damping: ArrayLike = 0.0,
        mass: ArrayLike = 1.0,
        fixed: ArrayLike | None = None,
        gravity: ArrayLike | None = None,
        ground: float | None = None,
        friction: float = 0.0,
        actuators: ArrayLike | None = None,
    ) -> None:
        x = check_positions("positions", positions)
        n, d = x.shape
        pairs = np.asarray(springs)
        if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.shape[0] < 1:
            raise ValueError(f"springs must be an integer array [m, 2] with m >= 1; got shape "
                             f"{pairs.shape}")
        if pairs.dtype.kind not in "iu":
            if pairs.dtype.kind == "f" and np.all(np.isfinite(pairs)) and np.all(pairs == np.round(pairs)):
                pairs = pairs.astype(np.int64)
            else:
                raise TypeError(f"springs must hold integer particle indices; got dtype {pairs.dtype}")
        pairs = pairs.astype(np.int64)
        bad = (pairs < 0) | (pairs >= n)
        if np.any(bad):
            s = int(np.argwhere(bad)[0][0])
            raise ValueError(f"spring {s} joins particles {pairs[s].tolist()}, but particle "
                             f"indices must lie in [0, {n - 1}] ({n} particles)")
        loops = pairs[:, 0] == pairs[:, 1]
        if np.any(loops):
            s = int(np.argmax(loops))
            raise ValueError(f"spring {s} is a self-loop: it joins particle {int(pairs[s, 0])} "
                             "to itself; every spring needs two different particles")
        m = pairs.shape[0]
        lengths = np.linalg.norm(x[pairs[:, 1]] - x[pairs[:, 0]], axis=1)
        if np.any(lengths == 0):
            s = int(np.argmax(lengths == 0))
            raise ValueError(f"spring {s} joins particles {pairs[s].tolist()}, which are at the "
                             "same position; a spring needs a direction (move one of them)")
        self.positions = x
        self.springs = pairs
        self.stiffness = _floats("stiffness", stiffness, (m,), minimum=0.0,
                                 what=" (one per spring)")
        if rest_length is None:
            rest_length = lengths
        self.rest_length = _floats("rest_length", rest_length, (m,), minimum=0.0, strict=True,
                                   what=" (one per spring)")
        self.damping = _floats("damping", damping, (m,), minimum=0.0, what=" (one per spring)")
        self.mass = _floats("mass", mass, (n,), minimum=0.0, strict=True,
                            what=" (one per particle)")
        if fixed is None:
            fixed = np.zeros(n, dtype=bool)
        fixed_arr = np.asarray(fixed)
        if fixed_arr.shape != (n,) or fixed_arr.dtype != bool:
            raise ValueError(f"fixed must be a bool array [n] = [{n}]; got shape "
                             f"{fixed_arr.shape} and dtype {fixed_arr.dtype}")
        self.fixed = fixed_arr.copy()
        g = np.zeros(d) if gravity is None else np.asarray(gravity, dtype=np.float64)
        if g.shape != (d,) or not np.all(np.isfinite(g)):
            raise ValueError(f"gravity must be a finite {d}-vector in m/s^2; got {gravity!r}")
        self.gravity = g
        if ground is not None and (isinstance(ground, bool) or not isinstance(ground, (int, float))
                                   or not math.isfinite(ground)):
            raise ValueError(f"ground={ground!r} must be a finite height in m, or None")
        self.ground = None if ground is None else float(ground)
        if (isinstance(friction, bool) or not isinstance(friction, (int, float))
                or not math.isfinite(friction) or friction < 0):
            raise ValueError(f"friction={friction!r} must be a finite number >= 0")
        self.friction = float(friction)
        if actuators is None:
            actuators = np.full(m, -1)
        act = np.asarray(actuators)
        if act.shape != (m,) or act.dtype.kind not in "iu" or np.any(act < -1):
            raise ValueError(f"actuators must be an integer array [m] = [{m}] of channels >= 0, "
                             f"or -1 for passive springs; got {actuators!r}")
        self.actuators = act.astype(np.int64)
        self.channels = int(self.actuators.max()) + 1

    # -- sizes ------------------------------------------------------------------------
    @property
    def n_particles(self) -> int:
        """Number of particles ``n``."""
        return self.positions.shape[0]

    @property
    def n_springs(self) -> int:
        """Number of springs ``m``."""
        return self.springs.shape[0]

    @property
    def dim(self) -> int:
        """Spatial dimension ``d`` (2 or 3)."""
        return self.positions.shape[1]

    def replace(self, **changes: Any) -> SpringSystem:
        """A copy with some constructor arguments changed (validated again)."""
        args: dict[str, Any] = {"positions": self.positions, "springs": self.springs,
                "stiffness": self.stiffness, "rest_length": self.rest_length,
                "damping": self.damping, "mass": self.mass, "fixed": self.fixed,
                "gravity": self.gravity, "ground": self.ground, "friction": self.friction,
                "actuators": self.actuators}
        unknown = set(changes) - set(args)
        if unknown:
            raise ValueError(f"unknown SpringSystem argument(s) {sorted(unknown)}; allowed: "
                             f"{sorted(args)}")
        args.update(changes)
        positions = args.pop("positions")
        springs = args.pop("springs")
        return SpringSystem(positions, springs, **args)

    # -- per-element views --------------------------------------------------------------
    def per_spring(self, name: Literal["stiffness", "rest_length", "damping"]) -> np.ndarray:
        """A spring parameter broadcast to ``[m]``."""
        return np.broadcast_to(getattr(self, name), (self.n_springs,)).astype(np.float64)

    def per_particle_mass(self) -> np.ndarray:
        """Masses broadcast to ``[n]`` in kg."""
        return np.broadcast_to(self.mass, (self.n_particles,)).astype(np.float64)

    def lengths(self, positions: np.ndarray | None = None) -> np.ndarray:
        """Spring lengths in m: ``[m]`` for positions ``[n, d]``, ``[T, m]`` for ``[T, n, d]``."""
        x = self.positions if positions is None else np.asarray(positions)
        return np.linalg.norm(x[..., self.springs[:, 1], :] - x[..., self.springs[:, 0], :],
                              axis=-1)

    def strain(self, positions: np.ndarray | None = None) -> np.ndarray:
        """Engineering strain ``l / L0 - 1`` per spring (passive rest length)."""
        return self.lengths(positions) / self.per_spring("rest_length") - 1.0

    def energy(self, trajectory: Trajectory) -> np.ndarray:
        """Kinetic + spring + gravitational energy in J per time level, ``[T]``.

        Uses the passive rest lengths (exact for systems without actuation).
        """
        m = self.per_particle_mass()
        x, v = trajectory.positions, trajectory.velocities
        kinetic = 0.5 * np.einsum("i,tid->t", m, v * v)
        stretch = self.lengths(x) - self.per_spring("rest_length")
        spring = 0.5 * np.sum(self.per_spring("stiffness") * stretch**2, axis=-1)
        gravity = -np.einsum("i,tid,d->t", m, x, self.gravity)
        return kinetic + spring + gravity

    def stable_dt(self) -> float:
        """Largest stable time step estimate for semi-implicit Euler, in s (``inf`` if none).

        For each free particle ``i``: ``w2 = 2 sum_s k_s / m_i`` (a Gershgorin bound on the
        squared angular frequency, set by its stiffest springs and its mass) and
        ``gamma = 2 sum_s c_s / m_i``; the step of a damped oscillator is stable while
        ``dt^2 w2 + 2 dt gamma < 4``. The estimate is the smallest such ``dt``.
        """
        return _stability(self)[0]


def _stability(system: SpringSystem) -> tuple[float, int, float, float]:
    """``(dt_max, particle, w2, gamma)`` of the most restrictive free particle."""
    n = system.n_particles
    k = system.per_spring("stiffness")
    c = system.per_spring("damping")
    m = system.per_particle_mass()
    ksum = np.zeros(n)
    csum = np.zeros(n)
    for col in (0, 1):
        np.add.at(ksum, system.springs[:, col], k)
        np.add.at(csum, system.springs[:, col], c)
    w2 = np.where(system.fixed, 0.0, 2.0 * ksum / m)
    gamma = np.where(system.fixed, 0.0, 2.0 * csum / m)
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.sqrt(gamma**2 + 4.0 * w2)
        dt = np.where(w2 > 0, (root - gamma) / np.where(w2 > 0, w2, 1.0),
                      np.where(gamma > 0, 2.0 / np.where(gamma > 0, gamma, 1.0), np.inf))
    i = int(np.argmin(dt))
    return float(dt[i]), i, float(w2[i]), float(gamma[i])


def _check_dt(system: SpringSystem, dt: object) -> float:
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt={dt!r} must be a positive number of seconds")
    dt_max, i, w2, gamma = _stability(system)
    if dt >= dt_max:
        k = system.per_spring("stiffness")
        raise ValueError(
            f"dt={dt!r} s is unstable for semi-implicit Euler: the estimate is dt < {dt_max:.4g} s "
            f"(dt^2 w^2 + 2 dt gamma < 4 at particle {i}, w^2 = 2 sum(k)/m = {w2:.4g} 1/s^2, "
            f"gamma = 2 sum(c)/m = {gamma:.4g} 1/s; stiffest spring k = {float(k.max()):.4g} N/m, "
            f"lightest mass m = {float(system.per_particle_mass().min()):.4g} kg). Reduce dt, "
            "soften the springs or make the particles heavier"
        )
    return float(dt)


def _check_steps(steps: object) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be an int >= 1")
    return steps


def _check_actuation(system: SpringSystem, steps: int, actuation: ArrayLike | None) -> np.ndarray:
    c = max(system.channels, 1)
    if actuation is None:
        return np.zeros((steps, c))
    if system.channels == 0:
        raise ValueError("actuation was given but the system has no actuated springs; pass "
                         "actuators=[channel per spring] to SpringSystem")
    arr = _floats("actuation", actuation, (steps, system.channels),
                  what=" ([steps, channels])")
    if arr.ndim == 0:
        arr = np.full((steps, system.channels), float(arr))
    if np.any(arr <= -1.0):
        raise ValueError("actuation must be > -1 everywhere (an actuated rest length is "
                         "rest_length * (1 + actuation)); smallest value "
                         f"{float(arr.min())!r}")
    return arr


def _check_velocities(system: SpringSystem, velocities: ArrayLike | None) -> np.ndarray:
    if velocities is None:
        return np.zeros_like(system.positions)
    v = check_positions("velocities", velocities)
    if v.shape != system.positions.shape:
        raise ValueError(f"velocities has shape {v.shape}; expected {system.positions.shape} "
                         "(like positions)")
    v = v.copy()
    v[system.fixed] = 0.0
    return v


# -- results -------------------------------------------------------------------------
class Trajectory(NamedTuple):
    """A simulated trajectory.

    Attributes:
        positions: ``[steps + 1, n, d]`` in m (time level 0 is the initial state), in the
            runtime precision (float32 or float64).
        velocities: ``[steps + 1, n, d]`` in m/s.
        dt: the time step in s.
    """

    positions: np.ndarray
    velocities: np.ndarray
    dt: float

    @property
    def times(self) -> np.ndarray:
        """Time of each level in s, ``[steps + 1]``."""
        return self.dt * np.arange(self.positions.shape[0])


#: The result of :func:`value_and_grad` (``.loss``, ``.grads``, ``.outputs``, ``.report``).
Gradient = ValueAndGrad


