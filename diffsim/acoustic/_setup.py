"""The acoustic set-up both engines share: stencils, CFL, grid, PML and sponge, points, checks."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import taichi as ti
from numpy.typing import ArrayLike

from diffsim._runtime import ensure_init
from diffsim._validate import as_array
from diffsim.acoustic.boundaries import CPML, Boundary, Sponge, Width, as_boundary

#: Central-difference coefficients: order -> (first derivative c1[1..], second c2[0..]).
FD_COEFFICIENTS: dict[int, tuple[tuple[float, ...], tuple[float, ...]]] = {
    2: ((1 / 2,), (-2.0, 1.0)),
    4: ((2 / 3, -1 / 12), (-5 / 2, 4 / 3, -1 / 12)),
    6: ((3 / 4, -3 / 20, 1 / 60), (-49 / 18, 3 / 2, -3 / 20, 1 / 90)),
    8: ((4 / 5, -1 / 5, 4 / 105, -1 / 280), (-205 / 72, 8 / 5, -1 / 5, 8 / 315, -1 / 560)),
}

#: Staggered first-derivative coefficients (variable density): order -> ``s_1 … s_M``,
#: ``D+ p[j + 1/2] = sum_k s_k (p[j+k] - p[j-k+1]) / h`` (Fornberg 1988, half-point weights).
STAGGERED: dict[int, tuple[float, ...]] = {
    2: (1.0,),
    4: (9 / 8, -1 / 24),
    6: (75 / 64, -25 / 384, 3 / 640),
    8: (1225 / 1024, -245 / 3072, 49 / 5120, -5 / 7168),
}

#: Hicks (2002) Kaiser-windowed sinc: half-width 4 cells, Kaiser parameter b = 6.31.
HICKS_HALF_WIDTH = 4
HICKS_B = 6.31
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


def _stencil_eigen(order: int, staggered: bool = False) -> float:
    """Largest eigenvalue of ``-D2`` (no 1/h^2): the symbol at the Nyquist wavenumber.

    ``staggered``: of ``-D- D+`` (the variable-density operator), ``(2 sum_k s_k (-1)^(k+1))^2``.
    """
    if staggered:
        return (2.0 * sum(s * (-1) ** k for k, s in enumerate(STAGGERED[order]))) ** 2
    c2 = FD_COEFFICIENTS[order][1]
    return -(c2[0] + 2.0 * sum(c * (-1) ** k for k, c in enumerate(c2[1:], start=1)))


def max_stable_dt(max_velocity: float, spacing: Sequence[float], order: int, *,
                  density: bool = False) -> float:
    """Largest stable leapfrog time step for the interior stencil, in s.

    ``dt_max = 2 / (c_max sqrt(sum_d lambda / h_d^2))`` with ``lambda`` the largest
    eigenvalue of the 1D second-difference stencil of this order (``density=True``: of
    the staggered stencil of the variable-density scheme, 1-2 % stricter at order 8).
    """
    lam = _stencil_eigen(order, density)
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


class Options(TypedDict, total=False):
    """The keyword options of every acoustic engine (see :class:`AcousticStepper`)."""

    order: int
    pml_width: Width | None
    free_surface: bool
    interpolation: str
    adjoint: str
    pml_velocity: float | None
    pml_frequency: float | None
    boundary: str | Boundary


class ExtraOptions(TypedDict, total=False):
    """The :class:`AcousticStepper` options the functional API passes through as ``**options``."""

    interpolation: str
    adjoint: str
    pml_velocity: float | None
    pml_frequency: float | None
    engine: str


@ti.data_oriented
class _Bundle:
    """Fields and compile-time constants handed to a kernel as one template argument.

    Taichi keys a kernel instance on every template argument at each launch; one
    argument instead of thirty saves tens of microseconds a launch.
    """

    def __init__(self, **items: object) -> None:
        self.__dict__.update(items)

    if TYPE_CHECKING:
        def __getattr__(self, name: str) -> Any: ...


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


def _as_points(name: str, value: ArrayLike, shots: int | None, ndim: int) -> np.ndarray:
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


def _broadcast_wavelet(wavelet: ArrayLike, shots: int, sources: int) -> np.ndarray:
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

    #: Whether the engine runs the staggered variable-density scheme (its CFL limit).
    _density_scheme = False

    if TYPE_CHECKING:   # provided by the engine's Stepper base (declared for the type checker)
        def set_param(self, name: str, value: ArrayLike) -> None: ...
        def gradients(self) -> dict[str, np.ndarray]: ...
        def outputs(self) -> dict[str, np.ndarray]: ...
        def parameters(self) -> dict[str, np.ndarray]: ...
        def destroy(self) -> None: ...

    def _setup(self, velocity: np.ndarray, spacing: object, dt: float, wavelet: np.ndarray,
               sources: np.ndarray, receivers: np.ndarray, *, order: int = 8,
               pml_width: Width | None = None, free_surface: bool = False,
               interpolation: str = "hicks", adjoint: str = "hand",
               pml_velocity: float | None = None, pml_frequency: float | None = None,
               boundary: str | Boundary = "pml") -> None:
        vel = np.asarray(velocity, dtype=np.float64)
        if vel.ndim not in (2, 3):
            raise ValueError(f"velocity must be [z, x] or [z, y, x]; got shape {vel.shape}")
        ndim = vel.ndim
        if order not in FD_COEFFICIENTS:
            raise ValueError(f"order={order!r} is not supported; choose 2, 4, 6 or 8")
        if adjoint not in ("hand", "autodiff"):
            raise ValueError(f"adjoint={adjoint!r}; choose 'hand' (gather kernels) or 'autodiff'")
        bnd = as_boundary(boundary, ndim, pml_width, pml_velocity, pml_frequency)
        if isinstance(bnd, Sponge) and adjoint == "autodiff":
            raise ValueError(_SPONGE_AUTODIFF)
        if interpolation not in ("hicks", "nearest"):
            raise ValueError(f"interpolation={interpolation!r}; choose 'hicks' or 'nearest'")
        _check_velocity(vel)
        h = _as_spacing(spacing, ndim)
        if not (isinstance(dt, (int, float)) and np.isfinite(dt) and dt > 0):
            raise ValueError(f"dt={dt!r} must be a positive time step in s")
        _check_cfl(dt, float(vel.max()), h, order, self._density_scheme)
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
        pml = bnd.faces(ndim, free_surface)
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
        self.boundary = bnd
        self.sponge = isinstance(bnd, Sponge)
        layers = pml
        if self.sponge:  # the layers damp; the PML machinery is switched off
            pml = tuple((0, 0) for _ in range(ndim))
        self._c1, self._c2 = FD_COEFFICIENTS[order]
        self._inv_h = tuple(1.0 / x for x in h)
        # Lane layout: x packed into vectors of W cells, cell x in block (x + W) // W;
        # blocks 0 and nb - 1 hold no cells (see diffsim.kernels.acoustic).
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
        # What the C-PML is tuned to: the first model's maximum velocity, the wavelet's
        # dominant frequency (unless the boundary object fixes them).
        self._tuning = (float(vel.max()), f_dom or 1.0 / (nt * dt))
        self._profiles = self._pml_profiles(bnd, *self._tuning, dt)
        self._damp = (bnd.damping(self.geometry, layers) if isinstance(bnd, Sponge)
                      else np.ones(self.geometry.padded))
        self._velocity = self.pad(vel)

    #: Parameters with one row per step (step ``t`` reads row ``t``).
    time_indexed_parameters = ("wavelet",)

    def graph_stages(self) -> tuple[dict[str, Any], list[Any]]:
        """The step as stages for :func:`diffsim.diagnostics.step_graph`."""
        from diffsim.diagnostics.graph import Stage, declared

        if self._density_scheme:
            arrays = {"p": "state", "psi": "state", "zeta": "state", "flux": "scratch",
                      "velocity": "parameter", "density": "parameter", "wavelet": "parameter",
                      "KK = dt^2 rho c^2": "derived", "buoyancy 1/rho": "derived",
                      "receivers": "output"}
            stages = [Stage("KK from velocity, density", ("velocity", "density"),
                            ("KK = dt^2 rho c^2",), per_step=False),
                      Stage("buoyancy at half points", ("density",), ("buoyancy 1/rho",),
                            per_step=False),
                      Stage("fluxes B (D+ p + psi)", ("p", "psi", "buoyancy 1/rho"),
                            ("psi", "flux")),
                      Stage("update", ("p", "flux", "zeta", "KK = dt^2 rho c^2"), ("p", "zeta")),
                      Stage("sources", ("wavelet",), ("p",)),
                      Stage("receivers", ("p",), ("receivers",))]
            if self.sponge:
                stages[2] = Stage("fluxes B D+ p", ("p", "buoyancy 1/rho"), ("flux",))
                stages[3] = Stage("update (damped)", ("p", "flux", "KK = dt^2 rho c^2"), ("p",))
                del arrays["psi"], arrays["zeta"]
            return declared(arrays, stages)
        arrays = {"u": "state", "psi": "state", "zeta": "state", "velocity": "parameter",
                  "wavelet": "parameter", "kc = dt^2 c^2": "derived", "receivers": "output"}
        stages = [Stage("kc from velocity", ("velocity",), ("kc = dt^2 c^2",), per_step=False),
                  Stage("PML memory", ("u", "psi"), ("psi",)),
                  Stage("update", ("u", "psi", "zeta", "kc = dt^2 c^2"), ("u", "zeta")),
                  Stage("sources", ("wavelet",), ("u",)),
                  Stage("receivers", ("u",), ("receivers",))]
        if self.sponge:
            del stages[1]
            stages[1] = Stage("update (damped)", ("u", "kc = dt^2 c^2"), ("u",))
            del arrays["psi"], arrays["zeta"]
        return declared(arrays, stages)

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

    def _pml_profiles(self, boundary: Boundary, c_max: float, f_dom: float, dt: float
                      ) -> dict[str, np.ndarray]:
        """The boundary's C-PML profiles (zero for a sponge) in the engines' layout.

        ``pa, pb, near`` ``[row axes, max padded]`` and the x profiles ``pax, pbx, mx`` in
        lanes ``[nb, W]``.
        """
        g = self.geometry
        if isinstance(boundary, CPML):
            a, b = boundary.profiles(g, c_max, f_dom, dt)
        else:
            a = b = np.zeros((g.ndim, max(g.padded)))
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

    def _point_weights(self, pts: np.ndarray, k: int, mirror: tuple[int, float] | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Stencil start and weights ``[shot, point, axis, k]`` of points (padded cells).

        ``mirror = (c2, sign)``: a free surface's image along axis 0: the weight of a
        cell ``i`` above the top row moves to cell ``c2 - i`` times ``sign`` (``c2`` twice
        the surface's row for values on the cells, one less for values half a cell down).
        Without it such cells get no weight.
        """
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
                    if mirror is not None and d == 0:
                        c2, sign = mirror
                        for m in np.flatnonzero(cells < g.halo):
                            weights[c2 - cells[m] - first] += sign * weights[m]
                            weights[m] = 0.0
                    # Cells the stencil never updates (the frame; above a free surface) get
                    # no weight.
                    weights[(cells < g.halo) | (cells >= g.padded[d] - g.halo)] = 0.0
                    # Keep the stencil inside the array (its cells out there weigh 0).
                    shift = min(max(-first, 0), k) - min(max(first + k - g.padded[d], 0), k)
                    if shift:
                        weights = np.roll(weights, -shift)
                        first += shift
                    pos[s, n, d] = first
                    w[s, n, d] = weights
        return pos, w

    def _kc(self, padded_velocity: np.ndarray) -> np.ndarray:
        """``dt^2 c^2`` on the padded grid, zero on the frame (float64, not packed)."""
        return self.dt**2 * padded_velocity * padded_velocity * self._frame

    def _check_padded_velocity(self, value: ArrayLike) -> np.ndarray:
        arr = as_array("parameter 'velocity'", value, self.geometry.padded, positive=True)
        _check_cfl(self.dt, float(arr.max()), self.geometry.spacing, self.order,
                   self._density_scheme)
        return arr

    def _check_wavelet(self, value: ArrayLike) -> np.ndarray:
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
        _check_cfl(self.dt, float(vel.max()), self.geometry.spacing, self.order,
                   self._density_scheme)
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


