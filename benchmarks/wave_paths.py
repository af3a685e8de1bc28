"""The paths users call: functional API calls in a fresh process, and kept steppers.

One fresh Python process per row (the Taichi offline cache is left as it is: warm after
the first run on a machine; ``--cold`` turns it off so every process compiles). Each
process times a sequence of calls on the reference case of ``wave_vs_deepwave.py``
(400 x 400, nt 1000, order 4, PML 20, f32, one shot, 100 receivers):

* ``functional``: ``simulate`` then ``misfit_gradient`` five times, as a user's loop
  over models would (new velocity every call), then one call on another grid;
* ``arrays`` / ``fields``: one kept ``AcousticStepper`` of that engine: forward and
  forward+gradient, medians after a warm-up.

    python benchmarks/wave_paths.py --threads 1 [--cold] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _harness import median_time, report, table


def child(mode: str, threads: int) -> dict:
    t_import = time.perf_counter()
    import numpy as np

    import diffsim
    from diffsim import Budget, rollout
    from diffsim.acoustic import AcousticStepper, misfit_gradient, ricker, simulate, stepper_misfit_gradient

    diffsim.init("cpu", "f32", threads=threads)
    out: dict[str, object] = {"import_s": time.perf_counter() - t_import}

    def case(n: int) -> tuple:
        zz, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        vel = 1500.0 + 200.0 * np.exp(-((zz - n / 2) ** 2 + (xx - n / 2) ** 2) / (2 * (n / 10) ** 2))
        src = np.array([[8.0, 4.0 * (n // 2)]])
        rec = np.stack([np.full(100, 16.0), 4.0 * np.linspace(0, n - 1, 100).astype(int)], axis=1)
        return vel, 4.0, 5e-4, ricker(25.0, 5e-4, 1000, peak_time=0.04), src, rec

    opts = dict(order=4, pml_width=20, interpolation="nearest")
    vel, h, dt, w, src, rec = case(400)
    if mode == "functional":
        calls = []
        t0 = time.perf_counter()
        observed = simulate(vel, h, dt, w, src, rec, **opts)
        calls.append(["simulate", time.perf_counter() - t0])
        for k in range(5):
            t0 = time.perf_counter()
            misfit_gradient(vel * (1.0 + 0.01 * (k + 1)), h, dt, w, src, rec, observed, **opts)
            calls.append([f"misfit_gradient {k + 1}", time.perf_counter() - t0])
        vel2, h2, dt2, w2, src2, rec2 = case(300)
        t0 = time.perf_counter()
        simulate(vel2, h2, dt2, w2, src2, rec2, **opts)
        calls.append(["simulate, 300 x 300 (new grid)", time.perf_counter() - t0])
        out["calls"] = calls
        return out
    stepper = AcousticStepper(vel, h, dt, w, src[None], rec, engine=mode, **opts)
    observed = np.zeros_like(stepper.traces_array())
    out["forward"] = median_time(lambda: rollout(stepper), repeats=3)
    out["gradient"] = median_time(
        lambda: stepper_misfit_gradient(stepper, observed, checkpoint=Budget(bytes="1GiB")),
        repeats=3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cold", action="store_true", help="Taichi offline cache off")
    parser.add_argument("--write", action="store_true", help="append to BENCHMARKS.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.threads)))
        return
    env = dict(os.environ)
    if args.cold:
        env["TI_OFFLINE_CACHE"] = "0"
    results = {}
    for mode in ("functional", "arrays", "fields"):
        proc = subprocess.run([sys.executable, __file__, "--child", mode, "--threads",
                               str(args.threads)], env=env, capture_output=True, text=True,
                              check=True)
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    calls = results["functional"]["calls"]
    rows = [[name, f"{sec:.3f}"] for name, sec in calls]
    kept = [[mode, f"{results[mode]['forward']:.3f}", f"{results[mode]['gradient']:.3f}"]
            for mode in ("arrays", "fields")]
    cache = "off (every process compiles)" if args.cold else "as left by earlier runs"
    body = (f"400 x 400, nt 1000, order 4, PML 20, f32, 1 shot, 100 nearest-cell receivers, "
            f"{args.threads} thread(s), Taichi offline cache {cache}; seconds, one fresh "
            f"process per table.\n\nFunctional API, calls in order in one process:\n\n"
            + table(["call", "s"], rows)
            + "\n\nKept stepper (medians of 3 after a warm-up; gradient under "
              "Budget(1GiB)):\n\n" + table(["engine", "forward s", "forward+gradient s"], kept))
    report(f"Acoustic paths users call, {args.threads} thread(s)", body, write=args.write)


if __name__ == "__main__":
    main()
