"""Mass-spring systems: differentiable simulation of particles joined by springs.

Particles (2D or 3D) with mass, springs with stiffness, rest length and damping,
gravity, pinned particles, a ground plane with Coulomb friction, and actuated springs
whose rest length follows a per-step signal. Semi-implicit Euler (see
:mod:`diffsim.kernels.springs` for the equations). Gradients of a loss with respect to
stiffness, rest length, damping, mass, initial positions and velocities and the
actuation signal come from the tape (:class:`diffsim.Tape`) under any checkpoint
schedule; they are the exact gradients of the discrete simulation, contact branches
included (the gradient follows the executed branch).

The second position component is height: the ground is the line (2D) or plane (3D)
``x[:, 1] == ground``. Units: m, s, kg, N/m (stiffness), N s/m (damping), m/s^2.

Example::

    system = SpringSystem(positions, springs, stiffness=100.0, mass=0.1,
                          gravity=(0.0, -9.81), ground=0.0, friction=0.5)
    traj = simulate(system, steps=500, dt=1e-3)          # traj.positions [501, n, 2]
    res = value_and_grad(system, 500, 1e-3, target=goal, wrt=("stiffness", "mass"))
    res.loss, res.grads["stiffness"]                     # float, shaped like stiffness

Results are deterministic: forces and adjoints are gathered per particle (no float
atomics), so the same inputs give bit-identical trajectories and gradients.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

import numpy as np
import taichi as ti

from diffsim._fields import FieldTree
from diffsim._runtime import ensure_init, np_real, real
from diffsim._simulation import Simulation as _Simulation
from diffsim._simulation import ValueAndGrad
from diffsim._tape import Launch, Stepper, TaichiStepper
from diffsim._validate import as_array, check_positions
from diffsim.checkpoint import Schedule
from diffsim.kernels.springs import (
    spring_adjoint,
    spring_download_gradients,
    spring_fused,
    spring_integrate,
    spring_load,
    spring_record,
    spring_save,
    spring_scatter_force,
    spring_set_initial,
    spring_step,
    spring_upload_params,
    spring_upload_topology,
    spring_zero_adjoints,
    spring_zero_force,
)
from diffsim.losses import CenterOfMass, FinalPosition, Loss, Tracking

__all__ = [
    "PARAMETERS",
    "CenterOfMass",
    "FinalPosition",
    "Gradient",
    "Loss",
    "SpringSimulation",
    "Simulation",
    "SpringSystem",
    "Tracking",
    "Trajectory",
    "simulate",
    "value_and_grad",
]

#: Names ``wrt`` accepts.
PARAMETERS = ("stiffness", "rest_length", "damping", "mass", "positions", "velocities",
              "actuation")


# -- the system ----------------------------------------------------------------------
def _floats(name: str, value: object, shape: tuple[int, ...], **bounds: object) -> np.ndarray:
    """``value`` as float64, a scalar (shape ``()``) or ``shape``, finite, optionally bounded."""
    return as_array(name, value, shape, keep_scalar=True, **bounds)


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
        positions: object,
        springs: object,
        *,
        stiffness: object,
        rest_length: object = None,
        damping: object = 0.0,
        mass: object = 1.0,
        fixed: object = None,
        gravity: object = None,
        ground: float | None = None,
        friction: float = 0.0,
        actuators: object = None,
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

    def replace(self, **changes: object) -> SpringSystem:
        """A copy with some constructor arguments changed (validated again)."""
        args = {"positions": self.positions, "springs": self.springs,
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


def _check_actuation(system: SpringSystem, steps: int, actuation: object) -> np.ndarray:
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


def _check_velocities(system: SpringSystem, velocities: object) -> np.ndarray:
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


# -- the stepper ---------------------------------------------------------------------
def _csr(n: int, springs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-particle spring lists: ``offsets [n+1]``, ``adj [2m]``, ``sign [2m]`` (+1 at end b)."""
    m = springs.shape[0]
    ends = np.concatenate([springs[:, 0], springs[:, 1]])
    ids = np.concatenate([np.arange(m), np.arange(m)])
    sign = np.concatenate([-np.ones(m), np.ones(m)])
    order = np.lexsort((ids, ends))
    counts = np.bincount(ends, minlength=n)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return offsets, ids[order], sign[order]


#: Topology arrays in upload order and in the fused kernels' order (see :func:`_topology`).
_TOPOLOGY = ("sa", "sb", "channel", "offsets", "adj", "sign", "fixed", "gravity")
_KERNEL_TOPOLOGY = ("channel", "sa", "sb", "offsets", "adj", "sign", "fixed", "gravity")


