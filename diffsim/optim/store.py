"""The evaluation store: every objective evaluation kept on disk, keyed by its input.

An optimiser that is deterministic (L-BFGS-B, Adam) asks for the same points in the
same order when it is run again from the same start. Keeping each evaluation, keyed
by a hash of the point, therefore makes every optimisation resumable without saving
the optimiser's internal state: a resumed run replays from the start, reads back
every evaluation it already paid for and computes only the new ones, and ends with
exactly the result of an uninterrupted run. Files are written atomically, so a killed
run never leaves an entry that a resumed run could read half-written.
"""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from diffsim.io import atomic_write

__all__ = ["Evaluation", "EvaluationStore"]

#: An evaluation: named arrays (``"loss"`` and ``"grad"`` at least).
Evaluation = dict[str, np.ndarray]
#: An objective: ``x -> (value, gradient)``.
Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


class EvaluationStore:
    """Content-keyed evaluations, on disk (``folder``) or in memory (``folder=None``).

    Args:
        folder: where ``<tag>-<key>.npz`` files go, or ``None`` to keep evaluations in
            memory only (no resume, same replay within one process).
        tag: names the problem; part of every key, so two problems sharing a folder
            never read each other's evaluations.
        fresh: remove this tag's stored evaluations first (a new run, not a resume).
    """

    def __init__(self, folder: pathlib.Path | None, *, tag: str = "", fresh: bool = False) -> None:
        self.folder = None if folder is None else pathlib.Path(folder)
        self.tag = tag
        self.computed = 0      # evaluations computed (not read back) by this object
        self._memory: dict[str, Evaluation] = {}
        self._last: tuple[str, Evaluation] | None = None
        if fresh and self.folder is not None and self.folder.is_dir():
            for item in self.folder.glob(f"{self._prefix()}*.npz"):
                item.unlink()

    def _prefix(self) -> str:
        return hashlib.sha1(self.tag.encode()).hexdigest()[:8] + "-"

    def key(self, *parts: np.ndarray | float | str) -> str:
        """The key of an evaluation at ``parts`` (arrays by their bytes, numbers as float64)."""
        h = hashlib.sha1(self.tag.encode())
        for part in parts:
            if isinstance(part, str):
                h.update(part.encode())
            else:
                h.update(np.ascontiguousarray(np.asarray(part, dtype=np.float64)).tobytes())
        return self._prefix() + h.hexdigest()[:24]

    def fetch(self, key: str, compute: Callable[[], Mapping[str, np.ndarray | float]]) -> Evaluation:
        """The evaluation under ``key``: read back when stored, else ``compute()`` and store it."""
        if self._last is not None and self._last[0] == key:   # optimisers repeat the last point
            return self._last[1]
        found = self._memory.get(key) if self.folder is None else self._read(key)
        if found is None:
            found = {name: np.asarray(value) for name, value in compute().items()}
            self.computed += 1
            if self.folder is None:
                self._memory[key] = found
            else:
                path = self.folder / f"{key}.npz"
                arrays: dict[str, Any] = found   # savez's stub types its keywords as flags
                atomic_write(path, lambda h: np.savez(h, **arrays), binary=True)
        self._last = (key, found)
        return found

    def _read(self, key: str) -> Evaluation | None:
        assert self.folder is not None
        path = self.folder / f"{key}.npz"
        if not path.is_file():
            return None
        with np.load(path) as saved:
            return {name: saved[name] for name in saved.files}

    def objective(self, fun: Objective, *parts: np.ndarray | float | str) -> Objective:
        """``fun`` (``x -> (value, gradient)``) with every evaluation kept in this store.

        ``parts`` are added to every key (for example a stage number).
        """
        def stored(x: np.ndarray) -> tuple[float, np.ndarray]:
            def compute() -> dict[str, np.ndarray | float]:
                value, grad = fun(x)
                return {"loss": float(value), "grad": np.asarray(grad, dtype=np.float64)}

            found = self.fetch(self.key(*parts, x), compute)
            return float(found["loss"]), found["grad"]

        return stored
