"""Mass-spring forward and gradient against NVIDIA Warp (CPU), measured in the same run.

The reference case of the notes: a 2D lattice of 80 x 50 particles (4,000), 11,741
springs (edges and one diagonal per cell, h = 12.5 mm), m = 0.01 kg, k = 1e4 / 5e3 N/m,
dashpots 1 N s/m, gravity, ground with friction 0.5, v0 = (0.5, -1) m/s, dt = 2e-4 s,
1,000 steps, float32; loss 0.5 |x_T - target|^2, gradient with respect to every
stiffness and rest length. The Warp side is this file's own Warp port of the same
physics (scatter with atomics, one state per step, ``wp.Tape``); the two final states
are compared. Every mode runs in its own process (peak memory per mode), modes are
interleaved round by round, and the table gives medians. Also: 10,000 steps with a
full tape against a checkpoint every 100 steps (ours), and the cold compile time.

    python benchmarks/springs_vs_warp.py [--rounds 3] [--threads 1] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
from _harness import report, table

NX, NY, H = 80, 50, 0.0125
MASS, K_EDGE, K_DIAG, DAMP = 0.01, 1e4, 5e3, 1.0
DT, MU = 2e-4, 0.5


def lattice() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = np.array([[i * H, 0.02 + j * H] for j in range(NY) for i in range(NX)])
    springs, k = [], []
    for j in range(NY):
        for i in range(NX):
            a = j * NX + i
            if i + 1 < NX:
                springs.append((a, a + 1))
                k.append(K_EDGE)
            if j + 1 < NY:
                springs.append((a, a + NX))
                k.append(K_EDGE)
            if i + 1 < NX and j + 1 < NY:
                springs.append((a, a + NX + 1))
                k.append(K_DIAG)
    return pos, np.array(springs), np.array(k)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- ours ----------------------------------------------------------------------------------
def run_ours(mode: str, steps: int, repeats: int, threads: int) -> dict:
    import diffsim
    from diffsim import StoreAll, Uniform
    from diffsim.springs import FinalPosition, SpringSimulation, SpringSystem

    t0 = time.perf_counter()
    diffsim.init("cpu", "f32", threads=threads)
    pos, springs, k = lattice()
    system = SpringSystem(pos, springs, stiffness=k, damping=DAMP, mass=MASS,
                          gravity=(0.0, -9.8), ground=0.0, friction=MU)
    v0 = np.tile([0.5, -1.0], (len(pos), 1))
    sim = SpringSimulation(system, steps, DT, velocities=v0)
    loss = FinalPosition(pos + 0.01)
    schedule = Uniform(every=100) if mode == "ckpt" else StoreAll()
    if mode == "forward":
        def call() -> object:
            return sim.simulate()
    else:
        def call() -> object:
            return sim.value_and_grad(loss, wrt=("stiffness", "rest_length"), checkpoint=schedule)
    before = rss_mib()
    first = time.perf_counter()
    result = call()
    first = time.perf_counter() - first
    base = rss_mib()
    times, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        result = call()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    out = {"seconds": statistics.median(times), "cpu_seconds": statistics.median(cpu),
           "first_call": first,
           "setup": first + (time.perf_counter() - t0) - sum(times) - first,
           "peak_rss_mib": rss_mib(), "rss_before_mib": before, "rss_after_first_mib": base}
    final = result.positions[-1] if mode == "forward" else None
    if mode != "forward":
        out["loss"] = result.loss
        out["checkpoint_mib"] = result.report.peak_checkpoint_bytes / 2**20
        out["forward_steps"] = result.report.forward_steps
    else:
        out["final_mean"] = final.mean(axis=0).tolist()
    return out


def run_cold(threads: int, cache: bool) -> dict:
    """First forward + gradient on a small lattice minus the second: the compile time.

    With ``cache`` False Taichi's offline cache is off (a cold compile); with it on, the
    kernels come from the cache that earlier runs filled (a warm start).
    """
    os.environ["TI_OFFLINE_CACHE"] = "1" if cache else "0"
    import diffsim
    from diffsim.springs import FinalPosition, SpringSimulation, SpringSystem

    diffsim.init("cpu", "f32", threads=threads)
    pos, springs, k = lattice()
    system = SpringSystem(pos[:40], springs[(springs < 40).all(axis=1)][:60], stiffness=K_EDGE,
                          mass=MASS, gravity=(0.0, -9.8), ground=0.0, friction=MU)
    sim = SpringSimulation(system, 20, DT)

    def call() -> None:
        sim.simulate()
        sim.value_and_grad(FinalPosition(sim.system.positions), wrt=("stiffness",))

    t = time.perf_counter()
    call()
    cold = time.perf_counter() - t
    t = time.perf_counter()
    call()
    warm = time.perf_counter() - t
    # a second system of another size in the same process: what it compiles on top
    other = SpringSystem(pos[:80], springs[(springs < 80).all(axis=1)], stiffness=K_EDGE,
                         mass=MASS, gravity=(0.0, -9.8), ground=0.0, friction=MU)
    sim = SpringSimulation(other, 30, DT)
    t = time.perf_counter()
    call()
    first = time.perf_counter() - t
    t = time.perf_counter()
    call()
    return {"compile_seconds": cold - warm,
            "second_system_seconds": first - (time.perf_counter() - t)}


# -- Warp ----------------------------------------------------------------------------------
def run_warp(mode: str, steps: int, repeats: int) -> dict:
    import warp as wp

    wp.config.quiet = True
    wp.init()
    dev = "cpu"

    @wp.kernel
    def spring_forces(x: wp.array(dtype=wp.vec2), v: wp.array(dtype=wp.vec2),
                      ends: wp.array(dtype=int), k: wp.array(dtype=float),
                      rest: wp.array(dtype=float), damp: float, f: wp.array(dtype=wp.vec2)):
        s = wp.tid()
        a = ends[2 * s]
        b = ends[2 * s + 1]
        d = x[b] - x[a]
        length = wp.length(d)
        u = d / length
        force = (k[s] * (length - rest[s]) + damp * wp.dot(v[b] - v[a], u)) * u
        wp.atomic_add(f, a, force)
        wp.atomic_sub(f, b, force)

    @wp.kernel
    def integrate(x: wp.array(dtype=wp.vec2), v: wp.array(dtype=wp.vec2),
                  f: wp.array(dtype=wp.vec2), inv_mass: float, dt: float, mu: float,
                  x_out: wp.array(dtype=wp.vec2), v_out: wp.array(dtype=wp.vec2)):
        i = wp.tid()
        p = v[i] + dt * (f[i] * inv_mass + wp.vec2(0.0, -9.8))
        q = p
        if x[i][1] + dt * p[1] < 0.0 and p[1] < 0.0:
            tn = wp.abs(p[0])
            vn = -p[1]
            if tn <= mu * vn:
                q = wp.vec2(0.0, 0.0)
            else:
                q = wp.vec2(p[0] * (1.0 - mu * vn / tn), 0.0)
        v_out[i] = q
        x_out[i] = x[i] + dt * q

    @wp.kernel
    def half_sq(x: wp.array(dtype=wp.vec2), target: wp.array(dtype=wp.vec2),
                loss: wp.array(dtype=float)):
        i = wp.tid()
        r = x[i] - target[i]
        wp.atomic_add(loss, 0, 0.5 * wp.dot(r, r))

    pos, springs, k = lattice()
    n, m = len(pos), len(springs)
    grad = mode != "forward"
    rest0 = np.linalg.norm(pos[springs[:, 1]] - pos[springs[:, 0]], axis=1)
    ends = wp.array(springs.reshape(-1).astype(np.int32), dtype=int, device=dev)
    ka = wp.array(k.astype(np.float32), dtype=float, device=dev, requires_grad=grad)
    rest = wp.array(rest0.astype(np.float32), dtype=float, device=dev, requires_grad=grad)
    target = wp.array((pos + 0.01).astype(np.float32), dtype=wp.vec2, device=dev)
    xs = [wp.array(pos.astype(np.float32), dtype=wp.vec2, device=dev, requires_grad=grad)
          for _ in range(steps + 1)]
    v0 = np.tile([0.5, -1.0], (n, 1)).astype(np.float32)
    vs = [wp.array(v0, dtype=wp.vec2, device=dev, requires_grad=grad) for _ in range(steps + 1)]
    fs = [wp.zeros(n, dtype=wp.vec2, device=dev, requires_grad=grad) for _ in range(steps)]
    loss = wp.zeros(1, dtype=float, device=dev, requires_grad=grad)

    def forward() -> None:
        for t in range(steps):
            fs[t].zero_()
            wp.launch(spring_forces, dim=m, inputs=[xs[t], vs[t], ends, ka, rest, DAMP, fs[t]],
                      device=dev)
            wp.launch(integrate, dim=n, inputs=[xs[t], vs[t], fs[t], 1.0 / MASS, DT, MU],
                      outputs=[xs[t + 1], vs[t + 1]], device=dev)
        loss.zero_()
        wp.launch(half_sq, dim=n, inputs=[xs[steps], target, loss], device=dev)

    def gradient() -> None:
        tape = wp.Tape()
        with tape:
            forward()
        tape.backward(loss=loss)
        ka.grad.numpy()
        tape.zero()

    call = gradient if grad else forward
    first = time.perf_counter()
    call()
    wp.synchronize()
    first = time.perf_counter() - first
    times, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        call()
        wp.synchronize()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    out = {"seconds": statistics.median(times), "cpu_seconds": statistics.median(cpu),
           "first_call": first, "peak_rss_mib": rss_mib(),
           "loss": float(loss.numpy()[0])}
    if not grad:
        out["final_mean"] = xs[steps].numpy().mean(axis=0).tolist()
    return out


# -- driver --------------------------------------------------------------------------------
def one(args: argparse.Namespace) -> None:
    tool, mode = args.case.split(":")
    if tool == "cold":
        out = run_cold(args.threads, cache=mode == "on")
    elif tool == "warp":
        out = run_warp(mode, args.steps, args.repeats)
    else:
        out = run_ours(mode, args.steps, args.repeats, args.threads)
    print("RESULT " + json.dumps(out))


def spawn(case: str, steps: int, repeats: int, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--case", case, "--steps", str(steps), "--repeats",
           str(repeats), "--threads", str(threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    for line in res.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{case} failed:\n{res.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per process")
    parser.add_argument("--threads", type=int, default=1, help="Taichi CPU threads")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--long-steps", type=int, default=10000)
    parser.add_argument("--write", action="store_true", help="append to BENCHMARKS.md")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        one(args)
        return
    cases = ["ours:forward", "warp:forward", "ours:grad", "warp:grad"]
    runs: dict[str, list[dict]] = {c: [] for c in cases}
    for r in range(args.rounds):
        for c in cases:
            runs[c].append(spawn(c, args.steps, args.repeats, args.threads))
            print(f"round {r}: {c} {runs[c][-1]['seconds']:.3f} s", flush=True)
    med = {c: statistics.median(x["seconds"] for x in runs[c]) for c in cases}
    cpu = {c: statistics.median(x["cpu_seconds"] for x in runs[c]) for c in cases}
    rss = {c: statistics.median(x["peak_rss_mib"] for x in runs[c]) for c in cases}
    ours_f, warp_f = runs["ours:forward"][0]["final_mean"], runs["warp:forward"][0]["final_mean"]
    rows = [
        ["forward (diffsim: simulate() returns the trajectory in NumPy)",
         f"{med['ours:forward']:.3f}", f"{med['warp:forward']:.3f}",
         f"{med['ours:forward'] / med['warp:forward']:.2f}",
         f"{cpu['ours:forward'] / cpu['warp:forward']:.2f}",
         f"{rss['ours:forward']:.0f} / {rss['warp:forward']:.0f}"],
        ["forward + gradient (k and L0, store-all)", f"{med['ours:grad']:.3f}",
         f"{med['warp:grad']:.3f}", f"{med['ours:grad'] / med['warp:grad']:.2f}",
         f"{cpu['ours:grad'] / cpu['warp:grad']:.2f}",
         f"{rss['ours:grad']:.0f} / {rss['warp:grad']:.0f}"],
    ]
    long: dict[str, list[dict]] = {"ours:grad": [], "ours:ckpt": []}
    for _ in range(args.rounds):  # interleaved
        for c in long:
            long[c].append(spawn(c, args.long_steps, 1, args.threads))
    lt = {c: statistics.median(x["seconds"] for x in v) for c, v in long.items()}
    lc = {c: statistics.median(x["cpu_seconds"] for x in v) for c, v in long.items()}
    lr = {c: statistics.median(x["peak_rss_mib"] for x in v) for c, v in long.items()}
    lg = {c: statistics.median(x["peak_rss_mib"] - x["rss_before_mib"] for x in v)
          for c, v in long.items()}
    cold_runs = [spawn("cold:off", 0, 1, args.threads) for _ in range(args.rounds)]
    cold = [r["compile_seconds"] for r in cold_runs]
    second = [r["second_system_seconds"] for r in cold_runs]
    warm = [spawn("cold:on", 0, 1, args.threads)["compile_seconds"] for _ in range(args.rounds + 1)][1:]
    body = "\n".join([
        f"Reference lattice: {NX * NY} particles, {len(lattice()[1])} springs, {args.steps} steps, "
        f"float32, Taichi threads {args.threads}; Warp {_warp_version()} on CPU. Seconds per call, "
        f"median of {args.rounds} interleaved rounds x {args.repeats} calls (one process per mode); "
        "peak RSS per process.",
        "",
        table(["", "diffsim s", "Warp s", "diffsim / Warp", "CPU-time ratio",
               "peak RSS MiB diffsim / Warp"], rows),
        "",
        f"Same physics, same answer: mean final position diffsim {np.round(ours_f, 6).tolist()}, "
        f"Warp {np.round(warp_f, 6).tolist()}; loss diffsim {runs['ours:grad'][0]['loss']:.6g}, "
        f"Warp {runs['warp:grad'][0]['loss']:.6g} (float32).",
        "",
        f"{args.long_steps} steps, gradient (ours, {args.rounds} interleaved runs each):",
        "",
        table(["schedule", "s", "time vs full tape", "CPU time vs full tape", "peak RSS MiB",
               "RSS growth MiB", "growth vs full tape", "checkpoint MiB", "forward steps"], [
            ["store-all (full tape)", f"{lt['ours:grad']:.2f}", "1.00", "1.00",
             f"{lr['ours:grad']:.0f}", f"{lg['ours:grad']:.0f}", "1.00",
             f"{long['ours:grad'][0]['checkpoint_mib']:.0f}", long["ours:grad"][0]["forward_steps"]],
            ["uniform, every 100", f"{lt['ours:ckpt']:.2f}", f"{lt['ours:ckpt'] / lt['ours:grad']:.2f}",
             f"{lc['ours:ckpt'] / lc['ours:grad']:.2f}", f"{lr['ours:ckpt']:.0f}",
             f"{lg['ours:ckpt']:.0f}",
             f"{lg['ours:ckpt'] / lg['ours:grad']:.3f}",
             f"{long['ours:ckpt'][0]['checkpoint_mib']:.1f}", long["ours:ckpt"][0]["forward_steps"]],
        ]),
        "",
        "RSS growth: peak RSS minus the RSS after building the simulation (before the first "
        "gradient), i.e. what the gradient itself costs. CPU-time ratios (process time; every "
        "run is single-threaded) are less sensitive than wall time to other jobs on the machine.",
        "",
        f"Cold compile of the spring kernels (forward + gradient, offline cache off): "
        f"median {statistics.median(cold):.2f} s over {len(cold)} fresh processes "
        f"({', '.join(f'{c:.2f}' for c in cold)}); with the offline cache filled: median "
        f"{statistics.median(warm):.2f} s ({', '.join(f'{c:.2f}' for c in warm)}). Both count "
        "everything the first simulate() and value_and_grad() compile (first call minus "
        "second call). A second system of another size in the same process then adds "
        f"{statistics.median(second):.3f} s (median; the CPU kernels take arrays, not fields, "
        "so they compile once per process).",
    ])
    report("Mass-spring systems vs Warp (CPU)", body, write=args.write)


def _warp_version() -> str:
    try:
        import warp

        return warp.__version__
    except ImportError:
        return "(not installed)"


if __name__ == "__main__":
    main()
