"""Variable-density acoustics and Born modelling against Deepwave, in the same process.

The reference case of ``wave_vs_deepwave.py`` (n x n cells, dx 4 m, dt 0.5 ms, PML 20,
float32, 25 Hz Ricker, 100 receivers, one shot) with a density (1000 kg/m^3 plus a
Gaussian anomaly) or a scattering perturbation (the anomaly itself). diffsim on the path
users call (``acoustic.simulate(density=)``, ``misfit_gradient(density=)``, ``born``, a
new ``Born`` per migration); Deepwave's ``acoustic`` (velocity-pressure, with density)
and ``scalar_born``. Medians of ``--repeats`` after one warm-up.

    python benchmarks/wave_density_born.py --threads 1 [--sizes 200,400] [--order 4]
        [--nt 1000] [--write]

Deepwave is optional (`pip install torch==2.13.0 deepwave`); without it only diffsim runs.
"""

from __future__ import annotations

import numpy as np
from _harness import median_time, peer_comparison, report

from diffsim import acoustic


def case(n: int, nt: int) -> dict:
    h, dt = 4.0, 5e-4
    zz, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    bump = np.exp(-((zz - n / 2) ** 2 + (xx - n / 2) ** 2) / (2 * (n / 10) ** 2))
    rec = np.stack([np.full(100, 4), np.linspace(0, n - 1, 100).astype(int)], axis=1)
    return dict(n=n, nt=nt, h=h, dt=dt, vel=1500.0 + 200.0 * bump, rho=1000.0 + 500.0 * bump,
                scatter=50.0 * bump, wavelet=acoustic.ricker(25.0, dt, nt, peak_time=0.04),
                src=np.array([[2, n // 2]]), rec=rec)


def run_diffsim(c: dict, order: int, repeats: int) -> dict[str, float]:
    args = (c["h"], c["dt"], c["wavelet"], c["src"] * c["h"], c["rec"] * c["h"])
    opts = dict(order=order, pml_width=20, interpolation="nearest")
    observed = np.zeros((1, 100, c["nt"]))
    out = {
        "density forward": median_time(
            lambda: acoustic.simulate(c["vel"], *args, density=c["rho"], **opts), repeats=repeats),
        "density forward+gradient": median_time(
            lambda: acoustic.misfit_gradient(c["vel"], *args, observed, density=c["rho"], **opts),
            repeats=repeats),
        "Born forward": median_time(
            lambda: acoustic.born(c["vel"], c["scatter"], *args, **opts), repeats=repeats),
    }

    def migrate() -> None:
        with acoustic.Born(c["vel"], c["scatter"], *args, **opts) as op:
            op.vjp({"traces": np.ones((1, 100, c["nt"]))})

    out["Born adjoint (migration)"] = median_time(migrate, repeats=repeats)
    return out


def run_deepwave(c: dict, order: int, repeats: int, threads: int) -> dict[str, float] | None:
    try:
        import deepwave
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    v = torch.tensor(c["vel"], dtype=torch.float32)
    rho = torch.tensor(c["rho"], dtype=torch.float32)
    scatter = torch.tensor(c["scatter"], dtype=torch.float32)
    amp = torch.tensor(c["wavelet"], dtype=torch.float32).reshape(1, 1, -1)
    src = torch.tensor(c["src"], dtype=torch.long).reshape(1, 1, 2)
    rec = torch.tensor(c["rec"], dtype=torch.long).reshape(1, -1, 2)
    common = dict(accuracy=order, pml_width=20, pml_freq=25.0)

    def forward() -> None:
        with torch.no_grad():
            deepwave.acoustic(v, rho, c["h"], c["dt"], source_amplitudes_p=amp,
                              source_locations_p=src, receiver_locations_p=rec, **common)

    def gradient() -> None:
        vv, rr = v.clone().requires_grad_(), rho.clone().requires_grad_()
        out = deepwave.acoustic(vv, rr, c["h"], c["dt"], source_amplitudes_p=amp,
                                source_locations_p=src, receiver_locations_p=rec, **common)
        (out.receivers["p"] ** 2).sum().backward()

    def born() -> None:
        with torch.no_grad():
            deepwave.scalar_born(v, c["h"], c["dt"], scatter=scatter, source_amplitudes=amp,
                                 source_locations=src, receiver_locations=rec, **common)

    def migrate() -> None:
        sc = scatter.clone().requires_grad_()
        out = deepwave.scalar_born(v, c["h"], c["dt"], scatter=sc, source_amplitudes=amp,
                                   source_locations=src, receiver_locations=rec, **common)
        out.receivers["u"].sum().backward()

    return {"density forward": median_time(forward, repeats=repeats),
            "density forward+gradient": median_time(gradient, repeats=repeats),
            "Born forward": median_time(born, repeats=repeats),
            "Born adjoint (migration)": median_time(migrate, repeats=repeats)}


DESCRIPTION = ("nt {nt}, order {order}, PML 20, f32, 1 shot, 100 nearest-cell receivers, arch {arch}, "
     "{threads} thread(s); medians of {repeats} after a warm-up; seconds on the path users "
     "call. Deepwave's `acoustic` is the velocity-pressure form (with density); its Born "
     "adjoint is `scalar_born` backward with respect to the scatter.")


def main() -> None:
    args, body = peer_comparison(DESCRIPTION, case, run_diffsim, run_deepwave, sizes="200,400")
    report("Variable density and Born modelling against Deepwave", body, write=args.write)


if __name__ == "__main__":
    main()
