"""The job behind ``diffsim run <fwi-density scenario>``: velocity and density together."""

from __future__ import annotations

import functools
import math
import pathlib
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from diffsim.fwi import SerialShots, Stage, acoustic_simulation
from diffsim.fwi.imaging import correlation
from diffsim.fwi.joint import JointInversion, Parameter
from diffsim.io import RunOptions, write_json, write_npy
from diffsim.scenarios._fwi_job import _check_out, surface_experiment

if TYPE_CHECKING:
    from diffsim.scenarios.fwi import DensityFwiScenario


def run_density_scenario(scenario: DensityFwiScenario, options: RunOptions) -> dict[str, object]:
    """Run a joint velocity-density inversion into ``options.out`` (resumable).

    Writes ``scenario.toml``, ``observed.npy``, ``velocity_NNNN.npy`` and
    ``density_NNNN.npy`` per iteration, ``history.json`` (each parameter's relative model
    error per iteration), ``models.png``, ``density.png``, ``loss.png`` and
    ``summary.json`` (with the crosstalk measures: how much of each parameter's update
    correlates with the other parameter's true perturbation).
    """
    from diffsim.models import smooth
    from diffsim.viz import figures

    start = time.perf_counter()
    out = pathlib.Path(options.out)
    if options.iterations is not None:
        scenario = scenario.with_(iterations=options.iterations)
    say = options.echo
    v_true, h = scenario.true_model(options.data)
    rho_true, _ = scenario.true_density(options.data)
    fixed = int(math.ceil(scenario.water_depth / h - 1e-9))
    sigma = scenario.start_smoothing / h
    v0 = np.clip(smooth(v_true, sigma, fixed_rows=fixed), scenario.vmin, scenario.vmax)
    rho0 = np.clip(smooth(rho_true, sigma, fixed_rows=fixed), scenario.density_min,
                   scenario.density_max)
    vmax = max(scenario.vmax, float(v_true.max()))
    data = surface_experiment(scenario, v_true.shape, h, vmax, density=True,
                              free_surface=scenario.free_surface)
    dt, nt, src, rec = data.dt, data.wavelet.size, data.sources, data.receivers
    factory = functools.partial(acoustic_simulation, density=rho0)
    shots = SerialShots(batch=scenario.batch, checkpoint=options.checkpoint, simulation=factory)
    shots.check(v0, data)
    _check_out(scenario, out, options.resume)
    out.mkdir(parents=True, exist_ok=True)
    scenario.save(out / "scenario.toml")
    observed_path = out / "observed.npy"
    if observed_path.is_file():
        observed = np.load(observed_path)
    else:
        say(f"synthesising {scenario.shots} shots on {v_true.shape[0]} x {v_true.shape[1]} "
            f"cells (variable density), {nt} samples at dt {dt * 1e3:.3f} ms")
        observed = shots.forward(v_true, data, others={"density": rho_true})
        write_npy(observed_path, observed)
    data = replace(data, observed=np.asarray(observed, dtype=np.float64))
    params = [Parameter("velocity", v0, (scenario.vmin, scenario.vmax), scenario.velocity_step,
                        v_true, "m/s"),
              Parameter("density", rho0, (scenario.density_min, scenario.density_max),
                        scenario.density_step, rho_true, "kg/m^3")]
    stages = [Stage(f or None, scenario.iterations) for f in scenario.stages]
    inversion = JointInversion(data=data, parameters=params, stages=stages,
                               evaluator=shots.evaluate, out=out, fixed_rows=fixed,
                               depth_power=scenario.depth_power,
                               echo=None if options.quiet else say)
    result = inversion.run()
    v1, rho1 = result.models["velocity"], result.models["density"]
    syn0 = shots.forward(v0, data, others={"density": rho0})
    syn1 = shots.forward(v1, data, others={"density": rho1})
    shots.close()
    norm = float(np.linalg.norm(observed))
    below = np.s_[fixed:]
    dv_true, drho_true = (v_true - v0)[below], (rho_true - rho0)[below]
    dv, drho = (v1 - v0)[below], (rho1 - rho0)[below]
    summary = {
        "scenario": scenario.as_dict(), "grid": list(v_true.shape), "spacing_m": h, "dt_s": dt,
        "nt": nt,
        "initial_misfit": float(np.linalg.norm(syn0 - observed) / norm),
        "final_misfit": float(np.linalg.norm(syn1 - observed) / norm),
        "initial_velocity_error": params[0].error(v0), "final_velocity_error": params[0].error(v1),
        "initial_density_error": params[1].error(rho0), "final_density_error": params[1].error(rho1),
        # Crosstalk: the correlation of each update with its own true perturbation and with
        # the other parameter's.
        "velocity_update_vs_true_velocity_perturbation": correlation(dv, dv_true),
        "velocity_update_vs_true_density_perturbation": correlation(dv, drho_true),
        "density_update_vs_true_density_perturbation": correlation(drho, drho_true),
        "density_update_vs_true_velocity_perturbation": correlation(drho, dv_true),
        "true_perturbations_correlation": correlation(dv_true, drho_true),
        "iterations": max(len(result.history) - 1, 0),     # the history's entry 0 is the start
        "wall_seconds": result.wall_seconds, "gradients_this_session": result.evaluations,
        "resumed": bool(options.resume),
    }
    write_npy(out / "velocity_final.npy", v1)
    write_npy(out / "density_final.npy", rho1)
    figures.model_figure(out / "models.png", [("true velocity", v_true), ("initial", v0),
                                              ("inverted", v1)], h, sources=src, receivers=rec)
    figures.model_figure(out / "density.png", [("true density", rho_true), ("initial", rho0),
                                               ("inverted", rho1)], h, unit=("g/cm^3", 1e3))
    if result.history:
        figures.loss_figure(out / "loss.png", result.history,
                            title="Velocity and density FWI", error="density_error",
                            error_label="relative density error")
    summary["session_seconds"] = time.perf_counter() - start
    write_json(out / "summary.json", summary)
    say(f"misfit {summary['initial_misfit']:.4f} -> {summary['final_misfit']:.4f}; velocity error "
        f"{summary['initial_velocity_error']:.4f} -> {summary['final_velocity_error']:.4f}, "
        f"density error {summary['initial_density_error']:.4f} -> "
        f"{summary['final_density_error']:.4f}; wrote {out}")
    return summary
