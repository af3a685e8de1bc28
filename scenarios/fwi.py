"""Full-waveform inversion scenarios: a model, a surface acquisition, frequency stages."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal, Self

import numpy as np

from diffsim.io import RunOptions
from diffsim.scenarios._base import Scenario

__all__ = ["DensityFwiScenario", "ElasticFwiScenario", "FwiScenario"]

#: The models known by name; ``model`` may also be the path of a ``.npy`` or SEG-Y file.
MODEL_NAMES = ("layered", "camembert", "marmousi2", "overthrust", "marmousi")


#: Models made by diffsim itself (``shape`` applies to them only).
BUILTIN_MODELS = ("layered", "camembert")
#: The built-in models' default grid.
DEFAULT_SHAPE = (60, 160)


@dataclass(frozen=True)
class FwiScenario(Scenario):
    """Invert a velocity model from surface shot gathers.

    Attributes:
        model: ``layered`` or ``camembert`` (built in), or ``marmousi2`` (shipped with
            diffsim), ``overthrust``, ``marmousi`` (read from the data folder), or the path
            of your own model: a ``.npy`` file ``[z, x]`` in m/s or a SEG-Y file (one trace
            per x, samples down in depth), with ``model_spacing``.
        model_spacing: the cell size in m of a model file (both axes).
        shape: ``(nz, nx)`` of a built-in model, cells (not shown, and refused, for real
            models: they keep their own grid).
        spacing: grid spacing of the inversion in m (real models are resampled to it).
        crop_z: ``(top, bottom)`` depth range of a real model in m; empty for all of it.
        crop_x: ``(left, right)`` range of a real model in m; empty for all of it.
        shots: shots along the surface, one source each.
        receivers: receivers along the surface, shared by every shot.
        source_depth: m.
        receiver_depth: m.
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
        start_model: ``smoothed`` (the true model smoothed by ``start_smoothing``) or
            ``background`` (constant: the mean velocity of the true model's top row).
        water_depth: the top this many metres are kept at the true velocity (known water).
        vmin: lower velocity bound in m/s.
        vmax: upper velocity bound in m/s.
        depth_power: the update is weighted by ``depth ** depth_power`` (0 for none).
        update_smoothing: Gaussian smoothing of the update (sigma, m; 0 for none).
        illumination: also scale the update by the inverse square root of the source
            illumination at the starting model (a diagonal pseudo-Hessian).
        noise: Gaussian noise added to the observed data, relative to its RMS.
        observed_file: read observed traces ``[shot, receiver, nt]`` from this ``.npy`` or
            SEG-Y file instead of synthesising them.
        batch: shots per batched stepper in one process (0: all).
        seed: random seed of the noise.
    """

    kind = "fwi"
    precision = "f32"

    model: str = "layered"
    model_spacing: float = 0.0
    shape: tuple[int, int] = DEFAULT_SHAPE
    spacing: float = 20.0
    crop_z: tuple[float, ...] = ()
    crop_x: tuple[float, ...] = ()
    shots: int = 8
    receivers: int = 80
    source_depth: float = 40.0
    receiver_depth: float = 40.0
    peak_frequency: float = 8.0
    duration: float = 1.6
    dt: float = 0.0
    order: int = 4
    pml_width: int = 20
    free_surface: bool = False
    stages: tuple[float, ...] = (4.0, 8.0)
    iterations: int = 10
    start_smoothing: float = 200.0
    start_model: Literal["smoothed", "background"] = "smoothed"
    water_depth: float = 0.0
    vmin: float = 1400.0
    vmax: float = 4000.0
    depth_power: float = 1.0
    update_smoothing: float = 0.0
    illumination: bool = False
    noise: float = 0.0
    observed_file: str = ""
    batch: int = 0
    seed: int = 0

    def check(self) -> None:
        """Value ranges (each error names the field and what is allowed)."""
        from diffsim.models import MODEL_SUFFIXES

        if self.model not in MODEL_NAMES and not self.is_file_model():
            raise ValueError(f"model={self.model!r} is not allowed; choose one of "
                             f"{', '.join(repr(n) for n in MODEL_NAMES)}, or the path of a "
                             f"model file ({', '.join(MODEL_SUFFIXES)}) with model_spacing")
        if self.is_file_model() and not self.model_spacing > 0:
            raise ValueError(f"model={self.model!r} is a file: set model_spacing to its cell "
                             "size in m (e.g. --set model_spacing=12.5)")
        if self.model_spacing < 0:
            raise ValueError(f"model_spacing={self.model_spacing} must be 0 (named models) or "
                             "the cell size of a model file in m")
        positive = ("spacing", "peak_frequency", "duration", "vmin", "vmax")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive")
        for name in ("shots", "receivers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if self.vmin >= self.vmax:
            raise ValueError(f"vmin={self.vmin} must be below vmax={self.vmax}")
        if self.order not in (2, 4, 6, 8):
            raise ValueError(f"order={self.order} is not supported; choose 2, 4, 6 or 8")
        if self.dt < 0:
            raise ValueError(f"dt={self.dt} must be 0 (automatic) or a positive time step in s")
        if not self.stages or any(f < 0 for f in self.stages):
            raise ValueError(f"stages={list(self.stages)} must list corner frequencies >= 0 Hz "
                             "(0 for the full band), e.g. stages=[3, 5]")
        for name in ("crop_z", "crop_x"):
            if len(getattr(self, name)) not in (0, 2):
                raise ValueError(f"{name}={list(getattr(self, name))} must be empty or "
                                 "[start, end] in m")
        if min(self.shape) < 8:
            raise ValueError(f"shape={list(self.shape)} must be at least [8, 8] cells")
        if self.model not in BUILTIN_MODELS and tuple(self.shape) != DEFAULT_SHAPE:
            raise ValueError(f"shape={list(self.shape)} applies to the built-in models "
                             f"({', '.join(BUILTIN_MODELS)}) only; {self.model} keeps its own "
                             "grid: choose the part with crop_z/crop_x (m) and the cell size "
                             "with spacing (m)")
        for name in ("iterations", "pml_width", "batch"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be 0 or more")
        for name in ("start_smoothing", "water_depth", "update_smoothing", "noise",
                     "depth_power"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be 0 or more")

    def smoke(self) -> Self:
        """A tiny, quick version (a few seconds)."""
        changes: dict[str, object] = dict(shots=2, receivers=16, duration=0.5, iterations=2,
                                          pml_width=8, peak_frequency=8.0, stages=(0.0,))
        if self.model in BUILTIN_MODELS:
            changes["shape"] = (24, 48)
        elif self.is_file_model():
            changes.update(duration=1.2)      # the user's grid as it is
        else:
            changes.update(spacing=80.0, crop_x=(0.0, 3000.0), crop_z=(0.0, 1500.0),
                           duration=1.2)   # long enough for the water-bottom reflection
        return self.with_(**changes)

    def with_(self, **changes: object) -> Self:
        """A copy with some fields changed.

        A new model resets the fields it does not use (``shape`` of a built-in model,
        ``model_spacing`` of a file) unless they are given too.
        """
        from diffsim.models import is_model_file

        model = str(changes.get("model", self.model))
        if "model" in changes and model not in BUILTIN_MODELS and "shape" not in changes:
            changes["shape"] = DEFAULT_SHAPE
        if "model" in changes and not is_model_file(model) and "model_spacing" not in changes:
            changes["model_spacing"] = 0.0
        return super().with_(**changes)

    def is_file_model(self) -> bool:
        """Whether ``model`` names a file (by its suffix)."""
        from diffsim.models import is_model_file

        return is_model_file(self.model)

    def as_dict(self) -> dict[str, object]:
        """The fields that apply: ``shape`` for the built-in models, ``model_spacing`` for files."""
        out = super().as_dict()
        if self.model not in BUILTIN_MODELS:
            out.pop("shape")
        if not self.is_file_model():
            out.pop("model_spacing")
        return out

    def describe(self) -> str:
        """The model, the grid and the acquisition in one line."""
        if self.model in BUILTIN_MODELS:
            grid = f"{self.shape[0]} x {self.shape[1]} cells at {self.spacing:g} m"
        else:
            grid = f"resampled to {self.spacing:g} m"
        return (f"FWI of the {self.model} model ({grid}), {self.shots} shots, "
                f"{self.receivers} receivers, stages {', '.join(f'{f:g}' for f in self.stages)} Hz")

    def data_needed(self) -> str:
        """Named real models that do not ship with diffsim are read from --data."""
        from diffsim.models import ships_with_diffsim

        if self.is_file_model():
            return f"reads {self.model}"
        if self.model in BUILTIN_MODELS or ships_with_diffsim(self.model):
            return ""
        return "needs --data DIR (or $DIFFSIM_DATA) holding the model"

    def true_model(self, data: os.PathLike[str] | str | None = None) -> tuple[np.ndarray, float]:
        """The true velocity ``[z, x]`` in m/s and its spacing in m."""
        from diffsim.models import builtin_model, load_model, model_from_file

        if self.model in BUILTIN_MODELS:
            m = builtin_model(self.model, self.shape, self.spacing)
        else:
            m = (model_from_file(self.model, self.model_spacing) if self.is_file_model()
                 else load_model(self.model, data))
            if self.crop_z or self.crop_x:
                m = m.crop(_range(self.crop_z), _range(self.crop_x))
            m = m.resample(self.spacing)
        return m.velocity, m.spacing

    def diagnosis(self, data: os.PathLike[str] | str | None = None
                  ) -> tuple[Any, Any, tuple[str, ...]]:
        """All shots at the starting model (array engine), L2 misfit to the true model's data."""
        from diffsim.fwi.evaluators import acoustic_simulation
        from diffsim.losses import L2
        from diffsim.scenarios._fwi_job import fwi_problem

        truth, initial, experiment, _ = fwi_problem(self, data)
        with acoustic_simulation(truth, experiment, engine="arrays") as sim:
            observed = sim.simulate()["traces"]
        return acoustic_simulation(initial, experiment, engine="arrays"), L2(observed), ("velocity",)

    def run(self, options: RunOptions) -> dict[str, object]:
        """Synthesise (or read) the data, invert, write models, history, summary, figures."""
        from diffsim.scenarios._fwi_job import run_scenario

        return run_scenario(self, options)


def _range(bounds: tuple[float, ...]) -> tuple[float, float] | None:
    """A ``crop_z``/``crop_x`` value as ``(start, end)``, or ``None`` when empty (no crop)."""
    if not bounds:
        return None
    start, end = bounds      # check() allows 0 or 2 entries only
    return start, end


#: Models with a density file (its stem), for :class:`DensityFwiScenario`.
DENSITY_MODELS = {"marmousi2": "marmousi2_rho_20m"}


@dataclass(frozen=True)
class DensityFwiScenario(FwiScenario):
    """Invert P velocity and density together (variable-density acoustics).

    The fields of :class:`FwiScenario` (the start of both parameters is the true model
    smoothed by ``start_smoothing``, the water kept), plus:

    Attributes:
        density_min: lower density bound in kg/m^3.
        density_max: upper density bound in kg/m^3.
        velocity_step: the largest velocity change of each stage's first iteration (m/s).
        density_step: the largest density change of each stage's first iteration (kg/m^3).
    """

    kind = "fwi-density"

    density_min: float = 1000.0
    density_max: float = 3000.0
    velocity_step: float = 60.0
    density_step: float = 40.0

    def check(self) -> None:
        """The FWI checks, a model with a density, and the density bounds."""
        super().check()
        if self.model not in DENSITY_MODELS:
            raise ValueError(f"model={self.model!r} has no density model; inverting density "
                             f"needs one of {', '.join(repr(n) for n in DENSITY_MODELS)}")
        if not 0 < self.density_min < self.density_max:
            raise ValueError(f"density_min={self.density_min} and density_max="
                             f"{self.density_max} must satisfy 0 < density_min < density_max "
                             "(kg/m^3)")
        for name in ("velocity_step", "density_step"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive")
        if self.illumination or self.update_smoothing:
            raise ValueError("illumination and update_smoothing apply to velocity-only FWI; "
                             "set them to false and 0 for a density inversion")
        # what the joint jobs do not read: refused rather than ignored
        if self.observed_file or self.noise or self.start_model != "smoothed":
            raise ValueError(f"observed_file={self.observed_file!r}, noise={self.noise} and "
                             f"start_model={self.start_model!r} apply to velocity-only FWI; a "
                             f"{self.kind} scenario synthesises noise-free data and starts from "
                             "the smoothed truth: set observed_file=\"\", noise=0 and "
                             "start_model=\"smoothed\"")

    def describe(self) -> str:
        """The model, the grid and the acquisition in one line."""
        return "velocity and density " + super().describe()

    def true_density(self, data: os.PathLike[str] | str | None = None
                     ) -> tuple[np.ndarray, float]:
        """The true density ``[z, x]`` in kg/m^3 on the velocity's grid."""
        return self._companion(DENSITY_MODELS[self.model], data)

    def _companion(self, stem: str, data: os.PathLike[str] | str | None
                   ) -> tuple[np.ndarray, float]:
        """Another property of the model (file ``stem``), cropped and resampled as the velocity."""
        from diffsim.models import load_model

        m = load_model(stem, data)
        if self.crop_z or self.crop_x:
            m = m.crop(_range(self.crop_z), _range(self.crop_x))
        m = m.resample(self.spacing)
        return m.velocity, m.spacing

    def diagnosis(self, data: os.PathLike[str] | str | None = None
                  ) -> tuple[Any, Any, tuple[str, ...]]:
        """Not yet: the diagnosis of the joint velocity-density problem is open work."""
        raise ValueError(
            "fwi-density-marmousi2 cannot be diagnosed yet (its two-parameter problem has no "
            "diagnosis); diagnose the velocity problem with `diffsim diagnose marmousi2`")

    def run(self, options: RunOptions) -> dict[str, object]:
        """Synthesise the data, invert both parameters, write models, history, figures."""
        from diffsim.scenarios._fwi_density_job import run_density_scenario

        return run_density_scenario(self, options)


#: Models with an S-velocity file (its stem), for :class:`ElasticFwiScenario`.
VS_MODELS = {"marmousi2": "marmousi2_vs_20m"}
#: A positive bulk modulus needs vs / vp below this.
VS_RATIO_LIMIT = float(np.sqrt(0.75))


@dataclass(frozen=True)
class ElasticFwiScenario(DensityFwiScenario):
    """Invert P velocity, S velocity and density together (2D elastic waves).

    The fields of :class:`DensityFwiScenario` (``vmin``, ``vmax`` and ``velocity_step``
    are P velocity's; the water rows, ``water_depth``, stay at the truth: ``vs = 0``
    there), plus:

    Attributes:
        vs_min: lower S-velocity bound in m/s (0 allows fluid cells).
        vs_max: upper S-velocity bound in m/s.
        vs_step: the largest S-velocity change of each stage's first iteration (m/s).
        vs_ratio: every simulation sees ``vs`` capped at ``vs_ratio * vp`` (a positive bulk
            modulus needs ``vs / vp < sqrt(3/4) = 0.866``; the true model must respect the
            cap); the cap is part of the misfit, so its gradient stays exact.
        source: ``explosive`` (an air gun in the water), ``vertical`` or ``horizontal`` force.
        component: the recorded component the misfit compares: ``vz`` (vertical particle
            velocity), ``vx`` or ``pressure``. One component: the misfit is
            :class:`diffsim.losses.L2`, which reads one output.

    ``free_surface`` (inherited; the registered ``marmousi2-elastic`` sets it) puts the
    elastic engine's free surface (image method) on the water. The time step is the
    staggered scheme's (80 % of its limit at the largest vp); S waves with fewer than
    about 5 cells per wavelength at the top stage's frequency are dispersed, in the
    observed and the modelled data alike (the engine warns): Marmousi2's shallow sediment
    (vs 313-460 m/s) needs its native 20 m grid at 3 Hz.
    """

    kind = "fwi-elastic"

    vs_min: float = 0.0
    vs_max: float = 3000.0
    vs_step: float = 40.0
    vs_ratio: float = 0.84
    source: Literal["explosive", "vertical", "horizontal"] = "explosive"
    component: Literal["vz", "vx", "pressure"] = "vz"

    def check(self) -> None:
        """The density FWI checks, a model with an S velocity, the S-velocity bounds."""
        if self.model not in VS_MODELS:
            raise ValueError(f"model={self.model!r} has no S-velocity model; elastic FWI needs "
                             f"one of {', '.join(repr(n) for n in VS_MODELS)} "
                             "(e.g. --set model=marmousi2)")
        super().check()
        if not 0 <= self.vs_min < self.vs_max:
            raise ValueError(f"vs_min={self.vs_min} and vs_max={self.vs_max} must satisfy "
                             "0 <= vs_min < vs_max (m/s); vs_min=0 keeps fluid cells possible")
        if not self.vs_step > 0:
            raise ValueError(f"vs_step={self.vs_step} must be positive (m/s), e.g. vs_step=40")
        if not 0 < self.vs_ratio < VS_RATIO_LIMIT:
            raise ValueError(f"vs_ratio={self.vs_ratio} must lie in (0, {VS_RATIO_LIMIT:.4f}) "
                             "(vs/vp < sqrt(3/4) keeps the bulk modulus positive); e.g. "
                             "vs_ratio=0.84")

    def describe(self) -> str:
        """The model, the grid and the acquisition in one line."""
        return "P velocity, S velocity and density (elastic) " + FwiScenario.describe(self)

    def smoke(self) -> Self:
        """The FWI smoke version at order 4 (half the first compile of order 8)."""
        return super().smoke().with_(order=4)

    def true_vs(self, data: os.PathLike[str] | str | None = None) -> tuple[np.ndarray, float]:
        """The true S velocity ``[z, x]`` in m/s on the P velocity's grid (0 in water)."""
        return self._companion(VS_MODELS[self.model], data)

    def diagnosis(self, data: os.PathLike[str] | str | None = None
                  ) -> tuple[Any, Any, tuple[str, ...]]:
        """Not yet: the diagnosis of the three-parameter elastic problem is open work."""
        raise ValueError(
            f"{self.kind} scenarios cannot be diagnosed yet (the three-parameter elastic problem "
            "has no diagnosis); diagnose the acoustic problem with `diffsim diagnose marmousi2`")

    def run(self, options: RunOptions) -> dict[str, object]:
        """Synthesise the data, invert the three parameters, write models, history, figures."""
        from diffsim.scenarios._fwi_elastic_job import run_elastic_scenario

        return run_elastic_scenario(self, options)
