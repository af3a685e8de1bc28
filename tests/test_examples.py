"""Every example and the CLI demo run with --smoke (each in a fresh process)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from conftest import data_folder

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
#: Examples whose smoke run compiles most (30-40 s with a cold Taichi cache) and whose
#: paths other default tests cover: the wave gradient, the Marmousi2 and layered FWI
#: scenarios, the torch interop, the diagnostics of the seed lessons. They run with
#: ``-m slow``.
SLOW_EXAMPLES = {"wave_gradient.py", "invert_marmousi.py", "fwi_deep_prior.py", "invert_layered.py",
                 "seed_lessons.py"}


@pytest.mark.parametrize("script", [
    pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW_EXAMPLES else p for p in EXAMPLES],
    ids=lambda p: p.name)
def test_example_runs(script: pathlib.Path, tmp_path: pathlib.Path) -> None:
    data = data_folder()
    res = subprocess.run([sys.executable, str(script), "--smoke", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "DIFFSIM_DATA": str(data)})
    assert res.returncode == 0, res.stderr[-3000:]
    assert any(tmp_path.iterdir()), "the example wrote nothing to --out"


def test_examples_exist() -> None:
    assert EXAMPLES


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diffsim.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_cli_demo_smoke(tmp_path: pathlib.Path) -> None:
    res = cli("demo", "--smoke", "--out", str(tmp_path), "--checkpoint", "uniform:5")
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["final_misfit"] < summary["initial_misfit"]
    assert abs(summary["taylor_second_order"] - 2.0) < 0.1
    assert summary["checkpoint"] == "Uniform(every=5)"
    for name in ("history.json", "costate.png", "stiffness.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "[Taichi]" not in res.stdout


def test_cli_info_and_list() -> None:
    res = cli("info")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    # the defaults of diffsim.init(): "auto" (the CPU on a host without a GPU) and f32
    assert info["requested_arch"] == "auto" and info["precision"] == "f32"
    assert info["arch"] in ("cpu", "cuda", "vulkan")
    tiers = info["checkpoint_tiers"]
    assert set(tiers) == {"memory", "host", "disk"}
    assert tiers["disk"]["free_bytes"] > 0 and tiers["disk"]["write_bytes_per_second"] > 0
    assert tiers["host"]["total_bytes"] > 0 and os.path.isdir(tiers["disk"]["directory"])
    res = cli("list")
    assert "chain" in res.stdout.split()
    lines = {line.split()[0]: line for line in res.stdout.splitlines()}
    assert "FWI of the layered model (60 x 160 cells at 20 m)" in lines["layered"]
    assert "needs --data DIR" in lines["overthrust"] and "needs" not in lines["marmousi2"]
    assert "truss bridge" in lines["spring-bridge"]


def test_python_m_diffsim_and_version() -> None:
    import diffsim

    res = subprocess.run([sys.executable, "-m", "diffsim", "--version"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == f"diffsim {diffsim.__version__}"
    assert (ROOT / "diffsim" / "py.typed").is_file()


def test_cli_bad_options() -> None:
    res = cli("demo", "--checkpoint", "revolve:3", "--smoke")
    assert res.returncode == 2
    assert "use all, uniform:K, binomial:S, twolevel:S,D or budget:SIZE" in res.stderr
    res = cli("demo", "--scenario", "nope", "--smoke")
    assert res.returncode == 2
    assert "unknown scenario 'nope'; known scenarios: camembert, chain" in res.stderr
    res = cli("demo", "--scenario", "layered", "--smoke")
    assert res.returncode == 2
    assert "demo runs a chain scenario; 'layered' is a fwi scenario: use `diffsim run layered`" \
        in res.stderr