_SPONGE_AUTODIFF = (
    "adjoint='autodiff' is not available with boundary='sponge': Taichi's autodiff of the "
    "damped update is inexact (7e-6 against finite differences in f64, measured), so use "
    "adjoint='hand' (checked against finite differences) or boundary='pml'"
)


#: Below this many cells per step (all shots) times the CPU threads, one thread running
#: whole ranges of steps beat Taichi's parallel loops on the 2-core test machine (400^2:
#: 0.19 vs 0.34 s; 800^2: 0.64 vs 0.76 s; 1000^2: 1.19 vs 0.86 s; measured with
#: the field engine before the arena engines' worker tasks, BENCHMARKS.md).
SERIAL_CELL_THREADS = 1_600_000


def _serial_loops(cells: int, limit: int = SERIAL_CELL_THREADS) -> bool:
    """Whether the step kernels run their loops in the launching thread (CPU only).

    Each parallel loop of a Taichi CPU kernel is a task handed to its thread pool, which
    costs tens of microseconds per step even with one thread, and the parallel code did
    about half again the CPU work of the serial code here; serial loops also let the
    forward run whole ranges of steps per launch. So: serial on one thread, and on more
    threads while ``cells * threads`` is below ``limit`` (:data:`SERIAL_CELL_THREADS`;
    the field engine only: the arena engines run worker tasks, :mod:`diffsim._parallel`).
    """
    rt = ensure_init()
    if rt.arch != "cpu":
        return False
    threads = rt.threads or os.cpu_count() or 1
    return threads == 1 or cells * threads < limit


def _check_cfl(dt: float, max_velocity: float, spacing: tuple[float, ...], order: int,
               density: bool = False) -> None:
    dt_max = max_stable_dt(max_velocity, spacing, order, density=density)
    if dt > dt_max:
        raise ValueError(
            f"dt={dt!r} s exceeds the stability (CFL) limit {dt_max:.6g} s for max velocity "
            f"{max_velocity:.6g} m/s, spacing {spacing} m and order {order}; use dt <= "
            f"{dt_max:.6g} s, a coarser grid or a lower order"
        )


def _check_velocity(vel: np.ndarray) -> None:
    check_positive_model("velocity", vel, "m/s")


def check_positive_model(name: str, arr: np.ndarray, unit: str) -> None:
    """Raise ``ValueError`` naming the first index where ``arr`` is not finite or not > 0."""
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} is not finite at index {tuple(int(i) for i in bad)}")
    if np.any(arr <= 0):
        bad = np.unravel_index(int(np.argmin(arr)), arr.shape)
        raise ValueError(f"{name} must be > 0 {unit}; found {float(arr[bad])!r} at index "
                         f"{tuple(int(i) for i in bad)}")
