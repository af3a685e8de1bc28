"""Diagnostics: gradient health, the V-curve, checkpoint pictures, the step graph."""

from __future__ import annotations

import math

import numpy as np
import pytest
from springs_cases import contact_inputs, contact_system

from diffsim import Binomial, StoreAll, Uniform, acoustic, chain, linear, springs
from diffsim.checkpoint import Budget, binomial_forward_steps, tradeoff
from diffsim.diagnostics import fd_vcurve, gradient_health
from diffsim.diagnostics.graph import Stage, StepGraph, kernel_access

N = 300


def final_state_loss(out):
    x = out["states"]
    cot = np.zeros_like(x)
    cot[-1] = x[-1]
    return 0.5 * float(np.sum(x[-1] ** 2)), {"states": cot}


def every_state_loss(out):
    x = out["states"]
    return 0.5 * float(np.sum(x ** 2)), {"states": x.copy()}


def linear_run(radius: float, loss=final_state_loss, steps: int = N):
    a = linear.rotation(4, radius)
    b = np.arange(1.0, 5.0)[:, None]
    with linear.Simulation(a=a, b=b, controls=np.zeros((steps, 1)), x0=np.ones(4)) as sim:
        return sim.value_and_grad(loss, wrt=("controls",)), a, b


@pytest.mark.parametrize("radius,verdict", [(0.9, "vanishing"), (1.0, "stable"),
                                            (1.1, "exploding")])
def test_verdict_on_chains_built_to_vanish_explode_or_stay_stable(radius, verdict) -> None:
    res, _, _ = linear_run(radius)
    health = gradient_health(res.report.costate)
    assert health.verdict == verdict, health.summary()
    # the exponent of the backward dynamics is ln(spectral radius) per step
    assert abs(health.exponent - math.log(radius)) < 1e-9
    if verdict == "stable":
        assert health.steps is None
        return
    # |λ[t]| = radius^(n - t): beyond 6 decades for n - t > 6 / |log10 radius| (plus the
    # entry window for growth, measured from the last n/20 steps' largest norm)
    first, last = health.steps
    assert first == 0
    margin = 6.0 / abs(math.log10(radius))
    entry = N // 20 - 1 if verdict == "exploding" else 0
    assert abs((N - last) - (margin + entry)) <= 1.5, (last, margin)
    assert verdict in health.summary() and health.advice
    # the advice holds: a loss on every state keeps the early steps' gradient alive
    if verdict == "vanishing":
        res_all, _, _ = linear_run(radius, every_state_loss)
        report = res_all.report
        assert gradient_health(report.costate, injection=report.injection).verdict == "stable"
        # the loss's own terms rise towards t = 0 here: without them the trace looks grown
        assert gradient_health(report.costate).verdict == "exploding"
    # with the injection known, a loss at the end only gives the same verdict
    with_injection = gradient_health(res.report.costate, injection=res.report.injection)
    assert with_injection.verdict == verdict
    assert with_injection.steps[0] == 0


def test_the_tape_adjoint_is_the_pontryagin_costate() -> None:
    # L = 1/2 sum_t |x_t|^2 with x_{t+1} = A x_t + B u_t: p_n = x_n, p_t = A^T p_{t+1} + x_t,
    # dL/du_t = B^T p_{t+1}. The tape's costate trace and gradient are these.
    steps = 40
    a = linear.rotation(4, 0.97, angle=0.4) + 0.01 * np.eye(4)
    b = np.array([[1.0], [0.5], [-0.3], [0.2]])
    rng = np.random.default_rng(1)
    u = rng.normal(size=(steps, 1))
    x0 = rng.normal(size=4)
    with linear.Simulation(a=a, b=b, controls=u, x0=x0) as sim:
        res = sim.value_and_grad(every_state_loss, wrt=("controls", "a"))
    x = [x0]
    for t in range(steps):
        x.append(a @ x[-1] + b @ u[t])
    p = [np.zeros(4)] * (steps + 1)
    p[steps] = x[steps]
    for t in range(steps - 1, -1, -1):
        p[t] = a.T @ p[t + 1] + x[t]
    norms = np.array([np.linalg.norm(v) for v in p])
    np.testing.assert_allclose(res.report.costate, norms, rtol=1e-12)
    np.testing.assert_allclose(res.report.injection, [np.linalg.norm(v) for v in x], rtol=1e-12)
    np.testing.assert_allclose(res.grads["controls"][:, 0],
                               [float(b[:, 0] @ p[t + 1]) for t in range(steps)], rtol=1e-10)
    np.testing.assert_allclose(res.grads["a"], sum(np.outer(p[t + 1], x[t])
                                                   for t in range(steps)), rtol=1e-10)


