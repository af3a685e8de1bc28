"""Every bad input to the mass-spring front-end fails with a message naming the value and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from diffsim.springs import (
    CenterOfMass,
    FinalPosition,
    SpringSimulation,
    SpringSystem,
    Tracking,
    simulate,
    value_and_grad,
)

POS = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
SPRINGS = [[0, 1], [1, 2], [0, 2]]


def make(**changes) -> SpringSystem:
    kwargs = dict(stiffness=10.0, mass=1.0)
    kwargs.update(changes)
    positions = kwargs.pop("positions", POS)
    springs = kwargs.pop("springs", SPRINGS)
    return SpringSystem(positions, springs, **kwargs)


@pytest.mark.parametrize(("changes", "error", "match"), [
    (dict(springs=[[0, 1], [1, 3]]), ValueError,
     r"spring 1 joins particles \[1, 3\], but particle indices must lie in \[0, 2\]"),
    (dict(springs=[[0, 1], [-1, 2]]), ValueError, r"spring 1 joins particles \[-1, 2\]"),
    (dict(springs=[[0, 1], [2, 2]]), ValueError, "spring 1 is a self-loop: it joins particle 2 to itself"),
    (dict(springs=[[0, 1, 2]]), ValueError, r"springs must be an integer array \[m, 2\]"),
    (dict(springs=[[0.5, 1.0]]), TypeError, "springs must hold integer particle indices"),
    (dict(positions=[[0.0, 0.0], [0.0, 0.0], [0.0, 1.0]]), ValueError,
     "spring 0 joins particles \\[0, 1\\], which are at the same position"),
    (dict(mass=[1.0, 0.0, 1.0]), ValueError, "mass must be > 0 everywhere; value 0.0 at index 1"),
    (dict(mass=-2.0), ValueError, "mass must be > 0 everywhere"),
    (dict(stiffness=[10.0, -1.0, 10.0]), ValueError,
     "stiffness must be >= 0 everywhere; value -1.0 at index 1"),
    (dict(stiffness=[10.0, 10.0]), ValueError,
     r"stiffness has shape \(2,\); expected a scalar or \(3,\) \(one per spring\)"),
    (dict(damping=-0.1), ValueError, "damping must be >= 0 everywhere"),
    (dict(rest_length=[1.0, 0.0, 1.0]), ValueError, "rest_length must be > 0 everywhere"),
    (dict(positions=[[0.0, np.nan], [1.0, 0.0], [0.0, 1.0]]), ValueError,
     r"positions of particle 0 is \[0.0, nan\]: NaN or Inf"),
    (dict(positions=[[0.0], [1.0], [2.0]]), ValueError,
     r"positions must be \[n, d\] with n >= 1 and d = 2 or 3"),
    (dict(stiffness=[10.0, np.inf, 10.0]), ValueError, "stiffness contains NaN or Inf"),
    (dict(fixed=[1, 0, 0]), ValueError, r"fixed must be a bool array \[n\] = \[3\]"),
    (dict(gravity=(0.0, -9.8, 0.0)), ValueError, "gravity must be a finite 2-vector"),
    (dict(ground=float("nan")), ValueError, "ground=nan must be a finite height"),
    (dict(friction=-0.5), ValueError, "friction=-0.5 must be a finite number >= 0"),
    (dict(actuators=[0, -2, -1]), ValueError, "actuators must be an integer array"),
    (dict(stiffness="stiff"), TypeError, "stiffness must be a number or an array of numbers"),
])
def test_bad_system(changes: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make(**changes)


def test_unstable_dt_gives_the_estimate() -> None:
    system = make(stiffness=[10.0, 4000.0, 10.0], mass=[1.0, 0.01, 1.0])
    dt_max = system.stable_dt()
    assert 0 < dt_max < 2 / np.sqrt(2 * 4000 / 0.01)  # at least the single-spring limit
    with pytest.raises(ValueError, match=(
            r"dt=0.01 s is unstable for semi-implicit Euler: the estimate is dt < "
            r"0.002233 s .*at particle 1.*stiffest spring k = 4000 N/m, lightest mass m = 0.01 kg")):
        simulate(system, 10, 0.01)
    simulate(system, 10, 0.9 * dt_max)  # below the estimate: runs
    with pytest.raises(ValueError, match="dt=0 must be a positive number of seconds"):
        simulate(system, 10, 0)


def test_update_rechecks_stability() -> None:
    with SpringSimulation(make(), 10, 0.01) as sim:
        with pytest.raises(ValueError, match="is unstable for semi-implicit Euler"):
            sim.update(stiffness=1e6)
        with pytest.raises(ValueError, match=r"cannot update \['gravity'\]"):
            sim.update(gravity=(0.0, 1.0))


def test_blow_up_is_reported_with_its_step() -> None:
    # two particles on a zero-stiffness spring meet exactly after 4 steps: the spring has
    # no direction at step 4, so step 5 is the first non-finite state
    system = SpringSystem([[0.0, 0.0], [1.0, 0.0]], [[0, 1]], stiffness=0.0, damping=0.0)
    v0 = [[1.0, 0.0], [-1.0, 0.0]]
    with pytest.raises(FloatingPointError, match=r"became NaN or Inf at step 5 \(t = 0.625 s\)"):
        simulate(system, 8, 0.125, v0)
    with pytest.raises(FloatingPointError, match="at step 5"):
        value_and_grad(system, 8, 0.125, target=[[0.0, 0.0], [1.0, 0.0]], velocities=v0)


def test_bad_run_arguments() -> None:
    system = make(actuators=[0, -1, -1])
    with pytest.raises(ValueError, match="steps=0 must be an int >= 1"):
        simulate(system, 0, 0.01)
    with pytest.raises(ValueError, match=r"velocities has shape \(2, 2\); expected \(3, 2\)"):
        simulate(system, 5, 0.01, [[0.0, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match=r"actuation has shape \(4, 1\); expected a scalar or \(5, 1\)"):
        simulate(system, 5, 0.01, actuation=np.zeros((4, 1)))
    with pytest.raises(ValueError, match="actuation must be > -1 everywhere"):
        simulate(system, 5, 0.01, actuation=np.full((5, 1), -1.0))
    with pytest.raises(ValueError, match="actuation was given but the system has no actuated springs"):
        simulate(make(), 5, 0.01, actuation=np.zeros((5, 1)))
    with pytest.raises(ValueError, match="give exactly one of target"):
        value_and_grad(system, 5, 0.01)
    with pytest.raises(ValueError, match="wrt contains 'spring'; choose from stiffness, rest_length"):
        value_and_grad(system, 5, 0.01, target=POS, wrt=("spring",))
    with pytest.raises(ValueError, match="wrt contains 'actuation' but the system has no actuated"):
        value_and_grad(make(), 5, 0.01, target=POS, wrt=("actuation",))
    with pytest.raises(ValueError, match=r"target has shape \(2, 2\); expected \(3, 2\)"):
        value_and_grad(system, 5, 0.01, target=POS[:2])
    with pytest.raises(ValueError, match=r"observed has shape \(5, 3, 2\); expected \(6, 3, 2\)"):
        value_and_grad(system, 5, 0.01, loss=Tracking(np.zeros((5, 3, 2))))
    with pytest.raises(ValueError, match=r"direction has shape \(3,\); expected \(2,\)"):
        value_and_grad(system, 5, 0.01, loss=CenterOfMass((1.0, 0.0, 0.0)))
    with pytest.raises(ValueError, match=r"particles \[7\] must be indices in \[0, 2\]"):
        value_and_grad(system, 5, 0.01, loss=FinalPosition([[0.0, 0.0]], particles=[7]))
    with pytest.raises(TypeError, match=r"the loss returned float; a loss must return \(value, cot"):
        value_and_grad(system, 5, 0.01, loss=lambda x: 0.0)
    with pytest.raises(TypeError, match="loss must be a diffsim.losses loss or a callable"):
        value_and_grad(system, 5, 0.01, loss="final")
    with pytest.raises(ValueError, match="adjoint='jax'; choose 'hand' or 'autodiff'"):
        value_and_grad(system, 5, 0.01, target=POS, adjoint="jax")
