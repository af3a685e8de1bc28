"""Full-waveform inversion of the built-in layered model (no data files needed).

Synthesises surface shot gathers from the true model (four layers and a slow lens),
starts from a smoothed copy, and inverts with L-BFGS-B in two frequency stages.
Writes the models after every iteration, history.json, summary.json and figures to
--out; rerun with --resume after an interruption to continue where it stopped.

    python examples/invert_layered.py --out out/invert_layered
"""

from __future__ import annotations

import argparse
import pathlib

import diffsim
from diffsim import scenarios
from diffsim.io import RunOptions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (for the tests)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/invert_layered"))
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    args = parser.parse_args(argv)

    scenario = scenarios.get("layered")  # FwiScenario: model, acquisition, stages, bounds
    scenario = scenario.with_(shots=8, stages=(4.0, 8.0), iterations=10)
    if args.smoke:
        scenario = scenario.smoke()
    diffsim.init("cpu", "f32")
    summary = scenario.run(RunOptions(out=args.out, resume=args.resume))
    print(f"model error {summary['initial_model_error']:.4f} -> {summary['final_model_error']:.4f}")


if __name__ == "__main__":
    main()
