"""The job behind ``diffsim run <fwi scenario>``: data, inversion, figures and summary."""

from __future__ import annotations

import functools
import os
import pathlib
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import numpy as np

from diffsim.fwi import (
    Inversion,
    SerialShots,
    ShotData,
    Stage,
    acoustic_simulation,
    dask_evaluator,
    illumination,
    surface_acquisition,
)
from diffsim.fwi.evaluators import Evaluator
from diffsim.io import RunOptions, read_json, write_json, write_npy

if TYPE_CHECKING:
    from diffsim.scenarios._base import Scenario
    from diffsim.scenarios.fwi import FwiScenario

# -- the job behind `diffsim run <fwi scenario>` -------------------------------------------------

def _auto_dt(vmax: float, spacing: float, order: int) -> float:
    from diffsim.acoustic import max_stable_dt

    return float(np.floor(0.8 * max_stable_dt(vmax, (spacing, spacing), order) * 1e6) / 1e6)


def _check_dt(scenario: FwiScenario, dt: float, spacing: float, true_max: float) -> None:
    """The time step must be stable for every velocity the run can meet (data and bounds)."""
    from diffsim.acoustic import max_stable_dt

    vmax = max(scenario.vmax, true_max)
    limit = max_stable_dt(vmax, (spacing, spacing), scenario.order)
    if dt > limit:
        raise ValueError(f"dt={dt:g} s exceeds the stability (CFL) limit {limit:.6g} s for "
                         f"velocities up to {vmax:g} m/s (the true model and vmax) at "
                         f"{spacing:g} m spacing and order {scenario.order}; set dt <= "
                         f"{limit:.6g} s, or dt = 0 to have it chosen")


def _read_observed(path: pathlib.Path, data: ShotData, say: Callable[[str], None]) -> np.ndarray:
    """Observed traces from ``.npy`` or SEG-Y, checked against the scenario's acquisition.

    A SEG-Y file's headers must agree with the scenario: the sample interval, the number
    of samples, and (when the file carries coordinates) the source and receiver x
    positions to within half a cell.
    """
    from diffsim.segy import read_segy, read_segy_geometry

    expected = data.observed.shape
    if path.suffix.lower() in (".sgy", ".segy"):
        geometry = read_segy_geometry(path)
        if abs(geometry.dt - data.dt) > 0.5e-6:
            raise ValueError(f"observed_file {path}: its sample interval is {geometry.dt * 1e3:g} ms "
                             f"but this scenario samples at {data.dt * 1e3:g} ms; set dt = "
                             f"{geometry.dt:g} in the scenario, or resample the data")
        traces = read_segy(path)[0]
        if traces.shape == expected and geometry.located:
            half = 0.5 * data.spacing
            src_x = np.asarray(data.sources)[:, -1]
            rec_x = np.broadcast_to(np.asarray(data.receivers)[..., -1], expected[:2])
            bad_src = np.abs(geometry.sources[:, 1] - src_x) > half
            bad_rec = np.abs(geometry.receivers[..., 1] - rec_x) > half
            if bad_src.any() or bad_rec.any():
                if bad_src.any():
                    k = int(np.argmax(bad_src))
                    what = (f"shot {k} has its source at x = {geometry.sources[k, 1]:g} m "
                            f"(scenario: {src_x[k]:g} m)")
                else:
                    k, r = (int(i) for i in np.argwhere(bad_rec)[0])
                    what = (f"shot {k} receiver {r} is at x = {geometry.receivers[k, r, 1]:g} m "
                            f"(scenario: {rec_x[k, r]:g} m)")
                raise ValueError(f"observed_file {path}: its headers place the acquisition "
                                 f"elsewhere than this scenario: {what}; give the scenario the "
                                 "file's shots and receivers, or use data recorded on this "
                                 "geometry")
        elif traces.shape == expected:
            say(f"note: {path} carries no source or receiver coordinates; its geometry is "
                "taken on trust")
    else:
        try:
            traces = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"observed_file {path}: not a readable .npy file ({exc})") from None
    if traces.shape != expected:
        raise ValueError(f"observed_file {path} holds traces of shape {list(traces.shape)}; this "
                         f"scenario expects [shot, receiver, nt] = {list(expected)}")
    if not np.all(np.isfinite(traces)):
        raise ValueError(f"observed_file {path} contains NaN or Inf")
    return np.asarray(traces, dtype=np.float64)


def _finished_iterations(out: pathlib.Path) -> int:
    """Iterations finished in ``out/history.json`` (its start entry, iteration 0, not counted)."""
    try:
        history = read_json(out / "history.json")
    except (OSError, ValueError):
        return 0
    if not isinstance(history, list):
        return 0
    return sum(1 for h in history if not (isinstance(h, dict) and h.get("iteration") == 0))


