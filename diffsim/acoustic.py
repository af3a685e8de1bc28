"""Constant-density acoustic waves in 2D and 3D with adjoint-state gradients.

Equation: ``u_tt = c(x)^2 lap(u) + sum_sources s(t) delta(x - x_s)``, leapfrog in time,
central differences of order 2, 4, 6 or 8 in space, convolutional PML (default 20
cells a face) or a free surface on the top face. Arrays are ``[z, x]`` or ``[z, y, x]``
(slowest first), SI units: velocity m/s, spacing m, dt s, positions m from the first
grid point, frequencies Hz.

Time convention: wavelet sample ``n`` is the source term at ``t_n = n dt``; trace
sample ``n`` is the wavefield at ``t_n`` (so sample 0 is zero). ``nt`` samples take
``nt - 1`` steps.
"""

from __future__ import annotations

import math
import os
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import taichi as ti

from diffsim._fields import FieldTree
from diffsim._runtime import ensure_init, np_real
from diffsim._runtime import real as real_type
from diffsim._simulation import Simulation as _Simulation
from diffsim._tape import Launch, Stepper, TaichiStepper, TapeReport
from diffsim._validate import as_array
from diffsim.checkpoint import Schedule
from diffsim.kernels.common import zero_slot
from diffsim.kernels.wave import (
    adjoint_step,
    arena_arrays,
    arena_kernels,
    copy_state,
    record_traces,
    wave_step,
    wave_steps,
)
from diffsim.losses import L2

__all__ = [
    "AcousticStepper",
    "FieldAcousticStepper",
    "MisfitGradient",
    "Simulation",
    "dominant_frequency",
    "max_stable_dt",
    "misfit_gradient",
    "ricker",
    "simulate",
    "stepper_misfit_gradient",
]

#: Central-difference coefficients: order -> (first derivative c1[1..], second c2[0..]).
FD_COEFFICIENTS: dict[int, tuple[tuple[float, ...], tuple[float, ...]]] = {
    2: ((1 / 2,), (-2.0, 1.0)),
    4: ((2 / 3, -1 / 12), (-5 / 2, 4 / 3, -1 / 12)),
    6: ((3 / 4, -3 / 20, 1 / 60), (-49 / 18, 3 / 2, -3 / 20, 1 / 90)),
    8: ((4 / 5, -1 / 5, 4 / 105, -1 / 280), (-205 / 72, 8 / 5, -1 / 5, 8 / 315, -1 / 560)),
}

#: Hicks (2002) Kaiser-windowed sinc: half-width 4 cells, Kaiser parameter b = 6.31.
HICKS_HALF_WIDTH = 4
HICKS_B = 6.31
PML_REFLECTION = 1e-3  # target reflection coefficient of the PML profile
#: Cerjan sponge: ``g = exp(-(SPONGE_A depth / width)^2)``; the outermost cell keeps
#: ``SPONGE_EDGE`` of the wave per step (Cerjan et al. 1985: 0.015 a cell over 20 cells).
SPONGE_A = 0.3
SPONGE_EDGE = math.exp(-(SPONGE_A**2))
#: x cells per SIMD vector (lanes) by precision: one AVX-512 register of f32 or f64.
LANES = {"f32": 16, "f64": 8}


def ricker(freq: float, dt: float, nt: int, peak_time: float | None = None) -> np.ndarray:
    """Ricker wavelet ``(1 - 2 (pi f tau)^2) exp(-(pi f tau)^2)``, ``tau = t - peak_time``.

    Args:
        freq: dominant (peak) frequency in Hz, > 0.
        dt: sample interval in s, > 0.
        nt: number of samples, >= 1.
        peak_time: time of the peak in s; default ``1.5 / freq``.

    Returns:
        float64 array ``[nt]``, e.g. ``[1000]``, unit amplitude at the peak.
    """
    if not (np.isfinite(freq) and freq > 0):
        raise ValueError(f"freq={freq!r} must be a positive frequency in Hz")
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt={dt!r} must be a positive time step in s")
    if int(nt) != nt or nt < 1:
        raise ValueError(f"nt={nt!r} must be a positive integer")
    peak = 1.5 / freq if peak_time is None else float(peak_time)
    tau = np.arange(int(nt)) * dt - peak
    arg = (np.pi * freq * tau) ** 2
    return (1.0 - 2.0 * arg) * np.exp(-arg)


def _stencil_eigen(order: int) -> float:
    """Largest eigenvalue of ``-D2`` (no 1/h^2): the symbol at the Nyquist wavenumber."""
    c2 = FD_COEFFICIENTS[order][1]
    return -(c2[0] + 2.0 * sum(c * (-1) ** k for k, c in enumerate(c2[1:], start=1)))


def max_stable_dt(max_velocity: float, spacing: Sequence[float], order: int) -> float:
    """Largest stable leapfrog time step for the interior stencil, in s.

    ``dt_max = 2 / (c_max sqrt(sum_d lambda / h_d^2))`` with ``lambda`` the largest
    eigenvalue of the 1D second-difference stencil of this order.
    """
    lam = _stencil_eigen(order)
    return 2.0 / (max_velocity * math.sqrt(sum(lam / h**2 for h in spacing)))


def dominant_frequency(wavelet: np.ndarray, dt: float) -> float:
    """Frequency (Hz) of the peak of the summed amplitude spectrum of ``[..., nt]`` wavelets.

    The spectrum is zero-padded to at least 4096 samples so short wavelets resolve too.
    """
    amp = np.asarray(wavelet, dtype=np.float64)
    amp = amp.reshape(-1, amp.shape[-1])
    n = max(4096, 4 * amp.shape[-1])
    spectrum = np.abs(np.fft.rfft(amp, n=n, axis=-1)).sum(axis=0)
    return float(np.fft.rfftfreq(n, dt)[int(np.argmax(spectrum))])


@ti.data_oriented
class _Bundle:
    """Fields and compile-time constants handed to a kernel as one template argument.

    Taichi keys a kernel instance on every template argument at each launch; one
    argument instead of thirty saves tens of microseconds a launch.
    """

    def __init__(self, **items: object) -> None:
        self.__dict__.update(items)


def _hicks_weights(frac: float, half: int) -> tuple[int, np.ndarray]:
    """First cell offset and the 2*half weights for a point ``frac`` cells past floor."""
    base = math.floor(frac)
    cells = np.arange(base - half + 1, base + half + 1)
    x = cells - frac
    window = np.zeros_like(x)
    inside = np.abs(x) <= half
    window[inside] = np.i0(HICKS_B * np.sqrt(1.0 - (x[inside] / half) ** 2)) / np.i0(HICKS_B)
    return int(cells[0]), np.sinc(x) * window


@dataclass(frozen=True)
class _Geometry:
    ndim: int
    shape: tuple[int, ...]
    padded: tuple[int, ...]
    pad_lo: tuple[int, ...]
    pml: tuple[tuple[int, int], ...]
    spacing: tuple[float, ...]
    halo: int


