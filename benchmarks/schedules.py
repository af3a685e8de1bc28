"""Checkpoint schedule costs: forward steps and peak stored states, counted on the stub.

    python benchmarks/schedules.py [--write]
"""

from __future__ import annotations

import argparse
import math
import time

from _harness import report, table

from diffsim.checkpoint import Binomial, StoreAll, Uniform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="append to BENCHMARKS.md")
    args = parser.parse_args()
    rows = []
    for n in (1000, 10_000, 100_000):
        schedules = [StoreAll(), Uniform(every=math.isqrt(n))]
        schedules += [Binomial(slots=s) for s in (10, 20, 50, 100)]
        for sched in schedules:
            t0 = time.process_time()
            actions = sched.actions(n)
            gen = time.process_time() - t0
            cost = sched.cost(n)
            rows.append([n, repr(sched), cost.forward_steps, f"{cost.recompute_factor:.3f}",
                         cost.peak_states, f"{gen:.3f}", len(actions)])
    body = (
        "Counting convention: `forward_steps` = every execution of the forward step (forward "
        "sweep plus recomputation), the reverse step of step i needing only state i; "
        "`peak states` = stored states, x[0] included; the two live buffers come on top. "
        "Binomial is optimal: p(n,s)+1. Generation = CPU seconds to emit the action stream.\n\n"
        + table(["n", "schedule", "forward_steps", "factor", "peak states", "generation s",
                 "actions"], rows)
    )
    report("Checkpoint schedule costs", body, write=args.write)


if __name__ == "__main__":
    main()