def _topology(system: SpringSystem) -> dict[str, np.ndarray]:
    """The system's connectivity as contiguous kernel arrays (int32; signs, gravity real).

    ``sa, sb, channel`` per spring; ``offsets, adj, sign`` the per-particle CSR list of
    springs (sign -1 at end a, +1 at end b); ``fixed`` per particle; ``gravity`` ``[1, d]``;
    ``chan_offsets, chan_springs`` the springs of each actuation channel.
    """
    i32, real_ = np.int32, np_real()
    offsets, adj, sign = _csr(system.n_particles, system.springs)
    chans = system.actuators
    active = np.nonzero(chans >= 0)[0]
    order = active[np.argsort(chans[active], kind="stable")]
    counts = np.bincount(chans[active], minlength=system.channels)
    return {
        "sa": np.ascontiguousarray(system.springs[:, 0], dtype=i32),
        "sb": np.ascontiguousarray(system.springs[:, 1], dtype=i32),
        "channel": chans.astype(i32),
        "offsets": offsets.astype(i32),
        "adj": adj.astype(i32),
        "sign": sign.astype(real_),
        "fixed": system.fixed.astype(i32),
        "gravity": system.gravity.astype(real_).reshape(1, -1),
        "chan_offsets": np.concatenate([[0], np.cumsum(counts)]).astype(i32),
        "chan_springs": order.astype(i32) if order.size else np.zeros(1, dtype=i32),
    }


