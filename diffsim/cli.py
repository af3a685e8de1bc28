"""The ``diffsim`` command line.

``diffsim info`` reports the runtime; ``diffsim list`` the scenarios; ``diffsim show``
prints one as TOML; ``diffsim run`` runs one (an inversion or an optimisation) into an
output folder, resumable; ``diffsim diagnose`` writes an HTML report on one's gradient
(health, V-curve, graph, checkpointing, precision); ``diffsim demo`` runs the gradient
demo (stiffness identification on a nonlinear chain).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]


def _runtime_args(parser: argparse.ArgumentParser, precision: str | None = "f32") -> None:
    # the same defaults as diffsim.init(): arch "auto", precision "f32" (a scenario that
    # needs float64 declares it; --precision overrides)
    parser.add_argument("--arch", default="auto", choices=["cpu", "cuda", "vulkan", "gpu", "auto"],
                        help="Taichi backend (default: auto, as diffsim.init: CUDA, then Vulkan, "
                             "then the CPU)")
    parser.add_argument("--precision", default=precision, choices=["f32", "f64"],
                        help="floating-point precision (default: "
                             + ("f32, as diffsim.init)" if precision else "the scenario's, "
                                "shown by `diffsim show`)"))
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error")


def _parser() -> argparse.ArgumentParser:
    from diffsim import __version__

    parser = argparse.ArgumentParser(prog="diffsim", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"diffsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print the runtime (arch, precision, threads, versions) "
                          "and the checkpoint tiers (memory, host RAM, disk)")
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
    diag = sub.add_parser("diagnose", help="gradient health, FD V-curve, step graph, checkpoint "
                                           "trade-off and precision advice: one HTML report")
    diag.add_argument("scenario", help="a registered name (see `diffsim list`) or a .toml file")
    _runtime_args(diag, precision=None)
    diag.add_argument("--out", type=pathlib.Path, default=None,
                      help="output folder (default: out/diagnose-SCENARIO)")
    diag.add_argument("--data", type=pathlib.Path, default=None,
                      help="folder of real models (default: $DIFFSIM_DATA)")
    diag.add_argument("--checkpoint", default=None,
                      help="all | uniform:K | binomial:S | budget:SIZE (default: a 1GiB budget)")
    diag.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="change a scenario field (repeatable)")
    diag.add_argument("--no-precision", action="store_true",
                      help="skip the float32/float64 comparison (two more runs)")
    diag.add_argument("--digits", type=float, default=3.0,
                      help="digits float32 must keep (precision advice; default 3)")
    diag.add_argument("--no-vcurve", action="store_true",
                      help="skip the finite-difference V-curve (two runs per step size)")
    diag.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    data = sub.add_parser("data", help="real models: list them, or fetch one that cannot ship")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    data_list = data_sub.add_parser("list", help="the real models and where each is")
    data_list.add_argument("--data", type=pathlib.Path, default=None,
                           help="a data folder to look in (default: $DIFFSIM_DATA)")
    data_get = data_sub.add_parser("get", help="download a model from its public source, check "
                                               "its SHA-256, convert it into --to")
    data_get.add_argument("name", help="overthrust | marmousi (marmousi2 is copied from the "
                                       "package)")
    data_get.add_argument("--to", type=pathlib.Path, required=True,
                          help="the data folder to fill (then pass it as --data)")
    data_get.add_argument("--url", default=None,
                          help="fetch the source file from here instead (a mirror or file://)")
    for p in (data_list, data_get):
        p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    demo = sub.add_parser("demo", help="gradient demo: recover spring stiffness from a trajectory")
    _runtime_args(demo, precision=None)
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
        if args.command == "diagnose":
            return _diagnose(args)
        if args.command == "data":
            from diffsim import downloads

            if args.data_command == "list":
                for row in downloads.available(args.data):
                    print(f"{row['name']:12s} {row['stem']:20s} {row['status']}\n"
                          f"{'':12s} source: {row['source']}")
                return 0
            downloads.get(args.name, args.to, url=args.url, echo=print)
            return 0
        if args.command == "info":
            from diffsim.stores import checkpoint_tiers

            diffsim.init(args.arch, args.precision, threads=args.threads)
            print(json.dumps({**diffsim.info().as_dict(),
                              "checkpoint_tiers": checkpoint_tiers()}, indent=2))
            return 0
        from diffsim.scenarios._chain_job import run_chain_demo
        from diffsim.scenarios.chain import ChainScenario

        scenario = scenarios.get(args.scenario)
        if not isinstance(scenario, ChainScenario):
            raise ValueError(f"demo runs a chain scenario; {args.scenario!r} is a {scenario.kind} "
                             f"scenario: use `diffsim run {args.scenario}`")
        if args.smoke:
            scenario = scenario.smoke()
        diffsim.init(args.arch, args.precision or scenario.precision, threads=args.threads)
        _compiling_note(print)
        run_chain_demo(scenario, checkpoint=parse_schedule(args.checkpoint),
                       iterations=2 if args.smoke else args.iterations, out=args.out)
        return 0
    except (ValueError, TypeError, OSError) as exc:
        if getattr(args, "debug", False):
            raise
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
    if not args.quiet:
        _compiling_note(print)
    scenario.run(options)
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    import functools

    import diffsim
    from diffsim import scenarios
    from diffsim.checkpoint import parse_schedule
    from diffsim.diagnostics import diagnose

    scenario = scenarios.resolve(args.scenario)
    if args.smoke:
        scenario = scenario.smoke()
    scenario = scenario.with_settings(args.set)
    checkpoint = parse_schedule(args.checkpoint) if args.checkpoint else None
    out = args.out or pathlib.Path("out") / f"diagnose-{pathlib.Path(args.scenario).stem}"
    data = None if args.data is None else str(args.data)
    precision = args.precision or scenario.precision
    diffsim.init(args.arch, precision, threads=args.threads)
    _compiling_note(print)
    simulation, loss, wrt = scenario.diagnosis(data)
    factory = (None if args.no_precision else
               functools.partial(scenarios.diagnosis_problem, scenario.to_toml(), data))
    with simulation:
        result = diagnose(simulation, loss, wrt=wrt, out=out, checkpoint=checkpoint,
                          vcurve=not args.no_vcurve, precision=factory, digits=args.digits,
                          title=f"diffsim diagnose {args.scenario} ({precision})",
                          dt=getattr(getattr(simulation, "_stepper", lambda: None)(), "dt", None))
    print(result.summary())
    print(f"report: {result.html}")
    return 0


def _compiling_note(echo: Callable[[str], None]) -> None:
    """Say that the first run compiles kernels, when Taichi's kernel cache is empty."""
    from diffsim._runtime import kernel_cache

    folder, entries = kernel_cache()
    if folder is not None and entries == 0:
        echo(f"compiling kernels: the first run on this machine spends up to a minute on it "
             f"(they are cached in {folder} for later runs)")


if __name__ == "__main__":
    sys.exit(main())
