"""Peak memory of forward and gradient runs, one process per case (RSS is per process).

Cases on the reference 400 x 400, nt 1000, order 4, f32 problem: forward, gradient under
store-all, gradient under a 100 MiB checkpoint budget, and the same for 4 batched shots.

    python benchmarks/wave_memory.py [--threads T] [--write]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
from _harness import report, table

CASES = {
    "forward, 1 shot": ("forward", 1, None),
    "gradient StoreAll, 1 shot": ("gradient", 1, "all"),
    "gradient Budget(100MiB), 1 shot": ("gradient", 1, "100MiB"),
    "forward, 4 shots": ("forward", 4, None),
    "gradient Budget(100MiB), 4 shots": ("gradient", 4, "100MiB"),
}


def run_case(mode: str, shots: int, budget: str | None, threads: int) -> dict:
    import diffsim
    from diffsim import Budget, StoreAll, rollout
    from diffsim.acoustic import AcousticStepper, ricker, stepper_misfit_gradient

    diffsim.init("cpu", "f32", threads=threads)
    n, h, dt, nt = 400, 4.0, 5e-4, 1000
    vel = np.full((n, n), 1500.0)
    wavelet = ricker(25.0, dt, nt, peak_time=0.04)
    sources = np.stack([np.full(shots, 8.0), (np.arange(shots) * 2 + 1) * n * h / (2 * shots)],
                       axis=1)
    receivers = np.stack([np.full(100, 16.0), np.linspace(0, (n - 1) * h, 100)], axis=1)
    stepper = AcousticStepper(vel, h, dt, wavelet, sources, receivers, order=4, pml_width=20,
                              interpolation="nearest")
    rollout(stepper, steps=3)  # compile outside the timing
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    extra = {}
    if mode == "forward":
        rollout(stepper)
    else:
        schedule = StoreAll() if budget == "all" else Budget(bytes=budget)
        res = stepper_misfit_gradient(stepper, np.zeros((shots, 100, nt)), checkpoint=schedule)
        extra = {"schedule": repr(res.report.schedule),
                 "checkpoint_mib": res.report.peak_checkpoint_bytes / 2**20}
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"wall": wall, "peak_mib": peak, "after_compile_mib": base, **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="append to BENCHMARKS.md")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case is not None:
        print(json.dumps(run_case(*CASES[args.case], args.threads)))
        return
    results = {}
    for name in CASES:
        out = subprocess.run([sys.executable, __file__, "--case", name, "--threads",
                              str(args.threads)], capture_output=True, text=True, check=True)
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    rows = [[name, f"{r['wall']:.2f}", f"{r['peak_mib']:.0f}",
             f"{r['peak_mib'] - results['forward, 1 shot']['peak_mib']:+.0f}",
             r.get("schedule", ""), f"{r.get('checkpoint_mib', 0):.0f}"]
            for name, r in results.items()]
    g1 = results["gradient Budget(100MiB), 1 shot"]
    g4 = results["gradient Budget(100MiB), 4 shots"]
    body = (
        f"400 x 400, nt 1000, order 4, PML 20, f32, {args.threads} threads, one process per "
        "case (peak RSS includes Python, NumPy and Taichi, about 200 MiB). Budget gradient / "
        f"store-all gradient time: {g1['wall'] / results['gradient StoreAll, 1 shot']['wall']:.2f}"
        f"; 4-shot / 1-shot gradient peak RSS: {g4['peak_mib'] / g1['peak_mib']:.2f}.\n\n"
        + table(["case", "wall s", "peak RSS MiB", "vs forward 1 shot", "schedule",
                 "checkpoints MiB"], rows)
    )
    report("Acoustic memory: forward vs gradient peaks", body, write=args.write)


if __name__ == "__main__":
    main()
