"""Executor overhead per step: the tape against a bare Python loop over the same kernels.

The peer is what a DiffTaichi user writes by hand: a loop launching the step's kernels
(forces, integrate, record) with no tape. The tape adds slot bookkeeping, checkpoint
copies and finiteness checks in the forward sweep, and the reverse sweep on top.

    python benchmarks/tape_overhead.py [--threads T] [--steps N] [--write]
"""

from __future__ import annotations

import argparse

import numpy as np
from _harness import median_time, report, table

import diffsim
from diffsim import Binomial, StoreAll, Tape, Uniform
from diffsim.chain import OscillatorChain


def build(masses: int, steps: int, adjoint: str) -> OscillatorChain:
    rng = np.random.default_rng(0)
    forcing = np.zeros((steps, masses))
    forcing[:, 0] = np.sin(0.05 * np.arange(steps))
    return OscillatorChain(stiffness=rng.uniform(50, 100, masses + 1), mass=1.0, beta=10.0,
                           forcing=forcing, dt=0.01, observed=[0, masses - 1], adjoint=adjoint)


def bare_loop(chain: OscillatorChain, steps: int) -> None:
    chain.reset()
    for step in range(steps):
        for kernel, args in chain.substeps(step):
            kernel(*args)
        for kernel, args in chain.record(step + 1):
            kernel(*args)


def gradient(chain: OscillatorChain, schedule: object, costate: bool = True) -> Tape:
    tape = Tape(chain, checkpoint=schedule, costate=costate)
    out = tape.forward()
    tape.backward({"positions": out["positions"]})
    return tape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="append to BENCHMARKS.md")
    args = parser.parse_args()
    info = diffsim.init("cpu", "f32", threads=args.threads)
    n = args.steps
    rows = []
    for masses in (64, 65536):
        for adjoint in ("autodiff", "hand"):
            chain = build(masses, n, adjoint)
            r = args.repeats
            bare = median_time(lambda c=chain: bare_loop(c, n), repeats=r)
            fwd = median_time(lambda c=chain: Tape(c, checkpoint=StoreAll()).forward(), repeats=r)
            fwd_b = median_time(lambda c=chain: Tape(c, checkpoint=Binomial(slots=16)).forward(),
                                repeats=r)
            grad_all = median_time(lambda c=chain: gradient(c, StoreAll()), repeats=r)
            grad_u = median_time(lambda c=chain: gradient(c, Uniform(every=32)), repeats=r)
            grad_b = median_time(lambda c=chain: gradient(c, Binomial(slots=16)), repeats=r)
            grad_nc = median_time(lambda c=chain: gradient(c, StoreAll(), costate=False), repeats=r)
            us = 1e6 / n
            rows.append([masses, adjoint, f"{bare * us:.0f}", f"{fwd * us:.0f}",
                         f"{(fwd - bare) * us:+.0f}", f"{fwd_b * us:.0f}", f"{grad_all * us:.0f}",
                         f"{grad_nc * us:.0f}", f"{grad_u * us:.0f}", f"{grad_b * us:.0f}",
                         f"{grad_all / bare:.2f}"])
            chain.destroy()
    body = (
        f"Oscillator chain, {n} steps, f32, arch {info.arch}, threads {info.threads}; medians of "
        f"{args.repeats} repeats; times in microseconds per step. `bare loop` = the step's "
        "kernels launched from a plain Python loop (the peer); `tape fwd` = Tape.forward under "
        "StoreAll (one checkpoint copy per step) and Binomial(16); `grad` = forward + backward; "
        "`no costate` skips the per-step adjoint norm.\n\n"
        + table(["masses", "adjoint", "bare loop", "tape fwd StoreAll", "overhead",
                 "tape fwd Binomial(16)", "grad StoreAll", "grad StoreAll no costate",
                 "grad Uniform(32)", "grad Binomial(16)", "grad / bare fwd"], rows)
    )
    report("Tape executor overhead per step", body, write=args.write)


if __name__ == "__main__":
    main()
