"""Acoustic forward and gradient against Devito, on the reference case of wave_vs_deepwave.py.

n x n cells, dx 4 m, nt 1000, dt 0.5 ms, float32, 25 Hz Ricker peaking at 0.04 s at cell
(2, n//2), 100 receivers on row 4, v = 1500 m/s plus a Gaussian anomaly; absorbing layer of
20 cells on every face (diffsim: its PML; Devito: its seismic examples' ``damp`` layer,
``nbl=20``). Devito runs through its own seismic API (``examples.seismic``, shipped inside the
devito wheel): ``Model``, ``AcquisitionGeometry``, ``AcousticWaveSolver`` with ``forward`` and
``gradient`` (``jacobian_adjoint``), store-all (``save=nt``) as Devito does by default. Its
JIT (building and compiling the three operators) is timed once, apart from the medians.
diffsim's ``simulate`` / ``misfit_gradient`` (the call path) run on the same case in the
same process (diffsim is installed in Devito's venv), for the ratios and a cross-check of
the two gradient images (Pearson correlation over the model cells, Devito's gradient
converted to velocity).

Devito pins its own NumPy and SymPy, so it lives in a venv of its own, outside the repo
(``examples.seismic`` imports pytest at module level, hence pytest)::

    python3.11 -m venv ../devito-venv                    # from the repository root
    ../devito-venv/bin/pip install devito==4.8.23 pytest
    ../devito-venv/bin/pip install -e .                  # diffsim too, for the ratios

    ../devito-venv/bin/python benchmarks/wave_vs_devito.py --threads 1 [--sizes 400]
        [--orders 4] [--nt 1000] [--repeats 3] [--write]

Threads: ``--threads`` sets ``OMP_NUM_THREADS`` (and ``DEVITO_LANGUAGE=openmp``) before Devito
is imported, and diffsim's ``init(threads=...)``. One thread count per process.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import numpy as np
from _harness import median_time, report, table

NBL = 20  # absorbing cells on every face, both codes
N_REC = 100


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_devito(c: dict, order: int, repeats: int) -> dict:
    """Devito's forward and forward+gradient (store-all) for case ``c``; seconds and results.

    Devito's seismic examples work in km/s and ms (its damping layer is scaled for those
    units), with the grid spacing in m; the model is passed in those units. Axis 0 is depth.
    """
    from examples.seismic import AcquisitionGeometry, Model
    from examples.seismic.acoustic import AcousticWaveSolver

    n, nt, h = c["n"], c["nt"], c["h"]
    dt_ms = c["dt"] * 1e3
    model = Model(vp=(c["vel"] / 1e3).astype(np.float32), origin=(0.0, 0.0), spacing=(h, h),
                  shape=(n, n), space_order=order, nbl=NBL, bcs="damp", dtype=np.float32,
                  dt=dt_ms)
    geometry = AcquisitionGeometry(model, c["rec"] * h, c["src"] * h, t0=0.0,
                                   tn=(nt - 1) * dt_ms, f0=0.025, src_type="Ricker", t0w=40.0)
    if geometry.nt != nt:
        raise RuntimeError(f"Devito's time axis has {geometry.nt} samples, expected {nt}")
    solver = AcousticWaveSolver(model, geometry, space_order=order)
    src = geometry.src
    src.data[:, 0] = c["wavelet"]  # the same samples as diffsim's (Devito's Ricker is this formula)

    t0 = time.perf_counter()
    for op in (solver.op_fwd(None), solver.op_fwd(True), solver.op_grad()):
        op.cfunction  # noqa: B018 - lowering and C compilation happen on first access
    jit = time.perf_counter() - t0

    out: dict = {"jit": jit}

    def forward() -> None:
        rec, _, _ = solver.forward(src=src, dt=dt_ms)
        out["traces"] = rec.data

    def gradient() -> None:
        # d_obs = 0: the residual is the predicted data itself.
        rec, u, _ = solver.forward(src=src, save=True, dt=dt_ms)
        grad, _ = solver.gradient(rec=rec, u=u, dt=dt_ms)
        out["grad_m"] = grad.data
        out["saved_bytes"] = int(np.prod(u.shape_allocated)) * np.dtype(u.dtype).itemsize

    rss0 = _peak_rss_mib()
    out["forward"] = median_time(forward, repeats=repeats)
    out["grad"] = median_time(gradient, repeats=repeats)
    out["rss_before"], out["rss_after"] = rss0, _peak_rss_mib()
    # d loss / d m (m = 1/v^2 in (s/km)^2) on the padded grid -> model cells -> d loss / d v.
    vkm = c["vel"] / 1e3
    out["grad_v"] = out["grad_m"][NBL:-NBL, NBL:-NBL] * (-2.0 / vkm**3)
    return out


def run_diffsim(c: dict, order: int, repeats: int) -> dict:
    """The call path of diffsim (``simulate`` / ``misfit_gradient``)."""
    from diffsim.acoustic import misfit_gradient, simulate

    args = (c["vel"], c["h"], c["dt"], c["wavelet"], c["src"] * c["h"], c["rec"] * c["h"])
    opts = dict(order=order, pml_width=NBL, interpolation="nearest")
    observed = np.zeros((1, N_REC, c["nt"]))
    out: dict = {}

    def forward() -> None:
        out["traces"] = simulate(*args, **opts)

    def gradient() -> None:
        out["grad_v"] = misfit_gradient(*args, observed, **opts).gradient

    out["forward"] = median_time(forward, repeats=repeats)
    out["grad"] = median_time(gradient, repeats=repeats)
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def _gradient_corrs(c: dict, devito_v: np.ndarray, ours_v: np.ndarray) -> str:
    """Correlations over all model cells, without the source cells, and below the receivers.

    At a source cell the two gradients differ by design: Devito solves ``m u_tt - lap u = q``
    (it injects ``q dt^2 / m``) while diffsim solves ``u_tt = v^2 lap u + q``, whose source
    term, written in Devito's form, is ``m q``: that adds ``-sum_t q lambda`` to diffsim's
    gradient at the source cell only.
    """
    keep = np.ones(devito_v.shape, dtype=bool)
    keep[tuple(c["src"].T)] = False
    below = int(c["rec"][:, 0].max()) + 2
    return (f"{_corr(devito_v, ours_v):.4f} all cells, {_corr(devito_v[keep], ours_v[keep]):.4f} "
            f"without the source cell, {_corr(devito_v[below:], ours_v[below:]):.4f} "
            f"rows >= {below}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", default="400")
    parser.add_argument("--orders", default="4")
    parser.add_argument("--nt", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="append to BENCHMARKS.md")
    args = parser.parse_args()

    # Before Devito (and its OpenMP runtime) is imported.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["DEVITO_LANGUAGE"] = "openmp"
    os.environ.setdefault("DEVITO_LOGGING", "WARNING")
    try:
        import devito
        import examples.seismic  # noqa: F401
    except ImportError as exc:
        sys.exit(f"Devito with its seismic examples is needed ({exc}); see the module docstring.")
    from wave_vs_deepwave import case

    import diffsim

    info = diffsim.init("cpu", "f32", threads=args.threads)

    sizes = [int(s) for s in args.sizes.split(",")]
    orders = [int(s) for s in args.orders.split(",")]
    rows = []
    t0 = time.perf_counter()
    for n in sizes:
        c = case(n, args.nt)
        cells = n * n * (args.nt - 1)
        for order in orders:
            dv = run_devito(c, order, args.repeats)
            ours = run_diffsim(c, order, args.repeats)
            rate = cells / dv["forward"]
            trace_corr = _corr(dv["traces"].T, ours["traces"][0])
            fwd = [f"{n} x {n}, order {order}, forward", f"{dv['forward']:.3f}",
                   f"{dv['jit']:.1f}", f"{ours['forward']:.3f}",
                   f"{ours['forward'] / dv['forward']:.2f}",
                   f"Devito {rate / 1e9:.3f} G cell-updates/s; trace corr {trace_corr:.4f}"]
            grd = [f"{n} x {n}, order {order}, forward+gradient", f"{dv['grad']:.3f}", "",
                   f"{ours['grad']:.3f}", f"{ours['grad'] / dv['grad']:.2f}",
                   f"Devito saved u {dv['saved_bytes'] / 2**20:.0f} MiB, peak RSS "
                   f"{dv['rss_before']:.0f} -> {dv['rss_after']:.0f} MiB; gradient corr "
                   + _gradient_corrs(c, dv["grad_v"], ours["grad_v"])]
            rows += [fwd, grd]
    cfg = devito.configuration
    body = (
        f"nt {args.nt}, dt 0.5 ms, absorbing layer {NBL} cells, f32, 1 shot, {N_REC} receivers "
        f"on grid points, {args.threads} thread(s); medians of {args.repeats} after a warm-up; "
        f"seconds. Devito {devito.__version__} (`examples.seismic` `AcousticWaveSolver`, its "
        f"`damp` absorbing layer, language {cfg['language']}, platform {cfg['platform']}, "
        f"compiler {cfg['compiler'].__class__.__name__}), OMP_NUM_THREADS={args.threads}; "
        f"'JIT': building and compiling its forward, saving-forward and gradient operators "
        f"once (outside the medians; Devito's disk cache of compiled operators may shorten "
        f"it). Devito forward+gradient: `forward(save=True)` keeping all {args.nt} "
        f"wavefields, then `gradient` = the gradient of 0.5 sum(d^2) (d_obs = 0) with respect "
        f"to squared slowness m = 1/v^2, as Devito accumulates it (-sum_t u v_tt, no dt "
        f"weight). diffsim: `simulate` / `misfit_gradient` calls (a new stepper each call; "
        f"kernels compiled once in this process; PML {NBL}; default checkpoint budget), "
        f"gradient with respect to velocity, arch {info.arch}, threads {info.threads}. "
        f"Correlations: Pearson over receivers x time (traces) and over the model cells "
        f"(gradient, Devito's converted to velocity by dm/dv = -2/v^3; all cells, without the "
        f"source cell, where the equations differ by design, and below the receiver row); "
        f"they measure agreement of shape and sign, not scale (the codes scale the source "
        f"differently). Rate: model cell-updates ({args.nt - 1} steps x n^2) per second of "
        f"Devito's forward. Devito's own venv, Python {sys.version.split()[0]}. Whole run "
        f"{time.perf_counter() - t0:.0f} s."
        "\n\n"
        + table(["case", "Devito s", "Devito JIT s", "diffsim call s", "diffsim / Devito",
                 "notes"], rows)
    )
    report(f"Acoustic 2D vs Devito, {args.threads} thread(s)", body, write=args.write)


if __name__ == "__main__":
    main()
