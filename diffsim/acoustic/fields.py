"""The field engine: per-stepper Taichi fields (autodiff oracle, GPUs, validation)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Unpack

import numpy as np
import taichi as ti
from numpy.typing import ArrayLike

from diffsim._runtime import np_real
from diffsim._runtime import real as real_type
from diffsim._tape import Launch, TaichiStepper
from diffsim.acoustic._setup import _SPONGE_AUTODIFF, Options, _AcousticSetup, _Bundle, _serial_loops
from diffsim.kernels.acoustic import (
    adjoint_step,
    copy_state,
    record_traces,
    wave_step,
    wave_steps,
)
from diffsim.kernels.common import zero_slot


class FieldAcousticStepper(_AcousticSetup, TaichiStepper):
    """The field engine: :class:`AcousticStepper` on Taichi fields.

    Serves ``adjoint="autodiff"`` (Taichi autodiff of the step, the test oracle of the
    hand adjoint), ``Tape(validate=True)`` and GPUs. Each new stepper compiles its own
    kernel instances (its fields are template arguments). Arguments as
    :class:`AcousticStepper`.
    """

    def __init__(self, velocity: np.ndarray, spacing: object, dt: float, wavelet: np.ndarray,
                 sources: np.ndarray, receivers: np.ndarray, *, engine: str = "fields",
                 **options: Unpack[Options]) -> None:
        self._setup(velocity, spacing, dt, wavelet, sources, receivers, **options)
        super().__init__(steps=self.steps)
        g = self.geometry
        w, nb = self.lanes, self.blocks
        self.u = self._state("u", self._row_shape, vector=w, history=2)
        self.psi = tuple(self._state(f"psi{d}", self._strips[d], vector=w) for d in range(g.ndim))
        self.zeta = tuple(self._state(f"zeta{d}", self._strips[d], vector=w)
                          for d in range(g.ndim))
        # The velocity parameter is held as kc = dt^2 c^2 (zero on the frame) in lanes.
        self.kc = self._param("velocity", (*g.padded[:-1], nb), vector=w)
        self.amp = self._param("wavelet", self._amp.shape)
        self.traces = self._output("receivers", (self.shots, self.receivers))
        rows_axes = max(g.ndim - 1, 1)
        prof = {name: self._tree.field((rows_axes, max(g.padded))) for name in ("pa", "pb", "near")}
        prof.update({name: self._tree.field((nb,), vector=w) for name in ("pax", "pbx", "mx")})
        self.sg = self._tree.field((*g.padded[:-1], nb), vector=w)
        # g kc, the sponge-damped coefficient the adjoint gathers (kc itself for a PML).
        self.kg = (self._tree.field((*g.padded[:-1], nb), vector=w) if self.sponge
                   else self.kc)
        points = []
        for pos, wt in self._points:
            points.append((self._tree.field(pos.shape[:2], vector=g.ndim, dtype=ti.i32),
                           self._tree.field(wt.shape)))
        # Scratch of the hand-written adjoint: P_d per axis (nonzero in the PML only).
        self._pbar = tuple(self._tree.field((1, *s), vector=w) for s in self._strips)
        self._finalize()
        self._prof_fields, self._point_fields = prof, points
        real = np_real()
        self._upload_constants()
        self.sg.from_numpy(self._pack(self._damp).astype(real))
        self._f = _Bundle(
            u=self.u, ug=self.u.grad, psi=self.psi, psig=tuple(a.grad for a in self.psi),
            zeta=self.zeta, zetag=tuple(a.grad for a in self.zeta), kc=self.kc,
            kcg=self.kc.grad, amp=self.amp, ampg=self.amp.grad, traces=self.traces,
            tracesg=self.traces.grad, pbar=self._pbar, src_pos=points[0][0],
            src_w=points[0][1], rec_pos=points[1][0], rec_w=points[1][1],
            scale=self._scale, inv_h=self._inv_h, c1=self._c1, c2=self._c2, rows=self._rows,
            space_rows=self._space_rows, xs=self._xs, xs_near=self._xs_near, pm=self._pm,
            sg=self.sg, kg=self.kg, sponge=self.sponge, ndim=g.ndim, dtype=real_type(),
            shots=(0, self.shots), kcg_per_shot=False,
            W=w, serial=_serial_loops(int(np.prod(self.u.shape[1:])) * w), **prof)
        self.serial = self._f.serial
        self._pool_f: _Bundle | None = None
        self.set_param("velocity", self._velocity)
        self.set_param("wavelet", self._amp)

    def _upload_constants(self) -> None:
        real = np_real()
        for name, f in self._prof_fields.items():
            f.from_numpy(np.ascontiguousarray(self._profiles[name], dtype=real))
        for (pos, wt), (pos_f, w_f) in zip(self._points, self._point_fields, strict=True):
            pos_f.from_numpy(pos)
            w_f.from_numpy(wt.astype(real))

    # -- the velocity parameter, held as kc = dt^2 c^2 in lanes ----------------------
    def set_param(self, name: str, value: ArrayLike) -> None:
        """Replace a parameter; ``"velocity"`` is the padded grid ``[z, (y,) x]`` in m/s."""
        if name != "velocity":
            super().set_param(name, value)
            return
        arr = self._check_padded_velocity(value)
        self._velocity = arr.copy()
        kc = self._kc(arr)
        self.kc.from_numpy(self._pack(kc).astype(np_real()))
        if self.sponge:
            self.kg.from_numpy(self._pack(kc * self._damp).astype(np_real()))

    def parameters(self) -> dict[str, np.ndarray]:
        """Current parameters: ``"velocity"`` (padded grid, m/s) and ``"wavelet"``."""
        out = super().parameters()
        out["velocity"] = self._velocity.copy()
        return out

    def gradients(self) -> dict[str, np.ndarray]:
        """``d loss / d parameter``; ``"velocity"`` on the padded grid (see :meth:`fold`)."""
        out = super().gradients()
        out["velocity"] = self._velocity_gradient(out["velocity"])
        return out

    def wavefield(self, t: int) -> np.ndarray:
        """The pressure at time level ``t`` on the model grid, ``[shot, *model shape]``.

        Valid while ``x[t]`` is live, e.g. right after ``advance(t - 1)`` in a rollout.
        """
        return self._crop(self._unpack(self.u.to_numpy()[self._levels("u", t)[-1]]))

    def _levels_of(self, step: int) -> tuple[int, int, int, int, int]:
        return (self.level(step - 1, 2), self.level(step, 2), self.level(step + 1, 2),
                self.level(step), self.level(step + 1))

    def substeps(self, step: int) -> Sequence[Launch]:
        """One fused launch: PML memory, update, sources, and the receivers at ``step + 1``."""
        return ((wave_step, (self._f, *self._levels_of(step), step, 0)),)

    def advance(self, step: int) -> None:
        """One step: :func:`wave_steps` over one step when the loops are serial."""
        if self._f.serial and not self._validate:
            wave_steps(self._f, step, step + 1)
        else:
            super().advance(step)

    def advance_range(self, start: int, stop: int, saves: Mapping[int, int]) -> None:
        """Steps ``start … stop-1``: with serial loops, one launch between checkpoints.

        With parallel loops (or validation) one launch per step, as the default.
        """
        if not self._f.serial or self._validate:
            super().advance_range(start, stop, saves)
            return
        lo = start
        for t in sorted(saves):
            if t > lo:
                wave_steps(self._f, lo, t)
                lo = t
            self.save(t, saves[t])
        if stop > lo:
            wave_steps(self._f, lo, stop)

    def costate_fields(self) -> tuple[str, ...]:
        """The costate norm is that of the wavefield adjoint (both levels of ``u``).

        The PML memory adjoints live in the thin absorbing layer; leaving them out keeps
        the per-step norm to two reductions instead of ``2 + 2 ndim``.
        """
        return ("u",)

    def live_is_finite(self, step: int) -> bool:
        """Whether the newest wavefield level is finite (a blow-up shows there first)."""
        return math.isfinite(self._sumsq(self.u, self.level(step, 2)))

    def recompute(self, step: int) -> Sequence[Launch]:
        """The step as two flat launches (PML memory; update and sources) for autodiff.

        Taichi autodiff of the fused kernel's serial loops over x blocks is inexact with
        vector locals (PML terms off by 1e-5 in f64; measured); the flat launches run
        the same block functions as one parallel loop over (row, block) each, and their
        autodiff equals the hand adjoint to 1e-15. Their forward values equal the fused
        kernel's up to rounding.
        """
        levels = self._levels_of(step)
        return ((wave_step, (self._f, *levels, step, 1)), (wave_step, (self._f, *levels, step, 2)))

    def reverse_step(self, step: int) -> None:
        """Adjoint of :meth:`substeps`, the receivers at ``step + 1`` included.

        Hand-written gather adjoint (default) or Taichi autodiff of :meth:`recompute`.
        """
        if self.adjoint == "autodiff":
            record_traces.grad(self._f, self.level(step + 1, 2), step + 1)
            self._reverse_autodiff(step)
            return
        adjoint_step(self._f, *self._levels_of(step), step, step + 1)

    def _reverse_autodiff(self, step: int) -> None:
        if self.sponge:
            raise ValueError(_SPONGE_AUTODIFF)
        for name, f in self._states.items():
            zero_slot(f.grad, self._levels(name, step)[0])
        launches = self.recompute(step)
        self._run(launches)
        for kernel, args in reversed(launches):
            kernel.grad(*args)

    def reverse(self, step: int, slot: int | None, *, measure: bool) -> float:
        """See :meth:`Stepper.reverse`; the receivers at ``step + 1`` belong to the step.

        The hand adjoint also returns the costate norm from the same kernel.
        """
        if slot is not None:
            self.restore(step, slot)
        if self.adjoint == "autodiff":
            record_traces.grad(self._f, self.level(step + 1, 2), step + 1)
            norm = self._norm_grad(step + 1) if measure else math.nan
            self._reverse_autodiff(step)
            return norm
        sq = adjoint_step(self._f, *self._levels_of(step), step, step + 1)
        return math.sqrt(sq) if measure else math.nan

    def record(self, t: int) -> Sequence[Launch]:
        """Sample the receivers at time 0; step ``t - 1`` records time ``t >= 1`` itself."""
        if t == 0:
            return ((record_traces, (self._f, self.level(t, 2), t)),)
        return ()

    # -- checkpoints: one fused copy of a whole state ---------------------------------
    def allocate_checkpoints(self, slots: int) -> None:
        """See :meth:`TaichiStepper.allocate_checkpoints`."""
        super().allocate_checkpoints(slots)
        pool = self._pool
        if not pool:
            return  # no slots: a store outside the stepper keeps the states
        nd = self.geometry.ndim
        self._pool_f = _Bundle(**self._f.__dict__, pool_u=pool["u"],
                               pool_psi=tuple(pool[f"psi{d}"] for d in range(nd)),
                               pool_zeta=tuple(pool[f"zeta{d}"] for d in range(nd)))

    def save(self, step: int, slot: int) -> None:
        """Store the live ``x[step]`` in checkpoint ``slot`` (one launch)."""
        copy_state(self._pool_f, slot, self.level(step - 1, 2), self.level(step, 2),
                   self.level(step), True)

    def restore(self, step: int, slot: int) -> None:
        """Make ``x[step]`` from checkpoint ``slot`` live (one launch)."""
        copy_state(self._pool_f, slot, self.level(step - 1, 2), self.level(step, 2),
                   self.level(step), False)


