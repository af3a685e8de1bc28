"""FWI experiments: surface acquisition, the causal low-pass of each stage, the shot data."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypedDict

import numpy as np
from scipy import signal

# -- acquisition and data ------------------------------------------------------------------

def surface_acquisition(shape: tuple[int, int], spacing: float, shots: int, receivers: int, *,
                        source_depth: float, receiver_depth: float
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Sources and receivers spread evenly along the surface of a ``[z, x]`` grid.

    Args:
        shape: the model's ``(nz, nx)``.
        spacing: grid spacing in m.
        shots: number of shots (one source each), at least 1.
        receivers: receivers shared by every shot, at least 1.
        source_depth: depth of the sources in m.
        receiver_depth: depth of the receivers in m.

    Returns:
        ``sources [shot, 2]`` and ``receivers [receiver, 2]`` in m as ``(z, x)``.
    """
    nz, nx = shape
    width, depth = (nx - 1) * spacing, (nz - 1) * spacing
    for name, count in (("shots", shots), ("receivers", receivers)):
        if not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(f"{name}={count!r} must be a positive integer")
    for name, z in (("source_depth", source_depth), ("receiver_depth", receiver_depth)):
        if not 0 <= z <= depth:
            raise ValueError(f"{name}={z} m must lie in [0, {depth:g}] m (the model's depth)")
    margin = min(2 * spacing, 0.05 * width)
    xs = np.linspace(margin, width - margin, shots) if shots > 1 else np.array([0.5 * width])
    xr = np.linspace(0.0, width, receivers) if receivers > 1 else np.array([0.5 * width])
    src = np.stack([np.full(shots, float(source_depth)), xs], axis=1)
    rec = np.stack([np.full(receivers, float(receiver_depth)), xr], axis=1)
    return src, rec


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
        sources: ``[shot, 2]`` in m.
        receivers: ``[receiver, 2]`` in m (shared by every shot).
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


