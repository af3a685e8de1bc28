"""Adding a physics: 1D heat diffusion written only against diffsim's public protocol.

A rod of ``n`` cells, temperature ``u`` (K above ambient), conductivity ``kappa`` (m^2/s)
per cell, both ends held at 0, a heat source per cell and step, explicit Euler::

    u[t+1, i] = u[t, i] + dt / h^2 * (kappa[i] (u[t, i+1] - u[t, i]) - kappa[i-1] (u[t, i] - u[t, i-1]))
                + dt * q[t, i]

Sensors record ``u`` at a few cells. The physics is two small Taichi kernels and two
classes: a :class:`diffsim.TaichiStepper` that declares its fields and launches, and a
:class:`diffsim.Simulation` that names its parameters. With that and nothing else it gets
the tape, every checkpoint schedule, exact gradients (Taichi autodiff of the step), the
costate trace, ``vjp``/``value_and_grad``/``update``, the losses and the gradient checks.
The script checks the gradient (finite differences, a Taylor slope, checkpointed equal to
store-all) and then recovers a conductivity profile from sensor records with L-BFGS-B
through :mod:`diffsim.optim` (progress lines, ``history.json``, ``loss.png``, and a
killed run resumes by replaying its stored evaluations).

    python examples/heat_equation.py [--smoke] [--out out/heat]
"""


import argparse
import hashlib
import json
import pathlib

import numpy as np
import taichi as ti

import diffsim
from diffsim import Binomial, StoreAll, TaichiStepper
from diffsim.gradcheck import fd_sweep, taylor_test
from diffsim.losses import L2
from diffsim.optim import LBFGSB, EvaluationStore, History, minimize
from diffsim.viz.figures import loss_figure


@ti.kernel
def heat_step(u: ti.template(), kappa: ti.template(), q: ti.template(), src: ti.i32,
              dst: ti.i32, step: ti.i32, r: ti.f64, dt: ti.f64):
    for i in range(u.shape[1]):
        last = u.shape[1] - 1
        ul = u[src, ti.max(i - 1, 0)] * ti.select(i > 0, 1.0, 0.0)
        ur = u[src, ti.min(i + 1, last)] * ti.select(i < last, 1.0, 0.0)
        kl = kappa[ti.max(i - 1, 0)]
        flux = kappa[i] * (ur - u[src, i]) - kl * (u[src, i] - ul)
        u[dst, i] = u[src, i] + r * flux + dt * q[step, i]


@ti.kernel
def heat_record(u: ti.template(), sensors: ti.template(), y: ti.template(), lvl: ti.i32,
                t: ti.i32):
    for j in range(sensors.shape[0]):
        y[t, j] = u[lvl, sensors[j]]


class HeatStepper(TaichiStepper):
    """The tape's view of the rod: state ``u``, parameters ``kappa`` and ``source``."""

    def __init__(self, kappa: np.ndarray, source: np.ndarray, sensors: np.ndarray,
                 spacing: float, dt: float) -> None:
        steps, n = source.shape
        super().__init__(steps=steps)
        self.r, self.dt = dt / spacing**2, dt
        self.u = self._state("u", (n,))
        self.kappa = self._param("kappa", (n,))
        self.source = self._param("source", (steps, n))
        self.y = self._output("temperature", (sensors.size,))
        self.sensors = self._tree.field((sensors.size,), dtype=ti.i32)
        self._finalize()
        self.sensors.from_numpy(sensors.astype(np.int32))
        self.set_param("kappa", kappa)
        self.set_param("source", source)

    def _check_param(self, name: str, value: np.ndarray) -> None:
        if name == "kappa" and (value.min() <= 0 or self.r * value.max() > 0.5):
            raise ValueError(f"kappa must lie in (0, {0.5 / self.r:.4g}] m^2/s for this dt and "
                             f"spacing (explicit Euler); got [{value.min():.4g}, {value.max():.4g}]")

    def substeps(self, step: int):
        """One explicit Euler step from the level of ``x[step]`` to that of ``x[step + 1]``."""
        return ((heat_step, (self.u, self.kappa, self.source, self.level(step),
                             self.level(step + 1), step, self.r, self.dt)),)

    def record(self, t: int):
        """The sensors' temperatures at time ``t``."""
        return ((heat_record, (self.u, self.sensors, self.y, self.level(t), t)),)


