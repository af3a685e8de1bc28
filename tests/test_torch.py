"""diffsim.torch: simulations as differentiable torch functions, and the wrapping contract.

Every item of the contract has a test here: gradients (``torch.autograd.gradcheck`` in
float64 on a wave problem and a spring system, a loss only torch computes against
central differences, a batched call), precision, non-contiguous tensors, gradients for
some inputs only, reuse of the kept simulation, once-differentiable, the checkpoint
keyword, and the nn.Module form.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from springs_cases import contact_inputs, contact_system

import diffsim.torch as dtorch
from diffsim import Binomial, StoreAll, acoustic, springs
from diffsim._interop import KEPT

NT, DT, H = 40, 1e-3, 10.0


def wave_case(shots: int = 1) -> dict:
    shape = (8, 10)
    rng = np.random.default_rng(0)
    v = 2000.0 + 40.0 * rng.standard_normal(shape)
    src = np.array([[20.0, 20.0 + 30.0 * s] for s in range(shots)])
    rec = np.array([[10.0, 10.0], [30.0, 60.0], [50.0, 80.0]])
    w = acoustic.ricker(25.0, DT, NT, peak_time=0.03)
    return {"v": v, "w": w, "src": src, "rec": rec,
            "options": {"order": 2, "pml_width": 3, "pml_frequency": 25.0}}


def traces(case: dict, v: torch.Tensor, w: torch.Tensor | np.ndarray, **kw) -> torch.Tensor:
    return dtorch.acoustic(v, H, DT, w, case["src"], case["rec"], **case["options"], **kw)


def test_gradcheck_wave_velocity_and_wavelet() -> None:
    case = wave_case()
    v = torch.tensor(case["v"], dtype=torch.float64, requires_grad=True)
    w = torch.tensor(case["w"], dtype=torch.float64, requires_grad=True)
    scale = float(traces(case, v, w).detach().abs().max())
    assert scale > 0

    def f(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return traces(case, v, w) / scale      # O(1) outputs, so the tolerances mean something

    assert torch.autograd.gradcheck(f, (v, w), eps=1e-4, atol=1e-8, rtol=1e-5)


def test_gradcheck_springs_parameters_and_initial_state() -> None:
    system = springs.SpringSystem([[0.0, 1.0], [0.3, 1.0], [0.15, 1.25]], [[0, 1], [1, 2], [0, 2]],
                                  stiffness=[200.0, 150.0, 180.0], damping=0.2, mass=0.1,
                                  gravity=(0.0, -9.81))
    k = torch.tensor([200.0, 150.0, 180.0], dtype=torch.float64, requires_grad=True)
    v0 = torch.tensor([[0.1, 0.0], [0.0, -0.2], [0.05, 0.1]], dtype=torch.float64,
                      requires_grad=True)

    def f(k: torch.Tensor, v0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = dtorch.springs(system, 15, 2e-3, stiffness=k, velocities=v0)
        return out["positions"], out["velocities"]

    # eps in N/m and m/s: smaller steps on a 200 N/m stiffness drown in roundoff
    assert torch.autograd.gradcheck(f, (k, v0), eps=1e-3, atol=1e-9, rtol=1e-5)


def test_a_loss_only_torch_computes_matches_central_differences() -> None:
    """Normalised cross-correlation of the gathers, through the exact adjoint."""
    case = wave_case(shots=2)
    observed = traces(case, torch.tensor(case["v"] * 1.01), torch.tensor(case["w"])).detach()

    def ncc(v: torch.Tensor) -> torch.Tensor:
        d = traces(case, v, torch.tensor(case["w"]))
        a, b = d.reshape(d.shape[0], -1), observed.reshape(d.shape[0], -1)
        return -(a * b).sum(1).div(a.norm(dim=1) * b.norm(dim=1)).sum()

    v = torch.tensor(case["v"], requires_grad=True)
    ncc(v).backward()
    direction = torch.tensor(np.random.default_rng(1).standard_normal(case["v"].shape))
    h = 1e-2
    with torch.no_grad():
        fd = (ncc(v + h * direction) - ncc(v - h * direction)) / (2 * h)
    exact = float((v.grad * direction).sum())
    assert abs(exact) > 0 and abs(float(fd) - exact) <= 1e-6 * abs(exact)


def test_a_batched_call_is_the_sum_of_single_shots() -> None:
    case = wave_case(shots=3)
    v = torch.tensor(case["v"], requires_grad=True)
    d = traces(case, v, case["w"])
    assert d.shape == (3, 3, NT)
    (d ** 2).sum().backward()
    total = torch.zeros_like(v)
    for s in range(3):
        one = dict(case, src=case["src"][s:s + 1])
        vs = torch.tensor(case["v"], requires_grad=True)
        ds = traces(one, vs, case["w"])
        torch.testing.assert_close(ds[0], d[s].detach(), rtol=0, atol=0)
        (ds ** 2).sum().backward()
        total += vs.grad
    torch.testing.assert_close(v.grad, total, rtol=1e-12, atol=0)


def test_the_gradient_is_the_simulations_vjp_bit_for_bit() -> None:
    """No silent zeros: what torch gets is exactly Simulation.vjp of the same cotangent."""
    case = wave_case(shots=2)
    with acoustic.Simulation(case["v"], H, DT, case["w"], case["src"], case["rec"],
                             **case["options"]) as sim:
        f = dtorch.function(sim, inputs=("velocity", "wavelet"), checkpoint=StoreAll())
        v = torch.tensor(case["v"], requires_grad=True)
        w = torch.tensor(case["w"], requires_grad=True)
        d = f(v, w)
        cot = np.random.default_rng(2).standard_normal(tuple(d.shape))
        d.backward(torch.tensor(cot))
        ref = sim.vjp({"traces": cot}, wrt=("velocity", "wavelet"), checkpoint=StoreAll())
    np.testing.assert_array_equal(v.grad.numpy(), ref["velocity"])
    np.testing.assert_array_equal(w.grad.numpy(), ref["wavelet"])
    assert np.abs(ref["velocity"]).max() > 0 and np.abs(ref["wavelet"]).max() > 0


def test_contract_precision_layout_some_inputs_reuse_and_checkpoint() -> None:
    case = wave_case()
    # precision: a float32 tensor in a float64 runtime is refused, saying what to do
    with pytest.raises(TypeError, match="velocity is a torch.float32 tensor but the runtime "
                                        "precision is float64; pass float64 tensors"):
        traces(case, torch.tensor(case["v"], dtype=torch.float32), case["w"])
    # non-contiguous input: the same values and gradient as a contiguous one
    v = torch.tensor(case["v"], requires_grad=True)
    strided = torch.tensor(case["v"].T.copy()).t().requires_grad_()
    assert not strided.is_contiguous()
    a, b = traces(case, v, case["w"]), traces(case, strided, case["w"])
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(v.grad, strided.grad, rtol=0, atol=0)
    # gradients for the inputs that ask for them, and only those
    with acoustic.Simulation(case["v"], H, DT, case["w"], case["src"], case["rec"],
                             **case["options"]) as sim:
        asked: list[tuple[str, ...]] = []
        vjp = sim.vjp

        def spy(cot, *, wrt=None, checkpoint=None, store=None):
            asked.append(tuple(wrt))
            return vjp(cot, wrt=wrt, checkpoint=checkpoint, store=store)

        sim.vjp = spy  # type: ignore[method-assign]
        f = dtorch.function(sim, inputs=("velocity", "wavelet"),
                            checkpoint=Binomial(slots=2))
        v = torch.tensor(case["v"])                        # no gradient wanted
        w = torch.tensor(case["w"], requires_grad=True)
        f(v, w).pow(2).sum().backward()
        assert asked == [("wavelet",)] and v.grad is None and float(w.grad.abs().max()) > 0
        # the checkpoint keyword reaches the tape
        assert sim.last_report.schedule == Binomial(slots=2)
        assert sim.last_report.forward_steps > NT - 1
        # once differentiable: a second derivative is a clear error, never a silent zero
        w2 = torch.tensor(case["w"], requires_grad=True)
        (g,) = torch.autograd.grad(f(v, w2).pow(2).sum(), w2, create_graph=True)
        with pytest.raises(RuntimeError, match="once_differentiable"):
            g.sum().backward()
    # reuse: a second call with other values keeps the same simulation
    KEPT.clear()
    traces(case, torch.tensor(case["v"]), case["w"])
    kept = list(KEPT.values())
    traces(case, torch.tensor(case["v"] * 1.05), case["w"] * 2.0)
    assert list(KEPT.values()) == kept and len(kept) == 1


def test_the_module_form_trains_its_velocity() -> None:
    case = wave_case(shots=2)
    observed = traces(case, torch.tensor(case["v"] * 1.02), case["w"]).detach()
    model = dtorch.Acoustic(case["v"], H, **case["options"])
    assert isinstance(model.velocity, torch.nn.Parameter) and model.velocity.dtype == torch.float64
    optimiser = torch.optim.Adam(model.parameters(), lr=5.0)
    losses = []
    for _ in range(3):
        optimiser.zero_grad()
        loss = (model(DT, case["w"], case["src"], case["rec"]) - observed).pow(2).sum()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    torch.testing.assert_close(model(DT, case["w"], case["src"], case["rec"]),
                               traces(case, model.velocity.detach(), case["w"]))


def test_springs_defaults_come_from_the_system_and_bad_names_are_refused() -> None:
    system = contact_system(2)
    v0, act = contact_inputs(system, 20)
    plain = dtorch.springs(system, 20, 2e-3)
    ref = springs.simulate(system, 20, 2e-3)
    np.testing.assert_array_equal(plain["positions"].numpy(), ref.positions)
    k = torch.tensor(np.asarray(system.per_spring("stiffness")), requires_grad=True)
    out = dtorch.springs(system, 20, 2e-3, stiffness=k, velocities=torch.tensor(v0),
                         actuation=torch.tensor(act))
    out["positions"][-1].sum().backward()
    assert float(k.grad.abs().max()) > 0
    again = dtorch.springs(system, 20, 2e-3)     # the defaults again, not the last call's
    np.testing.assert_array_equal(again["positions"].numpy(), ref.positions)
    with pytest.raises(TypeError, match="unknown parameters \\['stifness'\\]"):
        dtorch.springs(system, 20, 2e-3, stifness=k)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_tensors_round_trip_through_the_host() -> None:
    case = wave_case()
    v = torch.tensor(case["v"], device="cuda", requires_grad=True)
    d = traces(case, v, case["w"])
    assert d.device.type == "cuda"
    d.pow(2).sum().backward()
    assert v.grad.device.type == "cuda"
    ref = torch.tensor(case["v"], requires_grad=True)
    traces(case, ref, case["w"]).pow(2).sum().backward()
    torch.testing.assert_close(v.grad.cpu(), ref.grad, rtol=0, atol=0)
