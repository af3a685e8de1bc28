"""Simulate a soft block dropped on rough ground and render it: GIF, filmstrip, MP4 if ffmpeg.

Shows the plain forward API: build a SpringSystem (a braced lattice, gravity, ground
with friction), simulate it, and render the trajectory with springs coloured by strain.

    python examples/render_trajectory.py --out out/render
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

import diffsim
from diffsim.scenarios.springs import lattice
from diffsim.springs import SpringSystem, simulate
from diffsim.viz.render import ffmpeg_available, render


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (for the tests)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/render"))
    args = parser.parse_args(argv)

    diffsim.init("cpu", "f32")
    nx, ny = (4, 3) if args.smoke else (12, 6)  # particles per row, rows
    positions, springs = lattice(nx, ny, 0.05, origin=(0.0, 0.25))  # 5 cm grid, 25 cm up
    system = SpringSystem(positions, springs, stiffness=2000.0,  # N/m
                          damping=0.05, mass=0.02,  # N s/m, kg
                          gravity=(0.0, -9.81), ground=0.0, friction=0.6)
    steps, dt = (300, 1e-3) if args.smoke else (1500, 5e-4)
    spin = np.array([1.0, 0.5])  # m/s: thrown right and up
    traj = simulate(system, steps, dt, velocities=np.tile(spin, (len(positions), 1)))
    args.out.mkdir(parents=True, exist_ok=True)
    frames = 20 if args.smoke else 120
    for name in ("block.gif", "block.png") + (("block.mp4",) if ffmpeg_available() else ()):
        path = render(traj, system, args.out / name, max_frames=frames, label="dropped block")
        print(f"wrote {path}")
    print(f"lowest point {traj.positions[..., 1].min():.4f} m (ground at 0), final centre "
          f"x {traj.positions[-1, :, 0].mean():.3f} m")


if __name__ == "__main__":
    main()
