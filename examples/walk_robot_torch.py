"""A torch network as the gait controller of a soft robot, trained by torch's Adam.

The soft lattice robot of the `spring-robot` scenario walks when its springs' rest
lengths follow a periodic actuation signal. Here a small MLP in PyTorch maps the phase
features of each time step (sines and cosines of the gait frequency's harmonics) to the
actuation of every band of springs; `diffsim.torch.springs` runs the rollout and gives
the exact gradient of the distance walked with respect to the actuation, and torch
carries it into the network's weights. Writes `summary.json` and `walk_torch.png` (the
distance per iteration and the learned actuation).

    python examples/walk_robot_torch.py [--smoke] [--out out/walk_torch]
"""

import argparse
import json
import pathlib

import numpy as np
import torch

import diffsim
import diffsim.torch as dtorch
from diffsim import scenarios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a small, quick run")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/walk_torch"))
    args = parser.parse_args()
    diffsim.init("cpu", "f64")
    torch.manual_seed(0)
    robot = scenarios.get("spring-robot")
    robot = robot.smoke() if args.smoke else robot
    iterations = 3 if args.smoke else 60
    system = robot.system()                              # the lattice and its spring bands
    phases = torch.tensor(robot.basis())                 # [steps, 2 harmonics] sines, cosines
    controller = torch.nn.Sequential(                     # phase features -> band actuation
        torch.nn.Linear(phases.shape[1], 32), torch.nn.Tanh(),
        torch.nn.Linear(32, robot.channels)).double()
    optimiser = torch.optim.Adam(controller.parameters(), lr=0.02)
    distances: list[float] = []
    for it in range(iterations):
        optimiser.zero_grad()
        actuation = robot.amplitude * torch.tanh(controller(phases))   # [steps, channels]
        x = dtorch.springs(system, robot.steps, robot.dt, actuation=actuation)["positions"]
        distance = x[-1, :, 0].mean() - x[0, :, 0].mean()      # centre of mass, m (equal masses)
        (-distance).backward()                                  # walk as far right as possible
        optimiser.step()
        distances.append(float(distance.detach()))
        print(f"iter {it:3d}  distance {distances[-1] * 100:.2f} cm")
    best = int(np.argmax(distances))
    summary = {"iterations": iterations, "steps": robot.steps, "initial_distance_m": distances[0],
               "final_distance_m": distances[-1], "best_distance_m": distances[best],
               "best_iteration": best, "parameters": sum(p.numel() for p in controller.parameters())}
    print(json.dumps(summary, indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    from diffsim.viz.figures import pyplot, save_figure

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(np.array(distances) * 100, "k.-")
    ax1.set_xlabel("Adam iteration")
    ax1.set_ylabel("distance walked (cm)")
    ax1.set_title(f"{robot.steps * robot.dt:.1f} s of walking")
    t = np.arange(robot.steps) * robot.dt
    with torch.no_grad():
        learned = (robot.amplitude * torch.tanh(controller(phases))).numpy()
    for c in range(robot.channels):
        ax2.plot(t, learned[:, c], label=f"band {c}")
    ax2.set_xlabel("time (s)")
    ax2.set_ylabel("actuation (rest-length fraction)")
    ax2.set_title("learned gait")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, args.out / "walk_torch.png")


if __name__ == "__main__":
    main()
