"""Acoustic forward: Taichi's parallel loops against serial loops with whole-range launches.

Calibrates ``diffsim.acoustic._setup.SERIAL_CELL_THREADS``, the size below which the field
engine (the GPU path and the autodiff oracle) runs its loops in the launching thread (and a
run of forward steps as one launch); the arena engines run worker tasks instead
(``wave_threads.py``). For each
grid size the reference case of ``wave_vs_deepwave.py`` (order 4, PML 20, f32, one
shot, 1,000 steps) runs both ways on the same thread count, each in its own process,
interleaved round by round; the table gives median wall and CPU seconds.

    python benchmarks/wave_loops.py [--threads 2] [--sizes 200 400 600 800 1000] [--write]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from _harness import report, table


def one(n: int, threads: int, serial: bool, nt: int) -> dict:
    import numpy as np
    from wave_vs_deepwave import case

    import diffsim
    import diffsim.acoustic as wave
    from diffsim import rollout
    from diffsim.acoustic import fields

    diffsim.init("cpu", "f32", threads=threads)
    fields._serial_loops = lambda cells, limit=0: serial  # noqa: ARG005
    c = case(n, nt)
    stepper = wave.AcousticStepper(c["vel"], c["h"], c["dt"], c["wavelet"],
                                   c["src"][None] * c["h"], c["rec"] * c["h"], order=4,
                                   pml_width=20, interpolation="nearest",
                                   engine="fields")
    rollout(stepper)
    walls, cpus = [], []
    for _ in range(3):
        t, p = time.perf_counter(), time.process_time()
        rollout(stepper)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - p)
    cells = int(stepper.shots * np.prod(stepper.geometry.padded))
    return {"wall": min(walls), "cpu": min(cpus), "cells": cells}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 400, 600, 800, 1000])
    parser.add_argument("--nt", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="append to BENCHMARKS.md")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        n, serial = args.case.split(":")
        print("RESULT " + json.dumps(one(int(n), args.threads, serial == "1", args.nt)))
        return
    runs: dict[tuple[int, bool], list[dict]] = {}
    for _ in range(args.rounds):
        for n in args.sizes:
            for serial in (False, True):
                cmd = [sys.executable, __file__, "--case", f"{n}:{int(serial)}", "--threads",
                       str(args.threads), "--nt", str(args.nt)]
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
                line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
                if line is None:
                    raise RuntimeError(f"{cmd} failed:\n{out.stderr[-3000:]}")
                runs.setdefault((n, serial), []).append(json.loads(line[7:]))
                print(f"{n} serial={serial}: {runs[(n, serial)][-1]['wall']:.3f} s", flush=True)
    rows = []
    for n in args.sizes:
        par, ser = runs[(n, False)], runs[(n, True)]
        pw, sw = (statistics.median(r["wall"] for r in x) for x in (par, ser))
        pc, sc = (statistics.median(r["cpu"] for r in x) for x in (par, ser))
        cells = par[0]["cells"]
        rows.append([f"{n} x {n}", f"{cells:,}", f"{cells * args.threads:,}", f"{pw:.3f}",
                     f"{pc:.3f}", f"{sw:.3f}", f"{sc:.3f}", f"{sw / pw:.2f}"])
    body = "\n".join([
        f"Forward of the reference case (order 4, PML 20, f32, 1 shot, {args.nt} steps, "
        "field engine) with "
        f"{args.threads} Taichi threads: parallel loops (one launch per step) against serial "
        "loops (one launch per run of steps). Minimum of 3 calls per process, median over "
        f"{args.rounds} interleaved rounds; seconds. Cells: padded cells per step "
        "(the x axis rounded up to whole SIMD vectors).",
        "",
        table(["grid", "cells", "cells x threads", "parallel wall", "parallel CPU",
               "serial wall", "serial CPU", "serial / parallel"], rows),
        "",
        "The stepper goes serial where cells x threads is below "
        "`diffsim.acoustic._setup.SERIAL_CELL_THREADS` (1.6 million).",
    ])
    report(f"Acoustic loops: parallel vs serial, {args.threads} thread(s)", body,
           write=args.write)


if __name__ == "__main__":
    main()
