"""FWI with a neural reparametrisation (a deep image prior) against plain L-BFGS-B.

A small CNN in PyTorch maps a fixed random latent to a velocity update; Adam in torch
trains its weights through `diffsim.torch.acoustic`, whose gradient is diffsim's exact
adjoint. The same case is inverted directly on the velocity with L-BFGS-B
(`diffsim.optim.minimize`), and both are compared on model error, data misfit and wall
time in `summary.json` and `deep_prior.png`. Only interop makes the first possible: the
network and its optimiser live in torch, the wave physics and its gradient in diffsim.

    python examples/fwi_deep_prior.py [--smoke] [--out out/deep_prior]
"""

import argparse
import json
import pathlib
import time

import numpy as np
import torch

import diffsim
import diffsim.torch as dtorch
from diffsim import acoustic
from diffsim.fwi import surface_acquisition
from diffsim.losses import L2
from diffsim.models import builtin_model, smooth
from diffsim.optim import LBFGSB, History, minimize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a small, quick run")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/deep_prior"))
    args = parser.parse_args()
    # the smoke run uses the float64 order-2 kernels that the tests compile anyway
    diffsim.init("cpu", "f64" if args.smoke else "f32")
    real = torch.float64 if args.smoke else torch.float32
    torch.manual_seed(0)
    shape, h = ((16, 32), 40.0) if args.smoke else ((48, 128), 20.0)   # cells [z, x], m
    iterations = 3 if args.smoke else 60                                # per method
    truth = builtin_model("layered", shape, h).velocity               # m/s
    start = smooth(truth, 6.0 if args.smoke else 10.0)                 # the starting model
    dt, nt = 2e-3, 220 if args.smoke else 700                          # s, samples
    wavelet = acoustic.ricker(6.0, dt, nt)                             # 6 Hz
    src, rec = surface_acquisition(shape, h, 3 if args.smoke else 6, 24 if args.smoke else 64,
                                   source_depth=2 * h, receiver_depth=h)
    options = {"order": 2 if args.smoke else 4, "pml_width": 10, "pml_velocity": 4000.0,
               "pml_frequency": 6.0}
    observed = acoustic.simulate(truth, h, dt, wavelet, src, rec, **options).astype(np.float64)

    def error(v: np.ndarray) -> float:
        return float(np.linalg.norm(v - truth) / np.linalg.norm(truth))

    # 1. plain L-BFGS-B on the velocity (bounds 1400-4500 m/s); the objective is scaled
    #    so that the first step moves the model by about 50 m/s
    sim = acoustic.Simulation(start, h, dt, wavelet, src, rec, **options)

    def objective(v: np.ndarray) -> tuple[float, np.ndarray]:
        sim.update(velocity=v.reshape(shape))
        res = sim.value_and_grad(L2(observed))
        return res.loss, res.grads["velocity"].ravel()

    clock = time.perf_counter()
    f0, g0 = objective(start.ravel())
    lbfgs = minimize(objective, start.ravel(), method=LBFGSB(max_line_search=8),
                     iterations=iterations, history=History(echo=print, label="L-BFGS-B"),
                     bounds=(np.full(start.size, 1400.0), np.full(start.size, 4500.0)),
                     scale=float(np.abs(g0).max()) / 50.0)
    lbfgs_seconds = time.perf_counter() - clock
    v_lbfgs = lbfgs.x.reshape(shape)

    # 2. the deep prior: v = start + 500 tanh(CNN(latent)), Adam on the CNN's weights
    net = torch.nn.Sequential(
        torch.nn.Conv2d(8, 32, 3, padding=1), torch.nn.LeakyReLU(0.1),
        torch.nn.Upsample(scale_factor=2, mode="bilinear"),
        torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.LeakyReLU(0.1),
        torch.nn.Upsample(scale_factor=2, mode="bilinear"),
        torch.nn.Conv2d(32, 1, 3, padding=1))
    torch.nn.init.zeros_(net[-1].weight)          # the network starts at the starting model
    torch.nn.init.zeros_(net[-1].bias)
    net = net.to(real)
    latent = torch.randn(1, 8, shape[0] // 4, shape[1] // 4, dtype=real)
    v0 = torch.tensor(start, dtype=real)
    d_obs = torch.tensor(observed, dtype=real)
    norm = float(np.sum(observed ** 2))     # the loss relative to the data's energy, so that
    #                                         Adam's steps do not drown in its epsilon
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-4)
    losses: list[float] = []
    clock = time.perf_counter()
    for it in range(iterations):
        optimiser.zero_grad()
        v = v0 + 500.0 * torch.tanh(net(latent)[0, 0])
        residual = dtorch.acoustic(v, h, dt, wavelet, src, rec, **options) - d_obs
        loss = 0.5 * residual.pow(2).sum() / norm
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        print(f"deep prior: iter {it:3d}  loss {losses[-1]:.6e}  model error "
              f"{error(v.detach().numpy()):.4f}")
    prior_seconds = time.perf_counter() - clock
    with torch.no_grad():
        v_prior = (v0 + 500.0 * torch.tanh(net(latent)[0, 0])).numpy().astype(np.float64)

    summary = {
        "grid": list(shape), "spacing_m": h, "iterations": iterations,
        "start_model_error": error(start),
        "lbfgsb": {"model_error": error(v_lbfgs), "loss": lbfgs.loss, "initial_loss": f0,
                   "seconds": lbfgs_seconds, "iterations": lbfgs.iterations},
        "deep_prior": {"model_error": error(v_prior), "loss": losses[-1] * norm,
                       "initial_loss": losses[0] * norm, "seconds": prior_seconds},
    }
    print(json.dumps(summary, indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    from diffsim.viz.figures import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 5.2))
    extent = [0, shape[1] * h / 1e3, shape[0] * h / 1e3, 0]              # km
    for ax, (title, model) in zip(axes.ravel(), [
            ("true", truth), (f"start (error {error(start):.3f})", start),
            (f"L-BFGS-B (error {error(v_lbfgs):.3f})", v_lbfgs),
            (f"deep prior + Adam (error {error(v_prior):.3f})", v_prior)], strict=True):
        im = ax.imshow(model, extent=extent, vmin=truth.min(), vmax=truth.max(), cmap="viridis")
        ax.set_title(title)
        ax.set_xlabel("x (km)")
        ax.set_ylabel("z (km)")
    fig.colorbar(im, ax=axes, shrink=0.8, label="velocity (m/s)")
    save_figure(fig, args.out / "deep_prior.png")


if __name__ == "__main__":
    main()