def _as_spacing(spacing: object, ndim: int) -> tuple[float, ...]:
    arr = np.atleast_1d(np.asarray(spacing, dtype=np.float64))
    if arr.size == 1:
        arr = np.repeat(arr, ndim)
    if arr.shape != (ndim,) or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"spacing={spacing!r} must be a positive number of metres or one per "
                         f"axis ({ndim} values)")
    return tuple(float(h) for h in arr)


def _as_pml(pml_width: object, ndim: int, free_surface: bool) -> tuple[tuple[int, int], ...]:
    widths = np.atleast_1d(np.asarray(pml_width))
    if widths.size == 1:
        widths = np.repeat(widths, 2 * ndim)
    if widths.shape != (2 * ndim,) or np.any(widths < 0) or np.any(widths != np.round(widths)):
        raise ValueError(f"pml_width={pml_width!r} must be a non-negative int or {2 * ndim} ints "
                         "(low and high face of each axis, in array order)")
    faces = [(int(widths[2 * d]), int(widths[2 * d + 1])) for d in range(ndim)]
    if free_surface:
        faces[0] = (0, faces[0][1])
    return tuple(faces)


def _as_points(name: str, value: object, shots: int | None, ndim: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == ndim:
        arr = arr[:, None, :] if name == "sources" else arr[None, :, :]
    if arr.ndim != 3 or arr.shape[2] != ndim:
        raise ValueError(f"{name} has shape {np.shape(value)}; expected [shot, {ndim}] or "
                         f"[shot, n, {ndim}] (sources) / [n, {ndim}] or [shot, n, {ndim}] "
                         "(receivers), positions in metres")
    if shots is not None and arr.shape[0] == 1 and shots > 1:
        arr = np.repeat(arr, shots, axis=0)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contain NaN or Inf")
    return arr


def _broadcast_wavelet(wavelet: object, shots: int, sources: int) -> np.ndarray:
    """``[nt]``, ``[shot, nt]`` or ``[shot, source, nt]`` as a float64 ``[shot, source, nt]`` view."""
    amp = np.asarray(wavelet, dtype=np.float64)
    if amp.ndim == 1:
        amp = np.broadcast_to(amp, (shots, sources, amp.size))
    elif amp.ndim == 2:
        amp = np.broadcast_to(amp[:, None, :], (amp.shape[0], sources, amp.shape[1]))
    if amp.ndim != 3 or amp.shape[:2] != (shots, sources):
        raise ValueError(f"wavelet has shape {np.shape(wavelet)}; expected [nt], [shot, nt] or "
                         f"[shot, source, nt] with {shots} shots and {sources} sources")
    if not np.all(np.isfinite(amp)):
        raise ValueError("wavelet contains NaN or Inf")
    return amp


class _AcousticSetup:
    """Validation, geometry, lane layout, profiles and stencils shared by both engines.

    :meth:`_setup` checks the arguments and computes every constant array as NumPy
    (float64; positions int32); an engine then places them in its own storage.
    """

    def _setup(self, velocity: np.ndarray, spacing: object, dt: float, wavelet: np.ndarray,
               sources: np.ndarray, receivers: np.ndarray, *, order: int = 8,
               pml_width: object = 20, free_surface: bool = False,
               interpolation: str = "hicks", adjoint: str = "hand",
               pml_velocity: float | None = None, pml_frequency: float | None = None,
               boundary: str = "pml") -> None:
        vel = np.asarray(velocity, dtype=np.float64)
        if vel.ndim not in (2, 3):
            raise ValueError(f"velocity must be [z, x] or [z, y, x]; got shape {vel.shape}")
        ndim = vel.ndim
        if order not in FD_COEFFICIENTS:
            raise ValueError(f"order={order!r} is not supported; choose 2, 4, 6 or 8")
        if adjoint not in ("hand", "autodiff"):
            raise ValueError(f"adjoint={adjoint!r}; choose 'hand' (gather kernels) or 'autodiff'")
        if boundary not in ("pml", "sponge"):
            raise ValueError(f"boundary={boundary!r}; choose 'pml' (convolutional PML) or "
                             "'sponge' (Cerjan damping)")
        if boundary == "sponge" and adjoint == "autodiff":
            raise ValueError(_SPONGE_AUTODIFF)
        if interpolation not in ("hicks", "nearest"):
            raise ValueError(f"interpolation={interpolation!r}; choose 'hicks' or 'nearest'")
        _check_velocity(vel)
        h = _as_spacing(spacing, ndim)
        if not (isinstance(dt, (int, float)) and np.isfinite(dt) and dt > 0):
            raise ValueError(f"dt={dt!r} must be a positive time step in s")
        _check_cfl(dt, float(vel.max()), h, order)
        src = _as_points("sources", sources, None, ndim)
        shots = src.shape[0]
        rec = _as_points("receivers", receivers, shots, ndim)
        if rec.shape[0] != shots:
            raise ValueError(f"receivers are given for {rec.shape[0]} shots but sources for "
                             f"{shots}")
        amp = _broadcast_wavelet(wavelet, shots, src.shape[1])
        nt = amp.shape[2]
        if nt < 2:
            raise ValueError(f"the wavelet has {nt} samples; at least 2 are needed")
        pml = _as_pml(pml_width, ndim, free_surface)
        halo = order // 2
        for name, pts in (("sources", src), ("receivers", rec)):
            for d in range(ndim):
                extent = (vel.shape[d] - 1) * h[d]
                lo, hi = pts[..., d].min(), pts[..., d].max()
                if lo < 0 or hi > extent:
                    raise ValueError(
                        f"{name} lie outside the grid on axis {d}: positions from {lo:.6g} to "
                        f"{hi:.6g} m, the grid spans 0 to {extent:.6g} m"
                    )
        for name, value in (("pml_velocity", pml_velocity), ("pml_frequency", pml_frequency)):
            if value is not None and not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r} must be a positive number or None")
        pad_lo = tuple(halo + pml[d][0] for d in range(ndim))
        padded = tuple(vel.shape[d] + 2 * halo + pml[d][0] + pml[d][1] for d in range(ndim))
        self.geometry = _Geometry(ndim, vel.shape, padded, pad_lo, pml, h, halo)
        f_dom = dominant_frequency(amp, dt)
        self._check_resolution(vel, h, f_dom)
        self.steps = nt - 1
        self.dt = float(dt)
        self.order = order
        self.shots = shots
        self.receivers = rec.shape[1]
        self.interpolation = interpolation
        self.adjoint = adjoint
        self.boundary = boundary
        layers = pml
        if boundary == "sponge":  # the layers damp; the PML machinery is switched off
            pml = tuple((0, 0) for _ in range(ndim))
        self._c1, self._c2 = FD_COEFFICIENTS[order]
        self._inv_h = tuple(1.0 / x for x in h)
        # Lane layout: x packed into vectors of W cells, cell x in block (x + W) // W;
        # blocks 0 and nb - 1 hold no cells (see diffsim.kernels.wave).
        w = LANES[ensure_init().precision]
        nx = padded[-1]
        nb = (nx + w - 1) // w + 2
        self.lanes, self.blocks = w, nb
        # Rows the stencil updates: every row axis but the frame of halo cells.
        self._space_rows = tuple((halo, n - halo) for n in padded[:-1])
        self._rows = ((0, shots), *self._space_rows)
        # x-PML strip: blocks [1, xa) and [xb, nb - 1) overlap the low and high x-PML.
        lo_w, hi_w = pml[-1]
        xa = (halo + lo_w - 1 + w) // w + 1 if lo_w else 1
        xb = (nx - halo - hi_w + w) // w if hi_w else nb - 1
        if xa > xb:
            xa = xb = nb - 1
        self._xs = (xa, xb, nb, (xa - 1) + (nb - 1 - xb))
        # Pass B of the adjoint gathers from the PML within the stencil radius (< W).
        na = xa + 1 if xa > 1 else 1
        nz = xb - 1 if xb < nb - 1 else nb - 1
        if na > nz:
            na = nz = nb - 1
        self._xs_near = (na, nz, nb, (na - 1) + (nb - 1 - nz))
        x_strip = max(self._xs[3], 1)
        row_shape = (shots, *padded[:-1])
        self._row_shape = (*row_shape, nb)
        # PML memory lives in strips: along a row axis d only its PML rows are stored,
        # along x only the blocks overlapping the x-PML.
        self._pm = tuple((halo, pml[d][0], padded[d] - halo - pml[d][1], pml[d][1])
                         for d in range(ndim - 1))
        self._strips = tuple(
            (shots, *[max(pml[d][0] + pml[d][1], 1) if k == d else padded[k]
                      for k in range(ndim - 1)], nb)
            for d in range(ndim - 1)) + ((*row_shape, x_strip),)
        self._amp = np.ascontiguousarray(amp)
        self._stencil = 2 * HICKS_HALF_WIDTH if interpolation == "hicks" else 1
        self._points = tuple(self._point_weights(pts, self._stencil) for pts in (src, rec))
        # kc is zero on the frame and on the lanes past the grid's end.
        frame = np.zeros(padded)
        frame[tuple(slice(halo, n - halo) for n in padded)] = 1.0
        self._frame = frame
        self._cell = float(np.prod(h))
        self._scale = self.dt**2 / self._cell
        self._profiles = self._pml_profiles(pml, pml_velocity or float(vel.max()),
                                            pml_frequency or f_dom or 1.0 / (nt * dt), dt)
        self._damp = self._sponge(layers if boundary == "sponge" else None)
        self._velocity = self.pad(vel)

    def _upload_constants(self) -> None:
        """Place the PML profiles and the source/receiver stencils in the engine's storage."""
        raise NotImplementedError

    # -- set-up helpers -------------------------------------------------------------
    @staticmethod
    def _check_resolution(vel: np.ndarray, h: tuple[float, ...], f_dom: float) -> None:
        if f_dom > 0:
            ppw = float(vel.min()) / (f_dom * max(h))
            if ppw < 6:
                warnings.warn(
                    f"only {ppw:.2f} cells per wavelength at the wavelet's dominant frequency "
                    f"{f_dom:.3g} Hz (min velocity {vel.min():.6g} m/s, spacing {max(h):.6g} m); "
                    "numerical dispersion will distort the waveforms: use a finer grid or a "
                    "lower frequency (>= 6 cells per wavelength)",
                    stacklevel=4,
                )

    def _pml_profiles(self, pml: tuple[tuple[int, int], ...], c_max: float, f_dom: float,
                      dt: float) -> dict[str, np.ndarray]:
        """C-PML profiles for velocity ``c_max`` and frequency ``f_dom``, as arrays.

        ``pa, pb, near`` ``[row axes, max padded]`` and the x profiles ``pax, pbx, mx`` in
        lanes ``[nb, W]``. Both ``a`` and ``b`` are zero outside the layer, so the PML
        memory stays zero there.
        """
        g = self.geometry
        a = np.zeros((g.ndim, max(g.padded)))
        b = np.zeros((g.ndim, max(g.padded)))
        for d in range(g.ndim):
            lo_w, hi_w = pml[d]
            for i in range(g.padded[d]):
                depth = 0.0
                if lo_w and g.halo <= i < g.halo + lo_w:
                    depth = (g.halo + lo_w - i) / lo_w
                    width = lo_w
                elif hi_w and g.padded[d] - g.halo - hi_w <= i < g.padded[d] - g.halo:
                    depth = (i - (g.padded[d] - g.halo - hi_w) + 1) / hi_w
                    width = hi_w
                if depth > 0:
                    length = width * g.spacing[d]
                    d0 = 3.0 * c_max * math.log(1.0 / PML_REFLECTION) / (2.0 * length)
                    damp = d0 * depth**2
                    alpha = math.pi * f_dom * (1.0 - depth)
                    bb = math.exp(-(damp + alpha) * dt)
                    a[d, i] = damp / (damp + alpha) * (bb - 1.0)
                    b[d, i] = bb
        rows = max(g.ndim - 1, 1)
        out = {"pa": np.zeros((rows, a.shape[1])), "pb": np.zeros((rows, a.shape[1])),
               "near": np.zeros((rows, a.shape[1]))}
        if g.ndim > 1:
            out["pa"], out["pb"] = a[:rows], b[:rows]
            near = np.zeros((rows, a.shape[1]))
            for shift in range(-g.halo, g.halo + 1):
                near = np.maximum(near, np.roll(a[:rows] != 0, shift, axis=1))
            out["near"] = near
        nx = g.padded[-1]
        out["pax"] = self._pack(a[-1, :nx])
        out["pbx"] = self._pack(b[-1, :nx])
        out["mx"] = self._pack((a[-1, :nx] != 0).astype(np.float64))
        return out

    def _sponge(self, layers: tuple[tuple[int, int], ...] | None) -> np.ndarray:
        """Cerjan damping ``g = prod_d exp(-(a_d depth_d)^2)`` in the layers (1 elsewhere)."""
        g = self.geometry
        damp = np.ones(g.padded)
        for d in range(g.ndim if layers is not None else 0):
            prof = np.ones(g.padded[d])
            for width, cells in ((layers[d][0], range(g.halo, g.halo + layers[d][0])),
                                 (layers[d][1], range(g.padded[d] - g.halo - layers[d][1],
                                                      g.padded[d] - g.halo))):
                for i in cells:
                    depth = (g.halo + width - i if i < g.halo + width
                             else i - (g.padded[d] - g.halo - width) + 1)
                    prof[i] = math.exp(-(SPONGE_A / width * depth) ** 2)
            shape = [1] * g.ndim
            shape[d] = g.padded[d]
            damp = damp * prof.reshape(shape)
        return damp

    def _pack(self, arr: np.ndarray) -> np.ndarray:
        """``[..., x]`` (padded grid) to lanes ``[..., block, lane]``; other lanes zero."""
        w, nb = self.lanes, self.blocks
        out = np.zeros((*arr.shape[:-1], nb * w))
        out[..., w:w + arr.shape[-1]] = arr
        return out.reshape(*arr.shape[:-1], nb, w)

    def _unpack(self, lanes: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`_pack`: ``[..., block, lane]`` to ``[..., x]`` (float64)."""
        w = self.lanes
        flat = np.asarray(lanes, dtype=np.float64).reshape(*lanes.shape[:-2], -1)
        return flat[..., w:w + self.geometry.padded[-1]]

    def _point_weights(self, pts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        g = self.geometry
        pos = np.zeros((*pts.shape[:2], g.ndim), dtype=np.int32)
        w = np.zeros((*pts.shape[:2], g.ndim, k))
        for s in range(pts.shape[0]):
            for n in range(pts.shape[1]):
                for d in range(g.ndim):
                    frac = pts[s, n, d] / g.spacing[d] + g.pad_lo[d]
                    if k == 1:
                        pos[s, n, d] = int(round(frac))
                        w[s, n, d, 0] = 1.0
                        continue
                    first, weights = _hicks_weights(frac, k // 2)
                    cells = first + np.arange(k)
                    # Cells the stencil never updates (the frame; above a free surface) get
                    # no weight.
                    weights[(cells < g.halo) | (cells >= g.padded[d] - g.halo)] = 0.0
                    pos[s, n, d] = first
                    w[s, n, d] = weights
        return pos, w

    def _kc(self, padded_velocity: np.ndarray) -> np.ndarray:
        """``dt^2 c^2`` on the padded grid, zero on the frame (float64, not packed)."""
        return self.dt**2 * padded_velocity * padded_velocity * self._frame

    def _check_padded_velocity(self, value: object) -> np.ndarray:
        arr = as_array("parameter 'velocity'", value, self.geometry.padded, positive=True)
        _check_cfl(self.dt, float(arr.max()), self.geometry.spacing, self.order)
        return arr

    def _check_wavelet(self, value: object) -> np.ndarray:
        return as_array("parameter 'wavelet'", value, self._amp.shape)

    def pad(self, model: np.ndarray) -> np.ndarray:
        """Extend a model-grid array into the PML and frame by edge replication."""
        g = self.geometry
        widths = [(g.pad_lo[d], g.padded[d] - g.shape[d] - g.pad_lo[d]) for d in range(g.ndim)]
        return np.pad(np.asarray(model, dtype=np.float64), widths, mode="edge")

    def fold(self, padded: np.ndarray) -> np.ndarray:
        """Adjoint of :meth:`pad`: sum the padding back onto the model's edge cells."""
        g = self.geometry
        out = np.asarray(padded, dtype=np.float64)
        for d in range(g.ndim):
            lo = g.pad_lo[d]
            hi = lo + g.shape[d]
            out = np.moveaxis(out, d, 0)
            core = out[lo:hi].copy()
            core[0] += out[:lo].sum(axis=0)
            core[-1] += out[hi:].sum(axis=0)
            out = np.moveaxis(core, 0, d)
        return out

    def set_velocity(self, velocity: np.ndarray) -> None:
        """Replace the velocity model (model grid, m/s) without recompiling."""
        vel = np.asarray(velocity, dtype=np.float64)
        if vel.shape != self.geometry.shape:
            raise ValueError(f"velocity has shape {vel.shape}; this stepper's grid is "
                             f"{self.geometry.shape}")
        _check_velocity(vel)
        _check_cfl(self.dt, float(vel.max()), self.geometry.spacing, self.order)
        self.set_param("velocity", self.pad(vel))

    def _crop(self, padded: np.ndarray) -> np.ndarray:
        g = self.geometry
        return padded[(slice(None), *(slice(g.pad_lo[d], g.pad_lo[d] + g.shape[d])
                                      for d in range(g.ndim)))]

    def velocity_gradient(self) -> np.ndarray:
        """``d loss / d velocity`` on the model grid (after a backward sweep)."""
        return self.fold(self.gradients()["velocity"])

    def _velocity_gradient(self, kc_grad: np.ndarray) -> np.ndarray:
        """``d loss / d velocity`` (padded grid) from ``d loss / d kc`` in lanes."""
        return self._unpack(kc_grad) * (2.0 * self.dt**2) * self._velocity * self._frame

    def traces_array(self) -> np.ndarray:
        """Recorded traces ``[shot, receiver, nt]``."""
        return np.ascontiguousarray(np.moveaxis(self.outputs()["receivers"], 0, -1))


class AcousticStepper(_AcousticSetup, Stepper):
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
        pml_width: cells of PML, one int or one per face ``[z_lo, z_hi, (y_lo, y_hi,)
            x_lo, x_hi]``.
        free_surface: no PML on the top face (``z`` low); ``u = 0`` in the ghost rows
            above the first model row, which puts the zero-pressure surface one cell
            (``h``) above it. Matches the image-source solution to 2 % at order 4 and
            3 % at order 8 (zero ghost rows rather than an antisymmetric mirror).
        interpolation: ``"hicks"`` (Kaiser-windowed sinc, 8 cells an axis, accurate off
            the grid) or ``"nearest"`` (the nearest cell).
        pml_velocity: velocity in m/s the PML damping is scaled to (default: the model's
            maximum). Fix it, with ``pml_frequency``, when one stepper must behave the same
            whatever model and wavelet it was built with (inversions, resumable runs).
        pml_frequency: frequency in Hz the PML's complex shift is tuned to (default: the
            wavelet's dominant frequency).
        adjoint: ``"hand"`` (gather kernels) or ``"autodiff"`` (Taichi autodiff).
        boundary: ``"pml"`` (convolutional PML) or ``"sponge"`` (Cerjan et al. 1985
            damping over the same ``pml_width`` cells: cheaper, no memory fields, but
            reflects more; see :data:`SPONGE_EDGE`).
        engine: ``"arrays"`` (the arena engine below), ``"fields"`` (a
            :class:`FieldAcousticStepper`: compiles for each new stepper) or ``"auto"``
            (arrays on the CPU with the hand adjoint, else fields).

    Two engines share the set-up and the block functions of
    :mod:`diffsim.kernels.wave`. On the CPU with the hand adjoint (the default) the
    vector arrays (wavefields, PML memory, their adjoints, coefficients) live in a
    process-wide arena (:class:`_Arena`, one Taichi field) and the checkpoints in a
    second one; the kernels take the arenas as templates and every offset and extent as
    run-time values, so they compile once per process for each order, dimension,
    precision, boundary and ratio of grid spacings (one compilation serves every square
    grid), and a new grid, spacing, shot count, receiver count or record length compiles
    nothing (unless it outgrows an arena, which then doubles and
    compiles once more). Each launch runs a whole range of forward or reverse steps
    (serial loops) or one step with Taichi's parallel loops (large grids on several
    threads, see :func:`_serial_loops`). With ``engine="fields"``,
    ``adjoint="autodiff"`` or on a GPU the constructor returns a
    :class:`FieldAcousticStepper` (Taichi fields per stepper; it compiles for each new
    stepper; the autodiff oracle of the tests).

    Parameters (gradients): ``"velocity"`` (padded grid; see :meth:`velocity_gradient`)
    and ``"wavelet"`` ``[shot, source, nt]``. Output: ``"receivers"`` ``[nt, shot, receiver]``.
    """

    def __new__(cls, *args: object, adjoint: str = "hand", engine: str = "auto",
                **kwargs: object) -> object:
        """The array engine, or a :class:`FieldAcousticStepper` (see ``engine``)."""
        if engine not in ENGINES:
            raise ValueError(f"engine={engine!r}; choose one of {ENGINES}")
        if cls is AcousticStepper and _engine(engine, adjoint) == "fields":
            return FieldAcousticStepper(*args, adjoint=adjoint, **kwargs)
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
        pml_width: object = 20,
        free_surface: bool = False,
        interpolation: str = "hicks",
        adjoint: str = "hand",
        pml_velocity: float | None = None,
        pml_frequency: float | None = None,
        boundary: str = "pml",
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
        self.serial = _serial_loops(int(np.prod(self._row_shape)) * w,
                                    ARENA_SERIAL_CELL_THREADS)
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
        if boundary != "sponge":
            shapes.pop("kg")  # kg is kc itself
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._offset: dict[str, int] = {}
        self._arena = _arena(rt.precision, w)
        self._base = self._place(self._arena, shapes)
        weakref.finalize(self, self._arena.release, self._base)
        if boundary != "sponge":
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
        self.norms = np.zeros(max(self.steps, 1) * self.shots, dtype=np.float64)
        self.set_param("velocity", self._velocity)
        self.set_param("wavelet", self._amp)

    # -- the arena: reads and writes of whole arrays or of one level ---------------------
    def _set_layout(self) -> None:
        """The layout vector of the kernels: offset and extents of every arena array."""
        layout = []
        for name, axes in arena_arrays(self.geometry.ndim):
            shape = self._shapes.get(name, (1,) * axes)
            layout += [self._offset.get(name, 0), *shape]
            assert len(shape) == axes
        self._layout = np.array(layout, dtype=np.int32)

    def _place(self, arena: _Arena, shapes: dict[str, tuple[int, ...]]) -> int:
        """Take one region of ``arena`` for ``shapes`` (in order); return its start."""
        sizes = {name: int(np.prod(shape)) for name, shape in shapes.items()}
        at = base = arena.allocate(sum(sizes.values()))
        for name, size in sizes.items():
            self._offset[name] = at
            at += size
        self._shapes.update(shapes)
        return base

    def _span(self, name: str, level: int | None) -> tuple[int, tuple[int, ...]]:
        shape = self._shapes[name]
        if level is None:
            return self._offset[name], shape
        per = int(np.prod(shape[1:]))
        return self._offset[name] + level * per, shape[1:]

    def _read(self, name: str, level: int | None = None, out: np.ndarray | None = None
              ) -> np.ndarray:
        """Array ``name`` (or one level of it) as NumPy ``[*shape, lanes]``."""
        offset, shape = self._span(name, level)
        if out is None:
            out = np.empty((*shape, self.lanes), dtype=self._real)
        self._kernels["read"](self._arena.field, offset, out.reshape(-1, self.lanes))
        return out

    def _write(self, name: str, value: np.ndarray, level: int | None = None) -> None:
        offset, shape = self._span(name, level)
        arr = np.ascontiguousarray(value, dtype=self._real).reshape(-1, self.lanes)
        if arr.shape[0] != int(np.prod(shape)):
            raise ValueError(f"internal: {name} expects {shape}, got {np.shape(value)}")
        self._kernels["write"](self._arena.field, offset, arr)

    def _fill(self, *names: str) -> None:
        for name in names:
            self._kernels["fill"](self._arena.field, self._offset[name],
                                  int(np.prod(self._shapes[name])))

    def _upload_constants(self) -> None:
        real = self._real
        self.prof = {k: np.ascontiguousarray(self._profiles[k], dtype=real)
                     for k in ("pa", "pb", "near")}
        for name in ("pax", "pbx", "mx"):
            self._write(name, self._profiles[name])
        (sp, sw), (rp, rw) = self._points
        self.src_pos, self.rec_pos = sp, rp
        self.src_w, self.rec_w = sw.astype(real), rw.astype(real)

    # -- parameters -------------------------------------------------------------------
    def set_param(self, name: str, value: object) -> None:
        """Replace ``"velocity"`` (padded grid ``[z, (y,) x]``, m/s) or ``"wavelet"``.

        No recompilation: the kernels read the new values at the next launch.
        """
        if name == "velocity":
            arr = self._check_padded_velocity(value)
            self._velocity = arr.copy()
            kc = self._kc(arr) / self._h_ref**2
            self._write("kc", self._pack(kc))
            if self.boundary == "sponge":
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
    def _pool_field(self) -> object:
        """The checkpoint arena (the main arena stands in before any checkpoint exists)."""
        return self._pools.field if self._pool_region is not None else self._arena.field

    def _launch_forward(self, start: int, stop: int, saves: np.ndarray) -> None:
        p = self.prof
        g = self._geom
        self._kernels["forward"](
            self._arena.field, self._pool_field(), self._layout, p["pa"], p["pb"], self.amp,
            self.traces, self.src_pos, self.src_w, self.rec_pos, self.rec_w, saves, g["xs"],
            g["pm0"], g["pm1"], g["ih"], g["scale"], start, stop, self._c1, self._c2,
            self.boundary == "sponge", self.serial, self._pool_region is not None)

    def _launch_reverse(self, top: int, count: int, slots: np.ndarray) -> None:
        p = self.prof
        g = self._geom
        self._kernels["reverse"](
            self._arena.field, self._pool_field(), self._layout, p["pa"], p["pb"], p["near"],
            self.ampg, self.tracesg, self.src_pos, self.src_w, self.rec_pos, self.rec_w,
            slots, self.norms, g["xs"], g["xs_near"], g["pm0"], g["pm1"], g["ih"], g["scale"],
            top, count, self._c1, self._c2, self.boundary == "sponge", self.serial)

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
        if self._pool_region is not None:
            self._pools.release(self._pool_region)
            self._pool_bases.remove(self._pool_region)
        self._pool_region = self._place(self._pools, shapes)
        self._pool_bases.append(self._pool_region)
        self._slots = slots
        self._set_layout()

    @staticmethod
    def _release_pools(pools: _Arena, bases: list[int]) -> None:
        for base in bases:
            pools.release(base)

    def reset(self) -> None:
        """Zero the state; the traces at time 0 are zero (a zero wavefield)."""
        nd = self.geometry.ndim
        self._fill("u", *(f"{n}{d}" for n in ("psi", "zeta") for d in range(nd)))
        self.traces[0] = 0

    def advance(self, step: int) -> None:
        """Run step ``step`` and record the receivers at ``step + 1``."""
        self.advance_range(step, step + 1, {})

    def advance_range(self, start: int, stop: int, saves: Mapping[int, int]) -> None:
        """Steps ``start … stop-1``, storing ``x[t]`` in slot ``saves[t]``.

        Serial loops: one launch for the whole range, saves inside it; parallel loops:
        one launch per step, saves as NumPy copies.
        """
        if self.serial:
            marks = np.full(stop - start + 1, -1, dtype=np.int32)
            for t, slot in saves.items():
                marks[t - start] = slot
            self._launch_forward(start, stop, marks)
            return
        none = np.full(1, -1, dtype=np.int32)
        for t in range(start, stop):
            if t in saves:
                self.save(t, saves[t])
            self._launch_forward(t, t + 1, none)
        if stop in saves:
            self.save(stop, saves[stop])

    def _copy_level(self, name: str, level: int, slot: int, j: int, save: bool) -> None:
        """Copy level ``level`` of ``name`` to or from level ``j`` of checkpoint ``slot``."""
        per = int(np.prod(self._shapes[name][1:]))
        pool = f"pool_{name}"
        live = self._offset[name] + level * per
        stored = self._offset[pool] + (slot * self._shapes[pool][1] + j) * per
        copy = self._kernels["copy"]
        if save:
            copy(self._arena.field, live, self._pools.field, stored, per)
        else:
            copy(self._pools.field, stored, self._arena.field, live, per)

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

    def reverse_range(self, steps: Sequence[int], slots: Sequence[int | None], *,
                      measure: bool) -> list[float]:
        """Reverse ``steps`` (descending); with serial loops one launch for all of them.

        The hand adjoint returns the costate norm ``|lambda[t+1]|`` from the same kernel.
        """
        marks = np.array([-1 if s is None else s for s in slots], dtype=np.int32)
        if self.serial:
            self._launch_reverse(steps[0], len(steps), marks)
            n = len(steps)
            sq = self.norms[:n * self.shots].reshape(n, self.shots).sum(axis=1)
        else:
            sq = np.empty(len(steps))
            for i, (t, slot) in enumerate(zip(steps, slots, strict=True)):
                if slot is not None:
                    self.restore(t, slot)
                self._launch_reverse(t, 1, marks[i:i + 1])
                sq[i] = self.norms[0]
        if not measure:
            return [math.nan] * len(steps)
        return [math.sqrt(v) for v in sq]

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


class FieldAcousticStepper(_AcousticSetup, TaichiStepper):
    """The field engine: :class:`AcousticStepper` on Taichi fields.

    Serves ``adjoint="autodiff"`` (Taichi autodiff of the step, the test oracle of the
    hand adjoint), ``Tape(validate=True)`` and GPUs. Each new stepper compiles its own
    kernel instances (its fields are template arguments). Arguments as
    :class:`AcousticStepper`.
    """

    def __init__(self, velocity: np.ndarray, spacing: object, dt: float, wavelet: np.ndarray,
                 sources: np.ndarray, receivers: np.ndarray, *, engine: str = "fields",
                 **options: object) -> None:
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
        self.kg = (self._tree.field((*g.padded[:-1], nb), vector=w) if self.boundary == "sponge"
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
            sg=self.sg, kg=self.kg, sponge=self.boundary == "sponge", ndim=g.ndim, dtype=real_type(),
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
    def set_param(self, name: str, value: object) -> None:
        """Replace a parameter; ``"velocity"`` is the padded grid ``[z, (y,) x]`` in m/s."""
        if name != "velocity":
            super().set_param(name, value)
            return
        arr = self._check_padded_velocity(value)
        self._velocity = arr.copy()
        kc = self._kc(arr)
        self.kc.from_numpy(self._pack(kc).astype(np_real()))
        if self.boundary == "sponge":
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
        if self.boundary == "sponge":
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


AcousticStepper.register(FieldAcousticStepper)


_SPONGE_AUTODIFF = (
    "adjoint='autodiff' is not available with boundary='sponge': Taichi's autodiff of the "
    "damped update is inexact (7e-6 against finite differences in f64, measured), so use "
    "adjoint='hand' (checked against finite differences) or boundary='pml'"
)


#: Below this many cells per step (all shots) times the CPU threads, one thread running
#: whole ranges of steps beat Taichi's parallel loops on the 2-core test machine (400^2:
#: 0.19 vs 0.34 s; 800^2: 0.64 vs 0.76 s; 1000^2: 1.19 vs 0.86 s;
#: ``benchmarks/wave_loops.py``, BENCHMARKS.md).
SERIAL_CELL_THREADS = 1_600_000
#: The same for the arena engine (one launch a step costs it more): 1000^2 on 2 threads
#: ran 0.92 s serial against 1.70 s parallel, 2000^2 5.1 s against 3.7 s
#: (``benchmarks/wave_vs_deepwave.py``, BENCHMARKS.md).
ARENA_SERIAL_CELL_THREADS = 6_000_000


def _serial_loops(cells: int, limit: int = SERIAL_CELL_THREADS) -> bool:
    """Whether the step kernels run their loops in the launching thread (CPU only).

    Each parallel loop of a Taichi CPU kernel is a task handed to its thread pool, which
    costs tens of microseconds per step even with one thread, and the parallel code did
    about half again the CPU work of the serial code here; serial loops also let the
    forward run whole ranges of steps per launch. So: serial on one thread, and on more
    threads while ``cells * threads`` is below ``limit`` (:data:`SERIAL_CELL_THREADS`
    for the field engine, :data:`ARENA_SERIAL_CELL_THREADS` for the arena engine).
    """
    rt = ensure_init()
    if rt.arch != "cpu":
        return False
    threads = rt.threads or os.cpu_count() or 1
    return threads == 1 or cells * threads < limit


def _check_cfl(dt: float, max_velocity: float, spacing: tuple[float, ...], order: int) -> None:
    dt_max = max_stable_dt(max_velocity, spacing, order)
    if dt > dt_max:
        raise ValueError(
            f"dt={dt!r} s exceeds the stability (CFL) limit {dt_max:.6g} s for max velocity "
            f"{max_velocity:.6g} m/s, spacing {spacing} m and order {order}; use dt <= "
            f"{dt_max:.6g} s, a coarser grid or a lower order"
        )


def _check_velocity(vel: np.ndarray) -> None:
    if not np.all(np.isfinite(vel)):
        bad = np.argwhere(~np.isfinite(vel))[0]
        raise ValueError(f"velocity is not finite at index {tuple(int(i) for i in bad)}")
    if np.any(vel <= 0):
        bad = np.unravel_index(int(np.argmin(vel)), vel.shape)
        raise ValueError(f"velocity must be > 0 m/s; found {float(vel[bad])!r} at index "
                         f"{tuple(int(i) for i in bad)}")


class _Arena:
    """One growable 1D vector field per process and precision for the array engine.

    Each :class:`AcousticStepper` takes one contiguous region of it for its vector
    arrays (wavefields, PML memory, their adjoints, coefficients). The kernels take the
    field as a template argument and each array's offset and extents as run-time values,
    so they compile once per arena, whatever the problem. When a new stepper does not
    fit, the arena grows (to a power of two, at least double), the regions are copied
    over at the same offsets, and the kernels compile once more for the new field.

    Args:
        precision: ``"f32"`` or ``"f64"``.
        lanes: cells per vector element.
    """

    #: Smallest arena, in vector elements (64 MiB: 64-byte vectors in both precisions).
    MIN_ELEMENTS = 1 << 20

    def __init__(self, precision: str, lanes: int) -> None:
        self.precision, self.lanes = precision, lanes
        self.capacity = 0
        self.field: object = None
        self._tree: FieldTree | None = None
        self._used: dict[int, int] = {}

    def allocate(self, size: int) -> int:
        """Offset of a new region of ``size`` vector elements (growing if needed)."""
        start = self._gap(size)
        if start is None:
            end = max((s + n for s, n in self._used.items()), default=0)
            self._grow(end + size)
            start = self._gap(size)
            assert start is not None
        self._used[start] = size
        return start

    def release(self, start: int) -> None:
        """Give region ``start`` back (a second release does nothing)."""
        self._used.pop(start, None)

    def _gap(self, size: int) -> int | None:
        at = 0
        for s in sorted(self._used):
            if s - at >= size:
                return at
            at = s + self._used[s]
        return at if self.capacity - at >= size else None

    def _grow(self, need: int) -> None:
        capacity = max(self.MIN_ELEMENTS, 2 * self.capacity)
        while capacity < need:
            capacity *= 2
        tree = FieldTree()
        field = tree.field((capacity,), vector=self.lanes)
        tree.finalize()
        if self.field is not None:
            kernels = arena_kernels(2, self.precision, self.lanes)
            real = np_real()
            for start, size in self._used.items():
                buf = np.empty((size, self.lanes), dtype=real)
                kernels["read"](self.field, start, buf)
                kernels["write"](field, start, buf)
            self._tree.destroy()
        self.field, self._tree, self.capacity = field, tree, capacity


_ARENAS: dict[tuple[str, int, str], _Arena] = {}


def _arena(precision: str, lanes: int, kind: str = "state") -> _Arena:
    """The process's arena for one precision: ``"state"`` or checkpoint ``"pools"``."""
    key = (precision, lanes, kind)
    if key not in _ARENAS:
        _ARENAS[key] = _Arena(precision, lanes)
    return _ARENAS[key]