class _SpringStepper(TaichiStepper):
    """The tape's view of a mass-spring rollout (see :class:`SpringSimulation`)."""

    def __init__(self, system: SpringSystem, steps: int, dt: float, times: tuple[int, ...],
                 adjoint: str) -> None:
        super().__init__(steps=steps)
        n, m, d = system.n_particles, system.n_springs, system.dim
        self.system = system
        self.dt = dt
        self.adjoint = adjoint
        self.times = times
        self.rows = {t: r for r, t in enumerate(times)}
        self._pending: tuple[int, int] | None = None
        self._pending_step = -1
        self._save_slot = -1
        self._initial_gradient: dict[str, np.ndarray] = {}
        c = max(system.channels, 1)
        self.x = self._state("x", (n,), vector=d)
        self.v = self._state("v", (n,), vector=d)
        self.k = self._param("stiffness", (m,))
        self.rest = self._param("rest_length", (m,))
        self.c = self._param("damping", (m,))
        self.mass = self._param("mass", (n,))
        self.act = self._param("actuation", (steps, c))
        out = self._tree.field((len(times), n), vector=d, needs_grad=True)
        self._outputs["positions"] = out
        self.out = out
        tree = self._tree
        i32 = ti.i32
        self.sa = tree.field((m,), dtype=i32)
        self.sb = tree.field((m,), dtype=i32)
        self.channel = tree.field((m,), dtype=i32)
        self.offsets = tree.field((n + 1,), dtype=i32)
        self.adj = tree.field((2 * m,), dtype=i32)
        self.sign = tree.field((2 * m,))
        self.fixed = tree.field((n,), dtype=i32)
        self.gravity = tree.field((1,), vector=d)
        chans = system.actuators
        self.chan_offsets = tree.field((system.channels + 1,), dtype=i32)
        self.chan_springs = tree.field((max(int(np.sum(chans >= 0)), 1),), dtype=i32)
        self.pbar = tree.field((n,), vector=d)
        self.fbar = tree.field((n,), vector=d)
        self.ebar = tree.field((m,), vector=d)
        self.rbar = tree.field((m,), vector=d)
        self.lbar = tree.field((m,))
        self.fs = tree.field((m,), vector=d)
        self.norms = tree.field((steps + 1,), dtype=ti.f64)
        self.force = tree.field((n,), vector=d, needs_grad=True)
        self._finalize()
        topo = _topology(system)
        spring_upload_topology(
            self.sa, self.sb, self.channel, self.offsets, self.adj, self.sign, self.fixed,
            self.gravity, self.chan_offsets, self.chan_springs,
            *(topo[name] for name in _TOPOLOGY[:7]), topo["gravity"][0],
            topo["chan_offsets"], topo["chan_springs"])
        self._ground = 0.0 if system.ground is None else system.ground
        self._use_ground = int(system.ground is not None)
        self.x0 = system.positions
        self.v0 = np.zeros_like(system.positions)
        self.load_system(system)
        self.set_param("actuation", np.zeros((steps, c)))

    def load_system(self, system: SpringSystem) -> None:
        """Copy the parameters and initial positions of ``system`` (same topology) into the fields.

        One launch for the four parameters (``system`` validated them already).
        """
        self.system = system
        real_ = np_real()
        spring_upload_params(self.k, self.rest, self.c, self.mass,
                             system.per_spring("stiffness").astype(real_),
                             system.per_spring("rest_length").astype(real_),
                             system.per_spring("damping").astype(real_),
                             system.per_particle_mass().astype(real_))
        self.x0 = system.positions

    def _common(self) -> tuple:
        return (self.x, self.v, self.k, self.rest, self.c, self.mass, self.act, self.channel,
                self.sa, self.sb, self.offsets, self.adj)

    def _world(self) -> tuple:
        return (self.dt, self._ground, self._use_ground, self.system.friction)

    def _serial(self) -> bool:
        """Serial loops on CPU (no thread-pool dispatch per step), parallel on a GPU."""
        return ensure_init().arch == "cpu"

    def load_initial(self) -> None:
        """Write the initial positions and velocities into the level of time 0."""
        spring_set_initial(self.x, self.v, np.ascontiguousarray(self.x0, dtype=np_real()),
                           np.ascontiguousarray(self.v0, dtype=np_real()), self.level(0))

    def substeps(self, step: int) -> Sequence[Launch]:
        """One fused launch: spring forces, their gather per particle, contact, Euler.

        The ``"autodiff"`` provider runs (and differentiates) the scatter formulation:
        zero a force buffer, scatter the spring forces, integrate.
        """
        src, dst = self.level(step), self.level(step + 1)
        if self.adjoint == "autodiff":
            return ((spring_zero_force, (self.force,)),
                    (spring_scatter_force, (self.x, self.v, self.k, self.rest, self.c, self.act,
                                            self.channel, self.sa, self.sb, self.force, src,
                                            step)),
                    (spring_integrate, (self.x, self.v, self.mass, self.fixed, self.gravity,
                                        self.force, src, dst, *self._world())))
        if not self._pool:
            self.allocate_checkpoints(1)
        return ((spring_step, (*self._common(), self.sign, self.fixed, self.gravity, self.fs,
                               self._pool["x"], self._pool["v"], self._save_slot, src, dst,
                               step, *self._world(), self._serial())),)

    def record(self, t: int) -> Sequence[Launch]:
        """Positions at the time levels the loss reads."""
        row = self.rows.get(t)
        if row is None:
            return ()
        return ((spring_record, (self.x, self.out, self.level(t), row)),)

    def _adjoint(self, xs: object, vs: object, state: int, step: int, measure: bool = False
                 ) -> None:
        spring_adjoint(xs, vs, self.x.grad, self.v.grad, self.k, self.rest, self.c, self.mass,
                       self.act, self.channel, self.sa, self.sb, self.offsets, self.adj,
                       self.sign, self.fixed, self.gravity, self.chan_offsets, self.chan_springs,
                       self.fs, self.pbar, self.fbar, self.ebar, self.rbar, self.lbar,
                       self.norms, state, self.level(step), self.level(step + 1), step,
                       *self._world(), int(measure), self._serial())

    def reverse_step(self, step: int) -> None:
        """The gather adjoint (default) or Taichi autodiff of the scatter formulation."""
        if self.adjoint == "autodiff":
            super().reverse_step(step)
        else:
            self._adjoint(self.x, self.v, self.level(step), step)

    def reverse(self, step: int, slot: int | None, *, measure: bool) -> float:
        """Reverse step ``step``.

        The gather adjoint reads a checkpoint in place (no restore) and adds
        ``|λ[step+1]|^2`` to :attr:`norms` in the same kernel; this returns its root.
        """
        self._flush()
        if self.adjoint == "autodiff":
            return super().reverse(step, slot, measure=measure)
        for kernel, args in reversed(self.record(step + 1)):
            kernel.grad(*args)
        if slot is None:
            # copy the live state to the spare slot, so that one compiled adjoint serves all
            slot = self._pool_slots
            spring_save(self.x, self.v, self._pool["x"], self._pool["v"], self.level(step), slot)
        self._adjoint(self._pool["x"], self._pool["v"], slot, step, measure)
        return math.sqrt(self.norms[step + 1]) if measure else math.nan

    # Checkpoints: a flat pool [slots, n] per state field. A save is deferred and done by
    # the next step's kernel when that step starts from the saved state (StoreAll and
    # Uniform always do), which saves a launch per step; anything else flushes it first.
    def allocate_checkpoints(self, slots: int) -> None:
        """Allocate (or reuse) a pool of at least ``max(slots, 1)`` stored states."""
        slots = max(slots, 1)
        if slots <= self._pool_slots:
            return
        self._flush()
        if self._pool_tree is not None:
            self._pool_tree.destroy()
        tree = FieldTree()
        n, d = self.system.n_particles, self.system.dim
        # one spare slot past the end: the live state's copy for the reverse of a live step
        self._pool = {"x": tree.field((slots + 1, n), vector=d),
                      "v": tree.field((slots + 1, n), vector=d)}
        tree.finalize()
        self._pool_tree = tree
        self._pool_slots = slots

    def _flush(self) -> None:
        if self._pending is not None:
            level, slot = self._pending
            self._pending = None
            spring_save(self.x, self.v, self._pool["x"], self._pool["v"], level, slot)

    def save(self, step: int, slot: int) -> None:
        """Store ``x[step], v[step]`` in checkpoint ``slot`` (deferred to the next step's kernel)."""
        self._flush()
        self._pending = (self.level(step), slot)
        self._pending_step = step

    def advance(self, step: int) -> None:
        """Run step ``step``, storing a pending checkpoint of ``x[step]`` in the same launch."""
        if self._pending is not None:
            if self.adjoint == "hand" and not self._validate and self._pending_step == step:
                self._save_slot = self._pending[1]
                self._pending = None
            else:
                self._flush()
        try:
            super().advance(step)
        finally:
            self._save_slot = -1

    def restore(self, step: int, slot: int) -> None:
        """Load ``x[step], v[step]`` from checkpoint ``slot`` in one launch."""
        self._flush()
        spring_load(self._pool["x"], self._pool["v"], self.x, self.v, slot, self.level(step))

    def reset(self) -> None:
        """Drop any pending save, then make ``x[0]`` live."""
        self._pending = None
        super().reset()

    def live_is_finite(self, step: int) -> bool:
        """See :meth:`TaichiStepper.live_is_finite` (flushes a pending save first)."""
        self._flush()
        return super().live_is_finite(step)

    def begin_reverse(self, cotangents: Mapping[str, np.ndarray]) -> None:
        """Zero every adjoint (one launch), then seed the positions' cotangent."""
        self._flush()
        if set(cotangents) != {"positions"}:
            raise ValueError(f"cotangents for {sorted(cotangents)}; this stepper's only output "
                             "is 'positions'")
        cot = np.asarray(cotangents["positions"])
        expected = (*self.out.shape, self.out.n)
        if cot.shape != expected or not np.all(np.isfinite(cot)):
            raise ValueError(f"cotangent for 'positions' must be finite with shape {expected}; "
                             f"got shape {cot.shape}")
        spring_zero_adjoints(self.x.grad, self.v.grad, self.k.grad, self.rest.grad,
                             self.c.grad, self.mass.grad, self.act.grad, self.out.grad,
                             self.norms)
        self.out.grad.from_numpy(np.ascontiguousarray(cot, dtype=np_real()))

    def gradients(self) -> dict[str, np.ndarray]:
        """``∂L/∂θ`` for every parameter (one launch for the per-spring/particle ones).

        Also keeps ``λ[0]`` for :meth:`initial_state_gradient`.
        """
        n, m, d = self.system.n_particles, self.system.n_springs, self.system.dim
        real_ = np_real()
        out = {name: np.empty(m, dtype=real_) for name in ("stiffness", "rest_length", "damping")}
        out["mass"] = np.empty(n, dtype=real_)
        lam_x = np.empty((n, d), dtype=real_)
        lam_v = np.empty((n, d), dtype=real_)
        spring_download_gradients(self.k.grad, self.rest.grad, self.c.grad, self.mass.grad,
                                  self.x.grad, self.v.grad, self.level(0), out["stiffness"],
                                  out["rest_length"], out["damping"], out["mass"], lam_x, lam_v)
        out["actuation"] = self.act.grad.to_numpy()
        self._initial_gradient = {"x": lam_x, "v": lam_v}
        return out

    def initial_state_gradient(self) -> dict[str, np.ndarray]:
        """``∂L/∂x[0]`` and ``∂L/∂v[0]`` (``[n, d]``), after :meth:`gradients`."""
        return dict(self._initial_gradient)


