"""FWI on Marmousi2 at 40 m: model error and misfit per stage, and wall time.

Runs the registered ``marmousi2`` scenario (20 shots, 100 receivers, 3 Hz then 5 Hz,
Gaussian-smoothed start, water layer fixed) exactly as ``diffsim run marmousi2`` does,
then tabulates the relative model error and the stage misfit after each stage, and the
model error reached at 10 minutes of wall time (the peer figure in the notes: a
PyTorch/Deepwave L-BFGS run on this machine cut the model error by 8 % in 10 minutes).

    python benchmarks/fwi_marmousi.py --data ../shared/data --out out/bench_marmousi2 --write
"""

from __future__ import annotations

import argparse
import pathlib

from _harness import report, table

import diffsim
from diffsim import scenarios
from diffsim.io import RunOptions, read_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=pathlib.Path, default=None)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/bench_marmousi2"))
    parser.add_argument("--iterations", type=int, default=None, help="per stage")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--write", action="store_true", help="append to BENCHMARKS.md")
    args = parser.parse_args()

    diffsim.init("cpu", "f32", threads=args.threads)
    scenario = scenarios.get("marmousi2")
    summary = scenario.run(RunOptions(out=args.out, data=args.data, iterations=args.iterations,
                                      resume=args.resume))
    history = read_json(args.out / "history.json")
    rows = [["start", "-", "-", f"{summary['initial_model_error']:.4f}", "0.0"]]
    for s, (first, last) in enumerate(summary["stage_losses"]):
        done = [h for h in history if h["stage"] == s]
        if not done:
            continue
        cutoff = scenario.stages[s]
        rows.append([f"stage {s + 1} ({cutoff:g} Hz)", len(done), f"{last / first:.3f}",
                     f"{done[-1]['model_error']:.4f}", f"{done[-1]['seconds']:.0f}"])
    within = [h for h in history if h["seconds"] <= 600.0]
    at_10 = within[-1]["model_error"] if within else summary["initial_model_error"]
    e0 = summary["initial_model_error"]
    body = (table(["", "iterations", "stage misfit last/first", "model error (rel. L2)",
                   "wall s"], rows)
            + f"\n\nGrid {summary['grid'][0]} x {summary['grid'][1]} at {summary['spacing_m']:g} m, "
            f"nt {summary['nt']}, dt {summary['dt_s'] * 1e3:.3f} ms, {scenario.shots} shots, "
            f"{scenario.receivers} receivers. Full-band misfit (relative L2) "
            f"{summary['initial_misfit']:.4f} -> {summary['final_misfit']:.4f}; model error "
            f"{e0:.4f} -> {summary['final_model_error']:.4f} "
            f"({100 * (1 - summary['final_model_error'] / e0):.1f} % lower) in "
            f"{summary['wall_seconds']:.0f} s; at 10 minutes: {at_10:.4f} "
            f"({100 * (1 - at_10 / e0):.1f} % lower).")
    report("FWI: Marmousi2 at 40 m", body, write=args.write)


if __name__ == "__main__":
    main()