def test_health_of_unmeasured_and_overflowing_traces() -> None:
    assert gradient_health(np.full(20, np.nan)).verdict == "unmeasured"
    trace = np.ones(101)
    trace[:10] = np.inf
    h = gradient_health(trace)
    assert h.verdict == "exploding" and h.steps == (0, 9) and len(h.non_finite) == 10
    with pytest.raises(ValueError, match="threshold=-1"):
        gradient_health(np.ones(5), threshold=-1)
    with pytest.raises(ValueError, match="a trace of n\\+1 >= 2 norms"):
        gradient_health([1.0])


def test_vcurve_truncation_round_off_and_a_kink(tmp_path) -> None:
    x0 = np.array([0.3, -0.7, 1.1])
    d = np.array([1.0, 0.5, -0.25])

    def smooth(x):
        return float(np.sum(np.sin(x)) + 0.5 * np.sum(x ** 2))

    v = fd_vcurve(smooth, x0, d, np.cos(x0) + x0)
    assert v.best_error < 1e-8 and not v.has_kink
    assert v.truncation.size and v.round_off.size
    assert v.truncation.min() > v.best_step > v.round_off.max()
    # a kink 1e-4 away along d (a contact switching on): |x0 + s d - c| changes slope
    c = x0 + 1e-4 * d

    def kinked(x):
        return smooth(x) + 3.0 * abs(float(d @ (x - c)))

    grad = np.cos(x0) + x0 - 3.0 * d      # the branch taken at x0 (x0 - c is along -d)
    k = fd_vcurve(kinked, x0, d, grad, steps=[10.0 ** -e for e in range(0, 9)])
    assert k.has_kink, k.summary()
    assert k.kink.min() >= 1e-4 and k.kink.max() <= 1.0
    assert k.best_error < 1e-6           # steps below the kink see the branch taken
    assert "kink" in k.summary()
    k.plot(tmp_path / "v.png")
    assert (tmp_path / "v.png").stat().st_size > 1000


