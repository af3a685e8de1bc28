"""Shot gathers to and from SEG-Y (IEEE floats, one trace per source-receiver pair).

Traces are ordered shot by shot; the trace headers carry the shot number
(``FieldRecord``), the receiver number (``TraceNumber``), source and receiver
coordinates in centimetres (``SourceGroupScalar = -100``), depths and the offset.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

__all__ = ["SegyGeometry", "read_segy", "read_segy_geometry", "write_segy"]


class SegyGeometry(NamedTuple):
    """What the headers of a shot-sorted SEG-Y file say about its acquisition.

    Attributes:
        dt: sample interval in s.
        samples: samples per trace.
        sources: ``[shot, 2]`` source positions ``(z, x)`` in m.
        receivers: ``[shot, receiver, 2]`` receiver positions ``(z, x)`` in m.
        located: whether the file carries coordinates at all (some hold zeros only).
    """

    dt: float
    samples: int
    sources: np.ndarray
    receivers: np.ndarray
    located: bool


@contextlib.contextmanager
def _open(path: pathlib.Path) -> Iterator[Any]:
    """``segyio.open`` with a one-line error naming the file when it cannot be read."""
    import segyio

    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such SEG-Y file")
    try:
        handle = segyio.open(str(path), ignore_geometry=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable SEG-Y file ({exc}); expected IEEE or IBM "
                         "float traces sorted by shot (as diffsim writes them), or give a "
                         ".npy file of traces [shot, receiver, nt]") from None
    with handle as f:
        yield f


def _scaled(values: np.ndarray, scalars: np.ndarray) -> np.ndarray:
    """Apply SEG-Y coordinate scalars (negative: divide, positive: multiply, 0: none)."""
    s = scalars.astype(np.float64)
    factor = np.where(s < 0, 1.0 / np.where(s == 0, 1.0, -s), np.where(s == 0, 1.0, s))
    return values.astype(np.float64) * factor


def write_segy(path: pathlib.Path, traces: np.ndarray, dt: float, sources: np.ndarray,
               receivers: np.ndarray) -> None:
    """Write ``traces [shot, receiver, nt]`` atomically.

    Args:
        path: the ``.sgy`` file.
        traces: ``[shot, receiver, nt]``.
        dt: sample interval in s (a whole number of microseconds, below 65.536 ms).
        sources: ``[shot, 2]`` as ``(z, x)`` in m.
        receivers: ``[receiver, 2]`` or ``[shot, receiver, 2]`` as ``(z, x)`` in m.
    """
    import segyio

    data = np.asarray(traces, dtype=np.float32)
    if data.ndim != 3:
        raise ValueError(f"traces must be [shot, receiver, nt]; got shape {data.shape}")
    shots, nrec, nt = data.shape
    dt_us = round(dt * 1e6)
    if abs(dt_us - dt * 1e6) > 1e-6 * max(dt_us, 1) or not 0 < dt_us < 65536:
        raise ValueError(f"dt={dt} s cannot be stored in SEG-Y: it must be a whole number of "
                         "microseconds between 1 and 65535")
    rec = np.broadcast_to(np.asarray(receivers, dtype=np.float64), (shots, nrec, 2))
    src = np.asarray(sources, dtype=np.float64).reshape(shots, -1)[:, :2]
    spec = segyio.spec()
    spec.format = 5
    spec.samples = list(range(nt))
    spec.tracecount = shots * nrec
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with segyio.create(tmp, spec) as f:
            f.bin.update(hdt=dt_us, hns=nt, format=5)
            for s in range(shots):
                for r in range(nrec):
                    f.header[s * nrec + r] = {
                        segyio.TraceField.FieldRecord: s + 1,
                        segyio.TraceField.TraceNumber: r + 1,
                        segyio.TraceField.SourceGroupScalar: -100,
                        segyio.TraceField.ElevationScalar: -100,
                        segyio.TraceField.SourceX: round(src[s, 1] * 100),
                        segyio.TraceField.GroupX: round(rec[s, r, 1] * 100),
                        segyio.TraceField.SourceDepth: round(src[s, 0] * 100),
                        segyio.TraceField.ReceiverGroupElevation: -round(rec[s, r, 0] * 100),
                        segyio.TraceField.offset: round(rec[s, r, 1] - src[s, 1]),
                        segyio.TraceField.TRACE_SAMPLE_INTERVAL: dt_us,
                        segyio.TraceField.TRACE_SAMPLE_COUNT: nt,
                    }
            f.trace.raw[:] = data.reshape(shots * nrec, nt)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_segy(path: pathlib.Path) -> tuple[np.ndarray, float]:
    """Read shot gathers written by :func:`write_segy` (or any file sorted by shot).

    Returns:
        ``traces [shot, receiver, nt]`` (float64) and the sample interval in s.

    Raises:
        ValueError: an unreadable file (one line naming it), or shots with different
            receiver counts.
    """
    import segyio

    with _open(path) as f:
        data = f.trace.raw[:].astype(np.float64)
        shot_ids = np.asarray(f.attributes(segyio.TraceField.FieldRecord)[:])
        dt = segyio.tools.dt(f) * 1e-6
    order, shots, receivers = _shot_order(path, shot_ids)
    return data[order].reshape(shots, receivers, -1), float(dt)


def _shot_order(path: pathlib.Path, shot_ids: np.ndarray) -> tuple[np.ndarray, int, int]:
    ids, counts = np.unique(shot_ids, return_counts=True)
    if np.any(counts != counts[0]):
        raise ValueError(f"{path}: shots have different receiver counts ({sorted(set(counts))}); "
                         "expected the same receivers for every shot")
    return np.argsort(shot_ids, kind="stable"), int(ids.size), int(counts[0])


def read_segy_geometry(path: pathlib.Path) -> SegyGeometry:
    """The acquisition a shot-sorted SEG-Y file's headers describe (see :class:`SegyGeometry`).

    Coordinates are read from ``SourceX``/``GroupX`` (scaled by ``SourceGroupScalar``) and
    ``SourceDepth``/``ReceiverGroupElevation`` (scaled by ``ElevationScalar``; a receiver's
    depth is minus its elevation).

    Raises:
        ValueError: an unreadable file, or shots with different receiver counts.
    """
    import segyio

    field = segyio.TraceField
    with _open(path) as f:
        def header(key: int) -> np.ndarray:
            return np.asarray(f.attributes(key)[:])

        shot_ids = header(field.FieldRecord)
        xy = header(field.SourceGroupScalar)
        el = header(field.ElevationScalar)
        sx = _scaled(header(field.SourceX), xy)
        gx = _scaled(header(field.GroupX), xy)
        sz = _scaled(header(field.SourceDepth), el)
        gz = -_scaled(header(field.ReceiverGroupElevation), el)
        dt = segyio.tools.dt(f) * 1e-6
        samples = len(f.samples)
    order, shots, nrec = _shot_order(path, shot_ids)
    receivers = np.stack([gz[order], gx[order]], axis=-1).reshape(shots, nrec, 2)
    sources = np.stack([sz[order], sx[order]], axis=-1).reshape(shots, nrec, 2)[:, 0]
    located = bool(np.any(sx != 0) or np.any(gx != 0))
    return SegyGeometry(float(dt), int(samples), sources, receivers, located)
