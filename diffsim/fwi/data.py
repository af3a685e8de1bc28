"""FWI experiments: surface acquisition, the causal low-pass of each stage, the shot data."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypedDict

import numpy as np
from scipy import signal

# -- acquisition and data ------------------------------------------------------------------

def surface_acquisition(shape: tuple[int, ...], spacing: float, shots: int | Sequence[int],
                        receivers: int | Sequence[int], *, source_depth: float,
                        receiver_depth: float, source_margin: float | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Sources and receivers spread evenly over the surface of a ``[z, x]`` or ``[z, y, x]`` grid.

    Along each lateral axis the sources run from ``source_margin`` to the side's length
    minus it (one shot: the middle) and the receivers from one side to the other. In 3D
    both are grids, numbered with ``x`` fastest.

    Args:
        shape: the model's ``(nz, nx)`` or ``(nz, ny, nx)``.
        spacing: grid spacing in m.
        shots: 2D: number of shots (one source each), at least 1; 3D: ``(along y, along
            x)``, a grid of shots.
        receivers: receivers shared by every shot, as ``shots`` (a count, or a grid in 3D).
        source_depth: depth of the sources in m.
        receiver_depth: depth of the receivers in m.
        source_margin: m between each side and the outermost sources (default
            ``min(2 spacing, 5 % of the side)``).

    Returns:
        ``sources [shot, ndim]`` and ``receivers [receiver, ndim]`` in m as ``(z, x)`` or
        ``(z, y, x)``.
    """
    if len(shape) not in (2, 3):
        raise ValueError(f"shape={tuple(shape)} must be (nz, nx) or (nz, ny, nx)")
    nz, *sides = shape
    depth = (nz - 1) * spacing
    shot_counts = _counts("shots", shots, len(sides))
    receiver_counts = _counts("receivers", receivers, len(sides))
    for name, z in (("source_depth", source_depth), ("receiver_depth", receiver_depth)):
        if not 0 <= z <= depth:
            raise ValueError(f"{name}={z} m must lie in [0, {depth:g}] m (the model's depth)")
    src_axes, rec_axes = [], []
    for n, n_src, n_rec in zip(sides, shot_counts, receiver_counts, strict=True):
        width = (n - 1) * spacing
        margin = min(2 * spacing, 0.05 * width) if source_margin is None else source_margin
        if not 0 <= margin <= 0.5 * width:
            raise ValueError(f"source_margin={source_margin} m must lie in [0, {0.5 * width:g}] "
                             f"m (half the model's side of {width:g} m)")
        src_axes.append(np.linspace(margin, width - margin, n_src) if n_src > 1
                        else np.array([0.5 * width]))
        rec_axes.append(np.linspace(0.0, width, n_rec) if n_rec > 1 else np.array([0.5 * width]))
    return _surface_grid(source_depth, src_axes), _surface_grid(receiver_depth, rec_axes)


def _counts(name: str, count: int | Sequence[int], axes: int) -> tuple[int, ...]:
    """``count`` as one positive int per lateral axis (a number in 2D, a pair in 3D)."""
    if axes == 1:
        if not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(f"{name}={count!r} must be a positive integer")
        return (int(count),)
    counts = tuple(count) if isinstance(count, Sequence) else ()
    if len(counts) != axes or not all(isinstance(c, (int, np.integer)) and c >= 1
                                      for c in counts):
        raise ValueError(f"{name}={count!r} must be [along y, along x], two positive integers "
                         "(a grid on the surface of a 3D model)")
    return tuple(int(c) for c in counts)


def _surface_grid(depth: float, axes: Sequence[np.ndarray]) -> np.ndarray:
    """``[point, 1 + len(axes)]``: each combination of the lateral ``axes`` (last fastest) at ``depth``."""
    lateral = [a.ravel() for a in np.meshgrid(*axes, indexing="ij")]
    return np.stack([np.full(lateral[0].size, float(depth)), *lateral], axis=1)


