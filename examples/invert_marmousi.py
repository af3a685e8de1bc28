"""Full-waveform inversion of Marmousi2 resampled to 40 m, from a smoothed start.

The Marmousi2 P velocity ships with diffsim (CC BY 4.0, see diffsim/data/README.md);
--data DIR reads it from another folder instead. Twenty surface shots, 3 Hz then 5 Hz
stages, the water layer kept at its known velocity.

    python examples/invert_marmousi.py --out out/marmousi2
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
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/marmousi2"))
    parser.add_argument("--data", type=pathlib.Path, default=None,
                        help="folder with marmousi2_vp_20m.npy/.json (default: $DIFFSIM_DATA, "
                             "else the copy shipped with diffsim)")
    parser.add_argument("--iterations", type=int, default=None, help="iterations per stage")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    args = parser.parse_args(argv)

    scenario = scenarios.get("marmousi2")
    if args.smoke:
        scenario = scenario.smoke()
    diffsim.init("cpu", "f32")
    summary = scenario.run(RunOptions(out=args.out, data=args.data, resume=args.resume,
                                      iterations=args.iterations))
    print(f"model error {summary['initial_model_error']:.4f} -> {summary['final_model_error']:.4f}, "
          f"misfit {summary['initial_misfit']:.4f} -> {summary['final_misfit']:.4f}")


if __name__ == "__main__":
    main()
