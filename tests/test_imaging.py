"""RTM and least-squares RTM, the density FWI scenario: operators, processing, resumption."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from diffsim import acoustic
from diffsim.fwi import ShotData, surface_acquisition
from diffsim.fwi.imaging import (
    BornShots,
    LeastSquaresMigration,
    correlation,
    laplacian,
    process,
    reflectivity,
    shot_groups,
)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diffsim.cli", *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ})


def small_experiment(shots: int = 3):
    shape, h, dt, nt = (30, 40), 10.0, 1e-3, 450
    truth = np.full(shape, 1800.0)
    truth[18:] = 2200.0
    background = np.full(shape, 1800.0)
    background[18:] = 1800.0 + 400.0 * np.linspace(0, 1, 12)[:, None]   # a smooth ramp
    src, rec = surface_acquisition(shape, h, shots, 20, source_depth=20.0, receiver_depth=20.0)
    data = ShotData(h, dt, acoustic.ricker(15.0, dt, nt), src, rec,
                    np.zeros((shots, 20, nt)), order=4, pml_width=10)
    return truth, background, data


def test_image_processing_helpers() -> None:
    z, x = np.meshgrid(np.arange(6.0), np.arange(7.0), indexing="ij")
    field = 3.0 * z**2 + x**2                       # lap = (6 + 2) / h^2 inside
    np.testing.assert_allclose(laplacian(field, 2.0)[1:-1, 1:-1], -8.0 / 4.0)
    v = np.array([[1500.0], [2000.0], [2000.0]])
    rho = np.array([[1000.0], [1000.0], [2500.0]])
    np.testing.assert_allclose(reflectivity(v)[:, 0], [500 / 3500, 0.0, 0.0])
    np.testing.assert_allclose(reflectivity(v, rho)[:, 0],
                               [(2e6 - 1.5e6) / 3.5e6, (5e6 - 2e6) / 7e6, 0.0])
    image = np.random.default_rng(0).normal(size=(8, 9))
    light = np.ones((8, 9))
    out = process(image, 10.0, illumination=light, mute_rows=2, filter_laplacian=False)
    assert np.abs(out).max() == pytest.approx(1.0) and np.all(out[:2] == 0)
    np.testing.assert_allclose(out[2:] * np.abs(image[2:]).max(), image[2:], rtol=1e-12)
    assert correlation(image, 2.0 * image) == pytest.approx(1.0)
    assert shot_groups(5, 2) == [[0, 1], [2, 3], [4]] and shot_groups(3, 0) == [[0, 1, 2]]


@pytest.mark.slow   # the dot-product test itself runs by default in test_density.py
def test_migration_is_the_adjoint_of_born_modelling_over_shot_groups() -> None:
    _, background, data = small_experiment()
    rng = np.random.default_rng(1)
    m = rng.normal(size=background.shape)
    d = rng.normal(size=data.observed.shape)
    whole = BornShots(background, data)
    grouped = BornShots(background, data, batch=2)
    jm = whole.modelled(m)
    np.testing.assert_allclose(grouped.modelled(m), jm, rtol=0, atol=1e-12 * np.abs(jm).max())
    jtd = grouped.migrate(d)
    np.testing.assert_allclose(whole.migrate(d), jtd, rtol=0, atol=1e-10 * np.abs(jtd).max())
    lhs, rhs = float(np.vdot(jm, d)), float(np.vdot(m, jtd))
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)


def test_rtm_images_a_thin_layer_and_lsrtm_resumes_bit_for_bit(tmp_path: pathlib.Path) -> None:
    _, _, data = small_experiment()
    background = np.full((30, 40), 1800.0)
    truth = background.copy()
    truth[18:20] = 2100.0                       # a thin fast layer, rows 18-19
    shots = BornShots(background, data)
    observed = (acoustic.simulate(truth, data.spacing, data.dt, data.wavelet, data.sources,
                                  data.receivers, order=4, pml_width=10)
                - acoustic.simulate(background, data.spacing, data.dt, data.wavelet,
                                    data.sources, data.receivers, order=4, pml_width=10))
    image = process(shots.migrate(observed), data.spacing, mute_rows=4)
    # The strongest image row is the layer's (18.5 +- 1), and a faster layer images positive.
    row = int(np.argmax(np.abs(image[:, 5:-5]).sum(axis=1)))
    assert abs(row - 18.5) <= 1.0, row
    assert image[row, 5:-5].sum() > 0
    # CGLS: the residual falls every iteration; stopping after 2 and resuming to 3
    # gives the bits of 3 in one go.
    full = LeastSquaresMigration(shots, observed, folder=tmp_path / "full").run(3)
    residuals = [h["residual"] for h in full.history]
    assert all(b < a for a, b in zip(residuals, residuals[1:], strict=False)), residuals
    assert residuals[-1] < 0.8
    LeastSquaresMigration(shots, observed, folder=tmp_path / "cut").run(2)
    resumed = LeastSquaresMigration(shots, observed, folder=tmp_path / "cut").run(3)
    assert resumed.iterations_this_session == 1
    np.testing.assert_array_equal(resumed.image, full.image)


@pytest.mark.slow   # a fresh process compiling f32 kernels (50 s cold)
def test_rtm_scenario_smoke_and_resume(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "rtm"
    res = cli("run", "rtm-marmousi2", "--smoke", "--quiet", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "rtm" and summary["groups_migrated_this_session"] == 1
    for name in ("rtm.png", "image.npy", "image_raw.npy", "illumination.npy", "observed.npy"):
        assert (out / name).stat().st_size > 0, name
    image = np.load(out / "image.npy")
    res = cli("run", "rtm-marmousi2", "--smoke", "--quiet", "--out", str(out))
    assert res.returncode == 2 and "--resume" in res.stderr
    res = cli("run", "rtm-marmousi2", "--smoke", "--quiet", "--resume", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    again = json.loads((out / "summary.json").read_text())
    assert again["groups_migrated_this_session"] == 0          # read back, not recomputed
    np.testing.assert_array_equal(np.load(out / "image.npy"), image)


@pytest.mark.slow   # resumption is tested in-process by default (the thin-layer test)
def test_lsrtm_scenario_kill_minus_9_then_resume(tmp_path: pathlib.Path) -> None:
    args = ["run", "lsrtm-marmousi2", "--smoke", "--quiet", "--iterations", "3"]
    full = cli(*args, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr[-3000:]
    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    history = summary["history"]
    assert [h["iteration"] for h in history] == [0, 1, 2, 3]
    assert history[-1]["residual"] < history[0]["residual"]
    assert {"model_error", "reflectivity_error", "correlation"} <= set(history[-1])
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "diffsim.cli", *args, "--out", str(cut)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    state = cut / "lsrtm_history.json"
    while time.time() < deadline:
        try:
            if len(json.loads(state.read_text())) >= 2:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    res = cli(*args, "--out", str(cut), "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    np.testing.assert_array_equal(np.load(cut / "image.npy"), np.load(tmp_path / "full" / "image.npy"))
    for name in ("lsrtm.png", "loss.png"):
        assert (cut / name).stat().st_size > 0


@pytest.mark.slow   # 30 s cold; resume bit for bit is covered by the FWI kill -9 test
def test_density_fwi_scenario_smoke_and_resume(tmp_path: pathlib.Path) -> None:
    # One iteration, then --resume to two, ends with the bits of two in one go.
    args = ["run", "fwi-density-marmousi2", "--smoke", "--quiet"]
    full = cli(*args, "--iterations", "2", "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr[-3000:]
    out = tmp_path / "cut"
    res = cli(*args, "--iterations", "1", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    res = cli(*args, "--iterations", "2", "--resume", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("velocity_final.npy", "density_final.npy"):
        np.testing.assert_array_equal(np.load(out / name), np.load(tmp_path / "full" / name))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_misfit"] < summary["initial_misfit"]
    history = json.loads((out / "history.json").read_text())
    assert [h["iteration"] for h in history] == [0, 1, 2]
    assert {"velocity_error", "density_error"} <= set(history[-1])
    for key in ("velocity_update_vs_true_density_perturbation",
                "density_update_vs_true_velocity_perturbation"):
        assert -1.0 <= summary[key] <= 1.0
    for name in ("models.png", "density.png", "loss.png"):
        assert (out / name).stat().st_size > 0, name
    from diffsim import scenarios

    with pytest.raises(ValueError, match="has no density model"):
        scenarios.get("fwi-density-marmousi2").with_(model="layered")