def _clear_failed_start(out: pathlib.Path) -> bool:
    """Remove what a run that finished no iteration left in ``out``; whether there was any.

    Only the files a run writes before its first iteration ends: the scenario, the
    observed data, the start model, the evaluation store. Anything else stays.
    """
    found = False
    for name in ("scenario.toml", "observed.npy", "observed.sgy", "history.json",
                 "model_0000.npy"):
        if (out / name).is_file():
            (out / name).unlink()
            found = True
    store = out / "evaluations"
    if store.is_dir():
        for item in store.glob("*.npz"):
            item.unlink()
        if not any(store.iterdir()):
            store.rmdir()
        found = True
    return found


class SurfaceSurvey(Protocol):
    """The scenario fields of a surface acquisition (FWI and RTM scenarios have them).

    ``shots`` and ``receivers`` are counts in 2D, ``(along y, along x)`` grids in 3D.
    """

    @property
    def dt(self) -> float: ...
    @property
    def duration(self) -> float: ...
    @property
    def order(self) -> int: ...
    @property
    def shots(self) -> int | tuple[int, int]: ...
    @property
    def receivers(self) -> int | tuple[int, int]: ...
    @property
    def source_depth(self) -> float: ...
    @property
    def receiver_depth(self) -> float: ...
    @property
    def peak_frequency(self) -> float: ...
    @property
    def pml_width(self) -> int: ...


def surface_experiment(scenario: SurfaceSurvey, shape: tuple[int, ...], spacing: float,
                       vmax: float, *, density: bool = False, free_surface: bool = False,
                       source_margin: float | None = None) -> ShotData:
    """The experiment of a scenario: time step, surface shots and receivers, Ricker wavelet.

    ``dt`` is the scenario's, or 80 % of the stability limit at ``vmax`` on the grid of
    ``shape`` (2D or 3D; rounded down to a microsecond); a ``dt`` above the limit (of the
    variable-density scheme with ``density``) is refused with the limit in the message.
    The shots and receivers are :func:`~diffsim.fwi.surface_acquisition`'s (with
    ``source_margin``). The PML is tuned to ``vmax`` and the peak frequency, so every
    simulation of the run has the same one. The observed traces are zeros, to be filled.
    """
    from diffsim.acoustic import max_stable_dt, ricker

    limit = max_stable_dt(vmax, (spacing,) * len(shape), scenario.order, density=density)
    dt = scenario.dt or float(np.floor(0.8 * limit * 1e6) / 1e6)
    if dt > limit:
        scheme = " of the variable-density scheme" if density else ""
        raise ValueError(f"dt={dt:g} s exceeds the stability (CFL) limit {limit:.6g} s{scheme} "
                         f"for velocities up to {vmax:g} m/s at {spacing:g} m and order "
                         f"{scenario.order}; set dt <= {limit:.6g} s, or dt = 0 to have it "
                         "chosen")
    nt = int(round(scenario.duration / dt)) + 1
    src, rec = surface_acquisition(shape, spacing, scenario.shots, scenario.receivers,
                                   source_depth=scenario.source_depth,
                                   receiver_depth=scenario.receiver_depth,
                                   source_margin=source_margin)
    return ShotData(spacing, dt, ricker(scenario.peak_frequency, dt, nt), src, rec,
                    np.zeros((len(src), len(rec), nt)), order=scenario.order,
                    pml_width=scenario.pml_width, free_surface=free_surface,
                    pml_velocity=vmax, pml_frequency=scenario.peak_frequency)


def check_same_scenario(scenario: Scenario, saved: pathlib.Path) -> None:
    """``--resume`` continues the run in ``saved`` only with the same settings.

    ``iterations`` may differ (a longer run continues a shorter one), and so may a
    ``checkpoint`` field: every checkpoint plan gives the same gradient bits.
    """
    import tomllib

    # both sides as the current version writes them (fields that do not apply dropped)
    before = type(scenario).from_dict(tomllib.loads(saved.read_text(encoding="utf-8"))).as_dict()
    now = scenario.as_dict()
    differ = sorted(k for k in set(before) | set(now)
                    if k not in ("iterations", "checkpoint") and before.get(k) != now.get(k))
    if differ:
        raise ValueError(f"--resume: the scenario differs from the one in {saved} in "
                         f"{', '.join(differ)}; resume with the same settings or choose "
                         "another --out")


