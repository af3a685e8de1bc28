"""Reverse-time migration scenarios: RTM and least-squares RTM of a model's scattered data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np

from diffsim.io import RunOptions
from diffsim.scenarios._base import Scenario
from diffsim.scenarios.fwi import MODEL_NAMES, FwiScenario

__all__ = ["RtmScenario"]


@dataclass(frozen=True)
class RtmScenario(Scenario):
    """Migrate the scattered surface data of a model with reverse-time migration.

    The data are ``d = F(true) - F(background)`` (nonlinear simulations; the direct wave
    and the smooth background's transmission cancel), the background the true model
    smoothed by ``background_smoothing`` (the water kept). ``method="rtm"`` images ``J^T
    d`` once (compensated and filtered as set below); ``method="lsrtm"`` runs CGLS on
    ``min ||J m - d||^2`` for the velocity perturbation ``m`` and reports its error
    against the true model's perturbation and reflectivity per iteration.

    Attributes:
        model: as :class:`FwiScenario` (``marmousi2`` ships with diffsim).
        spacing: grid spacing in m.
        crop_z: ``(top, bottom)`` depth range in m; empty for all of it.
        crop_x: ``(left, right)`` range in m; empty for all of it.
        shots: sources along the surface, one per shot.
        receivers: receivers along the surface, shared by every shot.
        source_depth: m.
        receiver_depth: m.
        peak_frequency: Ricker peak frequency in Hz.
        duration: record length in s.
        dt: time step in s; 0 picks 80 % of the stability limit at the model's maximum.
        order: spatial order, 2, 4, 6 or 8.
        pml_width: PML cells on every face.
        background_smoothing: Gaussian smoothing (sigma, m) of the true model into the
            migration velocity.
        water_depth: the top this many metres keep the true velocity and are muted in the
            image (the water layer).
        method: ``rtm`` or ``lsrtm``.
        iterations: CGLS iterations (``lsrtm``).
        compensate: divide the RTM image by the source illumination (``rtm``).
        laplacian: apply the Laplacian filter to the RTM image (``rtm``).
        epsilon: stabilisation of the compensation, relative to the peak illumination.
        agc_window: the figure shows the image with automatic gain control over this many
            metres (0: none); ``image.npy`` is not gained.
        batch: shots per batched operator (0: all at once).
    """

    kind = "rtm"
    precision = "f32"

    model: str = "marmousi2"
    spacing: float = 20.0
    crop_z: tuple[float, ...] = ()
    crop_x: tuple[float, ...] = ()
    shots: int = 24
    receivers: int = 200
    source_depth: float = 40.0
    receiver_depth: float = 40.0
    peak_frequency: float = 8.0
    duration: float = 3.0
    dt: float = 0.0
    order: int = 8
    pml_width: int = 20
    background_smoothing: float = 300.0
    water_depth: float = 460.0
    method: Literal["rtm", "lsrtm"] = "rtm"
    iterations: int = 5
    compensate: bool = True
    laplacian: bool = True
    epsilon: float = 1e-3
    agc_window: float = 500.0
    batch: int = 4

    def check(self) -> None:
        """Value ranges (each error names the field and what is allowed)."""
        if self.model not in MODEL_NAMES:
            raise ValueError(f"model={self.model!r} is not allowed; choose one of "
                             f"{', '.join(repr(n) for n in MODEL_NAMES)}")
        for name in ("spacing", "peak_frequency", "duration", "epsilon"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive")
        for name in ("shots", "receivers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if self.order not in (2, 4, 6, 8):
            raise ValueError(f"order={self.order} is not supported; choose 2, 4, 6 or 8")
        for name in ("dt", "background_smoothing", "water_depth", "agc_window"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be 0 or more")
        for name in ("iterations", "pml_width", "batch"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be 0 or more")
        for name in ("crop_z", "crop_x"):
            if len(getattr(self, name)) not in (0, 2):
                raise ValueError(f"{name}={list(getattr(self, name))} must be empty or "
                                 "[start, end] in m")

    def smoke(self) -> RtmScenario:
        """A tiny, quick version (seconds)."""
        return self.with_(spacing=80.0, crop_x=(4000.0, 7000.0), crop_z=(0.0, 1600.0),
                          shots=2, receivers=20, duration=1.2, pml_width=8, order=4,
                          peak_frequency=3.0,
                          iterations=min(self.iterations, 2), background_smoothing=240.0,
                          water_depth=400.0, batch=0)

    def describe(self) -> str:
        """The method, the model and the acquisition in one line."""
        what = "least-squares RTM" if self.method == "lsrtm" else "RTM"
        return (f"{what} of the {self.model} model at {self.spacing:g} m, {self.shots} shots, "
                f"{self.receivers} receivers, {self.peak_frequency:g} Hz")

    def data_needed(self) -> str:
        """Named real models that do not ship with diffsim are read from --data."""
        return self._fwi().data_needed()

    def _fwi(self) -> FwiScenario:
        return FwiScenario(model=self.model, spacing=self.spacing, crop_z=self.crop_z,
                           crop_x=self.crop_x)

    def true_model(self, data: os.PathLike[str] | str | None = None) -> tuple[np.ndarray, float]:
        """The true velocity ``[z, x]`` in m/s and its spacing in m."""
        return self._fwi().true_model(data)

    def run(self, options: RunOptions) -> dict[str, object]:
        """Synthesise the scattered data, migrate, write images, figures and summary."""
        from diffsim.scenarios._rtm_job import run_rtm

        return run_rtm(self, options)
