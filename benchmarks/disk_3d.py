"""A 3D acoustic gradient that does not fit in RAM: checkpoints spill to disk.

The model is :func:`diffsim.models.marmousi2_3d` (Marmousi2 extended along y with an
oblique strike and a depth stretch), ``--size`` cells cubed at 13 m, order 4, C-PML of
``--pml`` cells, f32, one surface source and a 20 x 20 surface receiver grid, ``--steps``
steps at 0.8 of the stability limit. One gradient of ``0.5 |d|^2`` through the
checkpoint plan ``--checkpoint`` (a :class:`~diffsim.Budget` with a small memory tier
and a disk tier picks a :class:`~diffsim.TwoLevel` plan), in this fresh process: the
time split (forward, recompute, reverse, the main thread's checkpoint copies, the disk
writer thread and the waits for it), the bytes written and read, and the process's peak
resident memory.

After it, ``--check-size``/``--check-steps`` runs the same problem small enough that
store-all fits in RAM and checks that the disk-tier gradient equals it bit for bit, with
both times (after the large run, so that the peak resident memory reported is the large
run's: Taichi keeps the memory of fields it has freed).

    python benchmarks/disk_3d.py [--size 250] [--steps 2000] [--threads 2]
        [--checkpoint budget:600MiB,disk:40GiB] [--write]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import numpy as np
from _harness import report, table

import diffsim
from diffsim import Budget, StoreAll, acoustic
from diffsim.checkpoint import parse_schedule
from diffsim.losses import L2
from diffsim.models import marmousi2_3d


def problem(n: int, steps: int, pml: int) -> tuple[acoustic.Simulation, L2]:
    h = 13.0
    vel = marmousi2_3d((n, n, n), h)
    dt = 0.8 * acoustic.max_stable_dt(float(vel.max()), (h, h, h), 4)
    wavelet = acoustic.ricker(6.0, dt, steps + 1)
    width = (n - 1) * h
    src = [[[2 * h, width / 2, width / 2]]]
    grid = np.linspace(0.1 * width, 0.9 * width, 20)
    rec = [[[2 * h, y, x] for y in grid for x in grid]]
    sim = acoustic.Simulation(vel, h, dt, wavelet, src, rec, order=4, pml_width=pml)
    return sim, L2(np.zeros((1, len(rec[0]), steps + 1)))


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=250)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--pml", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", default="budget:600MiB,disk:40GiB")
    parser.add_argument("--check-size", type=int, default=48)
    parser.add_argument("--check-steps", type=int, default=300)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    diffsim.init("cpu", "f32", threads=args.threads)
    plan = parse_schedule(args.checkpoint)
    rows = []

    # 1. the large gradient through the plan, first in this fresh process
    t_build = time.perf_counter()
    sim, loss = problem(args.size, args.steps, args.pml)
    t_build = time.perf_counter() - t_build
    with sim:
        big_state = state = sim.stepper.state_nbytes
        t0 = time.perf_counter()
        res = sim.value_and_grad(loss, checkpoint=plan)
        seconds = time.perf_counter() - t0
    rep = res.report
    io = rep.io
    print(rep.summary())
    peak = peak_rss_gib()
    large_row = (f"{args.size}^3 x {args.steps}", args.checkpoint, repr(rep.schedule),
                 f"{rep.forward_steps}", f"{seconds:.0f}",
                 f"{sum(t.peak_states for t in rep.tiers if t.name != 'disk') * state / 2**20:.0f}",
                 f"{io.get('bytes_written', 0) / 2**30:.1f}", f"{peak:.2f}",
                 f"max |g| {np.abs(res.grads['velocity']).max():.3e}")
    # 2. small enough for store-all: the disk tier must give the same bits (after the large
    #    run, so that the peak resident memory above is the large run's alone)
    with tempfile.TemporaryDirectory() as scratch:
        sim, loss = problem(args.check_size, args.check_steps, args.pml)
        with sim:
            state = sim.stepper.state_nbytes
            sim.value_and_grad(loss, checkpoint=StoreAll())      # compile and warm up
            t0 = time.perf_counter()
            ref = sim.value_and_grad(loss, checkpoint=StoreAll())
            t_ref = time.perf_counter() - t0
            small = Budget(bytes=2 * state, disk=40 * state, directory=scratch)
            t0 = time.perf_counter()
            res = sim.value_and_grad(loss, checkpoint=small)
            t_disk = time.perf_counter() - t0
        same = bool(np.array_equal(res.grads["velocity"], ref.grads["velocity"]))
        if not same:
            raise SystemExit("the disk-tier gradient differs from store-all's")
        for label, r, t in (("store-all in RAM", ref, t_ref), ("2 states in RAM + disk", res, t_disk)):
            rows.append((f"{args.check_size}^3 x {args.check_steps}", label, repr(r.report.schedule),
                         f"{r.report.forward_steps}", f"{t:.1f}",
                         f"{r.report.peak_checkpoint_bytes / 2**20:.0f}",
                         f"{r.report.io.get('bytes_written', 0) / 2**30:.2f}", "-",
                         "same bits" if r is res else "reference"))

    rows.append(large_row)
    split = (f"forward {rep.forward_seconds:.0f} s, recompute {rep.recompute_seconds:.0f} s, "
             f"reverse {rep.reverse_seconds:.0f} s, checkpoint copies and loads in the main "
             f"thread {rep.checkpoint_seconds:.0f} s (of which waiting for the writer "
             f"{io.get('wait_seconds', 0):.0f} s, reading files {io.get('read_seconds', 0):.0f} s); "
             f"the writer thread wrote {io.get('bytes_written', 0) / 2**30:.1f} GiB in "
             f"{io.get('write_seconds', 0):.0f} s while the steps ran; read back "
             f"{io.get('bytes_read', 0) / 2**30:.1f} GiB; building the simulation "
             f"{t_build:.0f} s")
    body = (f"Marmousi2 extended to 3D (`diffsim.models.marmousi2_3d`), 13 m cells, order 4, "
            f"C-PML {args.pml} cells, f32, 1 shot, 400 receivers, {args.threads} thread(s); "
            f"one state {big_state / 2**20:.0f} MiB at {args.size}^3. Fresh process, the large "
            "gradient first, then the small ones (store-all after a warm-up).\n\n"
            + table(("grid x steps", "checkpoint", "plan", "forward steps", "gradient (s)",
                     "checkpoints in RAM (MiB)", "written to disk (GiB)", "peak RSS (GiB)",
                     "check"), rows)
            + f"\n\nTime split of the large run: {split}.\n\n{rep.summary()}")
    report("3D gradient beyond RAM: checkpoints on disk", body, write=args.write)


if __name__ == "__main__":
    main()
