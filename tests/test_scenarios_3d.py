"""The 3D FWI scenario ``marmousi2-3d``: settings, acquisition, a smoke run spilling to disk, resumption."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from diffsim import scenarios
from diffsim.fwi import ShotData, surface_acquisition
from diffsim.fwi.driver import update_weights
from diffsim.io import RunOptions

NAME = "marmousi2-3d"
SMOKE = ["run", NAME, "--smoke", "--quiet"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diffsim.cli", *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ})


@pytest.mark.parametrize(("changes", "message"), [
    ({"shape": (70, 32, 48)}, r"shape=\[70, 32, 48\] at spacing=50 m is deeper than the "
                              r"Marmousi2 section: .* nz must lie in \[8, 67\] at this spacing"),
    ({"shape": (32, 32, 400)}, r"shape=\[32, 32, 400\] .* wider than the Marmousi2 section: .*"
                               r"nx must lie in \[8, 328\] with ny=32"),
    ({"shape": (32, 4, 48)}, r"shape=\[32, 4, 48\] must be at least \[8, 8, 8\] cells"),
    ({"shots": (0, 2)}, r"shots=\[0, 2\] must be \[along y, along x\], each at least 1"),
    ({"receivers": (12,)}, r"receivers=\(12,\) must have 2 entries"),
    ({"source_margin": 900.0}, r"source_margin=900.0 m must lie in \[0, 775\] m"),
    ({"source_depth": 2000.0}, r"source_depth=2000.0 m must lie in \[0, 1550\] m"),
    ({"checkpoint": "budget:lots,disk:4GiB"},
     r"checkpoint='budget:lots,disk:4GiB' is not a checkpoint schedule .*'lots'.* e\.g\. "
     r"checkpoint=\"budget:64MiB,disk:1GiB\""),
    ({"checkpoint": "disk:4GiB"}, r"checkpoint='disk:4GiB' is not a checkpoint schedule"),
    ({"vmin": 5000.0}, r"vmin=5000.0 must be below vmax=4800.0"),
    ({"order": 3}, r"order=3 is not supported; choose 2, 4, 6 or 8"),
    ({"water_depth": 2000.0}, r"water_depth=2000.0 m must be below the model's depth \(1550 m\)"),
    ({"stages": ()}, r"stages=\[\] must list corner frequencies"),
])
def test_3d_settings_are_checked(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scenarios.get(NAME).with_(**changes)


def test_3d_scenario_registered_and_round_trips(tmp_path: pathlib.Path) -> None:
    scenario = scenarios.get(NAME)
    assert type(scenario).__name__ == "Fwi3dScenario" and scenario.precision == "f32"
    assert "3D FWI" in scenario.describe() and scenario.checkpoint in scenario.describe()
    assert scenario.order == 4 and len(scenario.stages) >= 2
    scenario.save(tmp_path / "s.toml")
    assert scenarios.load(tmp_path / "s.toml") == scenario
    changed = scenario.with_settings(["shots=[3, 2]", 'checkpoint="budget:128MiB,disk:2GiB"'])
    assert changed.shots == (3, 2) and changed.checkpoint == "budget:128MiB,disk:2GiB"
    assert scenario.smoke().checkpoint != scenario.checkpoint   # sized for the smoke grid


def test_surface_grid_acquisition_in_3d() -> None:
    src, rec = surface_acquisition((20, 21, 31), 10.0, (2, 3), (4, 5), source_depth=10.0,
                                   receiver_depth=0.0, source_margin=50.0)
    assert src.shape == (6, 3) and rec.shape == (20, 3)
    assert np.all(src[:, 0] == 10.0) and np.all(rec[:, 0] == 0.0)
    np.testing.assert_array_equal(src[:3, 1], 50.0)                    # x runs fastest
    np.testing.assert_array_equal(src[:3, 2], [50.0, 150.0, 250.0])
    np.testing.assert_array_equal(src[3:, 1], 150.0)
    assert rec[:, 1].min() == 0.0 and rec[:, 1].max() == 200.0 and rec[:, 2].max() == 300.0
    with pytest.raises(ValueError, match=r"shots=3 must be \[along y, along x\]"):
        surface_acquisition((20, 21, 31), 10.0, 3, (4, 5), source_depth=10.0, receiver_depth=0.0)
    with pytest.raises(ValueError, match=r"source_margin=120.0 m must lie in \[0, 100\] m"):
        surface_acquisition((20, 21, 31), 10.0, (2, 2), (4, 5), source_depth=10.0,
                            receiver_depth=0.0, source_margin=120.0)


def test_update_weights_in_3d_damp_every_side_and_keep_the_water() -> None:
    data = ShotData(10.0, 1e-3, np.zeros(4), np.zeros((1, 3)), np.zeros((2, 3)),
                    np.zeros((1, 2, 4)), order=4, pml_width=10)
    w = update_weights((6, 7, 8), data, fixed_rows=2)
    assert w.shape == (6, 7, 8) and w.max() <= 1.0
    assert np.all(w[:2] == 0.0)
    inner = w[3, 3, 3]
    for edge in (w[3, 0, 3], w[3, -1, 3], w[3, 3, 0], w[3, 3, -1]):
        assert edge == pytest.approx(inner / 13)          # halo 2 + PML 10 + the cell itself


def test_workers_are_refused_before_anything_is_written(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"--workers 2 .* runs its shots in this process.*drop "
                                         r"--workers"):
        scenarios.get(NAME).smoke().run(RunOptions(out=out, workers=2, quiet=True))
    assert not out.exists()


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The smoke run in one go (2 iterations), its disk checkpoints in its own folder."""
    root = tmp_path_factory.mktemp("fwi3d")
    out = root / "full"
    res = cli(*SMOKE, "--out", str(out), "--set",
              f'checkpoint="budget:16MiB,disk:128MiB,dir:{root}"')
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.mark.slow   # the 3D kernels' first compile: about a minute cold
def test_3d_smoke_run_spills_to_disk_and_lowers_the_misfit(smoke_run: pathlib.Path) -> None:
    summary = json.loads((smoke_run / "summary.json").read_text())
    assert summary["grid"] == [16, 16, 20] and summary["shots"] == 4
    assert summary["iterations"] == 2
    assert summary["final_misfit"] < summary["initial_misfit"]
    # two full-band iterations on an 80 m grid barely move the model (0.0743 -> 0.0741)
    assert 0.0 < summary["final_model_error"] < 1.0 and 0.0 < summary["initial_model_error"] < 1.0
    assert summary["checkpoint_plan"].startswith("TwoLevel(")
    assert all(p.startswith("TwoLevel(") for p in summary["checkpoint_plans"])
    tiers = {t["name"]: t for t in summary["checkpoint_tiers"]}
    assert tiers["disk"]["saves"] > 0 and tiers["memory"]["slots"] >= 1
    assert summary["gradients_this_session"] >= 3
    assert summary["disk_bytes_written"] > 0 and summary["disk_bytes_read"] > 0
    # every gradient writes its disk states once: at least one state per gradient
    assert summary["disk_bytes_written"] >= summary["gradients_this_session"] * summary["state_bytes"]
    assert summary["disk_wait_seconds"] >= 0.0 and summary["session_seconds"] > 0
    final = np.load(smoke_run / "model_final.npy")
    assert final.shape == (16, 16, 20)
    fixed = 6                                   # ceil(water_depth / spacing) = ceil(440 / 80)
    np.testing.assert_array_equal(final[:fixed], np.load(smoke_run / "model_0000.npy")[:fixed])
    scenario = scenarios.get(NAME).smoke()
    assert final.min() >= scenario.vmin and final.max() <= scenario.vmax
    assert np.load(smoke_run / "observed.npy").shape[:2] == (4, 16)
    for name in ("models.png", "shot_gather.png", "loss.png", "history.json", "scenario.toml"):
        assert (smoke_run / name).stat().st_size > 0, name
    # the disk checkpoints went to dir:ROOT and are gone with the process
    assert not list(smoke_run.parent.glob("diffsim-checkpoints-*"))


