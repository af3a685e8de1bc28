"""The ``diffsim`` command line.

``diffsim info`` reports the runtime; ``diffsim list`` the scenarios; ``diffsim show``
prints one as TOML; ``diffsim run`` runs one (an inversion or an optimisation) into an
output folder, resumable; ``diffsim demo`` runs the gradient demo (stiffness
identification on a nonlinear chain).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _runtime_args(parser: argparse.ArgumentParser, precision: str | None = "f64") -> None:
    parser.add_argument("--arch", default="cpu", choices=["cpu", "cuda", "vulkan", "gpu", "auto"],
                        help="Taichi backend (default: cpu)")
    parser.add_argument("--precision", default=precision, choices=["f32", "f64"],
                        help=f"floating-point precision (default: {precision or 'per scenario'})")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")


def _parser() -> argparse.ArgumentParser:
    from diffsim import __version__

    parser = argparse.ArgumentParser(prog="diffsim", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"diffsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print the runtime (arch, precision, threads, versions)")
    _runtime_args(info)
    sub.add_parser("list", help="list the registered scenarios")
    show = sub.add_parser("show", help="print a scenario as TOML (edit it, then run the file)")
    show.add_argument("scenario", help="a registered name or a .toml file")
    show.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="change a field (repeatable)")
    run = sub.add_parser("run", help="run a scenario (inversion or optimisation) into --out")
    run.add_argument("scenario", help="a registered name (see `diffsim list`) or a .toml file")
    _runtime_args(run, precision=None)
    run.add_argument("--out", type=pathlib.Path, default=None,
                     help="output folder (default: out/SCENARIO)")
    run.add_argument("--iterations", type=int, default=None,
                     help="optimiser iterations (default: the scenario's)")
    run.add_argument("--data", type=pathlib.Path, default=None,
                     help="folder of real models (default: $DIFFSIM_DATA)")
    run.add_argument("--checkpoint", default=None,
                     help="all | uniform:K | binomial:S | budget:SIZE (default: a 1GiB budget)")
    group = run.add_mutually_exclusive_group()
    group.add_argument("--workers", type=int, default=1,
                       help="processes for shots (a local Dask cluster when > 1)")
    group.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler")
    run.add_argument("--resume", action="store_true",
                     help="continue from the last finished iteration in --out")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="change a scenario field (repeatable), e.g. --set shots=8")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
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
                sc = scenarios.get(name)
                need = sc.data_needed()
                print(f"{name:16s} {sc.kind:8s} {sc.describe()}" + (f"  [{need}]" if need else ""))
            return 0
        if args.command == "show":
            print(scenarios.resolve(args.scenario).with_settings(args.set).to_toml(), end="")
            return 0
        if args.command == "run":
            return _run(args)
        diffsim.init(args.arch, args.precision, threads=args.threads)
        if args.command == "info":
            print(json.dumps(diffsim.info().as_dict(), indent=2))
            return 0
        from diffsim.scenarios._chain_job import run_chain_demo
        from diffsim.scenarios.chain import ChainScenario

        scenario = scenarios.get(args.scenario)
        if not isinstance(scenario, ChainScenario):
            raise ValueError(f"demo runs a chain scenario; {args.scenario!r} is a {scenario.kind} "
                             f"scenario: use `diffsim run {args.scenario}`")
        if args.smoke:
            scenario = scenario.smoke()
        run_chain_demo(scenario, checkpoint=parse_schedule(args.checkpoint),
                       iterations=2 if args.smoke else args.iterations, out=args.out)
        return 0
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"diffsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = f" in {args.out}" if getattr(args, "out", None) else ""
        print(f"diffsim: interrupted; finished iterations are kept{where}; add --resume to the "
              "same command to continue", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    import diffsim
    from diffsim import scenarios
    from diffsim.checkpoint import parse_schedule
    from diffsim.io import RunOptions

    scenario = scenarios.resolve(args.scenario)
    if args.smoke:
        scenario = scenario.smoke()
    scenario = scenario.with_settings(args.set)   # --set has the last word
    if args.checkpoint is not None:
        parse_schedule(args.checkpoint)  # fail early on bad text
    if args.iterations is not None and args.iterations < 0:
        raise ValueError(f"--iterations {args.iterations}: must be 0 or more")
    if args.workers < 1:
        raise ValueError(f"--workers {args.workers}: must be 1 or more")
    out = args.out or pathlib.Path("out") / pathlib.Path(args.scenario).stem
    diffsim.init(args.arch, args.precision or scenario.precision, threads=args.threads)
    options = RunOptions(out=out, iterations=args.iterations, resume=args.resume,
                         checkpoint=args.checkpoint, data=args.data, workers=args.workers,
                         scheduler=args.scheduler, quiet=args.quiet, smoke=args.smoke)
    scenario.run(options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
