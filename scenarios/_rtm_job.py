"""The job behind ``diffsim run <rtm scenario>``: scattered data, migration, figures, summary.

Resumable: the scattered data, each shot group's migrated image and (least-squares RTM)
the CG state after every iteration are written as they finish; ``--resume`` reads them
back and computes only what is missing, so a killed run ends with the same image.
"""

from __future__ import annotations

import math
import pathlib
import time
from typing import TYPE_CHECKING

import numpy as np

from diffsim.checkpoint import parse_schedule
from diffsim.fwi import SerialShots, ShotData, illumination
from diffsim.fwi.imaging import (
    BornShots,
    LeastSquaresMigration,
    agc,
    correlation,
    process,
    reflectivity,
)
from diffsim.io import RunOptions, write_json, write_npy
from diffsim.scenarios._fwi_job import check_same_scenario, surface_experiment

if TYPE_CHECKING:
    from diffsim.scenarios.rtm import RtmScenario

#: What a run writes before its first result (a failed start leaves only these).
_START_FILES = ("scenario.toml", "observed.npy")


def _check_out(scenario: RtmScenario, out: pathlib.Path, resume: bool) -> None:
    """A folder holding a run needs ``--resume`` with the same scenario (failed starts are taken over)."""
    saved = out / "scenario.toml"
    if not saved.is_file():
        return
    results = [p for p in out.iterdir() if p.name not in _START_FILES]
    if not resume:
        if results:
            raise ValueError(f"{out} already holds a run; pass --resume to continue it, or "
                             "choose another --out (or delete the folder) to start afresh")
        return
    check_same_scenario(scenario, saved)


def run_rtm(scenario: RtmScenario, options: RunOptions) -> dict[str, object]:
    """Run an RTM or least-squares RTM scenario into ``options.out``.

    Writes ``scenario.toml``, ``observed.npy`` (the scattered data), ``background.npy``,
    then for RTM ``partial/group_NNN.npy`` (one per shot group), ``image_raw.npy``,
    ``illumination.npy``, ``image.npy`` and ``rtm.png``; for least-squares RTM
    ``lsrtm_state.npz``, ``lsrtm_history.json``, ``image.npy`` (m/s), ``lsrtm.png`` and
    ``loss.png``; and ``summary.json``.
    """
    from diffsim.models import smooth

    start = time.perf_counter()
    out = pathlib.Path(options.out)
    if options.iterations is not None:
        scenario = scenario.with_(iterations=options.iterations)
    say = options.echo
    truth, h = scenario.true_model(options.data)
    fixed = int(math.ceil(scenario.water_depth / h - 1e-9))
    background = smooth(truth, scenario.background_smoothing / h, fixed_rows=fixed)
    data = surface_experiment(scenario, truth.shape, h, float(truth.max()))
    dt, nt = data.dt, data.wavelet.size
    checkpoint = parse_schedule(options.checkpoint) if options.checkpoint else None
    _check_out(scenario, out, options.resume)
    out.mkdir(parents=True, exist_ok=True)
    scenario.save(out / "scenario.toml")
    write_npy(out / "background.npy", background)
    observed_path = out / "observed.npy"
    if observed_path.is_file():
        observed = np.load(observed_path)
    else:
        say(f"synthesising the scattered data of {scenario.shots} shots on {truth.shape[0]} x "
            f"{truth.shape[1]} cells, {nt} samples at dt {dt * 1e3:.3f} ms")
        # forward runs only: every shot in one simulation (one arena region, one compile)
        shots = SerialShots(checkpoint=options.checkpoint)
        observed = shots.forward(truth, data) - shots.forward(background, data)
        shots.close()
        write_npy(observed_path, observed)
    observed = np.asarray(observed, dtype=np.float64)
    r_true = reflectivity(truth)
    r_true[:fixed] = 0.0
    born = BornShots(background, data, batch=scenario.batch, checkpoint=checkpoint)
    summary: dict[str, object] = {
        "scenario": scenario.as_dict(), "grid": list(truth.shape), "spacing_m": h, "dt_s": dt,
        "nt": nt, "method": scenario.method, "resumed": bool(options.resume),
    }
    try:
        if scenario.method == "rtm":
            summary.update(_rtm(scenario, options, born, data, background, observed, r_true,
                                fixed))
        else:
            summary.update(_lsrtm(scenario, options, born, truth, background, observed, r_true,
                                  fixed))
    finally:
        born.close()
    summary["session_seconds"] = time.perf_counter() - start
    write_json(out / "summary.json", summary)
    say(f"wrote {out}")
    return summary