def _check_out(scenario: Scenario, out: pathlib.Path, resume: bool) -> None:
    """Refuse to mix runs: a folder holding a run needs --resume, with the same scenario.

    A folder whose run finished no iteration (a failed start: a bad time step, an
    unreachable scheduler, a corrupt data file) is taken over by a new command.
    """
    saved = out / "scenario.toml"
    has_run = saved.is_file() or (out / "evaluations").is_dir()
    if has_run and _finished_iterations(out) == 0 and (not resume or not saved.is_file()):
        _clear_failed_start(out)
        return
    if has_run and not resume:
        raise ValueError(f"{out} already holds a run; pass --resume to continue it, or choose "
                         "another --out (or delete the folder) to start afresh")
    if resume and saved.is_file():
        check_same_scenario(scenario, saved)


def fwi_problem(scenario: FwiScenario, data_dir: os.PathLike[str] | str | None
                ) -> tuple[np.ndarray, np.ndarray, ShotData, int]:
    """The true and starting models, the experiment (observed traces zero) and the fixed rows.

    The starting model is the truth smoothed (or a background), clipped to the bounds; the
    water rows (``fixed``) keep the truth. One experiment description for every
    simulation of the run: the PML is tuned to ``vmax`` and the peak frequency.
    """
    from diffsim.acoustic import ricker
    from diffsim.models import smooth

    truth, h = scenario.true_model(data_dir)
    fixed = int(np.ceil(scenario.water_depth / h - 1e-9))
    if scenario.start_model == "background":
        initial = np.full(truth.shape, float(truth[0].mean()))
        initial[:fixed] = truth[:fixed]
    else:
        initial = smooth(truth, scenario.start_smoothing / h, fixed_rows=fixed)
    initial = np.clip(initial, scenario.vmin, scenario.vmax)
    dt = scenario.dt or _auto_dt(scenario.vmax, h, scenario.order)
    _check_dt(scenario, dt, h, float(truth.max()))
    nt = int(round(scenario.duration / dt)) + 1
    src, rec = surface_acquisition(truth.shape, h, scenario.shots, scenario.receivers,
                                   source_depth=scenario.source_depth,
                                   receiver_depth=scenario.receiver_depth)
    data = ShotData(h, dt, ricker(scenario.peak_frequency, dt, nt), src, rec,
                    np.zeros((scenario.shots, scenario.receivers, nt)), order=scenario.order,
                    pml_width=scenario.pml_width, free_surface=scenario.free_surface,
                    pml_velocity=scenario.vmax, pml_frequency=scenario.peak_frequency)
    return truth, initial, data, fixed


