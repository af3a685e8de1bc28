"""Trajectory rendering: GIF (Pillow), MP4 (ffmpeg when present), PNG filmstrip, loss curves.

Frames are side views (horizontal ``x`` to the right, height ``x[:, 1]`` up; a 3D
system is drawn from its first two coordinates) with equal axes fixed over the whole
trajectory, springs coloured by strain (blue compressed, grey at rest, red
stretched), pinned particles as squares, the ground as a filled band, and the time.

Example::

    traj = simulate(system, 2000, 1e-3)
    render(traj, system, "out/fall.gif")          # or .mp4, or .png for a filmstrip
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
from collections.abc import Sequence
from typing import IO

import numpy as np
from PIL import Image, ImageDraw

from diffsim.springs import SpringSystem, Trajectory

__all__ = ["draw_frame", "ffmpeg_available", "frames", "render", "save_filmstrip",
           "save_gif", "save_mp4", "strain_colour"]

_BACKGROUND = (255, 255, 255)
_GROUND = (205, 190, 165)
_TEXT = (20, 20, 20)


def strain_colour(strain: np.ndarray, limit: float) -> np.ndarray:
    """RGB ``uint8`` ``[m, 3]``: blue at ``-limit``, grey at 0, red at ``+limit`` (clipped)."""
    s = np.clip(np.asarray(strain, dtype=np.float64) / max(limit, 1e-12), -1.0, 1.0)[:, None]
    grey = np.array([150.0, 150.0, 150.0])
    red = np.array([215.0, 40.0, 30.0])
    blue = np.array([30.0, 80.0, 215.0])
    rgb = np.where(s >= 0, grey + s * (red - grey), grey - s * (blue - grey))
    return np.round(rgb).astype(np.uint8)


class _View:
    """World-to-pixel map with equal axes covering ``lo … hi`` plus a margin."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, size: tuple[int, int]) -> None:
        width, height = size
        span = np.maximum(hi - lo, 1e-9)
        margin = 0.08 * float(span.max())
        lo, hi = lo - margin, hi + margin
        span = hi - lo
        self.scale = min((width - 1) / span[0], (height - 1) / span[1])
        self.offset = np.array([(width - self.scale * span[0]) / 2, (height - self.scale * span[1]) / 2])
        self.lo = lo
        self.height = height

    def __call__(self, p: np.ndarray) -> np.ndarray:
        q = (p - self.lo) * self.scale + self.offset
        return np.stack([q[..., 0], self.height - 1 - q[..., 1]], axis=-1)


def draw_frame(positions: np.ndarray, system: SpringSystem, view: _View, *, time: float,
               limit: float, size: tuple[int, int], label: str = "") -> Image.Image:
    """One frame for positions ``[n, d]`` (see the module docstring)."""
    img = Image.new("RGB", size, _BACKGROUND)
    draw = ImageDraw.Draw(img)
    width, height = size
    if system.ground is not None:
        gy = float(view(np.array([0.0, system.ground]))[1])
        draw.rectangle([0, gy, width, height], fill=_GROUND)
        draw.line([0, gy, width, gy], fill=(120, 100, 80), width=2)
    xy = view(positions[:, :2])
    colours = strain_colour(system.strain(positions), limit)
    line = max(1, round(min(size) / 240))
    for (a, b), c in zip(system.springs, colours, strict=True):
        draw.line([tuple(xy[a]), tuple(xy[b])], fill=tuple(int(v) for v in c), width=line)
    r = max(1.5, min(size) / 160)
    for i, (px, py) in enumerate(xy):
        box = [px - r, py - r, px + r, py + r]
        if system.fixed[i]:
            draw.rectangle(box, fill=(0, 0, 0))
        else:
            draw.ellipse(box, fill=(40, 40, 40))
    text = f"t = {time:.3f} s" + (f"   {label}" if label else "")
    draw.text((8, 6), text, fill=_TEXT)
    draw.text((8, height - 16), f"strain ±{limit:.2g}: blue compressed, red stretched", fill=_TEXT)
    return img


