"""Model a shot gather through a velocity anomaly and compute the misfit gradient.

Demonstrates diffsim.acoustic: a layered model with a slow lens as the truth, the layers
alone as the starting model, `simulate` for the observed gather, `misfit_gradient`
under a memory budget, and figures of the model, the gather and the gradient (the
gradient lights up where the lens is missing).

    python examples/wave_gradient.py --out out/wave_gradient
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

import diffsim
from diffsim import Budget
from diffsim.acoustic import misfit_gradient, ricker, simulate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (for the tests)")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="folder for figures")
    args = parser.parse_args(argv)

    diffsim.init("cpu", "f32")
    nz, nx = (40, 60) if args.smoke else (120, 200)  # cells
    h = 10.0  # grid spacing, m
    dt = 1e-3  # time step, s
    nt = 300 if args.smoke else 900  # samples
    z = np.arange(nz)[:, None] * h
    x = np.arange(nx)[None, :] * h
    layers = 1800.0 + 1.2 * z + 0.0 * x  # m/s, velocity growing with depth
    lens = -250.0 * np.exp(-((z - 0.5 * nz * h) ** 2 + (x - 0.5 * nx * h) ** 2) / (2 * (8 * h) ** 2))
    true, start = layers + lens, layers
    wavelet = ricker(10.0, dt, nt)  # 10 Hz
    sources = np.array([[20.0, 0.25 * nx * h], [20.0, 0.75 * nx * h]])  # two shots, metres
    receivers = np.stack([np.full(nx // 2, 20.0), np.linspace(0, (nx - 1) * h, nx // 2)], axis=1)

    order = 4 if args.smoke else 8  # the smoke run compiles the cheaper stencil
    observed = simulate(true, h, dt, wavelet, sources, receivers, order=order)
    result = misfit_gradient(start, h, dt, wavelet, sources, receivers, observed, order=order,
                             checkpoint=Budget(bytes="256MiB"))
    print(f"observed gathers {observed.shape}; misfit {result.loss:.4e}")
    print(result.report.summary())

    if args.out is not None:
        import matplotlib

        matplotlib.use("Agg")  # headless
        import matplotlib.pyplot as plt

        args.out.mkdir(parents=True, exist_ok=True)
        extent = [0, nx * h / 1000, nz * h / 1000, 0]  # km
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        im = axes[0].imshow(true, extent=extent, cmap="viridis")
        axes[0].set_title("true velocity (m/s)")
        fig.colorbar(im, ax=axes[0])
        clip = np.percentile(np.abs(observed[0]), 99)
        axes[1].imshow(observed[0].T, aspect="auto", cmap="gray", vmin=-clip, vmax=clip,
                       extent=[0, nx * h / 1000, nt * dt, 0])
        axes[1].set_title("shot 1 gather (time in s)")
        g = result.gradient
        gclip = np.percentile(np.abs(g), 99)  # the source imprint would dominate the scale
        im = axes[2].imshow(g, extent=extent, cmap="seismic", vmin=-gclip, vmax=gclip)
        axes[2].set_title("d misfit / d velocity")
        for ax in (axes[0], axes[2]):
            ax.set_xlabel("x (km)")
            ax.set_ylabel("z (km)")
        fig.tight_layout()
        fig.savefig(args.out / "wave_gradient.png", dpi=100)
        print(f"wrote {args.out / 'wave_gradient.png'}")


if __name__ == "__main__":
    main()