def test_3d_budget_too_small_for_one_state_is_refused(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "run"
    res = cli(*SMOKE, "--out", str(out), "--checkpoint", "budget:64KiB,disk:256MiB")
    assert res.returncode != 0
    assert "checkpoint 'budget:64KiB,disk:256MiB'" in res.stderr
    assert "cannot hold one state" in res.stderr and "raise the budget" in res.stderr
    assert not out.exists()


@pytest.mark.slow   # two more CLI runs of the smoke size
def test_3d_resume_continues_to_the_same_bits(smoke_run: pathlib.Path,
                                              tmp_path: pathlib.Path) -> None:
    # One iteration, then --resume to two, ends with the bits of two in one go.
    out = tmp_path / "cut"
    res = cli(*SMOKE, "--iterations", "1", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    res = cli(*SMOKE, "--out", str(out))
    assert res.returncode != 0 and "--resume" in res.stderr
    res = cli(*SMOKE, "--iterations", "2", "--resume", "--out", str(out),
              "--checkpoint", "budget:8MiB,disk:64MiB")     # another plan: the same bits
    assert res.returncode == 0, res.stderr[-3000:]
    np.testing.assert_array_equal(np.load(out / "model_final.npy"),
                                  np.load(smoke_run / "model_final.npy"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed"] is True and summary["iterations"] == 2
    assert summary["gradients_this_session"] < json.loads(
        (smoke_run / "summary.json").read_text())["gradients_this_session"]