class _FusedSpringStepper(Stepper):
    """The tape's view of a mass-spring rollout on the CPU: whole runs of steps per launch.

    Every buffer is a NumPy array (state ring, checkpoints, adjoints, gradients, outputs)
    that the kernels of :func:`~diffsim.kernels.springs.spring_fused` use in place, so the
    two kernels compile once per process for every system, and saving, restoring,
    zeroing and reading results are plain NumPy operations. The tape hands over whole
    runs of steps (:meth:`advance_range`, :meth:`reverse_range`); single steps go through
    the same two kernels. Results equal :class:`_SpringStepper`'s bit for bit.
    """

    def __init__(self, system: SpringSystem, steps: int, dt: float,
                 times: tuple[int, ...]) -> None:
        ensure_init()
        n, m, d = system.n_particles, system.n_springs, system.dim
        real_ = np_real()
        self.steps = steps
        self.dt = dt
        self.times = times
        self.system = system
        self._forward, self._reverse = spring_fused(d, real())
        self.topo = _topology(system)
        self.rows = np.full(steps + 1, -1, dtype=np.int32)
        self.rows[list(times)] = np.arange(len(times), dtype=np.int32)
        self.x = np.zeros((2, n, d), dtype=real_)
        self.v = np.zeros((2, n, d), dtype=real_)
        self.xg = np.zeros((2, n, d), dtype=real_)
        self.vg = np.zeros((2, n, d), dtype=real_)
        self.out = np.zeros((len(times), n, d), dtype=real_)
        self.cot = np.zeros_like(self.out)
        c = max(system.channels, 1)
        self.act = np.zeros((steps, c), dtype=real_)
        self.scratch = {"fs": np.zeros((m, d), dtype=real_),
                        "pbar": np.zeros((n, d), dtype=real_),
                        "fbar": np.zeros((n, d), dtype=real_),
                        "ebar": np.zeros((m, d), dtype=real_),
                        "rbar": np.zeros((m, d), dtype=real_),
                        "lbar": np.zeros(m, dtype=real_)}
        self.grads = {"stiffness": np.zeros(m, dtype=real_),
                      "rest_length": np.zeros(m, dtype=real_),
                      "damping": np.zeros(m, dtype=real_),
                      "mass": np.zeros(n, dtype=real_),
                      "actuation": np.zeros((steps, c), dtype=real_)}
        self.norms = np.zeros(steps + 1, dtype=np.float64)
        self._pool_slots = 0
        self.px = self.pv = np.zeros((1, n, d), dtype=real_)
        self.v0 = np.zeros((n, d))
        self.load_system(system)

    # -- values ---------------------------------------------------------------------
    def load_system(self, system: SpringSystem) -> None:
        """Take the parameters and initial positions of ``system`` (same topology)."""
        real_ = np_real()
        self.system = system
        self.params = [np.ascontiguousarray(system.per_spring(name), dtype=real_)
                       for name in ("stiffness", "rest_length", "damping")]
        self.params.append(np.ascontiguousarray(system.per_particle_mass(), dtype=real_))
        self.x0 = system.positions

    def set_param(self, name: str, value: object) -> None:
        """Set the actuation signal ``[steps, max(channels, 1)]``."""
        if name != "actuation":
            raise ValueError(f"unknown parameter {name!r}; use load_system for the others")
        self.act[...] = value

    def _world(self) -> tuple:
        ground = self.system.ground
        return (self.dt, 0.0 if ground is None else ground, int(ground is not None),
                self.system.friction)

    def _system_args(self) -> tuple:
        t = self.topo
        return (*self.params, self.act, *(t[name] for name in _KERNEL_TOPOLOGY))

    # -- Stepper protocol -------------------------------------------------------------
    @property
    def state_nbytes(self) -> int:
        """Bytes of one state: positions and velocities."""
        return self.x[0].nbytes * 2

    def allocate_checkpoints(self, slots: int) -> None:
        """A pool of ``slots`` states plus a spare (NumPy: pages are used as written)."""
        slots = max(slots, 1)
        if slots <= self._pool_slots:
            return
        shape = (slots + 1, *self.x.shape[1:])
        self.px = np.empty(shape, dtype=self.x.dtype)
        self.pv = np.empty(shape, dtype=self.x.dtype)
        self._pool_slots = slots

    def reset(self) -> None:
        """Make ``x[0]`` live and record it when the loss reads time 0."""
        self.x[0] = self.x0
        self.v[0] = self.v0
        if self.rows[0] >= 0:
            self.out[self.rows[0]] = self.x[0]

    def _run(self, x: np.ndarray, v: np.ndarray, start: int, stop: int,
             saves: Mapping[int, int], period: int) -> None:
        table = np.full(stop - start + 1, -1, dtype=np.int32)
        for t, slot in saves.items():
            table[t - start] = slot
        self._forward(x, v, self.px, self.pv, self.out, *self._system_args(),
                      self.scratch["fs"], table, self.rows, start, stop, period, *self._world())

    def advance_range(self, start: int, stop: int, saves: Mapping[int, int]) -> None:
        """Steps ``start … stop-1`` and the checkpoint saves among them, in one launch."""
        self._run(self.x, self.v, start, stop, saves, 2)

    def advance(self, step: int) -> None:
        """One step (the range kernel with a range of one)."""
        self.advance_range(step, step + 1, {})

    def trajectory(self) -> tuple[np.ndarray, np.ndarray]:
        """Every step from ``x[0]``: positions and velocities ``[steps+1, n, d]``.

        The kernel steps straight through the two arrays (time ``t`` at index ``t``).
        """
        tx = np.empty((self.steps + 1, *self.x.shape[1:]), dtype=self.x.dtype)
        tv = np.empty_like(tx)
        tx[0], tv[0] = self.x0, self.v0
        self._run(tx, tv, 0, self.steps, {}, self.steps + 2)
        return tx, tv

    def save(self, step: int, slot: int) -> None:
        """Copy the live ``x[step]`` into checkpoint ``slot``."""
        self.px[slot] = self.x[step % 2]
        self.pv[slot] = self.v[step % 2]

    def restore(self, step: int, slot: int) -> None:
        """Copy checkpoint ``slot`` into the ring level of ``x[step]``."""
        self.x[step % 2] = self.px[slot]
        self.v[step % 2] = self.pv[slot]

    def live_is_finite(self, step: int) -> bool:
        """Whether ``x[step]`` and ``v[step]`` are finite."""
        return bool(np.isfinite(self.x[step % 2]).all() and np.isfinite(self.v[step % 2]).all())

    def state_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Positions ``x`` and velocities ``v``, ``[n, d]`` each."""
        return {"x": (self.x.shape[1:], self.x.dtype), "v": (self.v.shape[1:], self.v.dtype)}

    def export_state(self, step: int, out: Mapping[str, np.ndarray]) -> None:
        """Copy the live ``x[step]``, ``v[step]`` into ``out``."""
        out["x"][...] = self.x[step % 2]
        out["v"][...] = self.v[step % 2]

    def import_state(self, step: int, values: Mapping[str, np.ndarray]) -> None:
        """Make ``values`` the live ``x[step]``, ``v[step]``."""
        self.x[step % 2] = values["x"]
        self.v[step % 2] = values["v"]

    def begin_reverse(self, cotangents: Mapping[str, np.ndarray]) -> None:
        """Zero the adjoints and gradients, keep the positions' cotangent."""
        if set(cotangents) != {"positions"}:
            raise ValueError(f"cotangents for {sorted(cotangents)}; this stepper's only output "
                             "is 'positions'")
        cot = np.asarray(cotangents["positions"])
        if cot.shape != self.out.shape or not np.all(np.isfinite(cot)):
            raise ValueError(f"cotangent for 'positions' must be finite with shape "
                             f"{self.out.shape}; got shape {cot.shape}")
        self.cot[...] = cot
        for a in (self.xg, self.vg, self.norms, *self.grads.values()):
            a.fill(0)

    def reverse(self, step: int, slot: int | None, *, measure: bool) -> float:
        """One reverse step (the range kernel with a range of one)."""
        return self.reverse_range([step], [slot], measure=measure)[0]

    def reverse_range(self, steps: Sequence[int], slots: Sequence[int | None], *,
                      measure: bool) -> list[float]:
        """Reverse consecutive ``steps`` (descending) in one launch.

        The kernel adds ``|λ[t+1]|^2`` to :attr:`norms` itself; this returns their roots.
        """
        table = np.array([-1 if s is None else s for s in slots], dtype=np.int32)
        sc, g = self.scratch, self.grads
        self._reverse(self.x, self.v, self.px, self.pv, self.xg, self.vg, self.cot,
                      *self._system_args(), self.topo["chan_offsets"], self.topo["chan_springs"],
                      sc["fs"], sc["pbar"], sc["fbar"], sc["ebar"], sc["rbar"], sc["lbar"],
                      g["stiffness"], g["rest_length"], g["damping"], g["mass"], g["actuation"],
                      self.norms, table, self.rows, steps[0], len(steps), self._pool_slots,
                      int(measure), *self._world())
        if not measure:
            return [math.nan] * len(steps)
        return [math.sqrt(self.norms[t + 1]) for t in steps]

    def finish_reverse(self, *, measure: bool) -> float:
        """Add the time-0 cotangent into ``λ[0]``; its norm when ``measure``."""
        if self.rows[0] >= 0:
            self.xg[0] += self.cot[self.rows[0]]
        if not measure:
            return math.nan
        return math.sqrt(float(np.sum(self.xg[0].astype(np.float64) ** 2)
                               + np.sum(self.vg[0].astype(np.float64) ** 2)))

    def outputs(self) -> dict[str, np.ndarray]:
        """The recorded positions ``[len(times), n, d]``."""
        return {"positions": self.out.copy()}

    def gradients(self) -> dict[str, np.ndarray]:
        """``∂L/∂θ`` per parameter (copies)."""
        return {name: a.copy() for name, a in self.grads.items()}

    def initial_state_gradient(self) -> dict[str, np.ndarray]:
        """``∂L/∂x[0]`` and ``∂L/∂v[0]`` (``[n, d]``)."""
        return {"x": self.xg[0].copy(), "v": self.vg[0].copy()}

    def destroy(self) -> None:
        """Nothing to free (NumPy buffers)."""


