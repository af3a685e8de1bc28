"""The job behind ``diffsim run <fwi-elastic scenario>``: vp, vs and density together."""

from __future__ import annotations

import functools
import pathlib
from typing import TYPE_CHECKING

import numpy as np

from diffsim.fwi import elastic_simulation
from diffsim.fwi.joint import Parameter
from diffsim.io import RunOptions
from diffsim.scenarios._fwi_job import surface_experiment
from diffsim.scenarios._fwi_joint_job import JointOutcome, JointSetup, run_joint, smoothed_start

if TYPE_CHECKING:
    from diffsim.scenarios.fwi import ElasticFwiScenario


def run_elastic_scenario(scenario: ElasticFwiScenario, options: RunOptions) -> dict[str, object]:
    """Run a joint vp-vs-density elastic inversion into ``options.out`` (resumable).

    Writes what :func:`~diffsim.scenarios._fwi_joint_job.run_joint` writes (``vp_NNNN.npy``,
    ``vs_NNNN.npy``, ``rho_NNNN.npy`` per iteration, ``history.json``, ``summary.json``
    with ``initial_/final_vp_error``, ``_vs_error``, ``_rho_error``, the misfits and
    their history and the crosstalk), and the figures ``elastic.png`` (true / initial /
    inverted of each parameter, one colour scale per parameter) and ``loss.png``.

    The time step is 80 % of the staggered scheme's stability limit at the largest P
    velocity (or the scenario's ``dt``, checked against it).

    Raises:
        ValueError: the true model's vs / vp exceeds ``vs_ratio`` (the message gives the
            value to set).
    """
    vp_true, h = scenario.true_model(options.data)
    vs_true, _ = scenario.true_vs(options.data)
    rho_true, _ = scenario.true_density(options.data)
    ratio = float(np.max(vs_true / vp_true))
    if ratio > scenario.vs_ratio:
        raise ValueError(f"the true model reaches vs/vp = {ratio:.4f}, above vs_ratio="
                         f"{scenario.vs_ratio}; set vs_ratio between {ratio:.4f} and 0.866 "
                         f"(e.g. --set vs_ratio={min(ratio + 0.01, 0.86):.2f})")
    bounds = {"vp": (scenario.vmin, scenario.vmax), "vs": (scenario.vs_min, scenario.vs_max),
              "rho": (scenario.density_min, scenario.density_max)}
    truths = {"vp": vp_true, "vs": vs_true, "rho": rho_true}
    starts = {k: smoothed_start(truths[k], scenario, h, bounds[k]) for k in truths}
    steps = {"vp": scenario.velocity_step, "vs": scenario.vs_step, "rho": scenario.density_step}
    units = {"vp": "m/s", "vs": "m/s", "rho": "kg/m^3"}
    params = [Parameter(k, starts[k], bounds[k], steps[k], truths[k], units[k]) for k in truths]
    vmax = max(scenario.vmax, float(vp_true.max()))
    data = surface_experiment(scenario, vp_true.shape, h, vmax, density=True,
                              free_surface=scenario.free_surface)
    factory = functools.partial(elastic_simulation, vs=starts["vs"], rho=starts["rho"],
                                source=scenario.source)
    setup = JointSetup(params, data, factory, output=scenario.component, physics="elastic",
                       vs_ratio=scenario.vs_ratio)
    return run_joint(scenario, options, setup, _figures)


def _figures(out: pathlib.Path, run: JointOutcome) -> None:
    """``elastic.png`` (3 x 3: vp, vs, rho as true / initial / inverted) and ``loss.png``."""
    from diffsim.viz import figures

    rows = [(("vp (km/s)", 1e3), run.panels("vp", "vp")),
            (("vs (km/s)", 1e3), run.panels("vs", "vs")),
            (("density (g/cm^3)", 1e3), run.panels("rho", "density"))]
    figures.model_grid_figure(out / "elastic.png", rows, run.spacing, sources=run.data.sources,
                              receivers=run.data.receivers,
                              title="Elastic FWI: true, initial and inverted models")
    if run.result.history:
        figures.loss_figure(out / "loss.png", run.result.history, title="Elastic FWI (vp, vs, rho)",
                            error=("vp_error", "vs_error", "rho_error"),
                            error_label="relative model error")
