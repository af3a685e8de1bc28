"""3D full-waveform inversion: a Marmousi2-based volume whose gradients spill checkpoints to disk."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Self

import numpy as np

from diffsim.io import RunOptions
from diffsim.scenarios._base import Scenario

__all__ = ["Fwi3dScenario"]

#: The packaged Marmousi2 section (``marmousi2_vp_20m``): 3.5 km deep, 17 km wide.
SECTION_DEPTH = 3500.0
SECTION_WIDTH = 17000.0
#: :func:`diffsim.models.marmousi2_3d` stretches depth by up to 6 % along y and slides
#: its window 0.4 m along x per m of y.
DEPTH_STRETCH = 1.06
SLIDE = 0.4


@dataclass(frozen=True)
class Fwi3dScenario(Scenario):
    """Invert a 3D velocity volume from surface data, checkpoints spilled to disk.

    The true model is :func:`diffsim.models.marmousi2_3d` (the Marmousi2 section
    extended along ``y`` with an oblique strike and a depth stretch); the start is the
    truth smoothed by ``start_smoothing``, with the water rows kept. Every gradient runs
    under the checkpoint plan ``checkpoint`` picks: a memory budget that cannot hold the
    rollout plus a disk tier gives a :class:`~diffsim.TwoLevel` plan, whose disk states
    the tape writes and reads back itself (``diffsim run ... --checkpoint`` overrides it).

    Attributes:
        shape: ``(nz, ny, nx)`` cells; with ``spacing`` it must fit in the section:
            ``(nz - 1) spacing x 1.06 <= 3500`` m and ``((nx - 1) + 0.4 (ny - 1)) spacing
            <= 17000`` m.
        spacing: cell size in m (all three axes).
        shots: ``(along y, along x)``: a grid of shots on the surface, one source each.
        receivers: ``(along y, along x)``: a grid of receivers over the whole surface,
            shared by every shot.
        source_depth: m.
        receiver_depth: m.
        source_margin: m between each side of the model and the outermost sources.
        peak_frequency: Ricker peak frequency in Hz.
        duration: record length in s.
        dt: time step in s; 0 picks 80 % of the stability limit at ``vmax`` (rounded to µs).
        order: spatial order, 2, 4, 6 or 8.
        pml_width: PML cells on every absorbing face.
        free_surface: free surface on top (else PML).
        stages: low-pass corner frequencies in Hz, one inversion stage each, low to high;
            0 means the full band.
        iterations: L-BFGS-B iterations per stage.
        start_smoothing: Gaussian smoothing (sigma, m) of the true model into the start.
        water_depth: the top this many metres keep the true velocity (known water).
        vmin: lower velocity bound in m/s.
        vmax: upper velocity bound in m/s.
        depth_power: the update is weighted by ``depth ** depth_power`` (0 for none).
        checkpoint: the checkpoint schedule of every gradient, as ``--checkpoint`` takes
            it (``budget:SIZE,disk:SIZE[,dir:PATH]`` for a memory budget with a disk tier).
    """

    kind = "fwi-3d"
    precision = "f32"

    shape: tuple[int, int, int] = (32, 32, 48)
    spacing: float = 50.0
    shots: tuple[int, int] = (2, 2)
    receivers: tuple[int, int] = (12, 12)
    source_depth: float = 20.0
    receiver_depth: float = 20.0
    source_margin: float = 400.0
    peak_frequency: float = 5.0
    duration: float = 2.0
    dt: float = 0.0
    order: int = 4
    pml_width: int = 10
    free_surface: bool = False
    stages: tuple[float, ...] = (3.0, 5.0)
    iterations: int = 3
    start_smoothing: float = 400.0
    water_depth: float = 440.0
    vmin: float = 1000.0
    vmax: float = 4800.0
    depth_power: float = 1.0
    checkpoint: str = "budget:64MiB,disk:1GiB"

    def check(self) -> None:
        """Value ranges (each error names the field, what is allowed and how to fix it)."""
        from diffsim.checkpoint import parse_schedule

        for name in ("spacing", "peak_frequency", "duration", "vmin", "vmax"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive")
        if self.vmin >= self.vmax:
            raise ValueError(f"vmin={self.vmin} must be below vmax={self.vmax} (m/s)")
        if min(self.shape) < 8:
            raise ValueError(f"shape={list(self.shape)} must be at least [8, 8, 8] cells "
                             "(nz, ny, nx)")
        nz, ny, nx = self.shape
        h = self.spacing
        deepest = 1 + math.floor(SECTION_DEPTH / (DEPTH_STRETCH * h) + 1e-9)
        if nz > deepest:
            raise ValueError(
                f"shape={list(self.shape)} at spacing={h:g} m is deeper than the Marmousi2 "
                f"section: (nz - 1) x spacing x {DEPTH_STRETCH} (the depth stretch along y) "
                f"= {(nz - 1) * h * DEPTH_STRETCH:g} m must be at most {SECTION_DEPTH:g} m, so "
                f"nz must lie in [8, {deepest}] at this spacing; use fewer cells or a smaller "
                "spacing")
        reach = ((nx - 1) + SLIDE * (ny - 1)) * h
        if reach > SECTION_WIDTH:
            widest = 1 + math.floor(SECTION_WIDTH / h - SLIDE * (ny - 1) + 1e-9)
            raise ValueError(
                f"shape={list(self.shape)} at spacing={h:g} m is wider than the Marmousi2 "
                f"section: the x extent plus the slide along y, (nx - 1 + {SLIDE} (ny - 1)) x "
                f"spacing = {reach:g} m, must be at most {SECTION_WIDTH:g} m, so nx must lie "
                f"in [8, {widest}] with ny={ny} at this spacing; use fewer cells or a smaller "
                "spacing")
        for name in ("shots", "receivers"):
            if min(getattr(self, name)) < 1:
                raise ValueError(f"{name}={list(getattr(self, name))} must be [along y, along "
                                 "x], each at least 1")
        depth = (nz - 1) * h
        for name in ("source_depth", "receiver_depth"):
            if not 0 <= getattr(self, name) <= depth:
                raise ValueError(f"{name}={getattr(self, name)} m must lie in [0, {depth:g}] m "
                                 "(the model's depth)")
        half = 0.5 * (min(ny, nx) - 1) * h
        if not 0 <= self.source_margin <= half:
            raise ValueError(f"source_margin={self.source_margin} m must lie in [0, {half:g}] m "
                             "(half the model's shorter side)")
        if self.order not in (2, 4, 6, 8):
            raise ValueError(f"order={self.order} is not supported; choose 2, 4, 6 or 8")
        if self.dt < 0:
            raise ValueError(f"dt={self.dt} must be 0 (automatic) or a positive time step in s")
        if not self.stages or any(f < 0 for f in self.stages):
            raise ValueError(f"stages={list(self.stages)} must list corner frequencies >= 0 Hz "
                             "(0 for the full band), e.g. stages=[3, 5]")
        for name in ("iterations", "pml_width"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be 0 or more")
        for name in ("start_smoothing", "water_depth", "depth_power"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be 0 or more")
        if self.water_depth >= depth:
            raise ValueError(f"water_depth={self.water_depth} m must be below the model's depth "
                             f"({depth:g} m); the rows above it are kept at the truth")
        try:
            parse_schedule(self.checkpoint)
        except ValueError as exc:
            raise ValueError(f"checkpoint={self.checkpoint!r} is not a checkpoint schedule "
                             f"({exc}); e.g. checkpoint=\"budget:64MiB,disk:1GiB\" (a memory "
                             "budget with a disk tier), \"all\" or \"binomial:16\"") from None

    def smoke(self) -> Self:
        """A tiny, quick version: a few seconds after compiling, still spilling to disk.

        At order 2: its 3D kernels compile in about a minute on 2 cores, order 4's in
        about 2.5 (once per machine: Taichi caches them).
        """
        # one state of the smoke grid's 4 shots is 5.3 MiB: the memory budget holds three,
        # the disk 24, and the plan is a TwoLevel one with disk states
        return self.with_(shape=(16, 16, 20), spacing=80.0, shots=(2, 2), receivers=(4, 4),
                          source_margin=320.0, peak_frequency=8.0, duration=1.0, order=2,
                          pml_width=6, stages=(0.0,), iterations=2,
                          checkpoint="budget:16MiB,disk:128MiB")

    def describe(self) -> str:
        """The model, the grid, the acquisition and the checkpoints in one line."""
        nz, ny, nx = self.shape
        return (f"3D FWI of Marmousi2 extended along y ({nz} x {ny} x {nx} cells at "
                f"{self.spacing:g} m), {self.shots[0]} x {self.shots[1]} shots, "
                f"{self.receivers[0]} x {self.receivers[1]} receivers, stages "
                f"{', '.join(f'{f:g}' for f in self.stages)} Hz, checkpoints "
                f"{self.checkpoint}")

    def true_model(self, data: os.PathLike[str] | str | None = None) -> tuple[np.ndarray, float]:
        """The true velocity ``[z, y, x]`` in m/s and its spacing in m."""
        from diffsim.models import marmousi2_3d

        return marmousi2_3d(self.shape, self.spacing, data), self.spacing

    def run(self, options: RunOptions) -> dict[str, object]:
        """Synthesise the data, invert, write the model, history, summary and figures."""
        from diffsim.scenarios._fwi3d_job import run_3d_scenario

        return run_3d_scenario(self, options)
