"""2D elastic waves against Deepwave's ``elastic``, in the same process.

n x n cells, dx 4 m, dt 0.4 ms, C-PML 20, float32, a 25 Hz Ricker vertical force, 100
receivers of the vertical particle velocity, one shot; vp 2500 m/s, vs 1300 m/s and rho
2200 kg/m^3 with a Gaussian anomaly. diffsim on the path users call
(``elastic.simulate``; ``elastic.Simulation(...).value_and_grad`` for the gradient with
respect to vp, vs and rho, a new simulation per call); Deepwave's ``elastic`` with
``lamb, mu, buoyancy`` (the gradient of its output's sum of squares with respect to
all three). Medians of ``--repeats`` after one warm-up.

    python benchmarks/elastic_vs_deepwave.py --threads 1 [--sizes 100,200] [--nt 1000] [--write]

Deepwave is optional (`pip install torch==2.13.0 deepwave`); without it only diffsim runs.
"""

from __future__ import annotations

import numpy as np
from _harness import median_time, peer_comparison, report

from diffsim import acoustic, elastic
from diffsim.losses import L2


def case(n: int, nt: int) -> dict:
    h, dt = 4.0, 4e-4
    zz, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    bump = np.exp(-((zz - n / 2) ** 2 + (xx - n / 2) ** 2) / (2 * (n / 10) ** 2))
    rec = np.stack([np.full(100, 4), np.linspace(0, n - 1, 100).astype(int)], axis=1)
    return dict(n=n, nt=nt, h=h, dt=dt, vp=2500.0 + 200.0 * bump, vs=1300.0 + 100.0 * bump,
                rho=2200.0 + 100.0 * bump, wavelet=acoustic.ricker(25.0, dt, nt, peak_time=0.04),
                src=np.array([[2, n // 2]]), rec=rec)


def run_diffsim(c: dict, order: int, repeats: int) -> dict[str, float]:
    args = (c["h"], c["dt"], c["wavelet"], c["src"] * c["h"], c["rec"] * c["h"])
    opts = dict(source="vertical", order=order, pml_width=20, interpolation="nearest")
    observed = np.zeros((1, 100, c["nt"]))

    def gradient() -> None:
        with elastic.Simulation(c["vp"], c["vs"], c["rho"], *args, **opts) as sim:
            sim.value_and_grad(L2(observed, output="vz"), wrt=("vp", "vs", "rho"))

    return {"forward": median_time(lambda: elastic.simulate(c["vp"], c["vs"], c["rho"], *args,
                                                            **opts), repeats=repeats),
            "forward+gradient": median_time(gradient, repeats=repeats)}


def run_deepwave(c: dict, order: int, repeats: int, threads: int) -> dict[str, float] | None:
    try:
        import deepwave
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    f32 = dict(dtype=torch.float32)
    mu = torch.tensor(c["rho"] * c["vs"] ** 2, **f32)
    lamb = torch.tensor(c["rho"] * c["vp"] ** 2, **f32) - 2 * mu
    buoy = torch.tensor(1.0 / c["rho"], **f32)
    amp = torch.tensor(c["wavelet"], **f32).reshape(1, 1, -1)
    src = torch.tensor(c["src"], dtype=torch.long).reshape(1, 1, 2)
    rec = torch.tensor(c["rec"], dtype=torch.long).reshape(1, -1, 2)
    # Deepwave names the 2D axes (y, x): its vertical is y
    common = dict(source_amplitudes_y=amp, source_locations_y=src, receiver_locations_y=rec,
                  accuracy=order, pml_width=20, pml_freq=25.0)

    def forward() -> None:
        with torch.no_grad():
            deepwave.elastic(lamb, mu, buoy, c["h"], c["dt"], **common)

    def gradient() -> None:
        params = [p.clone().requires_grad_() for p in (lamb, mu, buoy)]
        out = deepwave.elastic(*params, c["h"], c["dt"], **common)
        (out.receivers["y"] ** 2).sum().backward()

    return {"forward": median_time(forward, repeats=repeats),
            "forward+gradient": median_time(gradient, repeats=repeats)}


DESCRIPTION = ("nt {nt}, order {order}, PML 20, f32, 1 shot (vertical force), 100 nearest-cell vz "
     "receivers, arch {arch}, {threads} thread(s); medians of {repeats} after a warm-up; "
     "seconds on the path users call (a new simulation per call). diffsim: the arena "
     "engine (kernels compiled once per process), hand-written adjoint.")


def main() -> None:
    args, body = peer_comparison(DESCRIPTION, case, run_diffsim, run_deepwave, sizes="100,200")
    report("Elastic 2D against Deepwave", body, write=args.write)


if __name__ == "__main__":
    main()