def run_scenario(scenario: FwiScenario, options: RunOptions) -> dict[str, object]:
    """Run an FWI scenario (a ``diffsim.scenarios.FwiScenario``) into ``options.out``.

    Writes ``scenario.toml``, ``observed.npy`` and ``observed.sgy``, ``model_NNNN.npy`` per
    iteration, ``history.json``, ``summary.json`` and the figures. With ``options.resume``
    the finished iterations are read back, not recomputed.
    """
    from diffsim.segy import write_segy

    out = pathlib.Path(options.out)
    if options.iterations is not None:
        scenario = scenario.with_(iterations=options.iterations)
    if scenario.observed_file and not pathlib.Path(scenario.observed_file).is_file():
        raise ValueError(f"observed_file={scenario.observed_file!r}: no such file (looked in "
                         f"{pathlib.Path(scenario.observed_file).resolve().parent}); give the path "
                         "of a .npy or SEG-Y file of traces [shot, receiver, nt], or leave it empty "
                         "to synthesise the data from the true model")
    say = options.echo
    truth, initial, data, fixed = fwi_problem(scenario, options.data)
    h, dt, nt = data.spacing, data.dt, data.wavelet.shape[-1]
    src, rec = data.sources, data.receivers
    if float(truth.max()) > scenario.vmax or float(truth.min()) < scenario.vmin:
        say(f"note: the true model spans {truth.min():.0f}-{truth.max():.0f} m/s, outside the "
            f"bounds [{scenario.vmin:g}, {scenario.vmax:g}]")
    observed_path = out / "observed.npy"
    given = None
    if scenario.observed_file and not (options.resume and observed_path.is_file()):
        given = _read_observed(pathlib.Path(scenario.observed_file), data, say)
    # everything that can fail is checked before the folder exists: the budget (the
    # simulations are built now and kept), the scheduler (connected now)
    start = time.perf_counter()
    # a smoke run is short: the array engine's kernels (compiled once, then read from
    # Taichi's disk cache by every later process) start quicker than per-shape fields
    factory = functools.partial(acoustic_simulation, engine="arrays") if options.smoke else None
    shots = SerialShots(batch=scenario.batch, checkpoint=options.checkpoint, simulation=factory)
    shots.check(initial, data)
    close = None
    evaluator: Evaluator = shots
    if options.workers > 1 or options.scheduler:
        evaluator, close = dask_evaluator(workers=options.workers, scheduler=options.scheduler,
                                          checkpoint=options.checkpoint, simulation=factory)
    try:
        _check_out(scenario, out, options.resume)
        out.mkdir(parents=True, exist_ok=True)
        scenario.save(out / "scenario.toml")
        if observed_path.is_file():
            observed = np.load(observed_path)
        elif given is not None:
            observed = given
            write_npy(observed_path, observed)
        else:
            say(f"synthesising {scenario.shots} shots on {truth.shape[0]} x {truth.shape[1]} "
                f"cells, {nt} samples at dt {dt * 1e3:.3f} ms")
            observed = shots.forward(truth, data)
            if scenario.noise > 0:
                rng = np.random.default_rng(scenario.seed)
                rms = float(np.sqrt(np.mean(observed ** 2)))
                observed = observed + scenario.noise * rms * rng.normal(size=observed.shape)
            write_npy(observed_path, observed)
        if not (out / "observed.sgy").is_file():
            write_segy(out / "observed.sgy", observed, dt, src, rec)
    except BaseException:
        if close is not None:
            close()
        raise
    data = replace(data, observed=np.asarray(observed, dtype=np.float64))
    light = illumination(initial, data, shots=shots) if scenario.illumination else None
    stages = [Stage(f or None, scenario.iterations) for f in scenario.stages]
    inversion = Inversion(data=data, initial=initial, stages=stages,
                          bounds=(scenario.vmin, scenario.vmax), evaluator=evaluator, out=out,
                          truth=truth, fixed_rows=fixed, depth_power=scenario.depth_power,
                          illumination=light, smoothing=scenario.update_smoothing / h,
                          echo=None if options.quiet else say)
    try:
        result = inversion.run()
    finally:
        if close is not None:
            close()
    final = result.model
    syn0 = shots.forward(initial, data)
    mid = scenario.shots // 2
    frames: list[np.ndarray] = []
    times: list[float] = []

    def grab(t: int, first: int, u: np.ndarray) -> None:
        if 0 <= mid - first < u.shape[0]:
            frames.append(u[mid - first])
            times.append(t * dt)

    syn1 = shots.forward(final, data)
    norm = float(np.linalg.norm(observed))
    summary = {
        "scenario": scenario.as_dict(),
        "grid": list(truth.shape), "spacing_m": h, "dt_s": dt, "nt": nt,
        "initial_misfit": float(np.linalg.norm(syn0 - observed) / norm),
        "final_misfit": float(np.linalg.norm(syn1 - observed) / norm),
        "initial_model_error": inversion.model_error(initial),
        "final_model_error": inversion.model_error(final),
        "iterations": (int(result.history[-1]["iteration"])
                       if result.history else 0),
        "stage_losses": [list(x) for x in result.stage_losses],
        "wall_seconds": result.wall_seconds,
        "gradients_this_session": result.evaluations,
        "resumed": bool(options.resume),
    }
    write_npy(out / "model_final.npy", final)
    from diffsim.viz import figures

    figures.model_figure(out / "models.png", [("true", truth), ("initial", initial),
                                              ("inverted", final)], h, sources=src, receivers=rec)
    figures.shot_figure(out / "shot_gather.png", observed[mid], syn1[mid], dt, rec,
                        f"shot {mid} at the inverted model")
    first = (scenario.stages[0] or None) if scenario.stages else None
    figures.gradient_figure(out / "gradient.png", result.first_gradient, h,
                            title="gradient of the misfit at the starting model, stage 1 "
                                  f"({f'{first:g} Hz' if first else 'full band'}), all shots")
    group, part = shots._parts(initial, data)[0]   # one more gradient, for its costate trace
    group(initial, part)
    figures.costate_figure(out / "costate.png", group.report.costate, dt=dt,
                           title=f"Adjoint state, shots 0-{part.shots - 1}, starting model")
    if result.history:
        figures.loss_figure(out / "loss.png", result.history, title="FWI progress")
    shots.forward(truth, data, every=max(1, (nt - 1) // 24), snapshot=grab)
    figures.wavefield_gif(out / "wavefield.gif", np.asarray(frames), truth, h, times, shot=mid,
                          source=src[mid])
    shots.close()
    summary["session_seconds"] = time.perf_counter() - start
    write_json(out / "summary.json", summary)
    say(f"misfit {summary['initial_misfit']:.4f} -> {summary['final_misfit']:.4f} (relative L2), "
        f"model error {summary['initial_model_error']:.4f} -> {summary['final_model_error']:.4f}; "
        f"{summary['iterations']} iterations, {summary['wall_seconds']:.1f} s; wrote {out}")
    return summary
