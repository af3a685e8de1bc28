"""Scenarios: registry, typed changes, TOML round trips, atomic files, `diffsim run`."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from diffsim import scenarios
from diffsim.io import dump_toml, read_json, write_json, write_npy


@pytest.mark.parametrize("name", scenarios.names())
def test_every_registered_scenario_round_trips_through_toml(name: str, tmp_path: pathlib.Path
                                                            ) -> None:
    scenario = scenarios.get(name)
    path = tmp_path / f"{name}.toml"
    scenario.save(path)
    assert scenarios.load(path) == scenario
    assert scenarios.resolve(str(path)) == scenario
    smoke = scenario.smoke()
    assert type(smoke) is type(scenario)


def test_settings_are_typed_and_checked() -> None:
    chain = scenarios.get("chain")
    assert chain.with_settings(["masses=8", "noise=0.01"]).masses == 8
    assert chain.with_settings(["dt=1"]).dt == 1.0 and isinstance(chain.with_settings(["dt=1"]).dt, float)
    with pytest.raises(ValueError, match="has no field 'mases'; fields: masses"):
        chain.with_settings(["mases=3"])
    with pytest.raises(ValueError, match="masses=1.5 must be an integer"):
        chain.with_settings(["masses=1.5"])
    with pytest.raises(ValueError, match="expected key=value"):
        chain.with_settings(["masses"])
    with pytest.raises(ValueError, match="dt=-0.1 must be positive"):
        chain.with_(dt=-0.1)


def test_load_rejects_bad_files(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('class = "ChainScenario"\nmasses = 8\ncolour = "red"\n')
    with pytest.raises(ValueError, match="unknown key\\(s\\) 'colour'; allowed keys: masses"):
        scenarios.load(bad)
    bad.write_text('class = "Nope"\n')
    with pytest.raises(ValueError, match="key 'class' is 'Nope'; allowed values: .*ChainScenario"):
        scenarios.load(bad)
    bad.write_text("masses = = 3\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        scenarios.load(bad)
    bad.write_text("masses = 3\n")
    with pytest.raises(ValueError, match="has no 'class' key: add a line such as "
                       "class = \"FwiScenario\".*diffsim show NAME > file.toml"):
        scenarios.load(bad)


def test_atomic_writers_leave_no_temporary_files(tmp_path: pathlib.Path) -> None:
    write_json(tmp_path / "a.json", {"x": np.float32(1.5), "y": np.arange(3)})
    write_npy(tmp_path / "m.npy", np.eye(3))
    assert read_json(tmp_path / "a.json") == {"x": 1.5, "y": [0, 1, 2]}
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), np.eye(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "m.npy"]
    with pytest.raises(TypeError):
        write_json(tmp_path / "b.json", {"x": object()})
    assert not (tmp_path / "b.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "m.npy"]
    # files follow the umask like open() would (the temporary file starts at 0600)
    mask = os.umask(0o022)
    os.umask(mask)
    for name in ("a.json", "m.npy"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask


def test_the_optimisers_stop_reason_is_a_sentence() -> None:
    from diffsim.optim import stop_reason

    assert stop_reason("STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT") == (
        "the iteration limit was reached")
    assert stop_reason("CONVERGENCE: REL_REDUCTION_OF_F_<=_FACTOR*EPSMCH").startswith("converged")
    assert stop_reason("CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL").startswith("converged")
    assert stop_reason("STOP: SOMETHING NEW") == "something new"


def test_dump_toml_tables_and_lists() -> None:
    import tomllib

    text = dump_toml({"a": 1, "b": [1.5, 2.0], "c": None, "t": {"x": "s", "y": True}})
    assert tomllib.loads(text) == {"a": 1, "b": [1.5, 2.0], "t": {"x": "s", "y": True}}


def test_cli_run_chain_from_a_toml_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "mine.toml"
    scenarios.get("chain").with_(masses=5, steps=40).save(path)
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "diffsim.cli", "run", str(path), "--out", str(out),
                          "--iterations", "2", "--quiet", "--set", "noise=0.0"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_misfit"] < summary["initial_misfit"]
    assert res.stdout == ""
    res = subprocess.run([sys.executable, "-m", "diffsim.cli", "run", "chain", "--set", "masses=x"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "masses='x' must be an integer" in res.stderr


def test_fields_that_do_not_apply_are_not_shown_and_refused() -> None:
    real = scenarios.get("marmousi2")
    assert "shape =" not in real.to_toml() and "shape =" in scenarios.get("layered").to_toml()
    with pytest.raises(ValueError, match=r"shape=\[30, 30\] applies to the built-in models "
                       r"\(layered, camembert\) only; marmousi2 keeps its own grid"):
        real.with_settings(["shape=[30, 30]"])
    assert scenarios.get("layered").with_settings(["shape=[30, 30]"]).shape == (30, 30)


def test_cli_and_python_share_the_runtime_defaults() -> None:
    import inspect

    import diffsim
    from diffsim.cli import _parser

    init = inspect.signature(diffsim.init).parameters
    for argv in (["info"], ["run", "layered"], ["demo"]):
        assert _parser().parse_args(argv).arch == init["arch"].default == "auto"
    assert _parser().parse_args(["info"]).precision == init["precision"].default == "f32"
    # `run` and `demo` take the precision the scenario declares unless told otherwise
    assert _parser().parse_args(["run", "layered"]).precision is None
    assert _parser().parse_args(["demo", "--precision", "f64"]).precision == "f64"


def test_the_compiling_note_appears_only_with_an_empty_kernel_cache(
        monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    import taichi as ti

    from diffsim import _runtime, cli

    folder, entries = _runtime.kernel_cache()   # the runtime the tests initialised
    assert folder == pathlib.Path(ti.lang.impl.current_cfg().offline_cache_file_path)
    assert entries == len(list(folder.glob("*.tic")))
    lines: list[str] = []
    monkeypatch.setattr(_runtime, "kernel_cache", lambda: (tmp_path, 0))
    cli._compiling_note(lines.append)
    assert len(lines) == 1 and "compiling kernels" in lines[0] and str(tmp_path) in lines[0]
    monkeypatch.setattr(_runtime, "kernel_cache", lambda: (tmp_path, 12))
    cli._compiling_note(lines.append)
    assert len(lines) == 1


def test_figures_name_units_stages_and_the_shot(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: pathlib.Path) -> None:
    from diffsim.viz import figures

    saved: list = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path, **kw: saved.append(fig))
    figures.gradient_figure(tmp_path / "g.png", np.ones((4, 6)), 10.0)
    assert "per m/s" in saved[-1].axes[1].get_ylabel()            # the colour bar's units
    history = [{"iteration": i, "loss": 1.0 / (i + 1), "stage": int(i >= 3),
                "cutoff_hz": 4.0 if i < 3 else 8.0, "model_error": 0.1} for i in range(6)]
    figures.loss_figure(tmp_path / "l.png", history)
    texts = [t.get_text() for t in saved[-1].axes[0].texts]
    assert any("stage 1" in t and "4 Hz" in t for t in texts), texts
    assert any("stage 2" in t and "8 Hz" in t for t in texts), texts
    fig = figures.wavefield_frame(np.zeros((4, 6)), np.full((4, 6), 2000.0), 10.0, 0.25,
                                  clip=1.0, shot=3, source=(10.0, 30.0))
    assert fig.axes[0].get_title().startswith("shot 3, t = 0.250 s")
