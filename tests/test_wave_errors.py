"""Bad acoustic inputs give errors that name the value, the allowed range and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from diffsim.acoustic import CPML, Sponge
from diffsim.wave import AcousticStepper, misfit_gradient, ricker, simulate

V = np.full((20, 30), 2000.0)
H, DT, NT = 10.0, 1e-3, 40
W = ricker(15.0, DT, NT)
SRC = np.array([[50.0, 100.0]])
REC = np.array([[20.0, 50.0], [20.0, 150.0]])


def run(**changes):
    args = dict(velocity=V, spacing=H, dt=DT, wavelet=W, sources=SRC, receivers=REC)
    args.update(changes)
    return simulate(args.pop("velocity"), args.pop("spacing"), args.pop("dt"), args.pop("wavelet"),
                    args.pop("sources"), args.pop("receivers"), **args)


def test_cfl() -> None:
    with pytest.raises(ValueError, match=r"dt=0.01 s exceeds the stability \(CFL\) limit .* use dt <="):
        run(dt=0.01)


def test_velocity_values() -> None:
    bad = V.copy()
    bad[3, 4] = -1.0
    with pytest.raises(ValueError, match=r"velocity must be > 0 m/s; found -1.0 at index \(3, 4\)"):
        run(velocity=bad)
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"velocity is not finite at index \(3, 4\)"):
        run(velocity=bad)
    with pytest.raises(ValueError, match="velocity must be \\[z, x\\] or \\[z, y, x\\]"):
        run(velocity=np.ones(5))


def test_positions_outside_grid() -> None:
    with pytest.raises(ValueError, match="sources lie outside the grid on axis 1: .* spans 0 to 290 m"):
        run(sources=np.array([[50.0, 400.0]]))
    with pytest.raises(ValueError, match="receivers lie outside the grid on axis 0"):
        run(receivers=np.array([[-5.0, 10.0]]))


def test_shapes_and_options() -> None:
    with pytest.raises(ValueError, match="wavelet has shape"):
        run(wavelet=np.ones((3, NT)))
    with pytest.raises(ValueError, match="order=3 is not supported; choose 2, 4, 6 or 8"):
        run(order=3)
    with pytest.raises(ValueError, match="pml_width=.* must be a non-negative int or 4 ints"):
        run(pml_width=[1, 2])
    with pytest.raises(ValueError, match="spacing=.* must be a positive number of metres"):
        run(spacing=-1.0)
    with pytest.raises(ValueError, match="observed has shape \\(1, 2, 3\\); expected"):
        misfit_gradient(V, H, DT, W, SRC, REC, np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="boundary='cpml'; choose 'pml' .* or 'sponge'"):
        run(boundary="cpml")
    with pytest.raises(ValueError, match="adjoint='autodiff' is not available with boundary='sponge'"):
        AcousticStepper(V, H, DT, W, SRC, REC, boundary="sponge", adjoint="autodiff")


def test_boundary_objects_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"pml_width=10 given together with boundary=CPML\(.*put the "
                                         r"settings in the boundary object"):
        run(boundary=CPML(width=5), pml_width=10)
    with pytest.raises(ValueError, match="CPML width=-3 must be a non-negative int or 4 ints"):
        run(boundary=CPML(width=-3))
    with pytest.raises(ValueError, match=r"Sponge width=\[1, 2, 3\] must be a non-negative int"):
        run(boundary=Sponge(width=[1, 2, 3]))
    with pytest.raises(ValueError, match="CPML velocity=-1.0 must be a positive number or None"):
        CPML(velocity=-1.0)
    with pytest.raises(ValueError, match="pml_frequency=0 must be a positive number or None"):
        run(pml_frequency=0)
    with pytest.raises(ValueError, match="pml_velocity=2000.0 tunes a C-PML; boundary='sponge' has no"):
        run(boundary="sponge", pml_velocity=2000.0)
    with pytest.raises(TypeError, match="boundary=20 must be CPML"):
        run(boundary=20)


@pytest.mark.slow   # 20-30 s cold: two boundary kinds, two gradients each
def test_boundary_objects_equal_the_named_boundaries_bit_for_bit() -> None:
    obs = np.zeros((1, 2, NT))
    for name, obj, options in (("pml", CPML(width=[0, 7, 9, 11], velocity=2500.0, frequency=12.0),
                                {"pml_width": [0, 7, 9, 11], "pml_velocity": 2500.0,
                                 "pml_frequency": 12.0}),
                               ("sponge", Sponge(width=[5, 7, 9, 11]), {"pml_width": [5, 7, 9, 11]})):
        a = misfit_gradient(V, H, DT, W, SRC, REC, obs, order=4, boundary=name, **options)
        b = misfit_gradient(V, H, DT, W, SRC, REC, obs, order=4, boundary=obj)
        np.testing.assert_array_equal(a.traces, b.traces)
        np.testing.assert_array_equal(a.gradient, b.gradient)
        assert np.abs(a.traces).max() > 0


def test_under_resolved_warning() -> None:
    with pytest.warns(UserWarning, match="cells per wavelength at the wavelet's dominant frequency"):
        run(wavelet=ricker(60.0, DT, NT))


def test_set_velocity_checks_cfl_and_shape() -> None:
    from diffsim.wave import AcousticStepper

    stepper = AcousticStepper(V, H, DT, W, SRC, REC, order=4)
    with pytest.raises(ValueError, match="exceeds the stability \\(CFL\\) limit"):
        stepper.set_velocity(V * 10.0)
    with pytest.raises(ValueError, match="velocity has shape \\(3, 3\\); this stepper's grid is"):
        stepper.set_velocity(np.ones((3, 3)))
    stepper.destroy()
