"""The ``diffsim`` command line.

``diffsim info`` reports the runtime; ``diffsim list`` the scenarios; ``diffsim demo``
runs the gradient demo (stiffness identification on a nonlinear chain).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _runtime_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", default="cpu", choices=["cpu", "cuda", "vulkan", "gpu", "auto"],
                        help="Taichi backend (default: cpu)")
    parser.add_argument("--precision", default="f64", choices=["f32", "f64"],
                        help="floating-point precision (default: f64)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffsim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print the runtime (arch, precision, threads, versions)")
    _runtime_args(info)
    sub.add_parser("list", help="list the registered scenarios")
    demo = sub.add_parser("demo", help="gradient demo: recover spring stiffness from a trajectory")
    _runtime_args(demo)
    demo.add_argument("--scenario", default="chain", help="a chain scenario (default: chain)")
    demo.add_argument("--iterations", type=int, default=30, help="L-BFGS-B iterations")
    demo.add_argument("--checkpoint", default="binomial:8",
                      help="all | uniform:K | binomial:S | budget:SIZE (default: binomial:8)")
    demo.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/demo"),
                      help="output folder (default: out/demo)")
    demo.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``diffsim`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    import diffsim
    from diffsim import scenarios
    from diffsim.checkpoint import parse_schedule

    try:
        if args.command == "list":
            for name in scenarios.names():
                print(name)
            return 0
        diffsim.init(args.arch, args.precision, threads=args.threads)
        if args.command == "info":
            print(json.dumps(diffsim.info().as_dict(), indent=2))
            return 0
        from diffsim.demo import run_chain_demo

        scenario = scenarios.get(args.scenario)
        if args.smoke:
            scenario = scenario.with_(masses=5, steps=40)
        run_chain_demo(scenario, checkpoint=parse_schedule(args.checkpoint),
                       iterations=2 if args.smoke else args.iterations, out=args.out)
        return 0
    except (ValueError, TypeError) as exc:
        print(f"diffsim: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
