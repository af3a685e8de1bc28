"""The ideas diffsim is built on, each shown numerically with the toolkit (one figure each).

1. fan-out: a parameter used at every step gets the sum of its uses' gradients;
2. memory: storing the graph costs O(steps), checkpointing trades it for recomputation;
3. finite differences: truncation against round-off (the V-curve), the adjoint exact;
4. cancellation: ``sqrt(x+1) - sqrt(x)`` differentiated exactly is the exact derivative of
   the wrong (cancelled) function; ``1/(sqrt(x+1) + sqrt(x))`` is the cure;
5. branches: with ground contact the loss has kinks; the adjoint is the slope of the
   branch taken, finite differences straddle the kink;
6. backpropagation is the costate recursion of discrete optimal control (Pontryagin);
7. vanishing and exploding gradients are contracting and expanding backward dynamics.

    python examples/seed_lessons.py --out out/lessons [--smoke]
"""

import argparse
import decimal
import pathlib
from collections.abc import Sequence

import numpy as np
import taichi as ti

import diffsim
from diffsim import Binomial, StoreAll, TaichiStepper, Uniform, linear
from diffsim.diagnostics import fd_vcurve, gradient_health
from diffsim.viz.figures import pyplot, save_figure


def _save(fig, out: pathlib.Path, name: str) -> pathlib.Path:
    path = out / name
    fig.tight_layout()
    save_figure(fig, path)
    print(f"  wrote {path}")
    return path


def _final_state_loss(o):
    """``0.5 |x[n]|^2`` of a linear system's states, and its cotangent (the last row only)."""
    x = o["states"]
    cot = np.zeros_like(x)
    cot[-1] = x[-1]
    return 0.5 * float(np.sum(x[-1] ** 2)), {"states": cot}


def lesson_fan_out(out: pathlib.Path, steps: int) -> None:
    """u[t] = theta at every step: dL/dtheta = sum_t dL/du[t] (the adjoint's accumulation)."""
    print("1. fan-out: one parameter, many uses")
    a = linear.rotation(2, 0.99, angle=0.2)
    b = np.array([[1.0], [0.3]])
    target = np.cos(0.05 * np.arange(steps + 1))[:, None] * np.array([[1.0, -0.5]])

    def loss(o):
        r = o["states"] - target
        return 0.5 * float(np.sum(r * r)), {"states": r}

    def run(theta: float):
        with linear.Simulation(a=a, b=b, controls=np.full((steps, 1), theta)) as sim:
            return sim.value_and_grad(loss, wrt=("controls",))

    theta = 0.4
    res = run(theta)
    per_use = res.grads["controls"][:, 0]               # dL/du[t]: one term per use
    h = 1e-6
    fd = (run(theta + h).loss - run(theta - h).loss) / (2 * h)
    print(f"  sum over {steps} uses {per_use.sum():.12f}, central difference {fd:.12f}")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.bar(np.arange(steps), per_use, color="C1", width=1.0, label="dL/du[t] (one use each)")
    ax2 = ax.twinx()
    ax2.plot(np.cumsum(per_use), color="C0", label="running sum")
    ax2.axhline(fd, color="k", ls="--", lw=0.8, label="dL/dθ, central difference")
    ax.set_xlabel("step t")
    ax.set_ylabel("contribution of use t")
    ax2.set_ylabel("running sum")
    ax.set_title("Fan-out: θ is read at every step; its adjoint sums the uses")
    fig.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.1, 0.88))
    _save(fig, out, "1_fan_out.png")


