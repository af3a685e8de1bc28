"""Acoustic forward and gradient against Deepwave, in the same process, on both paths.

The reference case of the notes: n x n cells, dx 4 m, nt 1000, dt 0.5 ms, PML 20,
float32, 25 Hz Ricker near the surface, 100 receivers, v = 1500 m/s plus a Gaussian
anomaly. diffsim is timed on the path users call (``simulate`` / ``misfit_gradient``: a
new stepper every call, kernels already compiled in this process) and on a kept
``AcousticStepper``; Deepwave's ``scalar`` on its only path. Medians of ``--repeats``
after one warm-up, one thread count per process. The memory bandwidth of the machine is
measured in the same process (NumPy triad ``a = b + s c`` on 64 MiB arrays).

    python benchmarks/wave_vs_deepwave.py --threads 1 [--sizes 400,1000,2000]
        [--orders 4,8] [--gradient-sizes 400] [--write]

Deepwave is optional (`pip install torch==2.13.0 deepwave`); without it only diffsim runs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _harness import median_time, report, table

import diffsim
from diffsim import rollout
from diffsim.acoustic import AcousticStepper, misfit_gradient, ricker, simulate, stepper_misfit_gradient

#: Bytes a cell-update must move at best in f32: read u[t], u[t-1] and kc, write u[t+1].
BYTES_PER_CELL = 16


def case(n: int, nt: int) -> dict:
    h, dt = 4.0, 5e-4
    zz, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    vel = 1500.0 + 200.0 * np.exp(-((zz - n / 2) ** 2 + (xx - n / 2) ** 2) / (2 * (n / 10) ** 2))
    src_cells = np.array([[2, n // 2]])
    rec_cells = np.stack([np.full(100, 4), np.linspace(0, n - 1, 100).astype(int)], axis=1)
    return dict(n=n, nt=nt, h=h, dt=dt, vel=vel, wavelet=ricker(25.0, dt, nt, peak_time=0.04),
                src=src_cells, rec=rec_cells)


def triad_gbs() -> float:
    b = np.random.default_rng(0).random(8 * 2**20)
    c = b.copy()
    a = np.empty_like(b)

    def run() -> None:
        np.multiply(c, 3.0, out=a)
        np.add(a, b, out=a)

    sec = median_time(run, repeats=5)
    return 4 * b.nbytes / sec / 1e9  # two passes: read c, write a; read a and b, write a


def run_diffsim(c: dict, order: int, repeats: int, gradient: bool) -> dict:
    args = (c["vel"], c["h"], c["dt"], c["wavelet"], c["src"] * c["h"], c["rec"] * c["h"])
    opts = dict(order=order, pml_width=20, interpolation="nearest")
    out = {"forward_call": median_time(lambda: simulate(*args, **opts), repeats=repeats)}
    stepper = AcousticStepper(*args, **opts)
    out["forward_kept"] = median_time(lambda: rollout(stepper), repeats=repeats)
    if gradient:
        observed = np.zeros((1, 100, c["nt"]))
        out["grad_call"] = median_time(
            lambda: misfit_gradient(*args, observed, **opts), repeats=repeats)
        out["grad_kept"] = median_time(
            lambda: stepper_misfit_gradient(stepper, observed), repeats=repeats)
        res = stepper_misfit_gradient(stepper, observed)
        out["schedule"] = repr(res.report.schedule)
    stepper.destroy()
    return out


def run_deepwave(c: dict, order: int, repeats: int, threads: int, gradient: bool) -> dict | None:
    """Deepwave's forward (and forward+gradient) for case ``c``, every shot in one call.

    ``c["src"]`` holds one source cell a shot ``[shot, 2]``; every shot records at
    ``c["rec"]``. ``None`` when Deepwave is not installed.
    """
    try:
        import deepwave
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    shots = c["src"].shape[0]
    v = torch.tensor(c["vel"], dtype=torch.float32)
    amp = torch.tensor(c["wavelet"], dtype=torch.float32).reshape(1, 1, -1).repeat(shots, 1, 1)
    src = torch.tensor(c["src"], dtype=torch.long).reshape(shots, 1, 2)
    rec = torch.tensor(c["rec"], dtype=torch.long).reshape(1, -1, 2).repeat(shots, 1, 1)
    kwargs = dict(source_amplitudes=amp, source_locations=src, receiver_locations=rec,
                  accuracy=order, pml_width=c.get("pml", 20), pml_freq=c.get("freq", 25.0))

    def forward() -> None:
        with torch.no_grad():
            deepwave.scalar(v, c["h"], c["dt"], **kwargs)

    def grad() -> None:
        model = v.clone().requires_grad_()
        out = deepwave.scalar(model, c["h"], c["dt"], **kwargs)
        (out.receivers["u"] ** 2).sum().backward()

    out = {"forward": median_time(forward, repeats=repeats)}
    if gradient:
        out["grad"] = median_time(grad, repeats=repeats)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", default="400,1000,2000")
    parser.add_argument("--orders", default="4,8")
    parser.add_argument("--gradient-sizes", default="400")
    parser.add_argument("--nt", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="append to BENCHMARKS.md")
    args = parser.parse_args()
    info = diffsim.init("cpu", "f32", threads=args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    orders = [int(s) for s in args.orders.split(",")]
    grad_sizes = {int(s) for s in args.gradient_sizes.split(",") if s}
    gbs = triad_gbs()
    rows = []
    t0 = time.perf_counter()
    for n in sizes:
        c = case(n, args.nt)
        cells = n * n * (args.nt - 1)
        for order in orders:
            grad = n in grad_sizes and order == orders[0]
            ours = run_diffsim(c, order, args.repeats, grad)
            peer = run_deepwave(c, order, args.repeats, args.threads, grad)
            dw_f = f"{peer['forward']:.3f}" if peer else "-"
            ratio = f"{ours['forward_call'] / peer['forward']:.2f}" if peer else "-"
            rate = cells / ours["forward_kept"]
            rows.append([f"{n} x {n}, order {order}, forward", f"{ours['forward_call']:.3f}",
                         f"{ours['forward_kept']:.3f}", dw_f, ratio,
                         f"{rate / 1e9:.2f} G/s, {rate * BYTES_PER_CELL / 1e9:.1f} GB/s"])
            if grad:
                dw_g = f"{peer['grad']:.3f}" if peer else "-"
                ratio = f"{ours['grad_call'] / peer['grad']:.2f}" if peer else "-"
                rows.append([f"{n} x {n}, order {order}, forward+gradient",
                             f"{ours['grad_call']:.3f}", f"{ours['grad_kept']:.3f}", dw_g,
                             ratio, f"{ours['grad_kept'] / ours['forward_kept']:.2f}x our "
                                    f"forward ({ours['schedule']})"])
    body = (
        f"nt {args.nt}, PML 20, f32, 1 shot, 100 nearest-cell receivers, arch {info.arch}, "
        f"{args.threads} thread(s); medians of {args.repeats} after a warm-up; seconds. "
        f"'call': `simulate` / `misfit_gradient` (a new stepper each call; the kernels "
        f"compiled once in this process); 'kept': one `AcousticStepper`. Gradient = "
        f"forward + backward of 0.5 sum(d^2) (diffsim, default 1 GiB checkpoint budget) "
        f"or sum(d^2) (Deepwave, store all). Rate: model cell-updates per second of the "
        f"kept forward, and the bytes that implies at {BYTES_PER_CELL} B a cell-update; "
        f"NumPy triad on this machine in the same process: {gbs:.1f} GB/s. Whole run "
        f"{time.perf_counter() - t0:.0f} s.\n\n"
        + table(["case", "diffsim call s", "diffsim kept s", "Deepwave s",
                 "call / Deepwave", "rate or ratio"], rows)
    )
    report(f"Acoustic 2D vs Deepwave, {args.threads} thread(s)", body, write=args.write)


if __name__ == "__main__":
    main()
