"""Checkpoint stores: one gradient through the device pool, host RAM and disk files.

A 2D acoustic gradient (``--size`` cells square, ``--steps`` steps, order 8, f32) under
``Binomial(slots=--slots)``, the same for every store: time, bytes on disk, the time the
background writer spent and the time the stepper waited for it, and the gradient's
relative difference from the device store's (0 means the same bits).

    python benchmarks/stores.py [--size 400] [--steps 2000] [--slots 40] [--threads 1] [--write]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from _harness import report, table

import diffsim
from diffsim import Binomial, acoustic
from diffsim.losses import L2
from diffsim.stores import DeviceStore, DiskStore, HostStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=400)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--slots", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    diffsim.init("cpu", "f32", threads=args.threads)
    n, h = args.size, 10.0
    dt = 0.8 * acoustic.max_stable_dt(3000.0, (h, h), 8)
    zz, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    vel = 2000.0 + 1000.0 * zz / n + 100.0 * np.exp(-((zz - n / 2) ** 2 + (xx - n / 2) ** 2)
                                                  / (2 * (n / 10) ** 2))
    wavelet = acoustic.ricker(10.0, dt, args.steps + 1)
    src = [[[20.0, n * h / 2]]]
    rec = [[[20.0, x] for x in np.linspace(0, (n - 1) * h, 100)]]
    observed = np.zeros((1, 100, args.steps + 1))
    schedule = Binomial(slots=args.slots)
    rows, ref = [], None
    with tempfile.TemporaryDirectory() as scratch, \
            acoustic.Simulation(vel, h, dt, wavelet, src, rec, order=8) as sim:
        loss = L2(observed, output="traces")
        sim.value_and_grad(loss, checkpoint=schedule)        # compile and warm up
        stores = [("device", DeviceStore()), ("host", HostStore()),
                  ("disk", DiskStore(scratch)),
                  ("disk, lossless", DiskStore(scratch, compression="lossless")),
                  ("disk, float16", DiskStore(scratch, compression="float16")),
                  ("disk, zfp 1e-5", DiskStore(scratch, compression="zfp", tolerance=1e-5))]
        for name, store in stores:
            t0 = time.perf_counter()
            res = sim.value_and_grad(loss, checkpoint=schedule, store=store)
            seconds = time.perf_counter() - t0
            g = res.grads["velocity"]
            ref = g if ref is None else ref
            diff = float(np.abs(g - ref).max() / np.abs(ref).max())
            stats = getattr(store, "stats", None)
            written = f"{stats['bytes_written'] / 2**20:.0f}" if stats else "-"
            raw = f"{stats['state_bytes'] / 2**20:.0f}" if stats else "-"
            writer = f"{stats['write_seconds']:.2f}" if stats else "-"
            waited = f"{stats['wait_seconds'] + stats['read_seconds']:.2f}" if stats else "-"
            rows.append((name, f"{seconds:.2f}", f"{res.report.checkpoint_seconds:.2f}",
                         raw, written, writer, waited, f"{diff:.1e}"))
            if isinstance(store, DiskStore):
                store.close()
    body = (f"{n} x {n} cells, {args.steps} steps, order 8, f32, Binomial(slots={args.slots}), "
            f"{args.threads} thread(s); one gradient per store after a warm-up.\n\n"
            + table(("store", "gradient (s)", "in the store (s)", "states (MiB)",
                     "files (MiB)", "writer thread (s)", "waits + reads (s)",
                     "gradient difference"), rows))
    report("Checkpoint stores: device, host, disk", body, write=args.write)


if __name__ == "__main__":
    main()