# -- the user-facing simulation -------------------------------------------------------
_ADJOINTS = ("hand", "autodiff")
#: Whether the hand adjoint on the CPU runs whole ranges of steps per launch
#: (:class:`_FusedSpringStepper`); the per-step field kernels serve GPUs and the tests.
_FUSED_ON_CPU = True


class Simulation(_Simulation):
    """A reusable simulation of one system topology for ``steps`` steps of ``dt``.

    The front-end every diffsim physics shares: :meth:`simulate` (named outputs),
    :meth:`vjp`, :meth:`value_and_grad` and :meth:`update`. On the CPU (hand adjoint, the
    default) the kernels take NumPy arrays and compile once per process for every
    system, and each launch runs a whole range of steps. On a GPU, and with
    ``adjoint="autodiff"``, the per-step kernels take Taichi fields and compile for each
    new simulation (tenths of a second), so an optimisation loop keeps one simulation and
    changes its values with :meth:`update` (cheap either way). :func:`simulate` and
    :func:`value_and_grad` make a temporary one.

    Args:
        system: the system; its parameters and positions are the starting values.
        steps: number of time steps.
        dt: time step in s (checked against :meth:`SpringSystem.stable_dt`).
        velocities: initial velocities ``[n, d]`` in m/s (default zero).
        actuation: ``[steps, channels]`` actuation signal (default zero).
        adjoint: ``"hand"`` (gather-form adjoint kernel, default) or ``"autodiff"``
            (Taichi's ``kernel.grad`` of the step; slower, for cross-checks).

    Outputs: ``"positions"`` and ``"velocities"``, ``[steps + 1, n, d]`` (m, m/s).
    Parameters (``wrt``, :meth:`update`): :data:`PARAMETERS`. Gradients flow from the
    positions; a cotangent on ``"velocities"`` must be zero.
    """

    parameter_names = PARAMETERS
    default_wrt = ("stiffness",)

    def __init__(self, system: SpringSystem, steps: int, dt: float, *,
                 velocities: object = None, actuation: object = None,
                 adjoint: Literal["hand", "autodiff"] = "hand") -> None:
        if not isinstance(system, SpringSystem):
            raise TypeError(f"system must be a SpringSystem, got {type(system).__name__}")
        self.steps = _check_steps(steps)
        self.dt = _check_dt(system, dt)
        if adjoint not in _ADJOINTS:
            raise ValueError(f"adjoint={adjoint!r}; choose 'hand' or 'autodiff'")
        self.adjoint = adjoint
        self.system = system
        self.velocities = _check_velocities(system, velocities)
        self.actuation = _check_actuation(system, self.steps, actuation)
        self._steppers: dict[tuple[int, ...], _SpringStepper | _FusedSpringStepper] = {}

    # -- values -------------------------------------------------------------------------
    def parameters(self) -> dict[str, np.ndarray]:
        """Current values by name.

        The system's parameters (scalars stay scalars), its initial ``positions``, the
        initial ``velocities`` and the ``actuation``.
        """
        s = self.system
        return {"stiffness": np.array(s.stiffness), "rest_length": np.array(s.rest_length),
                "damping": np.array(s.damping), "mass": np.array(s.mass),
                "positions": s.positions.copy(), "velocities": self.velocities.copy(),
                "actuation": self.actuation.copy()}

    def update(self, **values: object) -> None:
        """Change parameter or initial-state values (the topology stays).

        Args:
            **values: any of ``stiffness``, ``rest_length``, ``damping``, ``mass``,
                ``positions`` (SpringSystem arguments, validated the same way), and
                ``velocities``, ``actuation``.

        Raises:
            ValueError: unknown names, bad values, or a time step that became unstable.
        """
        sys_keys = {"stiffness", "rest_length", "damping", "mass", "positions"}
        unknown = set(values) - sys_keys - {"velocities", "actuation"}
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}; allowed: "
                             f"{sorted(sys_keys | {'velocities', 'actuation'})}")
        system = self.system
        changes = {k: v for k, v in values.items() if k in sys_keys}
        if changes:
            system = system.replace(**changes)
            _check_dt(system, self.dt)
        velocities = (_check_velocities(system, values["velocities"]) if "velocities" in values
                      else self.velocities)
        actuation = (_check_actuation(system, self.steps, values["actuation"])
                     if "actuation" in values else self.actuation)
        self.system, self.velocities, self.actuation = system, velocities, actuation

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """``"positions"`` and ``"velocities"``: ``(steps + 1, n, d)``."""
        shape = (self.steps + 1, self.system.n_particles, self.system.dim)
        return {"positions": shape, "velocities": shape}

    def _stepper(self, loss: object = None) -> _SpringStepper | _FusedSpringStepper:
        """The stepper recording the levels ``loss.times`` names (every level by default)."""
        times = getattr(loss, "times", None)
        levels = times(self.steps) if times is not None else None
        return self._recording(tuple(range(self.steps + 1)) if levels is None else tuple(levels))

    def _recording(self, key: tuple[int, ...]) -> _SpringStepper | _FusedSpringStepper:
        """The stepper recording the positions at time levels ``key``, current values loaded."""
        stepper = self._steppers.get(key)
        if stepper is None:
            if self.adjoint == "hand" and _FUSED_ON_CPU and ensure_init().arch == "cpu":
                stepper = _FusedSpringStepper(self.system, self.steps, self.dt, key)
            else:
                stepper = _SpringStepper(self.system, self.steps, self.dt, key, self.adjoint)
            self._steppers[key] = stepper
        stepper.load_system(self.system)
        stepper.v0 = self.velocities
        stepper.set_param("actuation", np.broadcast_to(self.actuation, stepper.act.shape))
        return stepper

    # -- forward ------------------------------------------------------------------------
    def simulate(self) -> dict[str, np.ndarray]:
        """Run the rollout and return every time level (no tape; on the CPU one launch).

        Returns:
            ``{"positions", "velocities"}``, each ``[steps + 1, n, d]`` in the runtime
            precision's dtype (float32 or float64).

        Raises:
            FloatingPointError: the state became NaN or Inf, naming the first such step.
        """
        positions, velocities = self._rollout()
        # NaN and Inf never turn finite again here (they spread through the springs), so
        # checking the last level finds any blow-up; then look for its first step.
        if not (np.isfinite(positions[-1]).all() and np.isfinite(velocities[-1]).all()):
            bad = ~(np.isfinite(positions).all(axis=(1, 2)) & np.isfinite(velocities).all(axis=(1, 2)))
            raise FloatingPointError(_blow_up(int(np.argmax(bad)), self.dt))
        return {"positions": positions, "velocities": velocities}

    def _rollout(self) -> tuple[np.ndarray, np.ndarray]:
        """Run every step, writing the trajectory straight into new NumPy arrays."""
        s = self._recording((self.steps,))  # the trajectory is written separately
        if isinstance(s, _FusedSpringStepper):
            return s.trajectory()
        n, d = self.system.n_particles, self.system.dim
        positions = np.empty((self.steps + 1, n, d), dtype=np_real())
        velocities = np.empty_like(positions)
        positions[0] = self.system.positions
        velocities[0] = self.velocities
        s.reset()
        for step in range(self.steps):
            s.advance(step)
            positions[step + 1] = s.x.to_numpy()[s.level(step + 1)]
            velocities[step + 1] = s.v.to_numpy()[s.level(step + 1)]
        return positions, velocities

    def _blew_up(self, exc: FloatingPointError) -> None:
        self.simulate()  # raises, naming the exact step

    # -- gradients ----------------------------------------------------------------------
    def _outputs(self, stepper: Stepper, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"positions": raw["positions"]}

    def _cotangents(self, stepper: Stepper, cot: dict[str, np.ndarray]
                    ) -> dict[str, np.ndarray]:
        if "velocities" in cot and np.any(cot["velocities"] != 0):
            raise ValueError("a cotangent on 'velocities' is not supported: gradients flow "
                             "from the positions; give the loss on 'positions' (the velocity "
                             "at step t is (x[t+1] - x[t]) / dt)")
        levels = len(stepper.times)  # type: ignore[attr-defined]
        shape = (levels, self.system.n_particles, self.system.dim)
        return {"positions": cot.get("positions", np.zeros(shape))}

    def _check_wrt(self, wrt: tuple[str, ...]) -> None:
        if "actuation" in wrt and self.system.channels == 0:
            raise ValueError("wrt contains 'actuation' but the system has no actuated springs")

    def _gradients(self, stepper: Stepper, raw: dict[str, np.ndarray], wrt: tuple[str, ...],
                   partials: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        direct = partials or {}
        grads: dict[str, np.ndarray] = {}
        init = stepper.initial_state_gradient()  # type: ignore[attr-defined]
        for name in wrt:
            if name == "positions":
                g = init["x"].astype(np.float64)
            elif name == "velocities":
                g = init["v"].astype(np.float64)
                g[self.system.fixed] = 0.0
            elif name == "actuation":
                g = raw["actuation"][:, : self.system.channels].astype(np.float64)
            else:
                g = raw[name].astype(np.float64) + direct.get(name, 0.0)
                if np.ndim(getattr(self.system, name)) == 0:
                    g = np.asarray(g.sum())
            grads[name] = g
        return grads

    def close(self) -> None:
        """Free every Taichi field of this simulation."""
        for stepper in self._steppers.values():
            stepper.destroy()
        self._steppers.clear()


class SpringSimulation(Simulation):
    """:class:`Simulation` whose :meth:`simulate` returns a :class:`Trajectory`.

    The first release's result type; everything else is the same.
    """

    def simulate(self) -> Trajectory:  # type: ignore[override]
        """The rollout as a :class:`Trajectory` (see :meth:`Simulation.simulate`)."""
        out = super().simulate()
        return Trajectory(out["positions"], out["velocities"], self.dt)

    def value_and_grad(self, loss: Loss, *, wrt: Sequence[str] = ("stiffness",),  # type: ignore[override]
                       checkpoint: Schedule | None = None) -> Gradient:
        """The loss and its gradient with respect to ``wrt`` (see :func:`value_and_grad`)."""
        return super().value_and_grad(loss, wrt=wrt, checkpoint=checkpoint)


def _blow_up(step: int, dt: float) -> str:
    return (f"the simulation blew up: positions or velocities became NaN or Inf at step {step} "
            f"(t = {step * dt:.6g} s). The time step may be too large for these springs, or "
            "the parameters are extreme; reduce dt or check stiffness, mass and actuation")


def simulate(system: SpringSystem, steps: int, dt: float, velocities: object = None, *,
             actuation: object = None) -> Trajectory:
    """Simulate ``steps`` steps of semi-implicit Euler.

    Args:
        system: the mass-spring system.
        steps: number of steps, >= 1.
        dt: time step in s; must be below :meth:`SpringSystem.stable_dt`.
        velocities: initial velocities ``[n, d]`` in m/s (default zero; pinned particles 0).
        actuation: ``[steps, channels]`` signal for actuated springs (default zero).

    Returns:
        A :class:`Trajectory` with ``positions`` and ``velocities`` ``[steps + 1, n, d]``.

    Raises:
        ValueError: bad input or an unstable ``dt`` (the message gives the estimate).
        FloatingPointError: the state became NaN or Inf; the message names the step.
    """
    with SpringSimulation(system, steps, dt, velocities=velocities, actuation=actuation) as sim:
        return sim.simulate()


def value_and_grad(
    system: SpringSystem,
    steps: int,
    dt: float,
    *,
    target: object = None,
    loss: Loss | None = None,
    wrt: Sequence[str] = ("stiffness",),
    checkpoint: Schedule | None = None,
    velocities: object = None,
    actuation: object = None,
    adjoint: Literal["hand", "autodiff"] = "hand",
) -> Gradient:
    """A loss of a rollout and its exact gradient.

    Args:
        system: the mass-spring system.
        steps: number of steps.
        dt: time step in s.
        target: final positions ``[n, d]`` in m for the loss ``0.5 ||x[steps] - target||^2``
            (shorthand for ``loss=FinalPosition(target)``).
        loss: any :class:`Loss`: :class:`FinalPosition`, :class:`Tracking`,
            :class:`CenterOfMass`. Give ``target`` or ``loss``, not both.
        wrt: names from :data:`PARAMETERS`: ``"stiffness"``, ``"rest_length"``,
            ``"damping"``, ``"mass"``, ``"positions"``, ``"velocities"``, ``"actuation"``.
        checkpoint: a schedule (``StoreAll()``, ``Uniform(every=100)``,
            ``Binomial(slots=16)``, ``Budget(bytes="1GiB")``); default a 1 GiB budget.
        velocities: initial velocities ``[n, d]`` in m/s.
        actuation: ``[steps, channels]`` actuation signal.
        adjoint: ``"hand"`` or ``"autodiff"`` (see :class:`SpringSimulation`).

    Returns:
        A :class:`Gradient`: ``.loss``, ``.grads`` (each shaped like its parameter) and the
        tape's ``.report``.
    """
    if (target is None) == (loss is None):
        raise ValueError("give exactly one of target=[n, d] (final-position loss) or "
                         "loss=FinalPosition(...)/Tracking(...)/CenterOfMass(...)")
    if loss is None:
        loss = FinalPosition(target)
    with SpringSimulation(system, steps, dt, velocities=velocities, actuation=actuation,
                          adjoint=adjoint) as sim:
        return sim.value_and_grad(loss, wrt=wrt, checkpoint=checkpoint)
