"""Many shots in one stepper: shot-cell-updates per second for 1, 4, 16 and 32 shots.

The same grid (``--n`` squared, dx 4 m, order 4, PML 20, f32, ``--nt`` steps, 100
receivers a shot) with every shot in one batched ``AcousticStepper`` (kept, kernels
compiled) and in one batched Deepwave call, in the same process, medians after a
warm-up. Forward and forward+gradient (diffsim's default checkpoint budget, Deepwave
store-all).

    python benchmarks/wave_shots.py --threads 1 [--shots 1 4 16 32] [--write]

Deepwave is optional (`pip install torch==2.13.0 deepwave`).
"""

from __future__ import annotations

import argparse

import numpy as np
from _harness import median_time, report, table
from wave_vs_deepwave import run_deepwave

import diffsim
from diffsim import rollout
from diffsim.wave import AcousticStepper, ricker, stepper_misfit_gradient


def case(n: int, nt: int, shots: int) -> dict:
    h, dt = 4.0, 5e-4
    zz, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    vel = 1500.0 + 200.0 * np.exp(-((zz - n / 2) ** 2 + (xx - n / 2) ** 2) / (2 * (n / 10) ** 2))
    src = np.stack([np.full(shots, 2), np.linspace(n / 8, 7 * n / 8, shots).astype(int)], axis=1)
    rec = np.stack([np.full(100, 4), np.linspace(0, n - 1, 100).astype(int)], axis=1)
    return dict(h=h, dt=dt, vel=vel, wavelet=ricker(25.0, dt, nt, peak_time=0.04), src=src,
                rec=rec)


def run_diffsim(c: dict, repeats: int) -> dict:
    shots = c["src"].shape[0]
    stepper = AcousticStepper(c["vel"], c["h"], c["dt"], c["wavelet"], c["src"] * c["h"],
                              c["rec"] * c["h"], order=4, pml_width=20,
                              interpolation="nearest")
    observed = np.zeros((shots, 100, c["wavelet"].size))
    out = {"forward": median_time(lambda: rollout(stepper), repeats=repeats),
           "grad": median_time(lambda: stepper_misfit_gradient(stepper, observed),
                               repeats=repeats)}
    stepper.destroy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--nt", type=int, default=500)
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="append to BENCHMARKS.md")
    args = parser.parse_args()
    info = diffsim.init("cpu", "f32", threads=args.threads)
    rows = []
    for shots in args.shots:
        c = case(args.n, args.nt, shots)
        ours = run_diffsim(c, args.repeats)
        peer = run_deepwave(c, 4, args.repeats, args.threads, True)
        updates = shots * args.n * args.n * (args.nt - 1)
        row = [str(shots), f"{ours['forward']:.3f}", f"{updates / ours['forward'] / 1e9:.2f}",
               f"{ours['grad']:.3f}"]
        if peer:
            row += [f"{peer['forward']:.3f}", f"{updates / peer['forward'] / 1e9:.2f}",
                    f"{peer['grad']:.3f}", f"{ours['grad'] / peer['grad']:.2f}"]
        rows.append(row)
        print(" | ".join(row), flush=True)
    body = (f"{args.n} x {args.n}, nt {args.nt}, order 4, PML 20, f32, 100 receivers a shot, "
            f"all shots in one batched call, arch {info.arch}, {args.threads} thread(s); "
            f"medians of {args.repeats} after a warm-up; seconds; G = 10^9 shot-cell-updates "
            "per second of the forward.\n\n"
            + table(["shots", "diffsim forward s", "diffsim G/s", "diffsim fwd+grad s",
                     "Deepwave forward s", "Deepwave G/s", "Deepwave fwd+grad s",
                     "fwd+grad diffsim / Deepwave"], rows))
    report(f"Acoustic many shots, {args.threads} thread(s)", body, write=args.write)


if __name__ == "__main__":
    main()