def _rtm(scenario: RtmScenario, options: RunOptions, born: BornShots, data: ShotData,
         background: np.ndarray, observed: np.ndarray, r_true: np.ndarray, fixed: int
         ) -> dict[str, object]:
    from diffsim.viz import figures

    out = pathlib.Path(options.out)
    say = options.echo
    h = data.spacing
    raw = np.zeros_like(background)
    computed = 0
    t0 = time.perf_counter()
    for k, group in enumerate(born.groups):
        path = out / "partial" / f"group_{k:03d}.npy"
        if path.is_file():
            part = np.load(path)
        else:
            part = born.migrate_group(k, observed[group], keep=False)
            write_npy(path, part)
            computed += 1
            say(f"migrated shots {group[0]}-{group[-1]} ({k + 1}/{len(born.groups)} groups, "
                f"{time.perf_counter() - t0:.1f} s)")
        raw += part
    write_npy(out / "image_raw.npy", raw)
    light = None
    if scenario.compensate:
        light_path = out / "illumination.npy"
        if light_path.is_file():
            light = np.load(light_path)
        else:
            shots = SerialShots()
            light = illumination(background, data, shots=shots)
            shots.close()
            write_npy(light_path, light)
    image = process(raw, h, illumination=light, epsilon=scenario.epsilon,
                    filter_laplacian=scenario.laplacian, mute_rows=fixed)
    write_npy(out / "image.npy", image)
    # below the water bottom's band; a crude measure (the image is band-limited and its
    # reflectors sit where the smooth background puts them)
    corr = correlation(image[fixed + 5:], r_true[fixed + 5:])
    steps = ("illumination-compensated, " if scenario.compensate else "") + (
        "Laplacian-filtered" if scenario.laplacian else "unfiltered")
    window = int(round(scenario.agc_window / h))
    shown = agc(image, window) if window > 1 else image
    if window > 1:
        steps += f", AGC over {scenario.agc_window:g} m"
    figures.image_figure(out / "rtm.png", [
        (f"RTM image ({steps})", shown, "normalised"),
        ("true normal-incidence reflectivity", r_true, "reflection coefficient")], h,
        title=f"{scenario.model}: {scenario.shots} shots, {scenario.peak_frequency:g} Hz Ricker",
        clip=98.0, clip_from_row=fixed + 5)
    say(f"RTM image: correlation with the true reflectivity {corr:.3f}")
    return {"correlation_with_reflectivity": corr, "groups_migrated_this_session": computed,
            "migration_seconds": time.perf_counter() - t0}


def _lsrtm(scenario: RtmScenario, options: RunOptions, born: BornShots, truth: np.ndarray,
           background: np.ndarray, observed: np.ndarray, r_true: np.ndarray, fixed: int
           ) -> dict[str, object]:
    from diffsim.viz import figures

    out = pathlib.Path(options.out)
    h = born.data.spacing
    dc_true = truth - background
    below = np.s_[fixed:]
    norm_dc = float(np.linalg.norm(dc_true[below])) or 1.0
    norm_r = float(np.linalg.norm(r_true)) or 1.0

    def metrics(m: np.ndarray) -> dict[str, float]:
        r = reflectivity(background + m)
        r[:fixed] = 0.0
        return {"model_error": float(np.linalg.norm(m[below] - dc_true[below])) / norm_dc,
                "reflectivity_error": float(np.linalg.norm(r - r_true)) / norm_r,
                "correlation": correlation(r, r_true)}

    solver = LeastSquaresMigration(born, observed, folder=out, metrics=metrics)
    result = solver.run(scenario.iterations, echo=None if options.quiet else options.echo)
    history = [{**e, "loss": 0.5 * e["residual"] ** 2} for e in result.history]
    image = result.image
    write_npy(out / "image.npy", image)
    r_inv = reflectivity(background + image)
    r_inv[:fixed] = 0.0
    figures.image_figure(out / "lsrtm.png", [
        (f"least-squares RTM: velocity perturbation, {len(history) - 1} CG iterations", image,
         "m/s"),
        ("true perturbation (true - background)", dc_true, "m/s"),
        ("reflectivity of background + perturbation", r_inv, "reflection coefficient"),
        ("true reflectivity", r_true, "reflection coefficient")], h)
    figures.loss_figure(out / "loss.png", history, title="Least-squares RTM (CGLS)",
                        error="reflectivity_error", error_label="relative reflectivity error")
    last = history[-1]
    return {"iterations": int(last["iteration"]), "history": history,
            "final_residual": last["residual"], "final_model_error": last["model_error"],
            "final_reflectivity_error": last["reflectivity_error"],
            "final_correlation": last["correlation"],
            "iterations_this_session": result.iterations_this_session,
            "stop_reason": result.stop_reason,
            "lsrtm_seconds": result.wall_seconds}
