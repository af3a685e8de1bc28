"""The array engine (CPU default): every array a view into a process-wide arena."""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike

from diffsim._parallel import barrier_field, split
from diffsim._runtime import ensure_init, np_real
from diffsim._tape import Stepper
from diffsim.acoustic._arena import ArenaArrays, _arena
from diffsim.acoustic._setup import _AcousticSetup
from diffsim.acoustic.boundaries import Boundary, Width
from diffsim.acoustic.fields import FieldAcousticStepper
from diffsim.kernels.acoustic import (
    arena_arrays,
    arena_kernels,
)


class AcousticStepper(_AcousticSetup, ArenaArrays, Stepper):
    """Acoustic wave propagation of a batch of shots as a differentiable stepper.

    Args:
        velocity: ``[z, x]`` or ``[z, y, x]`` in m/s, finite and > 0.
        spacing: grid spacing in m, one value or one per axis.
        dt: time step in s; must satisfy the CFL limit (:func:`max_stable_dt`).
        wavelet: source time functions: ``[nt]`` (every source), ``[shot, nt]`` or
            ``[shot, source, nt]``.
        sources: ``[shot, ndim]`` or ``[shot, source, ndim]`` positions in m.
        receivers: ``[receiver, ndim]`` (every shot) or ``[shot, receiver, ndim]`` in m.
        order: spatial order, 2, 4, 6 or 8.
        pml_width: cells of absorbing layer, one int or one per face ``[z_lo, z_hi,
            (y_lo, y_hi,) x_lo, x_hi]`` (default 20), with a named ``boundary``; a
            boundary object carries its own width.
        free_surface: no PML on the top face (``z`` low); ``u = 0`` in the ghost rows
            above the first model row, which puts the zero-pressure surface one cell
            (``h``) above it. Matches the image-source solution to 2 % at order 4 and
            3 % at order 8 (zero ghost rows rather than an antisymmetric mirror).
        interpolation: ``"hicks"`` (Kaiser-windowed sinc, 8 cells an axis, accurate off
            the grid) or ``"nearest"`` (the nearest cell).
        pml_velocity, pml_frequency: ``CPML(velocity=, frequency=)`` for ``boundary="pml"``.
        adjoint: ``"hand"`` (gather kernels) or ``"autodiff"`` (Taichi autodiff).
        boundary: the absorbing faces: :class:`CPML` (default ``CPML(width=20)``) or
            :class:`Sponge` (Cerjan et al. 1985 damping: cheaper, no memory fields, but
            reflects more; see :data:`SPONGE_EDGE`); the names ``"pml"`` and ``"sponge"``
            (with ``pml_width``, ``pml_velocity``, ``pml_frequency``) mean the same.
        engine: ``"arrays"`` (the arena engine below), ``"fields"`` (a
            :class:`FieldAcousticStepper`: compiles for each new stepper) or ``"auto"``
            (arrays on the CPU with the hand adjoint, else fields).

    Two engines share the set-up and the block functions of
    :mod:`diffsim.kernels.acoustic`. On the CPU with the hand adjoint (the default) the
    vector arrays (wavefields, PML memory, their adjoints, coefficients) live in a
    process-wide arena (:class:`_Arena`, one Taichi field) and the checkpoints in a
    second one; the kernels take the arenas as templates and every offset and extent as
    run-time values, so they compile once per process for each order, dimension,
    precision, boundary and ratio of grid spacings (one compilation serves every square
    grid), and a new grid, spacing, shot count, receiver count or record length compiles
    nothing (unless it outgrows an arena, which then doubles and
    compiles once more). Each launch runs a whole range of forward or reverse steps
    as worker tasks on every thread that has work (:mod:`diffsim._parallel`). With ``engine="fields"``,
    ``adjoint="autodiff"`` or on a GPU the constructor returns a
    :class:`FieldAcousticStepper` (Taichi fields per stepper; it compiles for each new
    stepper; the autodiff oracle of the tests).

    Parameters (gradients): ``"velocity"`` (padded grid; see :meth:`velocity_gradient`)
    and ``"wavelet"`` ``[shot, source, nt]``. Output: ``"receivers"`` ``[nt, shot, receiver]``.
    """

    def __new__(cls, *args: Any, adjoint: str = "hand", engine: str = "auto",
                **kwargs: Any) -> AcousticStepper:
        """The array engine, or a :class:`FieldAcousticStepper` (see ``engine``)."""
        if engine not in ENGINES:
            raise ValueError(f"engine={engine!r}; choose one of {ENGINES}")
        if cls is AcousticStepper and _engine(engine, adjoint) == "fields":
            # a registered virtual subclass (see the end of this module)
            return cast(AcousticStepper, FieldAcousticStepper(*args, adjoint=adjoint, **kwargs))
        return super().__new__(cls)

    def __init__(
        self,
        velocity: np.ndarray,
        spacing: object,
        dt: float,
        wavelet: np.ndarray,
        sources: np.ndarray,
        receivers: np.ndarray,
        *,
        order: int = 8,
        pml_width: Width | None = None,
        free_surface: bool = False,
        interpolation: str = "hicks",
        adjoint: str = "hand",
        pml_velocity: float | None = None,
        pml_frequency: float | None = None,
        boundary: str | Boundary = "pml",
        engine: str = "auto",
    ) -> None:
        rt = ensure_init()
        self._setup(velocity, spacing, dt, wavelet, sources, receivers, order=order,
                    pml_width=pml_width, free_surface=free_surface,
                    interpolation=interpolation, adjoint=adjoint, pml_velocity=pml_velocity,
                    pml_frequency=pml_frequency, boundary=boundary)
        g = self.geometry
        real = np_real()
        w = self.lanes
        self._real = real
        self._kernels = arena_kernels(g.ndim, rt.precision, w)
        # one launch per range of steps, its shots and rows shared by worker tasks
        self._split = split(self.shots, int(np.prod(self._row_shape[1:])) * w)
        self._bar = barrier_field()
        self._norm_parts = self.shots * self._split.workers
        # Every vector array lives in the process arena: its shape (lanes last, not
        # listed) and its place there.
        grid = (*g.padded[:-1], self.blocks)
        shapes: dict[str, tuple[int, ...]] = {"u": (3, *self._row_shape),
                                              "ug": (3, *self._row_shape)}
        for name, levels in (("psi", 2), ("zeta", 2), ("psig", 2), ("zetag", 2), ("pbar", 1)):
            for d in range(g.ndim):
                shapes[f"{name}{d}"] = (levels, *self._strips[d])
        for name in ("kc", "kg", "sg"):
            shapes[name] = grid
        shapes["kcg"] = (self.shots, *grid)  # one kc gradient per shot, summed on reading
        for name in ("pax", "pbx", "mx"):
            shapes[name] = (self.blocks,)
        if not self.sponge:
            shapes.pop("kg")  # kg is kc itself
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._offset: dict[str, int] = {}
        self._arena = _arena(rt.precision, w)
        self._base = self._place(self._arena, shapes)
        weakref.finalize(self, self._arena.release, self._base)
        if not self.sponge:
            self._offset["kg"], self._shapes["kg"] = self._offset["kc"], grid
        self._pools = _arena(rt.precision, w, "pools")
        self._pool_region: int | None = None
        self._set_layout()
        self._fill("u", "ug", "kcg", *(f"{n}{d}" for n in ("psi", "zeta", "psig", "zetag", "pbar")
                                       for d in range(g.ndim)))
        self._write("sg", self._pack(self._damp))
        self._upload_constants()
        self.amp = np.zeros(self._amp.shape, dtype=real)
        self.ampg = np.zeros_like(self.amp)
        self.traces = np.zeros((self.steps + 1, self.shots, self.receivers), dtype=real)
        self.tracesg = np.zeros_like(self.traces)
        pm = [*self._pm, (0, 0, 0, 0), (0, 0, 0, 0)]
        # The kernels run in units of the first spacing: their compile-time inverse
        # spacings are ratios (all 1.0 on a square grid, so every square grid shares
        # one compilation), kc holds dt^2 c^2 / h_ref^2 and the PML memory is scaled
        # to match (psi by h_ref, zeta by h_ref^2; the wavefield is not).
        self._h_ref = g.spacing[0]
        self._geom = dict(xs=self._xs, xs_near=self._xs_near, pm0=pm[0], pm1=pm[1],
                          ih=tuple(self._h_ref / h for h in g.spacing), scale=self._scale)
        self._slots = 0
        self._pool_bases: list[int] = []
        weakref.finalize(self, self._release_pools, self._pools, self._pool_bases)
        self.norms = np.zeros(max(self.steps, 1) * self._norm_parts, dtype=np.float64)
        self.set_param("velocity", self._velocity)
        self.set_param("wavelet", self._amp)

    def _upload_constants(self) -> None:
        real = self._real
        self.prof = {k: np.ascontiguousarray(self._profiles[k], dtype=real)
                     for k in ("pa", "pb", "near")}
        for name in ("pax", "pbx", "mx"):
            self._write(name, self._profiles[name])
        (sp, sw), (rp, rw) = self._points
        self.src_pos, self.rec_pos = sp, rp
        self.src_w, self.rec_w = sw.astype(real), rw.astype(real)

    def _layout_arrays(self) -> tuple[tuple[str, int], ...]:
        return arena_arrays(self.geometry.ndim)

    # -- parameters -------------------------------------------------------------------
    def set_param(self, name: str, value: ArrayLike) -> None:
        """Replace ``"velocity"`` (padded grid ``[z, (y,) x]``, m/s) or ``"wavelet"``.

        No recompilation: the kernels read the new values at the next launch.
        """
        if name == "velocity":
            arr = self._check_padded_velocity(value)
            self._velocity = arr.copy()
            kc = self._kc(arr) / self._h_ref**2
            self._write("kc", self._pack(kc))
            if self.sponge:
                self._write("kg", self._pack(kc * self._damp))
        elif name == "wavelet":
            self.amp[...] = self._check_wavelet(value)
        else:
            raise ValueError(f"unknown parameter {name!r}; this stepper has ['velocity', "
                             "'wavelet']")

    def parameters(self) -> dict[str, np.ndarray]:
        """Current parameters: ``"velocity"`` (padded grid, m/s) and ``"wavelet"``."""
        return {"velocity": self._velocity.copy(), "wavelet": self.amp.copy()}

    def gradients(self) -> dict[str, np.ndarray]:
        """``d loss / d parameter``; ``"velocity"`` on the padded grid (see :meth:`fold`)."""
        kcg = self._read("kcg").astype(np.float64).sum(axis=0)
        return {"velocity": self._velocity_gradient(kcg) / self._h_ref**2,
                "wavelet": self.ampg.copy()}

    def outputs(self) -> dict[str, np.ndarray]:
        """``"receivers"``: the traces ``[nt, shot, receiver]`` (a copy)."""
        return {"receivers": self.traces.copy()}

    def wavefield(self, t: int) -> np.ndarray:
        """The pressure at time level ``t`` on the model grid, ``[shot, *model shape]``.

        Valid while ``x[t]`` is live, e.g. right after ``advance(t - 1)`` in a rollout.
        """
        return self._crop(self._unpack(self._read("u", t % 3)))

    # -- the kernels' arguments ---------------------------------------------------------
    def _launch_range(self, start: int, stop: int, saves: np.ndarray) -> None:
        p = self.prof
        g = self._geom
        self._kernels["forward"](
            self._arena.field, self._pool_field(), self._bar, self._layout, p["pa"], p["pb"],
            self.amp, self.traces, self.src_pos, self.src_w, self.rec_pos, self.rec_w, saves,
            g["xs"], g["pm0"], g["pm1"], g["ih"], g["scale"], start, stop, *self._split,
            self._c1, self._c2, self.sponge, self._pool_region is not None)

    def _launch_reverse(self, top: int, count: int, slots: np.ndarray) -> None:
        p = self.prof
        g = self._geom
        self._kernels["reverse"](
            self._arena.field, self._pool_field(), self._bar, self._layout, p["pa"], p["pb"],
            p["near"], self.ampg, self.tracesg, self.src_pos, self.src_w, self.rec_pos,
            self.rec_w, slots, self.norms, g["xs"], g["xs_near"], g["pm0"], g["pm1"], g["ih"],
            g["scale"], top, count, *self._split, self._c1, self._c2, self.sponge)

    # -- Stepper protocol ---------------------------------------------------------------
    @property
    def state_nbytes(self) -> int:
        """Bytes of one state: two wavefield levels and one level of each PML strip."""
        per = {name: int(np.prod(shape[1:])) for name, shape in self._shapes.items()}
        cells = 2 * per["u"] + sum(per[f"{n}{d}"] for n in ("psi", "zeta")
                                   for d in range(self.geometry.ndim))
        return cells * self.lanes * np.dtype(self._real).itemsize

    def allocate_checkpoints(self, slots: int) -> None:
        """Make room for ``slots`` stored states in the process's checkpoint arena."""
        if slots <= self._slots:
            return
        nd = self.geometry.ndim
        shapes = {"pool_u": (slots, 2, *self._shapes["u"][1:])}
        for name in ("psi", "zeta"):
            for d in range(nd):
                shapes[f"pool_{name}{d}"] = (slots, 1, *self._shapes[f"{name}{d}"][1:])
        self._place_pools(shapes)
        self._slots = slots

    def reset(self) -> None:
        """Zero the state; the traces at time 0 are zero (a zero wavefield)."""
        nd = self.geometry.ndim
        self._fill("u", *(f"{n}{d}" for n in ("psi", "zeta") for d in range(nd)))
        self.traces[0] = 0

    def advance(self, step: int) -> None:
        """Run step ``step`` and record the receivers at ``step + 1``."""
        self.advance_range(step, step + 1, {})

    def _state_levels(self, step: int) -> list[tuple[str, int, int]]:
        """``(array, ring level, checkpoint level)`` of every part of ``x[step]``."""
        nd = self.geometry.ndim
        return [("u", (step + 2) % 3, 0), ("u", step % 3, 1),
                *((f"{n}{d}", step % 2, 0) for n in ("psi", "zeta") for d in range(nd))]

    def save(self, step: int, slot: int) -> None:
        """Store the live ``x[step]`` in checkpoint ``slot`` (arena-to-arena copies)."""
        for name, level, j in self._state_levels(step):
            self._copy_level(name, level, slot, j, True)

    def restore(self, step: int, slot: int) -> None:
        """Make ``x[step]`` from checkpoint ``slot`` live."""
        for name, level, j in self._state_levels(step):
            self._copy_level(name, level, slot, j, False)

    def live_is_finite(self, step: int) -> bool:
        """Whether the newest wavefield level is finite (a blow-up shows there first)."""
        return bool(np.isfinite(self._read("u", step % 3)).all())

    def state_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """``u`` (two levels: ``u[t-1]``, ``u[t]``) and one level of each PML array."""
        spec: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        for name, _, j in self._state_levels(0):
            shape = self._shapes[name][1:]
            spec[name] = ((j + 1 if name == "u" else 1, *shape, self.lanes), np.dtype(self._real))
        return spec

    def export_state(self, step: int, out: Mapping[str, np.ndarray]) -> None:
        """Copy the live ``x[step]`` into ``out`` (lanes last)."""
        for name, level, j in self._state_levels(step):
            self._read(name, level, out=out[name][j])

    def import_state(self, step: int, values: Mapping[str, np.ndarray]) -> None:
        """Write ``values`` into the ring levels of ``x[step]``."""
        for name, level, j in self._state_levels(step):
            self._write(name, values[name][j], level)

    def begin_reverse(self, cotangents: Mapping[str, np.ndarray]) -> None:
        """Zero every adjoint and take ``d loss / d traces`` ``[nt, shot, receiver]``."""
        unknown = set(cotangents) - {"receivers"}
        if unknown:
            raise ValueError(f"cotangents for unknown outputs {sorted(unknown)}; this stepper's "
                             "outputs are ['receivers']")
        nd = self.geometry.ndim
        self._fill("ug", "kcg", *(f"{n}{d}" for n in ("psig", "zetag", "pbar")
                                  for d in range(nd)))
        self.ampg.fill(0)
        self.tracesg.fill(0)
        if "receivers" in cotangents:
            arr = np.asarray(cotangents["receivers"])
            if arr.shape != self.traces.shape:
                raise ValueError(f"cotangent for output 'receivers' has shape {arr.shape}; "
                                 f"expected {self.traces.shape} (the shape of the recorded output)")
            if not np.all(np.isfinite(arr)):
                raise ValueError("cotangent for output 'receivers' contains NaN or Inf")
            self.tracesg[...] = arr

    def reverse(self, step: int, slot: int | None, *, measure: bool) -> float:
        """Reverse step ``step`` (the receivers at ``step + 1`` included)."""
        return self.reverse_range([step], [slot], measure=measure)[0]

    def finish_reverse(self, *, measure: bool) -> float:
        """Add the receivers' adjoint at time 0; return ``|lambda[0]|``."""
        self._kernels["receiver_adjoint"](self._arena.field, self._layout, self.tracesg,
                                          self.rec_pos, self.rec_w, 0, 0)
        if not measure:
            return math.nan
        return math.sqrt(sum(float(np.sum(np.square(self._read("ug", lvl), dtype=np.float64)))
                             for lvl in (2, 0)))

    def destroy(self) -> None:
        """Give the stepper's arena space back and drop its checkpoints; it is unusable after."""
        self._arena.release(self._base)
        self._release_pools(self._pools, self._pool_bases)
        self._pool_bases.clear()
        self._pool_region = None
        self._slots = 0


AcousticStepper.register(FieldAcousticStepper)


#: Engines of :class:`AcousticStepper`.
ENGINES = ("auto", "arrays", "fields")


def _engine(engine: str, adjoint: str) -> str:
    """``"arrays"`` or ``"fields"`` for an :class:`AcousticStepper` request."""
    if adjoint != "hand" or ensure_init().arch != "cpu" or engine == "fields":
        return "fields"
    return "arrays"


