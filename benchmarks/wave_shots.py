"""Many shots in one stepper: shot-cell-updates per second for 1, 4, 16 and 32 shots.

The same grid (``--n`` squared, dx 4 m, order 4, PML 20, f32, ``--nt`` steps, 100
receivers a shot) with every shot in one batched ``AcousticStepper`` (kept, kernels
compiled) and in one batched Deepwave call, in the same process, medians after a
warm-up. Forward and forward+gradient (diffsim's default checkpoint budget, Deepwave
store-all).

    python benchmarks/wave_shots.py --threads 1 [--shots 1 4 16 32] [--write]
    python benchmarks/wave_shots.py --threads 1 --marmousi2 ../shared/data [--write]

``--marmousi2 DIR`` runs instead the FWI case of ``diffsim run marmousi2``: Marmousi2 P
velocity resampled to 40 m (88 x 426 cells), 20 shots and 100 receivers 20 m deep, 5 Hz
Ricker, 4 s records at the scenario's time step, order 4, PML 20; diffsim's
``misfit_gradient`` (a fresh call, every shot batched in one stepper, nearest-cell points)
against Deepwave's batched gradient of the same 20 shots.

Deepwave is optional (`pip install torch==2.13.0 deepwave`).
"""

from __future__ import annotations

import argparse

import numpy as np
from _harness import median_time, report, table
from wave_vs_deepwave import run_deepwave

import diffsim
from diffsim import rollout
from diffsim.acoustic import AcousticStepper, misfit_gradient, ricker, simulate, stepper_misfit_gradient


def case(n: int, nt: int, shots: int) -> dict:
    h, dt = 4.0, 5e-4
    zz, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    vel = 1500.0 + 200.0 * np.exp(-((zz - n / 2) ** 2 + (xx - n / 2) ** 2) / (2 * (n / 10) ** 2))
    src = np.stack([np.full(shots, 2), np.linspace(n / 8, 7 * n / 8, shots).astype(int)], axis=1)
    rec = np.stack([np.full(100, 4), np.linspace(0, n - 1, 100).astype(int)], axis=1)
    return dict(h=h, dt=dt, vel=vel, wavelet=ricker(25.0, dt, nt, peak_time=0.04), src=src,
                rec=rec)


def marmousi2_case(data: str) -> dict:
    """The ``marmousi2`` scenario's model, time axis and acquisition, in cells."""
    from diffsim.fwi import surface_acquisition
    from diffsim.scenarios import get
    from diffsim.scenarios._fwi_job import _auto_dt

    sc = get("marmousi2")
    vel, h = sc.true_model(data)
    dt = _auto_dt(sc.vmax, h, sc.order)
    nt = int(round(sc.duration / dt)) + 1
    src, rec = surface_acquisition(vel.shape, h, sc.shots, sc.receivers,
                                   source_depth=sc.source_depth, receiver_depth=sc.receiver_depth)
    return dict(h=h, dt=dt, vel=vel.astype(np.float64), freq=sc.peak_frequency,
                wavelet=ricker(sc.peak_frequency, dt, nt),
                src=np.rint(src / h).astype(int), rec=np.rint(rec / h).astype(int))


def run_marmousi2(data: str, threads: int, repeats: int, write: bool) -> None:
    c = marmousi2_case(data)
    shots, nt = c["src"].shape[0], c["wavelet"].size
    args = (c["vel"], c["h"], c["dt"], c["wavelet"], c["src"] * c["h"], c["rec"] * c["h"])
    opts = dict(order=4, pml_width=20, interpolation="nearest", pml_frequency=c["freq"])
    observed = np.zeros((shots, c["rec"].shape[0], nt))
    ours_f = median_time(lambda: simulate(*args, **opts), repeats=repeats)
    ours_g = median_time(lambda: misfit_gradient(*args, observed, **opts), repeats=repeats)
    peer = run_deepwave(c, 4, repeats, threads, True)
    nz, nx = c["vel"].shape
    rows = [["diffsim (`simulate` / `misfit_gradient` call)", f"{ours_f:.3f}", f"{ours_g:.3f}"]]
    if peer:
        rows.append(["Deepwave (batched `scalar`)", f"{peer['forward']:.3f}", f"{peer['grad']:.3f}"])
        rows.append(["Deepwave / diffsim", f"{peer['forward'] / ours_f:.2f}",
                     f"{peer['grad'] / ours_g:.2f}"])
    body = (f"Marmousi2 at {c['h']:g} m ({nz} x {nx} cells), {shots} shots, "
            f"{c['rec'].shape[0]} receivers, nt {nt}, dt {c['dt'] * 1e3:.3f} ms, order 4, PML 20, "
            f"f32, {threads} thread(s); medians of {repeats} after a warm-up; seconds.\n\n"
            + table(["", "forward s", "forward+gradient s"], rows))
    print(body)
    report(f"Acoustic many shots: Marmousi2 20-shot gradient, {threads} thread(s)", body,
           write=write)


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
    parser.add_argument("--marmousi2", metavar="DATA", default=None,
                        help="run the Marmousi2 20-shot FWI case from this data folder instead")
    parser.add_argument("--write", action="store_true", help="append to BENCHMARKS.md")
    args = parser.parse_args()
    info = diffsim.init("cpu", "f32", threads=args.threads)
    if args.marmousi2:
        run_marmousi2(args.marmousi2, args.threads, args.repeats, args.write)
        return
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