def lowpass(data: np.ndarray, dt: float, cutoff: float | None, *, order: int = 8) -> np.ndarray:
    """Causal Butterworth low-pass along the last (time) axis, from rest.

    Causal and linear, so low-passing the observed data equals simulating with the
    low-passed wavelet (the filter commutes with the wave equation), and nothing leaks
    before the first sample.

    Args:
        data: ``[..., nt]``.
        dt: sample interval in s.
        cutoff: corner frequency in Hz; ``None`` or 0 returns ``data`` unchanged.
        order: filter order.
    """
    if not cutoff:
        return np.asarray(data, dtype=np.float64)
    nyquist = 0.5 / dt
    if not 0 < cutoff < nyquist:
        raise ValueError(f"cutoff={cutoff} Hz must lie in (0, {nyquist:g}) Hz (the Nyquist "
                         f"frequency of dt={dt:g} s)")
    sos = signal.butter(order, cutoff, btype="low", fs=1.0 / dt, output="sos")
    return signal.sosfilt(sos, np.asarray(data, dtype=np.float64), axis=-1)


@dataclass(frozen=True)
class ShotData:
    """Everything about the experiment except the velocity.

    Attributes:
        spacing: grid spacing in m.
        dt: time step and sample interval in s.
        wavelet: ``[nt]`` source time function shared by every shot.
        sources: ``[shot, ndim]`` in m (``(z, x)`` or ``(z, y, x)``).
        receivers: ``[receiver, ndim]`` in m (shared by every shot).
        observed: ``[shot, receiver, nt]``.
        order: spatial order of the stencil.
        pml_width: PML cells.
        free_surface: free surface on top.
        pml_velocity: m/s the PML is scaled to (``None``: each stepper's maximum velocity).
        pml_frequency: Hz the PML is tuned to (``None``: each wavelet's dominant frequency).
            Fix both so every stepper of a run has the same PML, whatever model or stage
            it was built for (needed for bitwise resumption).
    """

    spacing: float
    dt: float
    wavelet: np.ndarray
    sources: np.ndarray
    receivers: np.ndarray
    observed: np.ndarray
    order: int = 4
    pml_width: int = 20
    free_surface: bool = False
    pml_velocity: float | None = None
    pml_frequency: float | None = None

    @property
    def shots(self) -> int:
        """Number of shots."""
        return int(self.sources.shape[0])

    def stage(self, cutoff: float | None) -> ShotData:
        """The data and wavelet low-passed at ``cutoff`` Hz."""
        return replace(self, wavelet=lowpass(self.wavelet, self.dt, cutoff),
                       observed=lowpass(self.observed, self.dt, cutoff))

    def subset(self, shots: Sequence[int]) -> ShotData:
        """Only the given shots."""
        idx = np.asarray(shots, dtype=int)
        return replace(self, sources=self.sources[idx], observed=self.observed[idx])

    def geometry_key(self, shape: tuple[int, ...]) -> str:
        """A digest of everything a compiled stepper for these shots depends on."""
        return hashlib.sha1(repr((tuple(shape), self.spacing, self.dt, self.wavelet.size,
                                  self.stepper_options(), self.sources.tobytes(),
                                  self.receivers.tobytes())).encode()).hexdigest()

    def stepper_options(self) -> StepperOptions:
        """Keyword arguments of :class:`diffsim.acoustic.AcousticStepper` for this experiment."""
        return StepperOptions(order=self.order, pml_width=self.pml_width,
                              free_surface=self.free_surface, pml_velocity=self.pml_velocity,
                              pml_frequency=self.pml_frequency)


class StepperOptions(TypedDict):
    """The :class:`diffsim.acoustic.AcousticStepper` keywords a :class:`ShotData` fixes (a dict)."""

    order: int
    pml_width: int
    free_surface: bool
    pml_velocity: float | None
    pml_frequency: float | None


