"""Files written atomically, a small TOML writer, and the options of a scenario run.

Every file a long run writes goes through a temporary file in the same folder and an
``os.replace``, so an interrupted run (Ctrl-C, ``kill -9``) never leaves a half-written
file that a resumed run could read back.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import pathlib
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any, Literal, overload

import numpy as np

__all__ = ["RunOptions", "atomic_write", "dump_toml", "read_json", "write_json", "write_npy"]


@functools.cache
def _umask() -> int:
    """The process's umask, read once (by setting and restoring it, before any thread writes)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@overload
def atomic_write(path: pathlib.Path, write: Callable[[IO[str]], object], *,
                 binary: Literal[False] = False) -> None: ...


@overload
def atomic_write(path: pathlib.Path, write: Callable[[IO[bytes]], object], *,
                 binary: Literal[True]) -> None: ...


def atomic_write(path: pathlib.Path, write: Callable[[Any], object], *, binary: bool = False) -> None:
    """Create ``path`` through ``write(handle)`` on a temporary file, then rename it.

    Args:
        path: the destination; its folder is created if missing.
        write: called with an open handle on the temporary file.
        binary: open the temporary file in binary mode.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~_umask())  # as open() would create it (mkstemp makes 0600)
        handle: IO[Any] = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")
        with handle as h:
            write(h)
            h.flush()
            os.fsync(h.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: pathlib.Path, data: object) -> None:
    """Write JSON atomically."""
    atomic_write(path, lambda h: json.dump(data, h, indent=2, default=_json_default))


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pathlib.Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def read_json(path: pathlib.Path) -> Any:
    """Read a JSON file."""
    return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))


def write_npy(path: pathlib.Path, array: np.ndarray) -> None:
    """Write a ``.npy`` file atomically."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    atomic_write(path, lambda h: h.write(buffer.getvalue()), binary=True)


def _toml_value(value: object, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_toml_value(v, key) for v in value) + "]"
    raise TypeError(f"{key}: a value of type {type(value).__name__} cannot be written to TOML")


def dump_toml(data: Mapping[str, object]) -> str:
    """TOML text for a mapping of scalars, strings, lists and one level of sub-tables.

    ``None`` values are left out (TOML has no null; loading gives the field's default).
    """
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, object]]] = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value, key)}")
    for name, table in tables:
        lines.append(f"\n[{name}]")
        lines.extend(f"{k} = {_toml_value(v, f'{name}.{k}')}" for k, v in table.items()
                     if v is not None)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class RunOptions:
    """How ``diffsim run`` runs a scenario (everything that is not the problem itself).

    Attributes:
        out: output folder.
        iterations: optimiser iterations; ``None`` for the scenario's own default.
        resume: continue from the last finished iteration found in ``out``.
        checkpoint: schedule text (``all``, ``uniform:K``, ``binomial:S``, ``budget:SIZE``) or
            ``None`` for the default memory budget.
        data: folder of real models (``.npy`` + JSON sidecars); ``None`` reads
            ``DIFFSIM_DATA``.
        workers: processes for shots (Dask LocalCluster when > 1).
        scheduler: address of an existing Dask scheduler, or ``None``.
        quiet: no progress output.
        smoke: tiny sizes (tests and quick checks).
    """

    out: pathlib.Path
    iterations: int | None = None
    resume: bool = False
    checkpoint: str | None = None
    data: pathlib.Path | None = None
    workers: int = 1
    scheduler: str | None = None
    quiet: bool = False
    smoke: bool = False

    def echo(self, text: str) -> None:
        """Print a progress line unless quiet."""
        if not self.quiet:
            print(text, flush=True)