def frames(trajectory: Trajectory, system: SpringSystem, *, max_frames: int = 120,
           size: tuple[int, int] = (480, 360), strain_limit: float | None = None,
           label: str = "") -> list[Image.Image]:
    """Frames of a trajectory: at most ``max_frames``, evenly spaced, the last level included.

    Args:
        trajectory: from :func:`diffsim.springs.simulate` (``positions`` ``[T, n, d]``).
        system: the system that made it (springs, rest lengths, ground, pinned particles).
        max_frames: frame budget.
        size: ``(width, height)`` in pixels.
        strain_limit: strain drawn at full colour; default the largest ``|strain|`` seen
            (at least 1e-3).
        label: text shown after the time stamp.

    Returns:
        Pillow images.
    """
    x = np.asarray(trajectory.positions)
    if x.ndim != 3 or x.shape[1:] != system.positions.shape:
        raise ValueError(f"trajectory positions have shape {x.shape}; expected [T, "
                         f"{system.n_particles}, {system.dim}] for this system")
    if max_frames < 1:
        raise ValueError(f"max_frames={max_frames} must be >= 1")
    levels = np.unique(np.linspace(0, x.shape[0] - 1, min(max_frames, x.shape[0])).round().astype(int))
    shown = x[levels][..., :2]
    lo = shown.reshape(-1, 2).min(axis=0)
    hi = shown.reshape(-1, 2).max(axis=0)
    if system.ground is not None:
        lo[1] = min(lo[1], system.ground - 0.05 * float(np.max(hi - lo)))
    view = _View(lo, hi, size)
    if strain_limit is None:
        strain_limit = max(float(np.abs(system.strain(x[levels])).max()), 1e-3)
    return [draw_frame(x[t], system, view, time=float(t * trajectory.dt), limit=strain_limit,
                       size=size, label=label) for t in levels]


def save_gif(path: pathlib.Path, images: Sequence[Image.Image], *, fps: float = 24.0) -> None:
    """Write an animated GIF (looping) through a temporary file."""
    from diffsim.io import atomic_write

    def write(handle: IO[bytes]) -> None:
        images[0].save(handle, format="GIF", save_all=True, append_images=list(images[1:]),
                       duration=max(int(1000 / fps), 20), loop=0)

    atomic_write(pathlib.Path(path), write, binary=True)


def ffmpeg_available() -> bool:
    """Whether an ``ffmpeg`` executable is on the PATH."""
    return shutil.which("ffmpeg") is not None


def save_mp4(path: pathlib.Path, images: Sequence[Image.Image], *, fps: float = 24.0) -> None:
    """Write an H.264 MP4 through ffmpeg.

    Raises:
        RuntimeError: ffmpeg is not installed (the message suggests GIF instead).
    """
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("writing MP4 needs ffmpeg on the PATH, and none was found; install "
                           "ffmpeg or render to .gif (Pillow) instead")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = images[0].size
    width, height = width - width % 2, height - height % 2  # yuv420p needs even sizes
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    cmd = [exe, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{width}x{height}", "-r", str(fps), "-i", "-", "-pix_fmt", "yuv420p",
           "-vcodec", "libx264", str(tmp)]
    data = b"".join(im.crop((0, 0, width, height)).tobytes() for im in images)
    result = subprocess.run(cmd, input=data, capture_output=True, check=False)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg failed ({result.returncode}): "
                           f"{result.stderr.decode(errors='replace')[-500:]}")
    tmp.replace(path)


def save_filmstrip(path: pathlib.Path, images: Sequence[Image.Image], *, count: int = 6) -> None:
    """Write ``count`` evenly spaced frames side by side as one PNG."""
    from diffsim.io import atomic_write

    picks = [images[i] for i in np.unique(np.linspace(0, len(images) - 1, min(count, len(images)))
                                           .round().astype(int))]
    width, height = picks[0].size
    strip = Image.new("RGB", (width * len(picks), height), _BACKGROUND)
    for k, im in enumerate(picks):
        strip.paste(im, (k * width, 0))
    atomic_write(pathlib.Path(path), lambda h: strip.save(h, format="PNG"), binary=True)


def render(trajectory: Trajectory, system: SpringSystem, path: str | pathlib.Path, *,
           fps: float = 24.0, max_frames: int = 120, size: tuple[int, int] = (480, 360),
           strain_limit: float | None = None, label: str = "") -> pathlib.Path:
    """Render a trajectory to ``path``: ``.gif``, ``.mp4`` or ``.png`` (a filmstrip).

    Args:
        trajectory: positions ``[T, n, d]`` and ``dt``.
        system: the system that made it.
        path: output file; its suffix picks the format.
        fps: frames per second of an animation.
        max_frames: frame budget (frames are spread evenly over the trajectory).
        size: ``(width, height)`` of a frame in pixels.
        strain_limit: strain at full colour (default: the largest seen).
        label: text after the time stamp.

    Returns:
        The path written.

    Raises:
        ValueError: an unknown suffix. RuntimeError: ``.mp4`` without ffmpeg.
    """
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4", ".png"):
        raise ValueError(f"cannot render to {path.name!r}: use a .gif, .mp4 or .png (filmstrip) path")
    if suffix == ".mp4" and not ffmpeg_available():
        raise RuntimeError("writing MP4 needs ffmpeg on the PATH, and none was found; install "
                           "ffmpeg or render to .gif (Pillow) instead")
    images = frames(trajectory, system, max_frames=max_frames, size=size,
                    strain_limit=strain_limit, label=label)
    if suffix == ".gif":
        save_gif(path, images, fps=fps)
    elif suffix == ".mp4":
        save_mp4(path, images, fps=fps)
    else:
        save_filmstrip(path, images)
    return path
