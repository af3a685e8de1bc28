"""Shared benchmark plumbing: repeats, medians, machine description, BENCHMARKS.md."""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import pathlib
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence

ROOT = pathlib.Path(__file__).resolve().parent.parent
REPORT = ROOT / "BENCHMARKS.md"


def machine() -> str:
    """Cores, CPU model, OS and Python, in one line."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{os.cpu_count()} cores, {model}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, load average {load:.2f} at start")


def median_time(fn: Callable[[], object], *, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report(title: str, body: str, *, write: bool) -> None:
    """Print a result and, with ``write``, append it to BENCHMARKS.md with command and machine."""
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT),
                                                               *sys.argv[1:]])
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"\n## {title}\n\n- command: `{command}`\n- machine: {machine()}\n- date: {stamp}\n\n"
            f"{body}\n")
    print(text)
    if write:
        if not REPORT.exists():
            REPORT.write_text("# Benchmarks\n\nEvery section says the command that produced it, "
                              "the machine and the date. Ratios are measured in the same run.\n")
        with REPORT.open("a", encoding="utf-8") as handle:
            handle.write(text)


def peer_comparison(description: str, case: Callable[[int, int], dict],
                    ours: Callable[[dict, int, int], dict[str, float]],
                    peer: Callable[[dict, int, int, int], dict[str, float] | None], *,
                    sizes: str = "200,400") -> tuple[argparse.Namespace, str]:
    """The common ``main`` of a diffsim-against-a-peer benchmark.

    Parses ``--threads --sizes --order --nt --repeats --write``, initialises diffsim
    (CPU, f32), runs ``ours(case, order, repeats)`` and ``peer(case, order, repeats,
    threads)`` (``None``: the peer is not installed) for every size, and returns the
    arguments and the report body: ``description`` then the table of seconds and ratios.
    """
    import diffsim

    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", default=sizes)
    parser.add_argument("--order", type=int, default=4)
    parser.add_argument("--nt", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="append to BENCHMARKS.md")
    args = parser.parse_args()
    info = diffsim.init("cpu", "f32", threads=args.threads)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        c = case(n, args.nt)
        mine = ours(c, args.order, args.repeats)
        theirs_all = peer(c, args.order, args.repeats, args.threads)
        for what, sec in mine.items():
            theirs = theirs_all[what] if theirs_all else None
            rows.append([f"{n} x {n}, {what}", f"{sec:.3f}",
                         "-" if theirs is None else f"{theirs:.3f}",
                         "-" if theirs is None else f"{sec / theirs:.2f}"])
    body = (description.format(nt=args.nt, order=args.order, arch=info.arch,
                               threads=args.threads, repeats=args.repeats)
            + "\n\n" + table(["case", "diffsim (s)", "Deepwave (s)", "diffsim / Deepwave"], rows))
    return args, body
