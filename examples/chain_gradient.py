"""Gradient of a trajectory misfit through a nonlinear chain, checkpointed, and checked.

Demonstrates the core API on the registered "chain" scenario: build a stepper, record
a rollout on a Tape under a binomial checkpoint schedule, get d(misfit)/d(stiffness)
from the reverse sweep, compare it with store-all, and check it with the Taylor test.

    python examples/chain_gradient.py --out out/chain_gradient
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

import diffsim
from diffsim import Binomial, StoreAll, Tape, rollout, scenarios
from diffsim.gradcheck import taylor_test
from diffsim.scenarios.chain import synthesize


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (for the tests)")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="folder for the figure")
    args = parser.parse_args(argv)

    diffsim.init("cpu", "f64")  # float64: gradients to compare at rounding level
    scenario = scenarios.get("chain")
    if args.smoke:
        scenario = scenario.with_(masses=5, steps=40)  # tiny and fast
    chain = scenario.build()  # stiffness starts at the mean value
    observed = synthesize(scenario, chain)  # data from the true stiffness

    def misfit(outputs):  # 0.5 * sum of squared residuals, and d misfit / d outputs
        residual = outputs["positions"] - observed
        return 0.5 * float(np.sum(residual**2)), {"positions": residual}

    tape = Tape(chain, checkpoint=Binomial(slots=6))  # 6 stored states, whatever the length
    value, grads = tape.value_and_grad(misfit)
    print(f"misfit {value:.6e}")
    print(tape.report.summary())

    reference = Tape(chain, checkpoint=StoreAll()).value_and_grad(misfit)[1]
    gap = np.max(np.abs(grads["stiffness"] - reference["stiffness"]))
    print(f"binomial vs store-all, max difference: {gap:.1e}")

    k0 = chain.parameters()["stiffness"]

    def value_at(k):  # forward only, for the Taylor test
        chain.set_param("stiffness", k)
        return misfit(rollout(chain))[0]

    direction = np.random.default_rng(0).normal(size=k0.shape)
    result = taylor_test(value_at, k0, direction, grads["stiffness"])
    print(result.table())
    print(f"remainder slopes: {result.first_order:.2f} (expect 1), "
          f"{result.second_order:.2f} (expect 2)")

    if args.out is not None:
        import matplotlib

        matplotlib.use("Agg")  # headless
        import matplotlib.pyplot as plt

        args.out.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.bar(np.arange(k0.size), grads["stiffness"])
        ax.set_xlabel("spring")
        ax.set_ylabel("d misfit / d stiffness (m^2 per N/m)")
        fig.tight_layout()
        fig.savefig(args.out / "gradient.png", dpi=110)
        print(f"wrote {args.out / 'gradient.png'}")


if __name__ == "__main__":
    main()
