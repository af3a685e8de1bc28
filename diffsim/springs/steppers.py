"""The tape's view of a mass-spring rollout: one :class:`SpringStepper`, two small backends.

:class:`SpringStepper` is what the tape drives. It validates once (backend and adjoint
names, cotangents, actuation), prepares the parameter arrays once, and hands the
kernels' work to a backend:

- :class:`_FusedBackend` (the CPU default): NumPy buffers used in place by two kernels
  that run whole ranges of steps per launch (compiled once per process);
- :class:`_FieldBackend` (GPUs, and the reference of the tests): Taichi fields and one
  launch per step, with the hand-written gather adjoint or, as ``adjoint="autodiff"``,
  Taichi's autodiff of the scatter (atomics) formulation.

Both backends give the same results bit for bit (tested).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import taichi as ti

from diffsim import _parallel
from diffsim._fields import FieldTree
from diffsim._runtime import ensure_init, np_real, real
from diffsim._tape import Launch, Stepper, TaichiStepper
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
from diffsim.springs.system import SpringSystem


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


def _parameter_arrays(system: SpringSystem) -> list[np.ndarray]:
    """Per-spring stiffness, rest length, damping and per-particle mass, contiguous, runtime dtype."""
    real_ = np_real()
    arrays = [np.ascontiguousarray(system.per_spring(name), dtype=real_)
              for name in ("stiffness", "rest_length", "damping")]
    return [*arrays, np.ascontiguousarray(system.per_particle_mass(), dtype=real_)]


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


class _FieldBackend(TaichiStepper):
    """Per-step Taichi field kernels (GPUs; the reference of the tests). See :class:`SpringStepper`."""

    def __init__(self, system: SpringSystem, steps: int, dt: float, times: tuple[int, ...],
                 adjoint: str, velocities: bool = False) -> None:
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
        self.outv = None
        if velocities:
            self.outv = self._tree.field((len(times), n), vector=d, needs_grad=True)
            self._outputs["velocities"] = self.outv
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

    def upload(self, system: SpringSystem, params: Sequence[np.ndarray]) -> None:
        """Take ``system`` (same topology) and its :func:`_parameter_arrays`, in one launch."""
        self.system = system
        spring_upload_params(self.k, self.rest, self.c, self.mass, *params)

    def set_actuation(self, actuation: np.ndarray) -> None:
        """The actuation ``[steps, max(channels, 1)]`` (validated by the caller)."""
        self.set_param("actuation", actuation)

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
        launches: tuple[Launch, ...] = ((spring_record, (self.x, self.out, self.level(t), row)),)
        if self.outv is not None:
            launches += ((spring_record, (self.v, self.outv, self.level(t), row)),)
        return launches

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
        """Zero every adjoint (one launch), then seed the outputs' cotangents (checked)."""
        self._flush()
        cot = cotangents["positions"]
        spring_zero_adjoints(self.x.grad, self.v.grad, self.k.grad, self.rest.grad,
                             self.c.grad, self.mass.grad, self.act.grad, self.out.grad,
                             self.norms)
        self.out.grad.from_numpy(np.ascontiguousarray(cot, dtype=np_real()))
        if self.outv is not None:
            self.outv.grad.from_numpy(np.ascontiguousarray(cotangents["velocities"],
                                                           dtype=np_real()))

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

    def trajectory(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions and velocities at every level, ``[steps + 1, n, d]`` (a step a launch)."""
        n, d = self.system.n_particles, self.system.dim
        positions = np.empty((self.steps + 1, n, d), dtype=np_real())
        velocities = np.empty_like(positions)
        positions[0] = self.x0
        velocities[0] = self.v0
        self.reset()
        for step in range(self.steps):
            self.advance(step)
            positions[step + 1] = self.x.to_numpy()[self.level(step + 1)]
            velocities[step + 1] = self.v.to_numpy()[self.level(step + 1)]
        return positions, velocities

    def initial_state_gradient(self) -> dict[str, np.ndarray]:
        """``∂L/∂x[0]`` and ``∂L/∂v[0]`` (``[n, d]``), after :meth:`gradients`."""
        return dict(self._initial_gradient)


#: Springs from which a system's whole-range kernels run on every thread (worker tasks
#: owning ranges of springs and particles, barriers between the passes; measured on 2
#: cores with ``benchmarks/springs_threads.py``).
SPRING_WORKER_SPRINGS = 2_000


class _FusedBackend(Stepper):
    """Whole runs of steps per launch on NumPy buffers (the CPU). See :class:`SpringStepper`.

    Every buffer is a NumPy array (state ring, checkpoints, adjoints, gradients, outputs)
    that the kernels of :func:`~diffsim.kernels.springs.spring_fused` use in place, so the
    two kernels compile once per process for every system, and saving, restoring,
    zeroing and reading results are plain NumPy operations. The tape hands over whole
    runs of steps (:meth:`advance_range`, :meth:`reverse_range`); single steps go through
    the same two kernels. Results equal :class:`_FieldBackend`'s bit for bit.
    """

    def __init__(self, system: SpringSystem, steps: int, dt: float,
                 times: tuple[int, ...], velocities: bool = False) -> None:
        ensure_init()
        n, m, d = system.n_particles, system.n_springs, system.dim
        real_ = np_real()
        self.steps = steps
        self.dt = dt
        self.times = times
        self.system = system
        self._forward, self._reverse = spring_fused(d, real())
        # every thread from SPRING_WORKER_SPRINGS springs (barriers cost more below)
        self._workers = _parallel.threads() if m >= SPRING_WORKER_SPRINGS else 1
        self._bar = _parallel.barrier_field()
        self.topo = _topology(system)
        self.rows = np.full(steps + 1, -1, dtype=np.int32)
        self.rows[list(times)] = np.arange(len(times), dtype=np.int32)
        self.x = np.zeros((2, n, d), dtype=real_)
        self.v = np.zeros((2, n, d), dtype=real_)
        self.xg = np.zeros((2, n, d), dtype=real_)
        self.vg = np.zeros((2, n, d), dtype=real_)
        self.out = np.zeros((len(times), n, d), dtype=real_)
        self.cot = np.zeros_like(self.out)
        # velocities at the same levels, when recorded (else one-row stand-ins)
        self.record_v = int(velocities)
        self.outv = np.zeros(self.out.shape if velocities else (1, n, d), dtype=real_)
        self.cotv = np.zeros_like(self.outv)
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
        self.norms = np.zeros((steps + 1) * self._workers, dtype=np.float64)  # per worker
        self._pool_slots = 0
        self.px = self.pv = np.zeros((1, n, d), dtype=real_)
        self.x0 = system.positions
        self.v0 = np.zeros((n, d))
        self.params = _parameter_arrays(system)

    # -- values ---------------------------------------------------------------------
    def upload(self, system: SpringSystem, params: Sequence[np.ndarray]) -> None:
        """Take ``system`` (same topology) and its :func:`_parameter_arrays`."""
        self.system = system
        self.params = list(params)

    def set_actuation(self, actuation: np.ndarray) -> None:
        """The actuation ``[steps, max(channels, 1)]`` (validated by the caller)."""
        self.act[...] = actuation

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
            if self.record_v:
                self.outv[self.rows[0]] = self.v[0]

    def _run(self, x: np.ndarray, v: np.ndarray, start: int, stop: int,
             saves: Mapping[int, int], period: int) -> None:
        table = np.full(stop - start + 1, -1, dtype=np.int32)
        for t, slot in saves.items():
            table[t - start] = slot
        self._forward(x, v, self.px, self.pv, self.out, *self._system_args(),
                      self.scratch["fs"], table, self.rows, start, stop, period, *self._world(),
                      self.outv, self.record_v, self._bar, self._workers)

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
        """Zero the adjoints and gradients, keep the outputs' cotangents (checked)."""
        self.cot[...] = cotangents["positions"]
        if self.record_v:
            self.cotv[...] = cotangents["velocities"]
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
                      int(measure), *self._world(), self.cotv, self.record_v, self._bar,
                      self._workers)
        if not measure:
            return [math.nan] * len(steps)
        per = self.norms.reshape(-1, self._workers).sum(axis=1)
        return [math.sqrt(per[t + 1]) for t in steps]

    def finish_reverse(self, *, measure: bool) -> float:
        """Add the time-0 cotangent into ``λ[0]``; its norm when ``measure``."""
        if self.rows[0] >= 0:
            self.xg[0] += self.cot[self.rows[0]]
            if self.record_v:
                self.vg[0] += self.cotv[self.rows[0]]
        if not measure:
            return math.nan
        return math.sqrt(float(np.sum(self.xg[0].astype(np.float64) ** 2)
                               + np.sum(self.vg[0].astype(np.float64) ** 2)))

    def outputs(self) -> dict[str, np.ndarray]:
        """The recorded positions (and velocities) ``[len(times), n, d]``."""
        out = {"positions": self.out.copy()}
        if self.record_v:
            out["velocities"] = self.outv.copy()
        return out

    def gradients(self) -> dict[str, np.ndarray]:
        """``∂L/∂θ`` per parameter (copies)."""
        return {name: a.copy() for name, a in self.grads.items()}

    def initial_state_gradient(self) -> dict[str, np.ndarray]:
        """``∂L/∂x[0]`` and ``∂L/∂v[0]`` (``[n, d]``)."""
        return {"x": self.xg[0].copy(), "v": self.vg[0].copy()}

    def destroy(self) -> None:
        """Nothing to free (NumPy buffers)."""