#: Engines of :class:`AcousticStepper`.
ENGINES = ("auto", "arrays", "fields")


def _engine(engine: str, adjoint: str) -> str:
    """``"arrays"`` or ``"fields"`` for an :class:`AcousticStepper` request."""
    if adjoint != "hand" or ensure_init().arch != "cpu" or engine == "fields":
        return "fields"
    return "arrays"


class Simulation(_Simulation):
    """Acoustic waves behind diffsim's one front-end shape.

    Built from the same arguments as :func:`simulate`; one :class:`AcousticStepper` is
    built and kept (on the CPU its kernels are compiled once per process anyway), and
    :meth:`update` changes the velocity or the wavelet in place.

    Args:
        velocity, spacing, dt, wavelet, sources, receivers, order, pml_width,
            free_surface, boundary, **options: as :func:`simulate` (and
            :class:`AcousticStepper`: ``interpolation``, ``pml_velocity``,
            ``pml_frequency``, ``engine``, ``adjoint``).

    Outputs: ``"traces"`` ``[shot, receiver, nt]``. Parameters (``wrt``,
    :meth:`update`): ``"velocity"`` (model grid, m/s) and ``"wavelet"`` (shaped as given:
    ``[nt]``, ``[shot, nt]`` or ``[shot, source, nt]``; its gradient is summed over the
    shots and sources it was shared by).

    Example::

        sim = Simulation(v, 10.0, 1e-3, ricker(10.0, 1e-3, 800), src, rec, order=4)
        traces = sim.simulate()["traces"]
        res = sim.value_and_grad(L2(observed))          # res.loss, res.grads["velocity"]
        sim.update(velocity=v2)                          # nothing recompiles
    """

    parameter_names = ("velocity", "wavelet")
    default_wrt = ("velocity",)

    def __init__(self, velocity: np.ndarray, spacing: object, dt: float, wavelet: np.ndarray,
                 sources: np.ndarray, receivers: np.ndarray, *, order: int = 8,
                 pml_width: object = 20, free_surface: bool = False, boundary: str = "pml",
                 **options: object) -> None:
        stepper = AcousticStepper(velocity, spacing, dt, wavelet, sources, receivers,
                                  order=order, pml_width=pml_width, free_surface=free_surface,
                                  boundary=boundary, **options)
        self._adopt(stepper, np.asarray(velocity, dtype=np.float64), wavelet)

    @classmethod
    def from_stepper(cls, stepper: _AcousticSetup) -> Simulation:
        """A simulation running an existing stepper (it is not closed with the simulation).

        The velocity is the stepper's model-grid velocity; the wavelet is its
        ``[shot, source, nt]`` amplitudes.
        """
        sim = cls.__new__(cls)
        sim._adopt(stepper, stepper._crop(stepper.parameters()["velocity"][None])[0],
                   stepper.parameters()["wavelet"], owned=False)
        return sim

    def _adopt(self, stepper: _AcousticSetup, velocity: np.ndarray, wavelet: object, *,
               owned: bool = True) -> None:
        self.stepper = stepper
        self._owned = owned
        self._velocity = velocity.copy()
        self._wavelet = np.array(wavelet, dtype=np.float64)

    def _stepper(self, loss: object = None) -> Stepper:
        return self.stepper  # type: ignore[return-value]

    def parameters(self) -> dict[str, np.ndarray]:
        """``"velocity"`` (model grid, m/s) and ``"wavelet"`` (shaped as given)."""
        return {"velocity": self._velocity.copy(), "wavelet": self._wavelet.copy()}

    def update(self, **params: object) -> None:
        """New ``velocity`` (model grid, m/s) and/or ``wavelet`` (same shape as before).

        The PML stays as built (its damping scaled to the first velocity's maximum unless
        ``pml_velocity`` was given). Nothing recompiles.
        """
        unknown = set(params) - set(self.parameter_names)
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}; allowed: velocity, wavelet")
        s = self.stepper
        if "velocity" in params:
            vel = np.asarray(params["velocity"], dtype=np.float64)
            s.set_velocity(vel)
            self._velocity = vel.copy()
        if "wavelet" in params:
            value = np.asarray(params["wavelet"], dtype=np.float64)
            if value.shape != self._wavelet.shape:
                raise ValueError(f"wavelet has shape {value.shape}; this simulation's wavelet "
                                 f"is {self._wavelet.shape} (build a new Simulation to change it)")
            s.set_param("wavelet", _broadcast_wavelet(value, s.shots, s._amp.shape[1]))
            self._wavelet = value.copy()

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """``"traces"``: ``(shot, receiver, nt)``."""
        s = self.stepper
        return {"traces": (s.shots, s.receivers, s.steps + 1)}

    def _outputs(self, stepper: Stepper, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"traces": np.ascontiguousarray(np.moveaxis(raw["receivers"], 0, -1))}

    def _cotangents(self, stepper: Stepper, cot: dict[str, np.ndarray]
                    ) -> dict[str, np.ndarray]:
        if "traces" not in cot:
            return {}
        return {"receivers": np.moveaxis(cot["traces"], -1, 0)}

    def _gradients(self, stepper: Stepper, raw: dict[str, np.ndarray], wrt: tuple[str, ...],
                   partials: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        grads: dict[str, np.ndarray] = {}
        if "velocity" in wrt:
            grads["velocity"] = self.stepper.fold(raw["velocity"])
        if "wavelet" in wrt:
            g = np.asarray(raw["wavelet"], dtype=np.float64)        # [shot, source, nt]
            if self._wavelet.ndim == 1:
                g = g.sum(axis=(0, 1))
            elif self._wavelet.ndim == 2:
                g = g.sum(axis=1)
            grads["wavelet"] = g
        return super()._gradients(stepper, {**raw, **grads}, wrt, partials)

    def close(self) -> None:
        """Give the stepper's memory back (a stepper passed to :meth:`from_stepper` stays)."""
        if self._owned:
            self.stepper.destroy()


def simulate(velocity: np.ndarray, spacing: object, dt: float, wavelet: np.ndarray,
             sources: np.ndarray, receivers: np.ndarray, *, order: int = 8,
             pml_width: object = 20, free_surface: bool = False,
             boundary: str = "pml", **options: object) -> np.ndarray:
    """Forward-model shot gathers.

    Args:
        velocity: ``[z, x]`` or ``[z, y, x]`` in m/s.
        spacing: metres, scalar or one per axis.
        dt: time step in s.
        wavelet: ``[nt]``, ``[shot, nt]`` or ``[shot, source, nt]``.
        sources: ``[shot, ndim]`` or ``[shot, source, ndim]`` in m from the grid origin.
        receivers: ``[receiver, ndim]`` or ``[shot, receiver, ndim]`` in m.
        order: 2, 4, 6 or 8.
        pml_width: PML cells, one int or one per face.
        free_surface: free surface on the top face.
        boundary: ``"pml"`` or ``"sponge"`` (Cerjan damping over ``pml_width`` cells).
        **options: further :class:`AcousticStepper` options (``interpolation``,
            ``pml_velocity``, ``pml_frequency``).

    Returns:
        Traces ``[shot, receiver, nt]``, e.g. ``[4, 100, 1000]``, in the runtime precision.
    """
    with Simulation(velocity, spacing, dt, wavelet, sources, receivers, order=order,
                    pml_width=pml_width, free_surface=free_surface, boundary=boundary,
                    **options) as sim:
        return sim.simulate()["traces"]


@dataclass
class MisfitGradient:
    """Result of :func:`misfit_gradient`.

    Attributes:
        loss: ``0.5 * sum((traces - observed)^2)``.
        gradient: ``d loss / d velocity``, shaped like the velocity, float64.
        wavelet_gradient: ``d loss / d wavelet`` ``[shot, source, nt]``.
        traces: the synthetic traces ``[shot, receiver, nt]``.
        report: what the tape did (schedule, forward steps, memory, costate trace).
    """

    loss: float
    gradient: np.ndarray
    wavelet_gradient: np.ndarray
    traces: np.ndarray
    report: TapeReport


def misfit_gradient(velocity: np.ndarray, spacing: object, dt: float, wavelet: np.ndarray,
                    sources: np.ndarray, receivers: np.ndarray, observed: np.ndarray, *,
                    order: int = 8, pml_width: object = 20, free_surface: bool = False,
                    checkpoint: Schedule | None = None, boundary: str = "pml",
                    **options: object) -> MisfitGradient:
    """L2 waveform misfit and its gradient with respect to velocity (and wavelet).

    ``Simulation(...).value_and_grad(L2(observed), wrt=("velocity", "wavelet"))`` with
    the wavelet gradient per shot and source.

    Args:
        velocity: ``[z, x]`` or ``[z, y, x]`` in m/s.
        spacing: metres, scalar or one per axis.
        dt: time step in s.
        wavelet: ``[nt]``, ``[shot, nt]`` or ``[shot, source, nt]``.
        sources: ``[shot, ndim]`` or ``[shot, source, ndim]`` in m.
        receivers: ``[receiver, ndim]`` or ``[shot, receiver, ndim]`` in m.
        observed: traces ``[shot, receiver, nt]``.
        order: 2, 4, 6 or 8.
        pml_width: PML cells, one int or one per face.
        free_surface: free surface on the top face.
        checkpoint: a schedule; ``None`` picks one from ``diffsim.DEFAULT_BUDGET``.
        boundary: ``"pml"`` or ``"sponge"`` (Cerjan damping over ``pml_width`` cells).
        **options: further :class:`AcousticStepper` options.

    Returns:
        Loss, gradients, traces and the tape's report; see :class:`MisfitGradient`.
    """
    stepper = AcousticStepper(velocity, spacing, dt, wavelet, sources, receivers, order=order,
                              pml_width=pml_width, free_surface=free_surface, boundary=boundary,
                              **options)
    try:
        return stepper_misfit_gradient(stepper, observed, checkpoint=checkpoint)
    finally:
        stepper.destroy()


def stepper_misfit_gradient(stepper: AcousticStepper, observed: np.ndarray, *,
                            checkpoint: Schedule | None = None) -> MisfitGradient:
    """:func:`misfit_gradient` on an existing stepper (no recompilation)."""
    res = Simulation.from_stepper(stepper).value_and_grad(
        L2(observed), wrt=("velocity", "wavelet"), checkpoint=checkpoint)
    return MisfitGradient(loss=res.loss, gradient=res.grads["velocity"],
                          wavelet_gradient=res.grads["wavelet"], traces=res.outputs["traces"],
                          report=res.report)
