"""GPU readiness: the acoustic forward and gradient on CUDA against the CPU.

Runs the same problem (2D, order 4, PML, f32, 4 shots, Hicks points) in two fresh
processes, one on the CPU and one with ``arch="cuda"`` (the field engine: the array
engine is CPU-only), and checks the CUDA traces against the CPU's (relative 1e-5) and
the velocity gradient (1e-4). It then times the CUDA forward and gradient on a larger
grid and reports cell-updates/s and the fraction of the GPU's memory bandwidth, taken
from a device-to-device copy measured in the same process. Without a CUDA GPU it says
so and exits 0.

    python benchmarks/gpu_check.py [--n 2000] [--write]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np


def problem(n: int, nt: int) -> dict:
    from diffsim.acoustic import ricker

    zz, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    vel = 1500.0 + 300.0 * np.exp(-((zz - n / 2) ** 2 + (xx - n / 3) ** 2) / (2 * (n / 8) ** 2))
    h, dt = 5.0, 5e-4
    src = np.array([[10.0, h * n * f] for f in (0.2, 0.4, 0.6, 0.8)])
    rec = np.stack([np.full(64, 20.0), np.linspace(0, h * (n - 1), 64)], axis=1)
    return dict(velocity=vel, spacing=h, dt=dt, wavelet=ricker(15.0, dt, nt), sources=src,
                receivers=rec)


def child(arch: str, out: str, n_big: int) -> None:
    import diffsim
    from diffsim import rollout
    from diffsim.acoustic import AcousticStepper, stepper_misfit_gradient

    diffsim.init(arch, "f32")
    p = problem(120, 400)
    stepper = AcousticStepper(**p, order=4, pml_width=20, engine="fields")
    rollout(stepper)
    traces = stepper.traces_array()
    observed = traces * 0.9
    grad = stepper_misfit_gradient(stepper, observed).gradient
    result = {"traces": traces.tolist(), "gradient": grad.tolist()}
    if arch == "cuda":
        import taichi as ti

        big = problem(n_big, 1000)
        s = AcousticStepper(**big, order=4, pml_width=20, engine="fields")
        rollout(s)
        ti.sync()
        t0 = time.perf_counter()
        rollout(s)
        ti.sync()
        result["forward_s"] = time.perf_counter() - t0
        obs = np.zeros_like(s.traces_array())
        stepper_misfit_gradient(s, obs)
        ti.sync()
        t0 = time.perf_counter()
        stepper_misfit_gradient(s, obs)
        ti.sync()
        result["gradient_s"] = time.perf_counter() - t0
        result["cells"] = int(np.prod(big["velocity"].shape)) * 4 * 999
        a = ti.field(ti.f32, shape=256 * 2**20)
        b = ti.field(ti.f32, shape=256 * 2**20)

        @ti.kernel
        def copy() -> None:
            for i in a:
                b[i] = a[i]

        copy()
        ti.sync()
        t0 = time.perf_counter()
        for _ in range(10):
            copy()
        ti.sync()
        result["copy_gbs"] = 10 * 2 * a.shape[0] * 4 / (time.perf_counter() - t0) / 1e9
    pathlib.Path(out).write_text(json.dumps(result))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="grid of the timed CUDA run")
    parser.add_argument("--write", action="store_true", help="append to BENCHMARKS.md")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.n)
        return 0
    probe = subprocess.run([sys.executable, "-c", "import diffsim; diffsim.init('cuda')"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        print("no CUDA GPU usable here (diffsim.init('cuda') failed); nothing to check")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        res = {}
        for arch in ("cpu", "cuda"):
            path = str(pathlib.Path(tmp) / f"{arch}.json")
            subprocess.run([sys.executable, __file__, "--child", arch, path, "--n", str(args.n)],
                           check=True)
            res[arch] = json.loads(pathlib.Path(path).read_text())
    cpu, gpu = res["cpu"], res["cuda"]
    err_t = float(np.linalg.norm(np.subtract(gpu["traces"], cpu["traces"]))
                  / np.linalg.norm(cpu["traces"]))
    err_g = float(np.linalg.norm(np.subtract(gpu["gradient"], cpu["gradient"]))
                  / np.linalg.norm(cpu["gradient"]))
    ok = err_t <= 1e-5 and err_g <= 1e-4
    rate = gpu["cells"] / gpu["forward_s"]
    # 4-byte cells: read u twice (two levels) and kc, write u once: 16 bytes a cell-update.
    frac = rate * 16 / (gpu["copy_gbs"] * 1e9)
    from _harness import report

    body = (f"traces relative error {err_t:.2e} (<= 1e-5), gradient {err_g:.2e} (<= 1e-4): "
            f"{'PASS' if ok else 'FAIL'}. {args.n} x {args.n}, 4 shots, 1,000 steps, f32, "
            f"order 4: forward {gpu['forward_s']:.3f} s ({rate / 1e9:.2f} G cell-updates/s), "
            f"forward+gradient {gpu['gradient_s']:.3f} s; device copy {gpu['copy_gbs']:.0f} "
            f"GB/s, so the forward moves at least {frac:.0%} of that (16 B a cell-update).")
    report("GPU check (CUDA)", body, write=args.write)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
