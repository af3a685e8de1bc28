"""The job behind ``diffsim run marmousi2-3d``: 3D FWI whose gradients spill checkpoints to disk."""

from __future__ import annotations

import functools
import os
import pathlib
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from diffsim._tape import TapeReport
from diffsim.fwi import Inversion, SerialShots, ShotData, Stage, acoustic_simulation
from diffsim.io import RunOptions, write_json, write_npy
from diffsim.scenarios._fwi_job import _check_out, surface_experiment

if TYPE_CHECKING:
    from collections.abc import Callable

    from diffsim.scenarios.fwi3d import Fwi3dScenario

#: The disk tier's counters summed over the gradients (see ``TapeReport.io``).
DISK_COUNTERS = ("bytes_written", "bytes_read", "write_seconds", "read_seconds", "wait_seconds")


def fwi3d_problem(scenario: Fwi3dScenario, data_dir: os.PathLike[str] | str | None
                  ) -> tuple[np.ndarray, np.ndarray, ShotData, int]:
    """The true and starting models ``[z, y, x]``, the experiment and the fixed (water) rows.

    The start is the truth smoothed by ``start_smoothing`` (in 3D), the top ``water_depth``
    kept, clipped to the bounds. The experiment's time step is 80 % of the 3D stability
    limit at the larger of ``vmax`` and the truth's maximum (or the scenario's ``dt``,
    checked against it); its observed traces are zeros, to be filled.
    """
    from diffsim.models import smooth

    truth, h = scenario.true_model(data_dir)
    fixed = int(np.ceil(scenario.water_depth / h - 1e-9))
    initial = np.clip(smooth(truth, scenario.start_smoothing / h, fixed_rows=fixed),
                      scenario.vmin, scenario.vmax)
    vmax = max(scenario.vmax, float(truth.max()))
    data = surface_experiment(scenario, truth.shape, h, vmax, free_surface=scenario.free_surface,
                              source_margin=scenario.source_margin)
    return truth, initial, data, fixed


class CheckpointTally:
    """The shot evaluator, counting what every gradient's checkpoints did.

    Calls ``shots`` and, after each evaluation, adds each group's tape report: the plans
    that ran (a :class:`~diffsim.Budget` is resolved per gradient, with the measured step
    time), the disk tier's bytes and seconds summed, the last report kept.
    """

    def __init__(self, shots: SerialShots, echo: Callable[[str], None] | None = None) -> None:
        self.shots = shots
        self.echo = echo
        self.gradients = 0
        self.plans: list[str] = []
        self.disk = dict.fromkeys(DISK_COUNTERS, 0.0)
        self.last: TapeReport | None = None

    def __call__(self, velocity: np.ndarray, data: ShotData) -> tuple[float, np.ndarray]:
        """Misfit and gradient of every shot (see :class:`~diffsim.fwi.SerialShots`)."""
        loss, grad = self.shots(velocity, data)
        first = self.gradients == 0
        for report in self.shots.reports():
            self.gradients += 1
            if repr(report.schedule) not in self.plans:
                self.plans.append(repr(report.schedule))
            for key in DISK_COUNTERS:
                self.disk[key] += float(report.io.get(key, 0.0))
            self.last = report
        if first and self.echo is not None and self.last is not None:
            self.echo("first gradient: " + self.last.summary().replace("\n", "\n  "))
        return loss, grad

    def tiers(self) -> list[dict[str, object]]:
        """The last gradient's per-tier counts (slots, peak, saves, loads), fastest first."""
        if self.last is None:
            return []
        return [t._asdict() for t in self.last.tiers]