def test_schedule_picture_and_tradeoff(tmp_path) -> None:
    Binomial(slots=3).plot(20, tmp_path / "b.png")
    Uniform(every=4).plot(20, tmp_path / "u.svg")
    assert (tmp_path / "b.png").stat().st_size > 1000
    assert "<svg" in (tmp_path / "u.svg").read_text()[:500]
    res, _, _ = linear_run(1.0, steps=60)
    state = 4 * 8
    t = tradeoff(state, 200, tmp_path / "t.png", budgets=["320B", 10_000],
                 measured=[res.report, ("by hand", 64, 300)])
    rows = {name: (states, nbytes, fwd) for name, states, nbytes, fwd in t.rows}
    assert rows["StoreAll()"] == (199, 199 * state, 200)
    for s in (1, 3, 9):
        assert rows[f"Binomial(slots={s})"][2] == Binomial(slots=s).cost(200).forward_steps
        assert rows[f"Binomial(slots={s})"][2] == binomial_forward_steps(200, s)
    for k in [int(name[14:-1]) for name in rows if name.startswith("Uniform")]:
        cost = Uniform(every=k).cost(200)
        assert rows[f"Uniform(every={k})"] == (cost.peak_states, cost.peak_states * state,
                                               cost.forward_steps)
    picked = Budget(bytes=320).resolve(200, state_nbytes=state)
    assert t.budgets[0][:2] == (320, repr(picked))
    assert t.measured[0] == (repr(res.report.schedule), res.report.peak_checkpoint_bytes,
                             res.report.forward_steps)
    assert (tmp_path / "t.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="state_nbytes=0"):
        tradeoff(0, 10)


def test_graph_of_a_wave_a_density_and_a_spring_simulation(tmp_path) -> None:
    shape, dt, nt = (12, 14), 1e-3, 30
    vel = np.full(shape, 2000.0)
    args = (10.0, dt, acoustic.ricker(25.0, dt, nt), [[30.0, 60.0]], [[20.0, 80.0]])
    with acoustic.Simulation(vel, *args, order=4, pml_width=3) as sim:
        g = sim.graph()
    assert g.steps == nt - 1
    assert {"u", "psi", "zeta"} <= {a for a, k in g.arrays.items() if k == "state"}
    assert g.arrays["velocity"] == "parameter" and g.arrays["receivers"] == "output"
    fan = g.fan_out()
    assert fan["velocity"] == nt - 1      # through kc, read by the update at every step
    assert fan["wavelet"] == 1            # row t of the wavelet feeds step t only
    dot = g.to_dot()
    assert f"repeated x {nt - 1}" in dot and '"velocity" -> "stage:kc from velocity"' in dot
    assert '"u+" -> "stage:receivers"' in dot     # the record reads the new level
    for name in ("g.dot", "g.png", "g.svg"):
        g.save(tmp_path / name, expand=3 if name == "g.png" else 0)
        assert (tmp_path / name).stat().st_size > 300
    with acoustic.Simulation(vel, *args, density=np.full(shape, 1000.0), order=4,
                             pml_width=3) as sim:
        gd = sim.graph()
    assert gd.fan_out()["density"] == 2 * (nt - 1)   # KK in the update, buoyancy in the fluxes
    assert gd.fan_out()["velocity"] == nt - 1
    system = contact_system()
    v0, act = contact_inputs(system, 20)
    with springs.Simulation(system, 20, 1e-3, velocities=v0, actuation=act) as sim:
        gs = sim.graph()
    assert gs.fan_out()["stiffness"] == 20 and gs.fan_out()["actuation"] == 1
    assert any("ground contact" in s.name for s in gs.stages)
    with pytest.raises(ValueError, match="use a .dot, .png or .svg"):
        gs.save(tmp_path / "g.pdf")


def test_graph_of_a_taichi_stepper_is_read_from_its_kernels() -> None:
    from diffsim.kernels.chain import chain_forces, chain_integrate

    reads, writes = kernel_access(chain_forces)    # (q, k, beta, f, src): q, k, beta -> f
    assert reads == {0, 1, 2, 4} and writes == {3}   # f.shape is no read; src is a scalar
    assert kernel_access(chain_integrate)[1] == {0, 1}           # writes q, v
    with chain.Simulation(stiffness=100.0, mass=1.0, forcing=np.zeros((25, 3)), dt=0.01,
                          observed=[0, 2]) as sim:
        g = sim.graph()
    names = [s.name for s in g.stages]
    assert names == ["chain_forces", "chain_integrate", "chain_record"]
    forces = g.stages[0]
    assert set(forces.reads) == {"q", "stiffness", "beta"} and forces.writes == ("force",)
    assert g.arrays["force"] == "scratch" and g.time_indexed == frozenset({"forcing"})
    assert g.fan_out() == {"stiffness": 25, "beta": 25, "mass": 25, "forcing": 1}
    assert "step 2" in g.to_dot(expand=3) and "22 more steps" in g.to_dot(expand=3)


def test_declared_stages_are_checked() -> None:
    from diffsim.diagnostics.graph import declared

    with pytest.raises(ValueError, match="names 'w', which is not one of"):
        declared({"x": "state"}, [Stage("step", ("x", "w"), ("x",))])
    g = StepGraph(10, {"x": "state", "k": "parameter", "c": "derived"},
                  (Stage("c from k", ("k",), ("c",), per_step=False),
                   Stage("a", ("x", "c"), ("x",)), Stage("b", ("x", "c"), ("x",))))
    assert g.fan_out() == {"k": 20}
    assert StoreAll().cost(3).forward_steps == 3


@pytest.mark.slow   # four fresh processes (float32 and float64 runs of two problems)
def test_precision_advice_flags_a_long_chaotic_chain() -> None:
    import functools

    from diagnostics_cases import chaotic_chain, rotation

    from diffsim.diagnostics import precision_advice

    chaos = precision_advice(functools.partial(chaotic_chain, 3000))
    assert chaos.use_float64 and chaos.lost_at is not None and chaos.lost_at > 100
    assert chaos.gradient_error["stiffness"] > 1e-3
    assert "use float64" in chaos.recommendation
    calm = precision_advice(functools.partial(rotation, 60))
    assert not calm.use_float64 and calm.lost_at is None, calm.summary()
    assert np.nanmin(calm.digits) > 5.0 and calm.gradient_error["controls"] < 1e-4
    with pytest.raises(ValueError, match="digits=20"):
        precision_advice(functools.partial(rotation, 60), digits=20)


def test_diagnose_writes_a_self_contained_report(tmp_path) -> None:
    import diffsim

    res = None
    with linear.Simulation(a=linear.rotation(4, 0.9), b=np.ones((4, 1)),
                           controls=np.zeros((N, 1)), x0=np.ones(4)) as sim:
        res = diffsim.diagnose(sim, final_state_loss, wrt=("controls",), out=tmp_path,
                               checkpoint=Binomial(slots=5), title="rotation 0.9")
    assert res.health.verdict == "vanishing" and res.precision is None
    assert res.report.schedule == Binomial(slots=5)
    assert res.vcurve is not None and res.vcurve.best_error < 1e-6
    html = res.html.read_text()
    assert html.count("data:image/png;base64,") >= 6 and "vanishing" in html
    assert "Binomial(slots=5)" in html and "digraph step" in html
    assert "vanishing" in res.summary()


@pytest.mark.parametrize("name", [
    "spring-robot", pytest.param("marmousi2", marks=pytest.mark.slow)])  # 25 s more cold
def test_diffsim_diagnose_cli_on_the_spring_robot_and_marmousi2(tmp_path, name) -> None:
    import subprocess
    import sys

    out = tmp_path / name
    proc = subprocess.run([sys.executable, "-m", "diffsim.cli", "diagnose", name, "--smoke",
                           "--out", str(out), "--no-precision"], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "gradient health:" in proc.stdout and (out / "report.html").is_file()
    assert (out / "costate.png").stat().st_size > 1000
    if name != "spring-robot":
        return
    proc = subprocess.run([sys.executable, "-m", "diffsim.cli", "diagnose", "rtm-marmousi2",
                           "--smoke", "--out", str(tmp_path / "rtm")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "cannot be diagnosed yet" in proc.stderr


def test_a_scenario_problem_factory_rebuilds_the_scenario() -> None:
    # what the CLI hands to the precision advice: a picklable factory from the TOML text
    import functools
    import pickle

    from diffsim import scenarios

    scenario = scenarios.get("chain").smoke()
    factory = functools.partial(scenarios.diagnosis_problem, scenario.to_toml(), None)
    sim, loss, wrt = pickle.loads(pickle.dumps(factory))()
    with sim:
        assert wrt == ("stiffness",) and sim.loss_value(loss) > 0
    with pytest.raises(ValueError, match="names class 'Nope'"):
        scenarios.diagnosis_problem('class = "Nope"\n')


@pytest.mark.slow   # four more processes: the float32 and float64 runs of the robot
def test_diffsim_diagnose_cli_with_precision_advice(tmp_path) -> None:
    import subprocess
    import sys

    out = tmp_path / "robot"
    proc = subprocess.run([sys.executable, "-m", "diffsim.cli", "diagnose", "spring-robot",
                           "--smoke", "--out", str(out)], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "precision:" in proc.stdout and "precision" in (out / "report.html").read_text()


def test_precision_comparison_of_two_runs() -> None:
    # compare() on run results: digits per level, the first level below the wanted digits,
    # gradient errors and the recommendation (the slow test runs real processes)
    from diffsim.diagnostics.precision import compare

    levels = np.outer(np.linspace(1.0, 2.0, 11), np.ones(3))
    drift = levels.copy()
    drift[6:] *= 1.0 + 10.0 ** -np.arange(7, 2, -1)[:, None]     # 7 digits down to 3
    drift[9:] *= 1.01                                              # then 2 digits
    r64 = {"loss": 1.0, "levels": levels, "grads": {"k": np.ones(4)}}
    r32 = {"loss": 1.0 + 1e-7, "levels": drift, "grads": {"k": np.ones(4) * (1 + 1e-6)}}
    advice = compare(r32, r64, digits=3.0)
    assert advice.use_float64 and advice.lost_at == 9
    assert abs(advice.gradient_error["k"] - 1e-6) < 1e-12
    assert advice.digits[0] == 16.0 and advice.digits[9] < 3.0 <= advice.digits[8]
    calm = compare({**r32, "levels": levels * (1 + 1e-7)}, r64, digits=3.0)
    assert not calm.use_float64 and calm.lost_at is None and "float32 is enough" in calm.recommendation
