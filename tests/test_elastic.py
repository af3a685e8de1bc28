"""Elastic waves (2D P-SV, first version): wave speeds, gradients, errors."""

from __future__ import annotations

import numpy as np
import pytest
from wave_truth import smooth_field as smooth

from diffsim import Binomial, StoreAll, acoustic, elastic
from diffsim.gradcheck import fd_sweep, taylor_test
from diffsim.losses import L2


def _peak_time(x: np.ndarray, dt: float) -> float:
    """Time of the largest |x|, refined by a parabola through its neighbours."""
    k = int(np.clip(np.argmax(np.abs(x)), 1, len(x) - 2))
    y = np.abs(x[k - 1:k + 2])
    return (k + 0.5 * (y[0] - y[2]) / (y[0] - 2 * y[1] + y[2])) * dt


@pytest.mark.parametrize("source,component,speed", [("explosive", "pressure", "vp"),
                                                    ("vertical", "vz", "vs")])
def test_p_and_s_waves_travel_at_vp_and_vs(source, component, speed) -> None:
    # Receivers 250 m apart on a line through the source, perpendicular to a vertical
    # force: the explosive source sends a P wave (pressure), the force an S wave (vz). The
    # peaks' time difference is 250 m / speed (12 Hz: over 20 cells per S wavelength).
    shape, h, dt, nt = (81, 161), 5.0, 5e-4, 1400
    model = {"vp": 2000.0, "vs": 1100.0}
    ones = np.ones(shape)
    rec = np.array([[200.0, 350.0], [200.0, 600.0]])
    out = elastic.simulate(model["vp"] * ones, model["vs"] * ones, 2000.0 * ones, h, dt,
                           acoustic.ricker(12.0, dt, nt), [[200.0, 150.0]], rec, source=source,
                           order=4, pml_width=15)
    traces = out[component][0]
    lag = _peak_time(traces[1], dt) - _peak_time(traces[0], dt)
    assert abs(lag - 250.0 / model[speed]) < 2e-3 * 250.0 / model[speed], lag


def problem(source: str = "vertical"):
    shape, h, dt, nt = (16, 18), 10.0, 1e-3, 60
    vp = 2000 + 150 * smooth(shape, 1)
    vs = 1100 + 100 * smooth(shape, 2)
    rho = 2000 + 300 * smooth(shape, 3)
    args = (h, dt, acoustic.ricker(25.0, dt, nt, peak_time=0.03),
            np.array([[50.0, 60.0], [90.0, 110.0]]),
            np.array([[30.0, 20.0], [60.0, 150.0], [120.0, 90.0]]))
    opts = dict(source=source, order=4, pml_width=4)
    observed = elastic.simulate(vp * 1.02, vs * 0.97, rho * 1.03, *args, **opts)
    return (vp, vs, rho), args, opts, observed


@pytest.mark.parametrize("source,component", [
    ("vertical", "vz"), pytest.param("explosive", "pressure", marks=pytest.mark.slow)])
def test_gradients_fd_and_taylor(source, component) -> None:
    models, args, opts, observed = problem(source)
    with elastic.Simulation(*models, *args, **opts) as sim:
        loss = L2(observed[component], output=component)
        res = sim.value_and_grad(loss, wrt=("vp", "vs", "rho"), checkpoint=StoreAll())
        again = sim.value_and_grad(loss, wrt=("vp", "vs", "rho"), checkpoint=Binomial(slots=4))
        for name, x0 in zip(("vp", "vs", "rho"), models, strict=True):
            ref = res.grads[name]
            assert np.abs(ref).max() > 0, name
            # Taichi autodiff sums with atomics: schedules agree to rounding, not bit for bit
            assert np.max(np.abs(again.grads[name] - ref)) <= 1e-12 * np.abs(ref).max()

            def value(x: np.ndarray, name=name) -> float:
                sim.update(**{name: x})
                return sim.loss_value(loss)

            d = smooth(x0.shape, 7)
            scale = float(np.abs(x0).max() / np.abs(d).max())
            sweep = fd_sweep(value, x0, d, ref, steps=[scale * 10.0 ** -k for k in range(2, 9)])
            assert sweep.best_error < 1e-7, (name, sweep.table())
            taylor = taylor_test(value, x0, d, ref, h0=2e-3 * scale)
            assert abs(taylor.second_order - 2.0) < 0.1, (name, taylor.table())
            sim.update(**{name: x0})


def test_elastic_errors_name_the_value_and_the_fix() -> None:
    (vp, vs, rho), args, opts, _ = problem()
    with pytest.raises(ValueError, match="vs/vp reaches"):
        elastic.simulate(vp, vp * 0.9, rho, *args, **opts)
    with pytest.raises(ValueError, match="vs has shape"):
        elastic.simulate(vp, vs[:3], rho, *args, **opts)
    with pytest.raises(ValueError, match="source='shear'"):
        elastic.simulate(vp, vs, rho, *args, source="shear")
    with pytest.raises(ValueError, match="free_surface=True is not in the elastic engine yet"):
        elastic.simulate(vp, vs, rho, *args, free_surface=True)
    with pytest.raises(ValueError, match="exceeds the stability"):
        elastic.simulate(vp, vs, rho, args[0], 0.01, *args[2:], **opts)
    with pytest.raises(ValueError, match="vs must be finite and >= 0"):
        elastic.simulate(vp, -vs, rho, *args, **opts)