def run_3d_scenario(scenario: Fwi3dScenario, options: RunOptions) -> dict[str, object]:
    """Run a 3D FWI scenario into ``options.out`` (resumable).

    Writes ``scenario.toml``, ``observed.npy`` (``[shot, receiver, nt]``),
    ``model_NNNN.npy`` per iteration, ``history.json``, ``model_final.npy``, the figures
    ``models.png`` (three orthogonal slices through the middle of the true, initial and
    inverted models), ``shot_gather.png`` (the middle shot on the receiver line along
    ``x`` through the middle) and ``loss.png``, and ``summary.json``: the relative misfit
    and model error at the start and the end, the checkpoint text, the plans the gradients
    ran (``checkpoint_plan`` the last one's repr, ``checkpoint_tiers`` its per-tier counts),
    the disk tier's bytes written and read and seconds (written, read, and steps waiting
    for the disk) summed over this session's gradients, and the seconds. With
    ``options.resume`` the finished iterations are read back from the evaluation store
    (their gradients are not recomputed, nor counted again).

    ``options.checkpoint`` (``--checkpoint``) overrides the scenario's ``checkpoint``;
    the shots run in this process (``--workers`` and ``--scheduler`` are refused).
    """
    from diffsim.viz import figures

    out = pathlib.Path(options.out)
    if options.iterations is not None:
        scenario = scenario.with_(iterations=options.iterations)
    if options.workers > 1 or options.scheduler:
        raise ValueError(f"--workers {options.workers} / --scheduler {options.scheduler}: "
                         f"{scenario.kind} runs its shots in this process, as one batched "
                         "simulation whose checkpoints spill to this machine's disk; drop "
                         "--workers and --scheduler")
    say = options.echo
    echo = None if options.quiet else say
    text = options.checkpoint or scenario.checkpoint
    truth, initial, data, fixed = fwi3d_problem(scenario, options.data)
    h, dt, nt = data.spacing, data.dt, data.wavelet.shape[-1]
    src, rec = data.sources, data.receivers
    start = time.perf_counter()
    # the array engine: its kernels compile once per process and come from Taichi's disk
    # cache after that
    shots = SerialShots(checkpoint=text,
                        simulation=functools.partial(acoustic_simulation, engine="arrays"))
    try:
        try:
            plan = shots.check(initial, data)   # builds the simulation; the budget checked
        except ValueError as exc:
            raise ValueError(f"checkpoint {text!r}: {exc}") from None
        layout = plan.tier_slots(nt - 1) or {"memory": 0}
        say(f"checkpoints {text}: {plan!r} for {nt - 1} steps"
            + (f", {layout['disk']} states on disk" if "disk" in layout else
               " (no disk tier: the memory budget holds enough)"))
        _check_out(scenario, out, options.resume)
        out.mkdir(parents=True, exist_ok=True)
        scenario.save(out / "scenario.toml")
        observed_path = out / "observed.npy"
        if observed_path.is_file():
            observed = np.load(observed_path)
        else:
            say(f"synthesising {data.shots} shots on {' x '.join(map(str, truth.shape))} cells, "
                f"{len(rec)} receivers, {nt} samples at dt {dt * 1e3:.3f} ms")
            observed = shots.forward(truth, data)
            write_npy(observed_path, observed)
        data = replace(data, observed=np.asarray(observed, dtype=np.float64))
        tally = CheckpointTally(shots, echo)
        stages = [Stage(f or None, scenario.iterations) for f in scenario.stages]
        inversion = Inversion(data=data, initial=initial, stages=stages,
                              bounds=(scenario.vmin, scenario.vmax), evaluator=tally, out=out,
                              truth=truth, fixed_rows=fixed, depth_power=scenario.depth_power,
                              echo=echo)
        result = inversion.run()
        final = result.model
        syn0 = shots.forward(initial, data)
        syn1 = shots.forward(final, data)
    finally:
        shots.close()
    norm = float(np.linalg.norm(observed))
    summary: dict[str, object] = {
        "scenario": scenario.as_dict(),
        "grid": list(truth.shape), "spacing_m": h, "dt_s": dt, "nt": nt,
        "shots": data.shots, "receivers": len(rec),
        "initial_misfit": float(np.linalg.norm(syn0 - observed) / norm),
        "final_misfit": float(np.linalg.norm(syn1 - observed) / norm),
        "initial_model_error": inversion.model_error(initial),
        "final_model_error": inversion.model_error(final),
        "iterations": int(result.history[-1]["iteration"]) if result.history else 0,
        "stage_losses": [list(x) for x in result.stage_losses],
        "checkpoint": text,
        "checkpoint_plan": tally.plans[-1] if tally.plans else repr(plan),
        "checkpoint_plans": tally.plans or [repr(plan)],
        "checkpoint_tiers": tally.tiers(),
        "state_bytes": tally.last.state_nbytes if tally.last is not None else None,
        "gradients_this_session": tally.gradients,
        **{f"disk_{key}": value for key, value in tally.disk.items()},
        "wall_seconds": result.wall_seconds,
        "resumed": bool(options.resume),
    }
    write_npy(out / "model_final.npy", final)
    figures.model_slices_figure(out / "models.png", [("true", truth), ("initial", initial),
                                                     ("inverted", final)], h, sources=src,
                                receivers=rec, title="3D FWI: true, initial and inverted models")
    mid = data.shots // 2
    per_line = scenario.receivers[1]
    line = slice((scenario.receivers[0] // 2) * per_line, (scenario.receivers[0] // 2 + 1) * per_line)
    figures.shot_figure(out / "shot_gather.png", observed[mid, line], syn1[mid, line], dt,
                        rec[line][:, [0, 2]],
                        f"shot {mid}, receivers along x at y = {rec[line][0, 1] / 1e3:.2f} km, "
                        "at the inverted model")
    if result.history:
        figures.loss_figure(out / "loss.png", result.history, title="3D FWI progress")
    summary["session_seconds"] = time.perf_counter() - start
    write_json(out / "summary.json", summary)
    mib = tally.disk["bytes_written"] / 2**20
    say(f"misfit {summary['initial_misfit']:.4f} -> {summary['final_misfit']:.4f} (relative L2), "
        f"model error {summary['initial_model_error']:.4f} -> {summary['final_model_error']:.4f}; "
        f"{summary['iterations']} iterations, {summary['wall_seconds']:.1f} s; checkpoints "
        f"{summary['checkpoint_plan']}, {mib:.0f} MiB written to disk over "
        f"{tally.gradients} gradients (steps waited {tally.disk['wait_seconds']:.1f} s); "
        f"wrote {out}")
    return summary
