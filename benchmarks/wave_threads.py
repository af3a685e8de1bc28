"""Scaling of the wave engines with CPU threads: worker tasks on 1 and on 2 threads.

Every engine (constant-density arena, cell engine for variable density and Born, elastic),
forward and forward+gradient, one or several shots, 2D and 3D. The process runs Taichi
with every core; "1 thread" runs the same kernels as one worker task (the split of
:mod:`diffsim._parallel` forced to one worker), "2 threads" as two, interleaved round by
round in the same process, so both see the same machine. Deepwave (optional) runs the
constant-density cases at ``torch.set_num_threads(1)`` and ``(2)`` in the same rounds.

    python benchmarks/wave_threads.py [--nt 500] [--repeats 3] [--quick] [--only NAME] [--write]

Seconds are medians over ``--repeats`` rounds after a warm-up (which compiles).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from _harness import report, table

import diffsim
from diffsim import StoreAll, _parallel
from diffsim import acoustic as ac
from diffsim import elastic as el
from diffsim.losses import L2


def geometry(shape: tuple[int, ...], shots: int, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Shots spread along the surface at 3 cells depth; 50 receivers at 4 cells."""
    ext = [(n - 1) * h for n in shape]
    xs = np.linspace(0.2, 0.8, shots) if shots > 1 else np.array([0.5])
    src = np.array([[3 * h, *[e * f for e in ext[1:]]] for f in xs])
    rec = np.array([[4 * h, *[e * f for e in ext[1:]]] for f in np.linspace(0.02, 0.98, 50)])
    return src, rec


def forcing(split: tuple[int, int] | None) -> None:
    """Force every engine's worker split (``None``: the automatic one)."""
    from diffsim.acoustic import density, stepper
    from diffsim.elastic import stepper as estepper
    from diffsim.springs import steppers

    for module in (stepper, density, estepper):
        module.split = (_parallel.split if split is None
                        else (lambda s, c, split=split: _parallel.Split(*split)))
    steppers.SPRING_WORKER_SPRINGS = 2_000 if split is None else 10**12


def springs(nt: int, grad: bool) -> Callable:
    """The lattice of ``springs_vs_warp.py`` (4,000 particles, 11,741 springs)."""
    from springs_vs_warp import DAMP, DT, MASS, MU, lattice

    from diffsim.springs import FinalPosition, SpringSimulation, SpringSystem

    pos, pairs, k = lattice()
    system = SpringSystem(pos, pairs, stiffness=k, damping=DAMP, mass=MASS,
                          gravity=(0.0, -9.8), ground=0.0, friction=MU)
    sim = SpringSimulation(system, nt, DT, velocities=np.tile([0.5, -1.0], (len(pos), 1)))
    if not grad:
        sim.simulate()  # builds the stepper (its worker count) now
        return lambda: sim.simulate()
    loss = FinalPosition(pos + 0.01)
    sim._stepper(loss)  # builds the loss's stepper now

    def run() -> object:
        return sim.value_and_grad(loss, wrt=("stiffness", "rest_length"), checkpoint=StoreAll())
    return run


