"""The elastic FWI scenario ``marmousi2-elastic``: settings, the vs cap, a smoke run, resumption."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from diffsim import scenarios
from diffsim.fwi.joint import cap_vs, cap_vs_evaluator
from diffsim.io import RunOptions

NAME = "marmousi2-elastic"
SMOKE = ["run", NAME, "--smoke", "--quiet"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diffsim.cli", *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ})


@pytest.mark.parametrize(("changes", "message"), [
    ({"model": "layered"}, r"model='layered' has no S-velocity model.*'marmousi2'"),
    ({"vs_min": -5.0}, r"vs_min=-5.0 and vs_max=3000.0 must satisfy 0 <= vs_min < vs_max"),
    ({"vs_min": 3000.0}, r"vs_min=3000.0 .* 0 <= vs_min < vs_max"),
    ({"vs_step": 0.0}, r"vs_step=0.0 must be positive .*vs_step=40"),
    ({"vs_ratio": 0.9}, r"vs_ratio=0.9 must lie in \(0, 0.8660\).*vs_ratio=0.84"),
    ({"source": "sideways"}, r"source='sideways' is not allowed; choose one of 'explosive'"),
    ({"component": "vy"}, r"component='vy' is not allowed; choose one of 'vz', 'vx', 'pressure'"),
    ({"density_min": 3000.0}, r"density_min=3000.0 and density_max=2700.0 must satisfy"),
    ({"observed_file": "mine.npy"}, r"observed_file='mine.npy'.*apply to velocity-only FWI.*"
                                    r"set observed_file=\"\""),
    ({"noise": 0.1}, r"noise=0.1 .*set observed_file=\"\", noise=0"),
])
def test_elastic_settings_are_checked(changes: dict[str, object], message: str) -> None:
    scenario = scenarios.get(NAME)
    with pytest.raises(ValueError, match=message):
        scenario.with_(**changes)


def test_elastic_scenario_registered_and_round_trips(tmp_path: pathlib.Path) -> None:
    scenario = scenarios.get(NAME)
    assert type(scenario).__name__ == "ElasticFwiScenario"
    assert "S velocity" in scenario.describe()
    scenario.save(tmp_path / "s.toml")
    assert scenarios.load(tmp_path / "s.toml") == scenario
    assert scenario.with_settings(["component=\"pressure\"", "vs_ratio=0.8"]).vs_ratio == 0.8


def test_true_model_above_the_vs_cap_is_refused_before_anything_is_written(
        tmp_path: pathlib.Path) -> None:
    scenario = scenarios.get(NAME).smoke().with_(vs_ratio=0.2)   # the crop reaches 0.33
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"reaches vs/vp = 0\.\d+, above vs_ratio=0.2; set "
                                         r"vs_ratio between"):
        scenario.run(RunOptions(out=out, quiet=True))
    assert not out.exists()


def test_vs_cap_gradient_is_the_gradient_of_the_capped_misfit() -> None:
    # A stand-in evaluator with a known nonlinear misfit of (vp, vs, rho); the capped
    # evaluator's gradient must match finite differences of the capped misfit.
    rng = np.random.default_rng(3)
    shape = (3, 4)
    target = {k: rng.normal(size=shape) for k in ("vp", "vs", "rho")}

    def misfit(models, data):
        loss = sum(0.5 * float(np.sum((models[k] ** 2 - target[k]) ** 2)) for k in models)
        grads = {k: 2.0 * models[k] * (models[k] ** 2 - target[k]) for k in models}
        return loss, grads

    ratio = 0.8
    vp = rng.uniform(1.5, 2.5, shape)
    models = {"vp": vp, "vs": vp * rng.uniform(0.3, 1.2, shape), "rho": rng.uniform(1, 2, shape)}
    over = models["vs"] > ratio * vp
    assert over.any() and not over.all()
    capped = cap_vs_evaluator(misfit, ratio)
    loss, grads = capped(models, None)
    assert loss == misfit(cap_vs(models, ratio), None)[0]
    assert np.all(grads["vs"][over] == 0.0)
    eps = 1e-6
    for name in models:
        for idx in np.ndindex(shape):
            plus = {k: v.copy() for k, v in models.items()}
            minus = {k: v.copy() for k, v in models.items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            fd = (capped(plus, None)[0] - capped(minus, None)[0]) / (2 * eps)
            assert grads[name][idx] == pytest.approx(fd, rel=1e-6, abs=1e-8), (name, idx)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The smoke run in one go (2 iterations)."""
    out = tmp_path_factory.mktemp("elastic") / "full"
    res = cli(*SMOKE, "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_elastic_smoke_run_writes_models_figures_and_summary(full_run: pathlib.Path) -> None:
    summary = json.loads((full_run / "summary.json").read_text())
    assert summary["output"] == "vz"
    assert summary["iterations"] == 2
    assert summary["final_misfit"] < summary["initial_misfit"]
    losses = [h["loss"] for h in summary["misfit_history"]]
    assert [h["iteration"] for h in summary["misfit_history"]] == [0, 1, 2]
    assert losses[-1] < losses[0]
    for name in ("vp", "vs", "rho"):
        for when in ("initial", "final"):
            assert 0.0 < summary[f"{when}_{name}_error"] < 1.0
        assert -1.0 <= summary[f"{name}_update_vs_true_{name}_perturbation"] <= 1.0
    history = json.loads((full_run / "history.json").read_text())
    assert {"vp_error", "vs_error", "rho_error"} <= set(history[-1])
    vp, vs = np.load(full_run / "vp_final.npy"), np.load(full_run / "vs_final.npy")
    scenario = scenarios.get(NAME).smoke()
    assert np.all(vs <= scenario.vs_ratio * vp) and vs.min() >= 0.0
    fixed = 6                                 # ceil(water_depth / spacing) = ceil(440 / 80)
    for name in ("vp", "vs", "rho"):           # the water rows keep the start (= the truth)
        np.testing.assert_array_equal(np.load(full_run / f"{name}_final.npy")[:fixed],
                                      np.load(full_run / f"{name}_0000.npy")[:fixed])
    for name in ("elastic.png", "loss.png"):
        assert (full_run / name).stat().st_size > 0, name


@pytest.mark.slow   # two more CLI runs, about 25 s on 2 cores with the first elastic engine
def test_elastic_resume_continues_to_the_same_bits(full_run: pathlib.Path,
                                                   tmp_path: pathlib.Path) -> None:
    # One iteration, then --resume to two, ends with the bits of two in one go.
    out = tmp_path / "cut"
    res = cli(*SMOKE, "--iterations", "1", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    res = cli(*SMOKE, "--out", str(out))
    assert res.returncode != 0 and "--resume" in res.stderr
    res = cli(*SMOKE, "--iterations", "2", "--resume", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("vp_final.npy", "vs_final.npy", "rho_final.npy"):
        np.testing.assert_array_equal(np.load(out / name), np.load(full_run / name))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed"] is True and summary["iterations"] == 2
    assert summary["gradients_this_session"] < json.loads(
        (full_run / "summary.json").read_text())["gradients_this_session"]
