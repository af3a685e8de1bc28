"""Acoustic forward and gradient throughput against Deepwave, measured in the same run.

The reference case of the notes: 400 x 400 cells, dx 4 m, nt 1000, dt 0.5 ms, order 4,
PML 20, float32, 25 Hz Ricker, 100 receivers, v = 1500 m/s plus a Gaussian anomaly.
Each tool runs with the same thread count (one process per count, interleaved repeats).

    python benchmarks/wave_vs_deepwave.py --threads 1 [--write]

Deepwave is optional (`pip install torch==2.13.0 deepwave`); without it only diffsim runs.
"""

from __future__ import annotations

import argparse
import resource

import numpy as np
from _harness import median_time, report, table

import diffsim
from diffsim import Budget, Uniform, rollout
from diffsim.wave import AcousticStepper, ricker, stepper_misfit_gradient


def case(n: int, nt: int) -> dict:
    h, dt = 4.0, 5e-4
    zz, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    vel = 1500.0 + 200.0 * np.exp(-((zz - n / 2) ** 2 + (xx - n / 2) ** 2) / (2 * (n / 10) ** 2))
    wavelet = ricker(25.0, dt, nt, peak_time=0.04)
    src_cells = np.array([[2, n // 2]])
    rec_cells = np.stack([np.full(100, 4), np.linspace(0, n - 1, 100).astype(int)], axis=1)
    return dict(n=n, nt=nt, h=h, dt=dt, vel=vel, wavelet=wavelet, src=src_cells,
                rec=rec_cells)


def run_diffsim(c: dict, repeats: int) -> dict:
    stepper = AcousticStepper(c["vel"], c["h"], c["dt"], c["wavelet"], c["src"][None] * c["h"],
                              c["rec"] * c["h"], order=4, pml_width=20, interpolation="nearest")
    out = {"forward": median_time(lambda: rollout(stepper), repeats=repeats)}
    observed = np.zeros_like(stepper.traces_array())
    for name, sched in (("grad", Budget(bytes="1GiB")), ("grad_ckpt", Uniform(every=32))):
        out[name] = median_time(
            lambda s=sched: stepper_misfit_gradient(stepper, observed, checkpoint=s),
            repeats=repeats)
        res = stepper_misfit_gradient(stepper, observed, checkpoint=sched)
        out[name + "_schedule"] = repr(res.report.schedule)
        out[name + "_mib"] = res.report.peak_checkpoint_bytes / 2**20
    stepper.destroy()
    return out


def run_deepwave(c: dict, repeats: int, threads: int) -> dict | None:
    try:
        import deepwave
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    v = torch.tensor(c["vel"], dtype=torch.float32)
    amp = torch.tensor(c["wavelet"], dtype=torch.float32).reshape(1, 1, -1)
    src = torch.tensor(c["src"], dtype=torch.long).reshape(1, 1, 2)
    rec = torch.tensor(c["rec"], dtype=torch.long).reshape(1, -1, 2)
    kwargs = dict(source_amplitudes=amp, source_locations=src, receiver_locations=rec,
                  accuracy=4, pml_width=20, pml_freq=25.0)

    def forward() -> None:
        with torch.no_grad():
            deepwave.scalar(v, c["h"], c["dt"], **kwargs)

    def gradient() -> None:
        model = v.clone().requires_grad_()
        out = deepwave.scalar(model, c["h"], c["dt"], **kwargs)
        (out.receivers["u"] ** 2).sum().backward()

    return {"forward": median_time(forward, repeats=repeats),
            "grad": median_time(gradient, repeats=repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--nt", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="append to BENCHMARKS.md")
    args = parser.parse_args()
    info = diffsim.init("cpu", "f32", threads=args.threads)
    c = case(args.n, args.nt)
    ours = run_diffsim(c, args.repeats)
    peer = run_deepwave(c, args.repeats, args.threads)
    cells = args.n * args.n * (args.nt - 1)
    rows = [["diffsim", f"{ours['forward']:.3f}", f"{cells / ours['forward'] / 1e9:.3f}",
             f"{ours['grad']:.3f} ({ours['grad_schedule']}, {ours['grad_mib']:.0f} MiB)",
             f"{ours['grad_ckpt']:.3f} ({ours['grad_ckpt_mib']:.0f} MiB)",
             f"{ours['grad'] / ours['forward']:.2f}"]]
    if peer is not None:
        rows.append(["Deepwave 0.1.0", f"{peer['forward']:.3f}",
                     f"{cells / peer['forward'] / 1e9:.3f}", f"{peer['grad']:.3f} (store all)",
                     "", f"{peer['grad'] / peer['forward']:.2f}"])
        rows.append(["ratio diffsim / Deepwave", f"{ours['forward'] / peer['forward']:.2f}", "",
                     f"{ours['grad'] / peer['grad']:.2f}", "", ""])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    body = (
        f"{args.n} x {args.n}, nt {args.nt}, order 4, PML 20, f32, 1 shot, 100 receivers, "
        f"arch {info.arch}, {args.threads} thread(s); medians of {args.repeats}; seconds. "
        f"Throughput counts model cells ({args.n}^2 x {args.nt - 1} steps). Gradient = forward "
        f"+ backward of 0.5 sum(d^2) (diffsim) or sum(d^2) (Deepwave). Peak RSS of the whole "
        f"run: {rss:.0f} MiB.\n\n"
        + table(["tool", "forward s", "G cell-updates/s", "forward+gradient s",
                 "gradient, Uniform(32)", "gradient / forward"], rows)
    )
    report(f"Acoustic 2D vs Deepwave, {args.threads} thread(s)", body, write=args.write)


if __name__ == "__main__":
    main()
