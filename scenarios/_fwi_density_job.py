"""The job behind ``diffsim run <fwi-density scenario>``: velocity and density together."""

from __future__ import annotations

import functools
import pathlib
from typing import TYPE_CHECKING

from diffsim.fwi import acoustic_simulation
from diffsim.fwi.joint import Parameter
from diffsim.io import RunOptions
from diffsim.scenarios._fwi_job import surface_experiment
from diffsim.scenarios._fwi_joint_job import JointOutcome, JointSetup, run_joint, smoothed_start

if TYPE_CHECKING:
    from diffsim.scenarios.fwi import DensityFwiScenario


def run_density_scenario(scenario: DensityFwiScenario, options: RunOptions) -> dict[str, object]:
    """Run a joint velocity-density inversion into ``options.out`` (resumable).

    Writes what :func:`~diffsim.scenarios._fwi_joint_job.run_joint` writes
    (``velocity_NNNN.npy`` and ``density_NNNN.npy`` per iteration, ``history.json``,
    ``summary.json`` with the crosstalk measures: how much of each parameter's update
    correlates with the other parameter's true perturbation), and the figures
    ``models.png``, ``density.png`` and ``loss.png``.
    """
    v_true, h = scenario.true_model(options.data)
    rho_true, _ = scenario.true_density(options.data)
    v_bounds = (scenario.vmin, scenario.vmax)
    rho_bounds = (scenario.density_min, scenario.density_max)
    rho0 = smoothed_start(rho_true, scenario, h, rho_bounds)
    vmax = max(scenario.vmax, float(v_true.max()))
    data = surface_experiment(scenario, v_true.shape, h, vmax, density=True,
                              free_surface=scenario.free_surface)
    params = [Parameter("velocity", smoothed_start(v_true, scenario, h, v_bounds), v_bounds,
                        scenario.velocity_step, v_true, "m/s"),
              Parameter("density", rho0, rho_bounds, scenario.density_step, rho_true, "kg/m^3")]
    setup = JointSetup(params, data, functools.partial(acoustic_simulation, density=rho0),
                       physics="variable density")
    return run_joint(scenario, options, setup, _figures)


def _figures(out: pathlib.Path, run: JointOutcome) -> None:
    """``models.png`` (velocity, with the acquisition), ``density.png``, ``loss.png``."""
    from diffsim.viz import figures

    data = run.data
    figures.model_figure(out / "models.png", run.panels("velocity", "velocity"), run.spacing,
                         sources=data.sources, receivers=data.receivers)
    figures.model_figure(out / "density.png", run.panels("density", "density"), run.spacing,
                         unit=("g/cm^3", 1e3))
    if run.result.history:
        figures.loss_figure(out / "loss.png", run.result.history,
                            title="Velocity and density FWI", error="density_error",
                            error_label="relative density error")
