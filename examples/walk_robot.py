"""A soft lattice robot learns to walk: open-loop sinusoidal actuation optimised by gradient.

Uses the registered "spring-robot" scenario (DiffTaichi style): springs in vertical
bands change their rest length with a learned mix of sinusoids; the loss is minus the
distance the centre of mass moves right, differentiated through ground contact with
friction. Writes summary.json, history.json, before/after animations and the loss curve.

    python examples/walk_robot.py --out out/robot
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
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/robot"))
    parser.add_argument("--iterations", type=int, default=None, help="Adam iterations")
    args = parser.parse_args(argv)

    diffsim.init("cpu", "f64")
    scenario = scenarios.get("spring-robot")
    if args.smoke:
        scenario = scenario.smoke()  # a 4 x 2 robot, 200 steps
    iterations = args.iterations if args.iterations is not None else (2 if args.smoke else 40)
    summary = scenario.run(RunOptions(out=args.out, iterations=iterations, smoke=args.smoke))
    print(f"distance walked: {summary['initial_distance'] * 100:.2f} cm -> "
          f"{summary['final_distance'] * 100:.2f} cm in {scenario.steps * scenario.dt:.1f} s")


if __name__ == "__main__":
    main()
