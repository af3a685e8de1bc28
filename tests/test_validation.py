"""Tape(validate=True) turns an overwritten-input bug into a loud error (Taichi debug mode)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

import diffsim
from diffsim import Tape

HERE = pathlib.Path(__file__).parent


def test_validation_catches_in_place_overwrite() -> None:
    res = subprocess.run([sys.executable, str(HERE / "validation_case.py"), str(HERE)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = {line.split()[0]: line for line in res.stdout.splitlines() if line}
    # Without validation the gradient is silently wrong ...
    assert float(lines["WRONG-WITHOUT-VALIDATION"].split()[1]) > 1e-3
    # ... with validation the step fails and names the rule.
    assert "DETECTED" in lines, res.stdout
    assert "kernel 'scale_in_place' of InPlace overwrote a value" in lines["DETECTED"]
    assert "Breaks the global data access rule" in lines["DETECTED"]
    # A correct stepper passes validation unchanged.
    assert float(lines["CHAIN-VALID"].split()[1]) == 0.0


def test_validate_needs_debug_mode() -> None:
    from conftest import chain_problem

    from diffsim.chain import OscillatorChain

    kwargs, _ = chain_problem(steps=3)
    chain = OscillatorChain(**kwargs)
    assert not diffsim.info().debug
    with pytest.raises(RuntimeError, match="debug=True"):
        Tape(chain, validate=True)
    chain.destroy()