def lesson_memory(out: pathlib.Path, lengths: Sequence[int]) -> None:
    """Checkpoint bytes the tape held and forward steps, against the rollout length."""
    print("2. memory: store-all against checkpointing")
    rows = []
    for n in lengths:
        with linear.Simulation(a=linear.rotation(64, 0.999), b=np.ones((64, 1)),
                               controls=np.zeros((n, 1)), x0=np.ones(64)) as sim:
            for sched in (StoreAll(), Uniform(every=max(2, int(np.sqrt(n)))), Binomial(slots=8)):
                rep = sim.value_and_grad(_final_state_loss, wrt=("controls",),
                                         checkpoint=sched).report
                rows.append((n, type(sched).__name__, rep.peak_checkpoint_bytes, rep.forward_steps))
                print(f"  n {n:5d} {type(sched).__name__:9s} {rep.peak_checkpoint_bytes:9d} B held, "
                      f"{rep.forward_steps:6d} forward steps")
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9, 3.6))
    for name in ("StoreAll", "Uniform", "Binomial"):
        pts = [(n, b, f) for n, k, b, f in rows if k == name]
        ns, bs, fs = zip(*pts, strict=True)
        ax.loglog(ns, bs, "o-", label=name)
        bx.plot(ns, np.array(fs) / np.array(ns), "o-", label=name)
    ax.set_xlabel("steps n")
    ax.set_ylabel("checkpoint bytes held (tape report)")
    ax.set_title("Memory: O(n), O(sqrt n), O(1)")
    bx.set_xlabel("steps n")
    bx.set_ylabel("forward steps / n")
    bx.set_title("Paid for with recomputation")
    ax.legend(fontsize=8)
    _save(fig, out, "2_memory.png")


def _chain(steps: int):
    from diffsim import chain
    from diffsim.losses import L2

    rng = np.random.default_rng(0)
    forcing = np.zeros((steps, 6))
    forcing[:10, 0] = 1.0
    sim = chain.Simulation(stiffness=rng.uniform(50, 100, 7), mass=1.0, beta=20.0,
                           forcing=forcing, dt=0.01, observed=[0, 5])
    return sim, L2(np.zeros((steps + 1, 2)), output="positions")


def lesson_vcurve(out: pathlib.Path, steps: int) -> None:
    """Central differences of a chain's misfit for 16 step sizes against the adjoint."""
    print("3. finite differences: truncation, round-off; the adjoint")
    sim, loss = _chain(steps)
    with sim:
        res = sim.value_and_grad(loss, wrt=("stiffness",))
        k0 = sim.parameters()["stiffness"]

        def value(k: np.ndarray) -> float:
            sim.update(stiffness=k)
            return sim.loss_value(loss)

        curve = fd_vcurve(value, k0, np.ones_like(k0), res.grads["stiffness"],
                          steps=[10.0 ** -e for e in np.arange(-1, 15)])
    print("  " + curve.summary().replace("\n", "\n  "))
    curve.plot(out / "3_vcurve.png", title="Finite differences against the adjoint (float64)")
    print(f"  wrote {out / '3_vcurve.png'}")


class _Cancellation(TaichiStepper):
    """One step: ``y = f(x)`` elementwise, ``f`` the cancelling or the stable form."""

    def __init__(self, x: np.ndarray, stable: bool) -> None:
        super().__init__(steps=1)
        n = x.size
        self.stable = stable
        self.y = self._state("y", (n,))
        self.x = self._param("x", (n,))
        self.out = self._output("y", (n,))
        self._finalize()
        self.set_param("x", x)

    def substeps(self, step: int):
        return ((_stable if self.stable else _naive, (self.x, self.y, self.level(step + 1))),)

    def record(self, t: int):
        return ((_copy_out, (self.y, self.out, self.level(t), t)),)


@ti.kernel
def _naive(x: ti.template(), y: ti.template(), dst: ti.i32):
    for i in range(x.shape[0]):
        y[dst, i] = ti.sqrt(x[i] + 1.0) - ti.sqrt(x[i])


@ti.kernel
def _stable(x: ti.template(), y: ti.template(), dst: ti.i32):
    for i in range(x.shape[0]):
        y[dst, i] = 1.0 / (ti.sqrt(x[i] + 1.0) + ti.sqrt(x[i]))


@ti.kernel
def _copy_out(y: ti.template(), out: ti.template(), slot: ti.i32, t: ti.i32):
    for i in range(y.shape[1]):
        out[t, i] = y[slot, i]


