"""Spring scenarios (smoke sizes), resumable design runs, and trajectory rendering."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from diffsim import scenarios
from diffsim.io import RunOptions
from diffsim.springs import SpringSystem, simulate
from diffsim.viz.render import ffmpeg_available, frames, render, strain_colour

SPRING_SCENARIOS = ["spring-bridge", "spring-identify", "spring-robot"]


def run(name: str, out: pathlib.Path, iterations: int, resume: bool = False, **changes) -> dict:
    scenario = scenarios.get(name).smoke().with_(**changes)
    return scenario.run(RunOptions(out=out, iterations=iterations, resume=resume, smoke=True,
                                   quiet=True))


@pytest.mark.parametrize("name", SPRING_SCENARIOS)
def test_scenario_smoke_run_writes_everything(name: str, tmp_path: pathlib.Path) -> None:
    summary = run(name, tmp_path, 2)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["iterations"] == 2
    assert np.isfinite(written["initial_loss"]) and np.isfinite(written["final_loss"])
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["iteration"] for h in history] == [0, 1, 2]
    assert history[0]["loss"] == summary["initial_loss"]
    best = min(history, key=lambda h: h["loss"])   # best and last are both reported
    assert (written["best_loss"], written["best_iteration"]) == (best["loss"], best["iteration"])
    for tag in ("before", "after"):
        with Image.open(tmp_path / f"{tag}.gif") as gif:
            assert gif.n_frames > 5
        assert (tmp_path / f"{tag}.png").stat().st_size > 0
    assert (tmp_path / "loss.png").stat().st_size > 0
    if name != "spring-robot":  # two Adam steps already lower these losses
        assert summary["final_loss"] < summary["initial_loss"]
    else:
        assert written["final_distance"] == -written["final_loss"]


def test_resume_continues_exactly_where_it_stopped(tmp_path: pathlib.Path) -> None:
    straight = run("spring-bridge", tmp_path / "straight", 3, steps=100)
    run("spring-bridge", tmp_path / "split", 1, steps=100)
    resumed = run("spring-bridge", tmp_path / "split", 3, resume=True, steps=100)
    a = json.loads((tmp_path / "straight" / "history.json").read_text())
    b = json.loads((tmp_path / "split" / "history.json").read_text())
    assert [h["loss"] for h in a] == [h["loss"] for h in b]
    assert resumed["final_loss"] == straight["final_loss"]
    assert not list((tmp_path / "split").glob(".*.tmp"))  # atomic writes left nothing behind


def test_cli_runs_a_spring_scenario(tmp_path: pathlib.Path) -> None:
    res = subprocess.run([sys.executable, "-m", "diffsim.cli", "run", "spring-bridge", "--smoke",
                          "--iterations", "1", "--checkpoint", "uniform:20", "--quiet",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["schedule"] == "Uniform(every=20)"
    assert summary["forward_steps"] > summary["steps"]  # the schedule recomputed
    res = subprocess.run([sys.executable, "-m", "diffsim.cli", "run", "spring-robot", "--smoke",
                          "--set", "amplitude=1.5", "--out", str(tmp_path)], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 2 and "amplitude=1.5 must lie in (0, 1)" in res.stderr


def test_scenario_checks() -> None:
    with pytest.raises(ValueError, match=r"k_start=9000.0 must lie in \[k_min, k_max\]"):
        scenarios.get("spring-bridge").with_(k_start=9000.0)
    with pytest.raises(ValueError, match="the net needs at least 2 x 2 particles"):
        scenarios.get("spring-identify").with_(nx=1)


# -- rendering --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def falling() -> tuple:
    pos = np.array([[0.0, 0.3], [0.2, 0.3], [0.1, 0.45], [0.3, 0.5]])
    system = SpringSystem(pos, [[0, 1], [1, 2], [0, 2], [2, 3]], stiffness=200.0, mass=0.05,
                          damping=0.02, gravity=(0.0, -9.81), ground=0.0, friction=0.5,
                          fixed=np.array([False, False, False, True]))
    return system, simulate(system, 400, 1e-3)


def test_render_gif_and_filmstrip(falling: tuple, tmp_path: pathlib.Path) -> None:
    system, traj = falling
    render(traj, system, tmp_path / "fall.gif", max_frames=12, size=(200, 150))
    with Image.open(tmp_path / "fall.gif") as gif:
        assert gif.n_frames == 12 and gif.size == (200, 150)
    render(traj, system, tmp_path / "fall.png", max_frames=12, size=(200, 150))
    with Image.open(tmp_path / "fall.png") as strip:
        assert strip.size == (6 * 200, 150)


def test_frames_use_equal_axes_and_draw_the_ground(falling: tuple) -> None:
    system, traj = falling
    images = frames(traj, system, max_frames=3, size=(300, 300))
    last = np.asarray(images[-1])
    ground = np.all(last == np.array([205, 190, 165], dtype=np.uint8), axis=-1)
    assert ground[-30:].mean() > 0.9 and ground[:100].mean() == 0.0
    assert len(images) == 3


def test_view_has_equal_axes() -> None:
    from diffsim.viz.render import _View

    view = _View(np.array([0.0, 0.0]), np.array([4.0, 1.0]), (300, 300))
    o, ex, ey = view(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    assert np.linalg.norm(ex - o) == pytest.approx(np.linalg.norm(ey - o))
    assert ey[1] < o[1]  # height is up
    corner = view(np.array([4.0, 1.0]))
    assert 0 <= corner[0] <= 299 and 0 <= corner[1] <= 299


def test_mp4_needs_ffmpeg(falling: tuple, tmp_path: pathlib.Path) -> None:
    system, traj = falling
    if ffmpeg_available():
        render(traj, system, tmp_path / "fall.mp4", max_frames=8, size=(200, 150))
        assert (tmp_path / "fall.mp4").stat().st_size > 0
    else:
        with pytest.raises(RuntimeError, match="needs ffmpeg on the PATH"):
            render(traj, system, tmp_path / "fall.mp4")
    with pytest.raises(ValueError, match="use a .gif, .mp4 or .png"):
        render(traj, system, tmp_path / "fall.avi")


def test_strain_colours() -> None:
    rgb = strain_colour(np.array([-1.0, 0.0, 1.0, 5.0]), 1.0)
    assert tuple(rgb[1]) == (150, 150, 150)
    assert rgb[0, 2] > rgb[0, 0] and rgb[2, 0] > rgb[2, 2]  # blue compressed, red stretched
    assert tuple(rgb[3]) == tuple(rgb[2])                    # clipped