class HeatSimulation(diffsim.Simulation):
    """The rod behind diffsim's front-end shape.

    Outputs ``"temperature"`` ``[steps + 1, sensors]``; parameters ``kappa`` ``[n]`` and
    ``source`` ``[steps, n]``.
    """

    parameter_names = ("kappa", "source")
    default_wrt = ("kappa",)

    def __init__(self, kappa: object, source: object, sensors: object, *, spacing: float,
                 dt: float) -> None:
        self.stepper = HeatStepper(np.asarray(kappa, dtype=np.float64),
                                   np.asarray(source, dtype=np.float64),
                                   np.asarray(sensors, dtype=np.int64), spacing, dt)

    def _stepper(self, loss: object = None) -> HeatStepper:
        return self.stepper

    def parameters(self) -> dict[str, np.ndarray]:
        """Current ``kappa`` and ``source``."""
        return self.stepper.parameters()

    def update(self, **params: object) -> None:
        """New ``kappa`` and/or ``source`` values."""
        for name, value in params.items():
            self.stepper.set_param(name, value)  # validated there; unknown names raise

    def close(self) -> None:
        """Free the stepper's fields."""
        self.stepper.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a small, quick run")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/heat"))
    args = parser.parse_args()
    diffsim.init("cpu", "f64")
    n, steps = (24, 150) if args.smoke else (60, 1200)
    h, dt = 0.01, 0.1                                        # 1 cm cells, 0.1 s steps
    x = (np.arange(n) + 0.5) / n
    kappa_true = 1e-4 * (1.0 + 0.6 * np.exp(-((x - 0.6) / 0.12) ** 2))
    source = np.zeros((steps, n))
    source[: steps // 4, n // 4] = 2.0                       # K/s into one cell, then off
    source[steps // 3: steps // 2, 3 * n // 4] = 1.0
    sensors = np.linspace(1, n - 2, 8 if args.smoke else 12).astype(int)

    with HeatSimulation(kappa_true, source, sensors, spacing=h, dt=dt) as sim:
        observed = sim.simulate()["temperature"]
        kappa0 = np.full(n, 1.2e-4)
        sim.update(kappa=kappa0)
        loss = L2(observed, output="temperature")
        res = sim.value_and_grad(loss, checkpoint=StoreAll())
        # the gradient checks any physics gets for free
        again = sim.value_and_grad(loss, checkpoint=Binomial(slots=4))
        assert np.array_equal(again.grads["kappa"], res.grads["kappa"]), "checkpointed != store-all"

        def misfit(k: np.ndarray) -> float:
            sim.update(kappa=k)
            return loss(sim.simulate())[0]

        direction = np.sin(np.linspace(0.0, 3.0, n)) * 1e-5
        sweep = fd_sweep(misfit, kappa0, direction, res.grads["kappa"])
        taylor = taylor_test(misfit, kappa0, direction, res.grads["kappa"], h0=0.5)
        print(sweep.table())
        print(taylor.table())
        assert sweep.best_error < 1e-6, "gradient disagrees with finite differences"
        assert abs(taylor.second_order - 2.0) < 0.2, "Taylor remainder is not second order"

        # recover kappa from the sensors (scaled variable: kappa = 1e-4 * z) with the
        # driver every physics shares: progress lines, history.json, and every evaluation
        # stored so that a killed run replays them when started again
        def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
            sim.update(kappa=1e-4 * z)
            r = sim.value_and_grad(loss)
            return r.loss, 1e-4 * r.grads["kappa"]

        iterations = 15 if args.smoke else 60
        # the tag names the problem (its data), so another problem never reads these back
        tag = "heat-" + hashlib.sha1(observed.tobytes() + source.tobytes()).hexdigest()[:12]
        store = EvaluationStore(args.out / "evaluations", tag=tag)
        history = History(args.out / "history.json", resume=True, total=iterations, label="heat")
        result = minimize(store.objective(fun), kappa0 / 1e-4, method=LBFGSB(),
                          iterations=iterations, history=history,
                          bounds=(np.full(n, 0.3), np.full(n, 2.0)))
        kappa_fit = 1e-4 * result.x
        first, last = history.entries[0]["loss"], result.loss
        err0 = float(np.linalg.norm(kappa0 - kappa_true) / np.linalg.norm(kappa_true))
        err1 = float(np.linalg.norm(kappa_fit - kappa_true) / np.linalg.norm(kappa_true))
        print(f"misfit {first:.3e} -> {last:.3e} in {result.iterations} iterations "
              f"({result.message}); kappa error {err0:.3f} -> {err1:.3f}")
        assert last < 0.1 * first, "the inversion did not lower the misfit"
        loss_figure(args.out / "loss.png", history.entries, title="heat: conductivity from sensors",
                    error=None)
        (args.out / "heat.json").write_text(json.dumps({
            "fd_best_error": sweep.best_error, "taylor_slope": taylor.second_order,
            "misfit": [first, last], "kappa_error": [err0, err1],
            "costate": res.report.costate.tolist()}, indent=1))
        np.save(args.out / "kappa_fit.npy", kappa_fit)


if __name__ == "__main__":
    main()