def lesson_cancellation(out: pathlib.Path, count: int) -> None:
    """Values and tape derivatives of both forms against 50-digit references."""
    print("4. cancellation: an exact derivative of the wrong function")
    x = np.logspace(0, 15, count)
    decimal.getcontext().prec = 50
    ref_f, ref_d = [], []
    for v in x:
        d = decimal.Decimal(float(v))
        s1, s0 = (d + 1).sqrt(), d.sqrt()
        ref_f.append(float(s1 - s0))
        ref_d.append(float(1 / (2 * s1) - 1 / (2 * s0)))
    ref_f, ref_d = np.array(ref_f), np.array(ref_d)
    results = {}
    for stable in (False, True):
        from diffsim import Tape

        stepper = _Cancellation(x, stable)
        ones = {"y": np.vstack([np.zeros(x.size), np.ones(x.size)])}
        tape = Tape(stepper, checkpoint=StoreAll())
        values = tape.forward()["y"][1]
        grads = tape.backward(ones)["x"]
        results[stable] = (np.abs(values - ref_f) / np.abs(ref_f),
                           np.abs(grads - ref_d) / np.abs(ref_d))
        stepper.destroy()
    for stable, (ef, ed) in results.items():
        name = "1/(sqrt(x+1)+sqrt(x))" if stable else "sqrt(x+1)-sqrt(x)   "
        print(f"  {name}: value error at x=1e15 {ef[-1]:.1e}, derivative error {ed[-1]:.1e}")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    tiny = 1e-18
    for stable, style in ((False, "-"), (True, "--")):
        ef, ed = results[stable]
        label = "stable 1/(√(x+1)+√x)" if stable else "cancelling √(x+1)−√x"
        ax.loglog(x, np.maximum(ef, tiny), style, color="C0", label=f"value, {label}")
        ax.loglog(x, np.maximum(ed, tiny), style, color="C3", label=f"tape derivative, {label}")
    ax.set_xlabel("x")
    ax.set_ylabel("relative error (float64)")
    ax.set_title("The adjoint is exactly as good as the primal it differentiates")
    ax.legend(fontsize=7)
    _save(fig, out, "4_cancellation.png")


def lesson_contact(out: pathlib.Path, count: int, steps: int) -> None:
    """A dumbbell thrown over the ground: final x against the launch angle has a kink."""
    print("5. branches: contact makes the loss piecewise smooth")
    from diffsim.springs import SpringSimulation, SpringSystem

    system = SpringSystem(np.array([[0.0, 0.05], [0.05, 0.05]]), np.array([[0, 1]]),
                          stiffness=2000.0, damping=0.1, mass=0.05, gravity=(0.0, -9.81),
                          ground=0.0, friction=0.8)
    dt = 1e-3

    def loss(o):
        x = o["positions"]
        cot = np.zeros_like(x)
        cot[-1, :, 0] = 0.5
        return float(x[-1, :, 0].mean()), {"positions": cot}

    def run(vy: float):
        v = np.array([[1.0, vy], [1.0, vy]])
        with SpringSimulation(system, steps, dt, velocities=v) as sim:
            return sim.value_and_grad(loss, wrt=("velocities",))

    vys = np.linspace(-0.5, 1.5, count)
    res = [run(v) for v in vys]
    vals = np.array([r.loss for r in res])
    slopes = np.array([r.grads["velocities"][:, 1].sum() for r in res])
    # zoom: a fine sweep shows the pieces (the landing step moves by one at each switch)
    fine = np.linspace(0.0, 5e-4, 5 * count + 1)
    fine_res = [run(v) for v in fine]
    fine_vals = np.array([r.loss for r in fine_res])
    fine_slopes = np.array([r.grads["velocities"][:, 1].sum() for r in fine_res])
    trend = (vals[count // 4 + 1] - vals[count // 4 - 1]) / (vys[count // 4 + 1] - vys[count // 4 - 1])
    switches = int(np.sum(np.abs(np.diff(fine_vals) - fine_slopes[:-1] * np.diff(fine))
                          > 1e-3 * np.abs(np.diff(fine_vals)).max()))
    print(f"  near vy = {vys[count // 4]:.2f} m/s: the tape's slope {slopes[count // 4]:.4f}, the "
          f"trend over the coarse sweep {trend:.4f}; {switches} branch switches (jumps) in "
          f"[0, 5e-4] m/s; past vy = 0.5 m/s no landing: slope {slopes[-1]:.4f}")
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.9))
    for axis, xs, fs, ss in ((ax, vys, vals, slopes), (bx, fine, fine_vals, fine_slopes)):
        axis.plot(xs, fs, "o-", ms=3, label="final mean x (forward runs)")
        w = 0.35 * (xs[1] - xs[0])
        for v, f, g in zip(xs, fs, ss, strict=True):
            axis.plot([v - w, v + w], [f - g * w, f + g * w], color="C3", lw=1.2)
        axis.plot([], [], color="C3", label="slope from the tape (branch taken)")
        axis.set_xlabel("launch vertical velocity vy (m/s)")
    ax.set_ylabel("final mean x (m)")
    ax.set_title("Ground contact: the loss against vy")
    bx.set_title("Zoom: pieces between contact switches")
    ax.legend(fontsize=8)
    _save(fig, out, "5_contact.png")


