"""docs/from-deepwave.md: a Deepwave shot gather reproduced from the same inputs.

Skipped when Deepwave is not installed (it is not a dependency of diffsim).
"""

from __future__ import annotations

import numpy as np
import pytest

deepwave = pytest.importorskip("deepwave", reason="Deepwave is not installed")
import torch  # noqa: E402

from diffsim import acoustic  # noqa: E402


def test_the_mapping_reproduces_a_deepwave_gather() -> None:
    nz, nx, h, dt, nt = 60, 80, 10.0, 1e-3, 300
    v = 2000.0 + 300.0 * np.random.default_rng(0).random((nz, nx))
    w = acoustic.ricker(15.0, dt, nt)
    f = np.stack([np.stack([w, 0.5 * np.roll(w, 20)]), np.stack([np.roll(w, 5), w])])
    src_cells = np.array([[[20, 30], [22, 35]], [[10, 40], [12, 44]]])
    rec_cells = np.array([[[5, 10], [40, 30], [25, 70]], [[5, 12], [41, 33], [26, 71]]])
    pml = [10, 20, 15, 25]
    reference = deepwave.scalar(torch.tensor(v), h, dt, source_amplitudes=torch.tensor(f),
                                source_locations=torch.tensor(src_cells),
                                receiver_locations=torch.tensor(rec_cells), accuracy=8,
                                pml_width=pml, pml_freq=15.0)[-1].numpy()
    v_src = v[src_cells[..., 0], src_cells[..., 1]]
    q = -(v_src ** 2 * h * h)[..., None] * f
    traces = acoustic.simulate(v, h, dt, q, src_cells * h, rec_cells * h, order=8,
                               boundary=acoustic.CPML(width=pml, frequency=15.0),
                               interpolation="nearest")
    assert traces.shape == reference.shape == (2, 3, nt)
    assert np.linalg.norm(traces - reference) <= 5e-3 * np.linalg.norm(reference)
    # away from the absorbing layers (before their reflections arrive) the two agree closely
    early = slice(0, 120)
    assert (np.linalg.norm(traces[0, 1, early] - reference[0, 1, early])
            <= 1e-6 * np.linalg.norm(reference[0, 1, early]))


def test_the_mapping_reproduces_deepwave_scalar_born() -> None:
    nz, nx, h, dt, nt = 60, 80, 10.0, 1e-3, 300
    rng = np.random.default_rng(0)
    v = 2000.0 + 300.0 * rng.random((nz, nx))
    scatter = np.zeros((nz, nx))
    scatter[35:40, 30:50] = 100.0
    w = acoustic.ricker(15.0, dt, nt)
    f = np.stack([np.stack([w, 0.5 * np.roll(w, 20)]), np.stack([np.roll(w, 5), w])])
    src_cells = np.array([[[20, 30], [22, 35]], [[10, 40], [12, 44]]])
    rec_cells = np.array([[[5, 10], [40, 30], [25, 70]], [[5, 12], [41, 33], [26, 71]]])
    pml = [10, 20, 15, 25]
    out = deepwave.scalar_born(torch.tensor(v), h, dt, scatter=torch.tensor(scatter),
                               source_amplitudes=torch.tensor(f),
                               source_locations=torch.tensor(src_cells),
                               receiver_locations=torch.tensor(rec_cells), accuracy=8,
                               pml_width=pml, pml_freq=15.0)
    reference = out.receivers["u"].numpy()
    v_src = v[src_cells[..., 0], src_cells[..., 1]]
    q = -(v_src ** 2 * h * h)[..., None] * f
    traces = acoustic.born(v, scatter, h, dt, q, src_cells * h, rec_cells * h, order=8,
                           boundary=acoustic.CPML(width=pml, frequency=15.0),
                           interpolation="nearest")
    assert traces.shape == reference.shape == (2, 3, nt)
    assert np.linalg.norm(traces - reference) <= 1e-4 * np.linalg.norm(reference)
