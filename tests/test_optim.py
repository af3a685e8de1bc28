"""The one optimisation driver: methods, history, evaluation store, resume by replay."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from diffsim.optim import LBFGSB, Adam, EvaluationStore, History, minimize


def rosenbrock(x: np.ndarray) -> tuple[float, np.ndarray]:
    a, b = x[:-1], x[1:]
    value = float(np.sum(100.0 * (b - a * a) ** 2 + (1 - a) ** 2))
    grad = np.zeros_like(x)
    grad[:-1] += -400.0 * a * (b - a * a) - 2.0 * (1 - a)
    grad[1:] += 200.0 * (b - a * a)
    return value, grad


class Crash(RuntimeError):
    pass


def counting(fun, crash_at: int | None = None):
    calls = {"n": 0}

    def wrapped(x: np.ndarray) -> tuple[float, np.ndarray]:
        calls["n"] += 1
        if crash_at is not None and calls["n"] == crash_at:
            raise Crash("injected")
        return fun(x)

    return wrapped, calls


def test_lbfgsb_minimises_and_records_every_iteration(tmp_path: pathlib.Path) -> None:
    lines: list[str] = []
    history = History(tmp_path / "history.json", total=200, echo=lines.append, label="rb")
    result = minimize(rosenbrock, np.full(4, -1.0), method=LBFGSB(), iterations=200,
                      history=history,
                      metrics=lambda n, x, v, g: {"distance": float(np.linalg.norm(x - 1))})
    np.testing.assert_allclose(result.x, 1.0, atol=1e-4)
    assert result.message.startswith("converged")
    saved = json.loads((tmp_path / "history.json").read_text())
    assert [h["iteration"] for h in saved] == list(range(result.iterations + 1))
    assert saved[0]["loss"] == rosenbrock(np.full(4, -1.0))[0]          # iteration 0: the start
    assert saved[-1]["distance"] < 1e-3
    assert all(a["seconds"] <= b["seconds"] for a, b in zip(saved, saved[1:], strict=False))
    assert lines[0].startswith("rb: [") and f"/{200}" in lines[0]
    assert history.best()["loss"] == min(h["loss"] for h in saved)


def test_adam_stays_inside_the_bounds_and_scale_only_changes_the_step() -> None:
    def bowl(x: np.ndarray) -> tuple[float, np.ndarray]:
        return float(np.sum((x - 3.0) ** 2)), 2.0 * (x - 3.0)

    result = minimize(bowl, np.zeros(3), method=Adam(lr=0.5), iterations=40,
                      history=History(echo=None), bounds=(np.full(3, -1.0), np.full(3, 2.0)))
    np.testing.assert_allclose(result.x, 2.0)                  # pressed against the upper bound
    assert result.iterations == 40
    # Adam is invariant to the gradient's scale (up to eps): the same path
    scaled = minimize(bowl, np.zeros(3), method=Adam(lr=0.5), iterations=40,
                      history=History(echo=None), bounds=(np.full(3, -1.0), np.full(3, 2.0)),
                      scale=1e3)
    np.testing.assert_allclose(scaled.x, result.x, rtol=1e-9)


@pytest.mark.parametrize("method", [LBFGSB(), Adam(lr=0.05)], ids=["lbfgsb", "adam"])
def test_a_crashed_run_resumes_by_replay_to_the_same_result(tmp_path: pathlib.Path,
                                                             method: LBFGSB | Adam) -> None:
    x0 = np.array([-1.2, 1.0, 0.5])

    def run(folder: pathlib.Path, fun, resume: bool) -> tuple:
        store = EvaluationStore(folder / "evaluations", tag="rb", fresh=not resume)
        history = History(folder / "history.json", resume=resume, echo=None)
        return minimize(store.objective(fun), x0, method=method, iterations=12,
                        history=history, bounds=(np.full(3, -2.0), np.full(3, 2.0))), store, history

    whole, _, whole_history = run(tmp_path / "whole", rosenbrock, False)
    crashing, _ = counting(rosenbrock, crash_at=8)
    with pytest.raises(Crash):
        run(tmp_path / "cut", crashing, False)
    done = json.loads((tmp_path / "cut" / "history.json").read_text())
    assert 1 <= len(done) < len(whole_history.entries)
    fun, calls = counting(rosenbrock)
    resumed, store, history = run(tmp_path / "cut", fun, True)
    np.testing.assert_array_equal(resumed.x, whole.x)
    assert [h["loss"] for h in history.entries] == [h["loss"] for h in whole_history.entries]
    assert store.computed == calls["n"] < len(list((tmp_path / "whole" / "evaluations").iterdir()))
    # replayed iterations keep the time they were first recorded at
    assert [h["seconds"] for h in history.entries[:len(done)]] == [h["seconds"] for h in done]


def test_the_store_keeps_problems_apart_and_a_fresh_run_forgets(tmp_path: pathlib.Path) -> None:
    def square(x: np.ndarray) -> tuple[float, np.ndarray]:
        return float(x @ x), 2 * x

    def shifted(x: np.ndarray) -> tuple[float, np.ndarray]:
        return float(x @ x) + 1.0, 2 * x

    x = np.array([1.0, 2.0])
    a = EvaluationStore(tmp_path, tag="a").objective(square)
    b = EvaluationStore(tmp_path, tag="b").objective(shifted)
    assert a(x)[0] == 5.0 and b(x)[0] == 6.0                   # same point, other problem
    again = EvaluationStore(tmp_path, tag="a")
    assert again.objective(shifted)(x)[0] == 5.0 and again.computed == 0   # read back
    fresh = EvaluationStore(tmp_path, tag="a", fresh=True)
    assert fresh.objective(shifted)(x)[0] == 6.0 and fresh.computed == 1
    assert len(list(tmp_path.glob("*.npz"))) == 2               # b's entry was left alone
    memory = EvaluationStore(None)
    fun, calls = counting(square)
    wrapped = memory.objective(fun)
    wrapped(x), wrapped(2 * x), wrapped(x)
    assert calls["n"] == 2


def test_bad_settings_say_what_and_how() -> None:
    with pytest.raises(ValueError, match="iterations=-1 must be >= 0"):
        minimize(rosenbrock, np.zeros(2), method=LBFGSB(), iterations=-1, history=History(echo=None))
    with pytest.raises(ValueError, match="scale=0.0 must be positive"):
        minimize(rosenbrock, np.zeros(2), method=LBFGSB(), iterations=1, history=History(echo=None),
                 scale=0.0)
    with pytest.raises(ValueError, match="lr=0 must be positive"):
        Adam(lr=0)
    with pytest.raises(ValueError, match="beta2=1.0 must be in"):
        Adam(lr=0.1, beta2=1.0)
    with pytest.raises(ValueError, match="max_line_search=0"):
        LBFGSB(max_line_search=0)


def test_each_point_is_evaluated_once_even_without_a_store() -> None:
    fun, calls = counting(rosenbrock)
    seen: list[bytes] = []

    def recording(x: np.ndarray) -> tuple[float, np.ndarray]:
        seen.append(np.asarray(x, dtype=np.float64).tobytes())
        return fun(x)

    minimize(recording, np.full(3, -1.0), method=LBFGSB(), iterations=10,
             history=History(echo=None))
    repeats = sum(1 for a, b in zip(seen, seen[1:], strict=False) if a == b)
    assert repeats == 0 and calls["n"] == len(seen)