def lesson_costate(out: pathlib.Path, steps: int) -> None:
    """The tape's adjoint against the Pontryagin costates of a linear-quadratic problem."""
    print("6. backpropagation is the costate recursion")
    rng = np.random.default_rng(1)
    a = linear.rotation(4, 0.97, angle=0.4) + 0.01 * np.eye(4)
    b = rng.normal(size=(4, 1))
    u = rng.normal(size=(steps, 1))
    x0 = rng.normal(size=4)

    def loss(o):
        x = o["states"]
        return 0.5 * float(np.sum(x * x)), {"states": x.copy()}

    with linear.Simulation(a=a, b=b, controls=u, x0=x0) as sim:
        res = sim.value_and_grad(loss, wrt=("controls",))
    x = [x0]
    for t in range(steps):
        x.append(a @ x[-1] + b @ u[t])
    p = [np.zeros(4)] * (steps + 1)
    p[steps] = x[steps]
    for t in range(steps - 1, -1, -1):          # p_t = A^T p_{t+1} + dl_t/dx_t
        p[t] = a.T @ p[t + 1] + x[t]
    norms = np.array([np.linalg.norm(v) for v in p])
    gap = np.max(np.abs(res.report.costate - norms) / norms)
    dH = np.array([float(b[:, 0] @ p[t + 1]) for t in range(steps)])   # dH/du_t
    ggap = np.max(np.abs(res.grads["controls"][:, 0] - dH)) / np.max(np.abs(dH))
    print(f"  |λ[t]| tape vs Pontryagin: largest relative difference {gap:.1e}; "
          f"dL/du vs dH/du: {ggap:.1e}")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.semilogy(norms, lw=3, alpha=0.4, label="Pontryagin costate |p[t]| (NumPy recursion)")
    ax.semilogy(res.report.costate, "k--", lw=1, label="tape adjoint |λ[t]|")
    ax.set_xlabel("step t")
    ax.set_ylabel("norm")
    ax.set_title(f"Linear-quadratic chain: the same numbers (max rel. difference {gap:.0e})")
    ax.legend(fontsize=8)
    _save(fig, out, "6_costate.png")


def lesson_vanishing(out: pathlib.Path, steps: int) -> None:
    """Oscillators with damping, none and growth: the costate trace and its verdict."""
    print("7. vanishing and exploding gradients")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for radius, colour in ((0.92, "C2"), (1.0, "C0"), (1.08, "C3")):
        with linear.Simulation(a=linear.rotation(4, radius), b=np.ones((4, 1)),
                               controls=np.zeros((steps, 1)), x0=np.ones(4)) as sim:
            res = sim.value_and_grad(_final_state_loss, wrt=("controls",))
        h = gradient_health(res.report.costate, injection=res.report.injection)
        print(f"  spectral radius {radius}: {h.verdict}, backward growth {h.exponent:+.4f} "
              f"per step (ln radius = {np.log(radius):+.4f})")
        ax.semilogy(res.report.costate, color=colour,
                    label=f"radius {radius}: {h.verdict} ({h.exponent:+.3f}/step)")
    ax.set_xlabel("step t")
    ax.set_ylabel("|λ[t]|")
    ax.set_title("Damped, neutral and growing oscillators: the backward dynamics")
    ax.legend(fontsize=8)
    _save(fig, out, "7_vanishing_exploding.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (for the tests)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/lessons"),
                        help="folder for the figures")
    args = parser.parse_args(argv)
    diffsim.init("cpu", "f64")
    args.out.mkdir(parents=True, exist_ok=True)
    small = args.smoke
    lesson_fan_out(args.out, 60 if small else 200)
    lesson_memory(args.out, (50, 100, 200) if small else (100, 200, 400, 800, 1600, 3200))
    lesson_vcurve(args.out, 100 if small else 400)
    lesson_cancellation(args.out, 16 if small else 61)
    lesson_contact(args.out, 9 if small else 41, 150 if small else 300)
    lesson_costate(args.out, 40 if small else 120)
    lesson_vanishing(args.out, 200 if small else 400)


if __name__ == "__main__":
    main()