#: Backend names of :class:`SpringStepper`.
BACKENDS = ("auto", "fused", "fields")
ADJOINTS = ("hand", "autodiff")


def check_backend(backend: str, adjoint: str) -> None:
    """Raise ``ValueError`` for an unknown backend or adjoint, or a pair that cannot run."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}; choose one of {BACKENDS}")
    if adjoint not in ADJOINTS:
        raise ValueError(f"adjoint={adjoint!r}; choose 'hand' or 'autodiff'")
    if backend == "fused" and adjoint == "autodiff":
        raise ValueError("adjoint='autodiff' runs on the fields backend only; use "
                         "backend='fields' (or 'auto')")


class SpringStepper(Stepper):
    """The tape's view of a mass-spring rollout, on one of two backends.

    Args:
        system: the system (topology fixed for the stepper's life).
        steps: rollout length.
        dt: time step in s (checked by the caller against the system's stability).
        times: the time levels whose positions are recorded as the output
            ``"positions"`` ``[len(times), n, d]``.
        velocities: also record the velocities at those levels, as the output
            ``"velocities"`` (and accept its cotangent).
        backend: ``"fused"`` (NumPy buffers, whole ranges of steps per launch: the CPU),
            ``"fields"`` (Taichi fields, one launch per step: GPUs and the tests) or
            ``"auto"`` (fused on the CPU with the hand adjoint, else fields).
        adjoint: ``"hand"`` (the gather adjoint) or ``"autodiff"`` (Taichi autodiff of
            the scatter formulation; fields backend only: the reference of the tests).

    Parameters (gradients): ``stiffness``, ``rest_length``, ``damping`` ``[m]``, ``mass``
    ``[n]``, ``actuation`` ``[steps, max(channels, 1)]``; :meth:`initial_state_gradient`
    gives ``∂L/∂x[0]`` and ``∂L/∂v[0]``.
    """

    def __init__(self, system: SpringSystem, steps: int, dt: float, times: Sequence[int], *,
                 backend: str = "auto", adjoint: str = "hand", velocities: bool = False) -> None:
        check_backend(backend, adjoint)
        if backend == "auto":
            backend = "fused" if adjoint == "hand" and ensure_init().arch == "cpu" else "fields"
        self.backend = backend
        self.steps = steps
        self.times = tuple(int(t) for t in times)
        self.system = system
        self.velocities = velocities
        self._impl: _FusedBackend | _FieldBackend = (
            _FusedBackend(system, steps, dt, self.times, velocities) if backend == "fused"
            else _FieldBackend(system, steps, dt, self.times, adjoint, velocities))
        shape = (len(self.times), system.n_particles, system.dim)
        self._output_shape = shape
        self._actuation_shape = (steps, max(system.channels, 1))

    #: Parameters with one row per step (step ``t`` reads row ``t``).
    time_indexed_parameters = ("actuation",)

    def graph_stages(self) -> tuple[dict[str, Any], list[Any]]:
        """The step as stages for :func:`diffsim.diagnostics.step_graph`."""
        from diffsim.diagnostics.graph import Stage, declared

        arrays = {"x": "state", "v": "state", "stiffness": "parameter",
                  "rest_length": "parameter", "damping": "parameter", "mass": "parameter",
                  "actuation": "parameter", "force": "scratch", "positions": "output"}
        contact = " with ground contact" if self.system.ground is not None else ""
        stages = [Stage("spring forces", ("x", "v", "stiffness", "rest_length", "damping",
                                          "actuation"), ("force",)),
                  Stage("semi-implicit Euler" + contact, ("x", "v", "force", "mass"),
                        ("x", "v")),
                  Stage("record", ("x",), ("positions",))]
        return declared(arrays, stages)

    # -- values -------------------------------------------------------------------------
    def load(self, system: SpringSystem, velocities: np.ndarray, actuation: np.ndarray) -> None:
        """Take ``system``'s parameters and positions, the initial velocities and actuation.

        ``system`` must have the stepper's topology; ``velocities`` ``[n, d]``;
        ``actuation`` broadcasts to ``[steps, max(channels, 1)]``.
        """
        if system.springs.shape != self.system.springs.shape or system.dim != self.system.dim:
            raise ValueError("the system's topology differs from the stepper's; build a new "
                             "stepper for it")
        act = np.broadcast_to(np.asarray(actuation), self._actuation_shape)
        self.system = system
        self._impl.upload(system, _parameter_arrays(system))
        self._impl.x0 = system.positions
        self._impl.v0 = velocities
        self._impl.set_actuation(np.ascontiguousarray(act, dtype=np_real()))

    def trajectory(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions and velocities at every level ``[steps + 1, n, d]`` (no tape)."""
        return self._impl.trajectory()

    def initial_state_gradient(self) -> dict[str, np.ndarray]:
        """``∂L/∂x[0]`` and ``∂L/∂v[0]`` (``[n, d]``), after :meth:`gradients`."""
        return self._impl.initial_state_gradient()

    # -- the Stepper protocol -----------------------------------------------------------
    @property
    def state_nbytes(self) -> int:
        """Bytes of one state: positions and velocities."""
        return self._impl.state_nbytes

    def allocate_checkpoints(self, slots: int) -> None:
        """Make room for ``slots`` stored states."""
        self._impl.allocate_checkpoints(slots)

    def reset(self) -> None:
        """Make ``x[0]`` live."""
        self._impl.reset()

    def advance(self, step: int) -> None:
        """Run step ``step``."""
        self._impl.advance(step)

    def advance_range(self, start: int, stop: int, saves: Mapping[int, int]) -> None:
        """Run steps ``start … stop-1`` with the saves among them."""
        self._impl.advance_range(start, stop, saves)

    def save(self, step: int, slot: int) -> None:
        """Store the live ``x[step]`` in checkpoint ``slot``."""
        self._impl.save(step, slot)

    def restore(self, step: int, slot: int) -> None:
        """Make checkpoint ``slot`` (``x[step]``) live."""
        self._impl.restore(step, slot)

    def live_is_finite(self, step: int) -> bool:
        """Whether the live ``x[step]`` is finite."""
        return self._impl.live_is_finite(step)

    def state_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Name, shape and dtype of each array of one state."""
        return self._impl.state_spec()

    def export_state(self, step: int, out: Mapping[str, np.ndarray]) -> None:
        """Copy the live ``x[step]`` into ``out``."""
        self._impl.export_state(step, out)

    def import_state(self, step: int, values: Mapping[str, np.ndarray]) -> None:
        """Make ``values`` the live ``x[step]``."""
        self._impl.import_state(step, values)

    def enable_validation(self) -> None:
        """Taichi's global-data-access checks on every forward step (fields backend only)."""
        enable = getattr(self._impl, "enable_validation", None)   # field kernels only
        if enable is None:
            raise ValueError("validate=True checks Taichi field kernels; build the stepper "
                             "with backend='fields'")
        enable()

    def begin_reverse(self, cotangents: Mapping[str, np.ndarray]) -> None:
        """Check the outputs' cotangents, then zero the adjoints and seed them.

        ``"positions"`` is required; ``"velocities"`` is accepted (default zero) when the
        stepper records velocities.
        """
        names = ("positions", "velocities") if self.velocities else ("positions",)
        if "positions" not in cotangents or not set(cotangents) <= set(names):
            raise ValueError(f"cotangents for {sorted(cotangents)}; this stepper's outputs are "
                             f"{list(names)} ('positions' required)")
        seeds: dict[str, np.ndarray] = {}
        for name in names:
            cot = np.asarray(cotangents.get(name, np.zeros(self._output_shape)))
            if cot.shape != self._output_shape or not np.all(np.isfinite(cot)):
                raise ValueError(f"cotangent for {name!r} must be finite with shape "
                                 f"{self._output_shape}; got shape {cot.shape}")
            seeds[name] = np.ascontiguousarray(cot, dtype=np_real())
        self._impl.begin_reverse(seeds)

    def reverse(self, step: int, slot: int | None, *, measure: bool) -> float:
        """Reverse step ``step``; ``‖λ[step+1]‖`` when ``measure``."""
        return self._impl.reverse(step, slot, measure=measure)

    def reverse_range(self, steps: Sequence[int], slots: Sequence[int | None], *,
                      measure: bool) -> list[float]:
        """Reverse consecutive ``steps`` (descending)."""
        return self._impl.reverse_range(steps, slots, measure=measure)

    def finish_reverse(self, *, measure: bool) -> float:
        """Add the time-0 cotangent; ``‖λ[0]‖`` when ``measure``."""
        return self._impl.finish_reverse(measure=measure)

    def outputs(self) -> dict[str, np.ndarray]:
        """``"positions"`` ``[len(times), n, d]``."""
        return self._impl.outputs()

    def gradients(self) -> dict[str, np.ndarray]:
        """``∂L/∂θ`` for every parameter."""
        return self._impl.gradients()

    def destroy(self) -> None:
        """Free the backend's storage."""
        self._impl.destroy()