def build(kind: str, shape: tuple[int, ...], shots: int, nt: int, order: int,
          split: tuple[int, int] | None) -> Callable:
    """A function running one forward (``kind`` ends in ``fwd``) or gradient of a kept simulation."""
    if kind.startswith("springs"):
        return springs(nt, kind.endswith("grad"))
    h, dt = 10.0, 8e-4
    src, rec = geometry(shape, shots, h)
    wav = ac.ricker(12.0, dt, nt)
    v = 2000.0 + 300.0 * np.linspace(0, 1, shape[0])[(slice(None),) + (None,) * (len(shape) - 1)]
    v = np.broadcast_to(v, shape).copy()
    if kind.startswith("elastic"):
        sim = el.Simulation(v, v / 1.8, 2000.0 * np.ones(shape), h, dt, wav, src, rec,
                            order=order, pml_width=20)
        out = "vz"
    elif kind.startswith("born"):
        dv = np.zeros(shape)
        dv[shape[0] // 2] = 50.0

        def born() -> object:  # a new stepper each call: its split forced here
            forcing(split)
            return ac.born(v, dv, h, dt, wav, src, rec, order=order, pml_width=20)
        return born
    else:
        dens = 2000.0 * np.ones(shape) if kind.startswith("density") else None
        sim = ac.Simulation(v, h, dt, wav, src, rec, density=dens, order=order, pml_width=20)
        out = "traces"
    if kind.endswith("fwd"):
        return lambda: sim.simulate()
    observed = np.zeros_like(sim.simulate()[out])
    loss = L2(observed, output=out) if out != "traces" else L2(observed)
    # store-all in 2D; 3D states under the default budget (checkpoints)
    schedule = StoreAll() if len(shape) == 2 else None
    return lambda: sim.value_and_grad(loss, checkpoint=schedule)


def measure(cases: list[tuple[str, tuple[int, ...], int, int]], nt: int, repeats: int,
            deepwave: object | None) -> list[list[object]]:
    rows = []
    for kind, shape, shots, order in cases:
        runs: dict[str, Callable] = {}
        for name, split in (("1", (1, shots)), ("2", None)):
            forcing(split)
            runs[name] = build(kind, shape, shots, nt, order, split)
        forcing(None)
        if deepwave is not None and kind.startswith("acoustic") and len(shape) == 2:
            for threads in (1, 2):
                runs[f"dw{threads}"] = deepwave(kind, shape, shots, nt, order, threads)
        times: dict[str, list[float]] = {k: [] for k in runs}
        for fn in runs.values():
            fn()  # compile / warm up
        for _ in range(repeats):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        cells = int(np.prod(shape)) * shots * nt  # springs: spring-steps
        dw = (f"{med['dw1']:.3f} / {med['dw2']:.3f} ({med['dw1'] / med['dw2']:.2f}x)"
              if "dw1" in med else "")
        rows.append([kind, " x ".join(map(str, shape)), shots, order, f"{med['1']:.3f}",
                     f"{med['2']:.3f}", f"{med['1'] / med['2']:.2f}x",
                     f"{cells / med['2'] / 1e9:.2f}", dw])
        print(rows[-1], flush=True)
    return rows


def deepwave_runner() -> Callable | None:
    try:
        import deepwave
        import torch
    except ImportError:
        return None

    def runner(kind: str, shape: tuple[int, ...], shots: int, nt: int, order: int,
               threads: int) -> Callable:
        h, dt = 10.0, 8e-4
        src, rec = geometry(shape, shots, h)
        v = 2000.0 + 300.0 * np.linspace(0, 1, shape[0])[:, None] * np.ones(shape)
        vel = torch.tensor(v, dtype=torch.float32, requires_grad=not kind.endswith("fwd"))
        sl = torch.tensor(np.round(src / h).astype(np.int64))[:, None, :]
        rl = torch.tensor(np.round(rec / h).astype(np.int64))[None].repeat(shots, 1, 1)
        amp = torch.tensor(ac.ricker(12.0, dt, nt), dtype=torch.float32)[None, None].repeat(
            shots, 1, 1)

        def run() -> None:
            torch.set_num_threads(threads)
            out = deepwave.scalar(vel, h, dt, source_amplitudes=amp, source_locations=sl,
                                  receiver_locations=rl, accuracy=order, pml_width=20)[-1]
            if vel.requires_grad:
                (out ** 2).sum().backward()
        return run
    return runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nt", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a few cases only")
    parser.add_argument("--only", default="", help="cases whose name contains this")
    parser.add_argument("--write", action="store_true", help="append to BENCHMARKS.md")
    args = parser.parse_args()
    diffsim.init("cpu", "f32")
    cases = [("acoustic fwd", (100, 100), 1, 4), ("acoustic fwd", (200, 200), 1, 4),
             ("acoustic fwd", (400, 400), 1, 4), ("acoustic fwd", (600, 600), 1, 4),
             ("acoustic fwd", (1000, 1000), 1, 4), ("acoustic fwd", (100, 100), 2, 4),
             ("acoustic fwd", (200, 200), 3, 4), ("acoustic grad", (400, 400), 1, 4),
             ("acoustic grad", (600, 600), 1, 4), ("acoustic grad", (200, 200), 2, 8),
             ("acoustic fwd", (100, 100, 100), 1, 4), ("acoustic grad", (60, 60, 60), 2, 4),
             ("density fwd", (400, 400), 1, 4), ("density grad", (200, 200), 2, 4),
             ("born fwd", (400, 400), 1, 4), ("elastic fwd", (400, 400), 1, 4),
             ("elastic grad", (200, 200), 2, 4), ("springs fwd", (11741,), 1, 0),
             ("springs grad", (11741,), 1, 0)]
    if args.quick:
        cases = [c for c in cases if c[1] in ((400, 400), (200, 200))][:6]
    cases = [c for c in cases if args.only in c[0]]
    t0 = time.perf_counter()
    rows = measure(cases, args.nt, args.repeats, deepwave_runner())
    body = (f"nt {args.nt}, PML 20, f32, 50 receivers, 2D gradients under store-all, 3D under "
            "the default budget; springs: the 80 x 50 lattice of `springs_vs_warp.py` "
            "(11,741 springs; 'grid' is the spring count, the rate spring-steps). Medians of "
            f"{args.repeats} rounds, seconds. '1' and '2': the same kernels as one and two "
            "worker tasks in one process (Taichi pool of 2 threads); rate: shot-cell-updates "
            "per second at 2 threads. Deepwave (constant density only): `torch.set_num_threads` "
            f"1 / 2 in the same rounds. Whole run {time.perf_counter() - t0:.0f} s.\n\n"
            + table(["case", "grid", "shots", "order", "1 thread s", "2 threads s",
                     "speed-up", "G/s at 2", "Deepwave 1 / 2 threads s"], rows))
    report("Wave engines: 1 and 2 threads (worker tasks)", body, write=args.write)


if __name__ == "__main__":
    main()
