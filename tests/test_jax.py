"""diffsim.jax: simulations as differentiable JAX functions under jit and grad.

``jax.test_util.check_grads`` (reverse mode, float64) on a wave problem and a spring
system; a loss only JAX computes (an envelope misfit) against central differences; the
precision check; jit; the kept simulation reused.
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="the jax extra is not installed (pip install -e .[jax])")
import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import diffsim.jax as djax  # noqa: E402
from diffsim import StoreAll, acoustic, springs  # noqa: E402
from diffsim._interop import KEPT  # noqa: E402

jax.config.update("jax_enable_x64", True)   # the tests' runtime is float64

NT, DT, H = 40, 1e-3, 10.0


def wave_case(shots: int = 1) -> dict:
    shape = (8, 10)
    v = 2000.0 + 40.0 * np.random.default_rng(0).standard_normal(shape)
    src = np.array([[20.0, 20.0 + 30.0 * s] for s in range(shots)])
    rec = np.array([[10.0, 10.0], [30.0, 60.0], [50.0, 80.0]])
    w = acoustic.ricker(25.0, DT, NT, peak_time=0.03)
    return {"v": v, "w": w, "src": src, "rec": rec,
            "options": {"order": 2, "pml_width": 3, "pml_frequency": 25.0}}


def traces(case: dict, v, w):
    return djax.acoustic(v, H, DT, w, case["src"], case["rec"], **case["options"])


def test_check_grads_wave_velocity_and_wavelet() -> None:
    case = wave_case()
    scale = float(jnp.abs(traces(case, case["v"], case["w"])).max())

    def f(v, w):
        return traces(case, v, w) / scale

    check_grads(f, (jnp.asarray(case["v"]), jnp.asarray(case["w"])), order=1, modes=["rev"],
                eps=1e-3, atol=1e-7, rtol=1e-5)


def test_check_grads_springs() -> None:
    system = springs.SpringSystem([[0.0, 1.0], [0.3, 1.0], [0.15, 1.25]], [[0, 1], [1, 2], [0, 2]],
                                  stiffness=[200.0, 150.0, 180.0], damping=0.2, mass=0.1,
                                  gravity=(0.0, -9.81))

    def f(k, v0):
        out = djax.springs(system, 15, 2e-3, stiffness=k, velocities=v0)
        return out["positions"], out["velocities"]

    check_grads(f, (jnp.array([200.0, 150.0, 180.0]),
                    jnp.array([[0.1, 0.0], [0.0, -0.2], [0.05, 0.1]])),
                order=1, modes=["rev"], eps=1e-3, atol=1e-9, rtol=1e-5)


def test_an_envelope_misfit_under_jit_matches_central_differences() -> None:
    """A loss only JAX computes (the envelope of each trace, by FFT), jitted and differentiated."""
    case = wave_case(shots=2)
    observed = traces(case, case["v"] * 1.01, case["w"])

    def envelope(d):
        spectrum = jnp.fft.fft(d, axis=-1)
        n = d.shape[-1]
        h = jnp.zeros(n).at[0].set(1.0).at[1:(n + 1) // 2].set(2.0)
        if n % 2 == 0:
            h = h.at[n // 2].set(1.0)
        return jnp.abs(jnp.fft.ifft(spectrum * h, axis=-1))

    def loss(v):
        return jnp.sum((envelope(traces(case, v, case["w"])) - envelope(observed)) ** 2)

    v = jnp.asarray(case["v"])
    value, grad = jax.jit(jax.value_and_grad(loss))(v)
    assert float(value) == pytest.approx(float(loss(v)), rel=1e-12)
    direction = jnp.asarray(np.random.default_rng(1).standard_normal(case["v"].shape))
    h = 1e-2
    fd = (loss(v + h * direction) - loss(v - h * direction)) / (2 * h)
    exact = float(jnp.sum(grad * direction))
    assert abs(exact) > 0 and abs(float(fd) - exact) <= 1e-6 * abs(exact)


def test_the_gradient_is_the_simulations_vjp_and_the_simulation_is_kept() -> None:
    case = wave_case(shots=2)
    with acoustic.Simulation(case["v"], H, DT, case["w"], case["src"], case["rec"],
                             **case["options"]) as sim:
        f = djax.function(sim, inputs=("velocity", "wavelet"), checkpoint=StoreAll())
        cot = np.random.default_rng(2).standard_normal(sim.output_shapes()["traces"])
        gv, gw = jax.grad(lambda v, w: jnp.sum(f(v, w) * cot), argnums=(0, 1))(
            jnp.asarray(case["v"]), jnp.asarray(case["w"]))
        ref = sim.vjp({"traces": cot}, wrt=("velocity", "wavelet"), checkpoint=StoreAll())
    np.testing.assert_array_equal(np.asarray(gv), ref["velocity"])
    np.testing.assert_array_equal(np.asarray(gw), ref["wavelet"])
    KEPT.clear()
    traces(case, case["v"], case["w"])
    kept = list(KEPT.values())
    traces(case, case["v"] * 1.05, case["w"] * 2.0)
    assert list(KEPT.values()) == kept and len(kept) == 1


def test_a_float32_array_in_a_float64_runtime_is_refused() -> None:
    case = wave_case()
    with pytest.raises(TypeError, match="velocity has dtype float32 but the runtime precision "
                                        "is float64"):
        traces(case, jnp.asarray(case["v"], dtype=jnp.float32), case["w"])
