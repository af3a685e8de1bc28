"""Checkpoint stores: where a :class:`~diffsim.Tape` keeps the states its schedule saves.

The tape owns its store; a stepper never holds one. A stepper declares a complete state
(:meth:`Stepper.state_spec`) and can export it to, and import it from, plain arrays
(:meth:`Stepper.export_state`, :meth:`Stepper.import_state`). A store either keeps those
arrays itself (:class:`HostStore`: NumPy arrays in host RAM, any stepper, no stepper
code of its own), or addresses the stepper's device pool, which its fused kernels read
and write in place during runs of steps (:class:`DeviceStore`, the default and the
fastest), or writes them to files (:class:`DiskStore`: a background thread writes
while the stepper computes, optionally compressed). Further tiers are new stores, not
stepper changes.

Example::

    tape = Tape(stepper, checkpoint=Binomial(slots=64), store=HostStore())
    tape = Tape(stepper, checkpoint=Binomial(slots=400), store=DiskStore("/scratch"))
"""

from __future__ import annotations

import abc
import importlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
import weakref
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from diffsim._tape import Stepper

__all__ = ["COMPRESSIONS", "CheckpointStore", "DeviceStore", "DiskStore", "HostStore",
           "TieredStore", "checkpoint_directory", "checkpoint_tiers", "disk_bandwidth"]


class CheckpointStore(abc.ABC):
    """Slots that each hold one complete state ``x[t]`` of one stepper.

    Attributes:
        name: a short name for reports (``"device"``, ``"host"``).
        in_place: whether the stepper's kernels read and write the slots themselves (the
            tape then hands slot numbers to ``advance_range``/``reverse_range``); else
            the tape moves states through :meth:`save` and :meth:`load` around the runs.
    """

    name: str = "store"
    in_place: bool = False

    @abc.abstractmethod
    def bind(self, stepper: Stepper, slots: int) -> None:
        """Make room for ``slots`` states of ``stepper`` (a tape calls this once)."""

    def in_place_slot(self, slot: int) -> bool:  # noqa: ARG002
        """Whether the stepper's kernels read and write ``slot`` themselves."""
        return self.in_place

    @abc.abstractmethod
    def save(self, step: int, slot: int) -> None:
        """Copy the live ``x[step]`` into ``slot``."""

    @abc.abstractmethod
    def load(self, step: int, slot: int) -> None:
        """Make ``x[step]``, held in ``slot``, the live state."""

    @property
    def nbytes(self) -> int:
        """Bytes this store holds for states (0 where the stepper holds them)."""
        return 0


class DeviceStore(CheckpointStore):
    """The stepper's own device pool (Taichi fields or an arena region), addressed by slot.

    The fused kernels read a checkpoint in place during a reverse run and write the
    checkpoints of a forward run inside the launch, so nothing is copied twice.
    """

    name = "device"
    in_place = True

    def __init__(self) -> None:
        self._stepper: Stepper | None = None

    def bind(self, stepper: Stepper, slots: int) -> None:
        """Have the stepper make room for ``slots`` states on its device."""
        self._stepper = stepper
        stepper.allocate_checkpoints(slots)

    def _bound(self) -> Stepper:
        if self._stepper is None:
            raise RuntimeError("the store is not bound to a stepper: a Tape binds it")
        return self._stepper

    def save(self, step: int, slot: int) -> None:
        """The stepper's own copy into its pool."""
        self._bound().save(step, slot)

    def load(self, step: int, slot: int) -> None:
        """The stepper's own copy out of its pool."""
        self._bound().restore(step, slot)


class HostStore(CheckpointStore):
    """States as NumPy arrays in host RAM, through the stepper's export and import.

    Slower than :class:`DeviceStore` (each save and load copies between device and host),
    but it works for any stepper that declares its state and keeps device memory for the
    live state only.
    """

    name = "host"
    in_place = False

    def __init__(self) -> None:
        self._stepper: Stepper | None = None
        self._slots: list[dict[str, np.ndarray]] = []

    def bind(self, stepper: Stepper, slots: int) -> None:
        """Allocate ``slots`` host copies of the stepper's state."""
        spec = stepper.state_spec()
        self._stepper = stepper
        stepper.allocate_checkpoints(0)  # scratch for reverses from live buffers only
        self._slots = [{name: np.empty(shape, dtype=dtype) for name, (shape, dtype) in spec.items()}
                       for _ in range(slots)]

    def _bound(self) -> Stepper:
        if self._stepper is None:
            raise RuntimeError("the store is not bound to a stepper: a Tape binds it")
        return self._stepper

    def save(self, step: int, slot: int) -> None:
        """Export the live state into the arrays of ``slot``."""
        self._bound().export_state(step, self._slots[slot])

    def load(self, step: int, slot: int) -> None:
        """Import the arrays of ``slot`` as the live state."""
        self._bound().import_state(step, self._slots[slot])

    @property
    def nbytes(self) -> int:
        """Bytes of every slot's arrays."""
        return sum(a.nbytes for s in self._slots for a in s.values())


#: Compression of a :class:`DiskStore`: none, lossless (byte shuffle, then zstd, or zlib
#: without the ``zstandard`` package), lossy float16 (then lossless), or lossy zfp with an
#: error bound (the ``zfpy`` package).
COMPRESSIONS = (None, "lossless", "float16", "zfp")

_MAGIC = b"DSCK1\n"


def _codec() -> tuple[str, Any, Any]:
    """``(name, compress, decompress)`` of the lossless codec: zstd where installed, else zlib."""
    try:
        zstandard = importlib.import_module("zstandard")
    except ImportError:
        return "zlib", (lambda b: zlib.compress(b, 1)), zlib.decompress
    return ("zstd", zstandard.ZstdCompressor(level=1).compress,
            zstandard.ZstdDecompressor().decompress)


def _zfpy() -> Any:
    try:
        return importlib.import_module("zfpy")
    except ImportError:
        raise ImportError("compression='zfp' needs the zfpy package: pip install zfpy (or "
                          "pip install 'diffsim[compression]'); 'float16' is the lossy choice "
                          "without it") from None


def _zfp_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """An array shape zfp takes (1 to 4 axes).

    The last two axes (x blocks, lanes) join into x; leading axes join until four remain.
    """
    if len(shape) <= 1:
        return (max(1, int(np.prod(shape))),)
    block = (*shape[:-2], shape[-2] * shape[-1])
    while len(block) > 4:
        block = (block[0] * block[1], *block[2:])
    return block


def _shuffle(raw: bytes, itemsize: int) -> bytes:
    """Byte shuffle: the k-th bytes of every value together (they compress far better)."""
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, itemsize).T.tobytes()


def _unshuffle(raw: bytes, itemsize: int) -> bytes:
    return np.frombuffer(raw, dtype=np.uint8).reshape(itemsize, -1).T.tobytes()


class DiskStore(CheckpointStore):
    """States as files in a directory, written by a background thread.

    A save copies the live state to host arrays and hands them to a writer thread, so the
    stepper computes while the file is written; a load waits for that slot's write, reads
    the file back and checks it. Each file is written under a temporary name and renamed
    when complete, and carries the run's token, the step and a CRC32 of its payload, so a
    killed run leaves nothing a later load could take for a valid state: a load of a
    missing, partial, foreign or corrupted file raises an error naming it. The folder of a
    process killed before it could remove it is removed by the next disk store bound on
    the same host.

    Args:
        directory: where to write (a fresh subdirectory per store, removed by
            :meth:`close` or when the store is garbage-collected); default
            ``$DIFFSIM_CHECKPOINT_DIR`` or the system's temporary directory.
        compression: ``None``; ``"lossless"`` (byte shuffle + zstd where the ``zstandard``
            package is installed, else zlib: the same bits back); ``"float16"`` (lossy:
            each array divided by its largest magnitude and rounded to float16 before the
            lossless step; the gradient changes, so measure it on your problem);
            ``"zfp"`` (lossy with an error bound: zfp's fixed-accuracy mode, each value
            within ``tolerance`` times its array's largest magnitude; needs the ``zfpy``
            package, ``pip install diffsim[compression]``).
        tolerance: the relative error bound of ``"zfp"`` (default 1e-5).
        max_pending: writes in flight before a save waits (each holds one state in RAM).

    Attributes:
        stats: ``bytes_written`` (file bytes), ``state_bytes`` (the states' raw bytes),
            ``bytes_read``, ``files``, ``write_seconds`` (in the writer thread),
            ``read_seconds``, ``wait_seconds`` (saves and loads waiting for the writer).
    """

    name = "disk"
    in_place = False

    def __init__(self, directory: str | os.PathLike[str] | None = None, *,
                 compression: str | None = None, tolerance: float = 1e-5,
                 max_pending: int = 2) -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression={compression!r}; choose one of {COMPRESSIONS} "
                             "(float16 and zfp are lossy)")
        if not (isinstance(tolerance, int | float) and 0 < tolerance < 1):
            raise ValueError(f"tolerance={tolerance!r} must be in (0, 1): zfp's error bound "
                             "relative to each array's largest magnitude")
        self._zfp: Any = _zfpy() if compression == "zfp" else None
        self.tolerance = float(tolerance)
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"max_pending={max_pending!r} must be a positive int")
        self.directory = checkpoint_directory(directory)
        self.compression = compression
        self.max_pending = max_pending
        self._stepper: Stepper | None = None
        self._spec: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self._pending: dict[int, Future[None]] = {}
        self._order: list[int] = []
        self._inflight: dict[int, dict[str, np.ndarray]] = {}   # host arrays being written
        self._spare: list[dict[str, np.ndarray]] = []           # host arrays to reuse
        self._buffer = bytearray()                               # the read buffer, reused
        self._pool: ThreadPoolExecutor | None = None
        self._path: str | None = None
        self._token = uuid.uuid4().hex
        self._lock = threading.Lock()
        self.stats: dict[str, float] = dict(bytes_written=0, state_bytes=0, bytes_read=0,
                                            files=0, write_seconds=0.0, read_seconds=0.0,
                                            wait_seconds=0.0)
        self._codec = _codec()

    def bind(self, stepper: Stepper, slots: int) -> None:
        """Make the directory and the writer thread for ``slots`` states of ``stepper``."""
        self.close()
        self._stepper = stepper
        self._spec = stepper.state_spec()
        stepper.allocate_checkpoints(0)  # scratch for reverses from live buffers only
        _sweep_orphans(self.directory)
        self._path = tempfile.mkdtemp(prefix=_PREFIX, dir=self.directory)
        with open(os.path.join(self._path, _OWNER), "w", encoding="ascii") as fh:
            fh.write(f"{socket.gethostname()} {os.getpid()}\n")
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffsim-disk")
        self._finalizer = weakref.finalize(self, _remove, self._pool, self._path)

    @property
    def path(self) -> str:
        """The directory holding this store's files."""
        if self._path is None:
            raise RuntimeError("the store is not bound to a stepper: a Tape binds it")
        return self._path

    def _file(self, slot: int) -> str:
        return os.path.join(self.path, f"slot{slot:06d}.ckpt")

    def _bound(self) -> Stepper:
        if self._stepper is None or self._pool is None:
            raise RuntimeError("the store is not bound to a stepper: a Tape binds it")
        return self._stepper

    def _wait(self, slot: int) -> None:
        future = self._pending.pop(slot, None)
        if future is not None:
            t0 = time.perf_counter()
            try:
                future.result()
            finally:
                self.stats["wait_seconds"] += time.perf_counter() - t0
                self._order.remove(slot)
                self._spare.append(self._inflight.pop(slot))

    def save(self, step: int, slot: int) -> None:
        """Copy the live ``x[step]`` to host arrays and queue their file for ``slot``.

        The host arrays are reused from write to write (at most ``max_pending`` sets
        exist): allocating a large state per save fragments the C heap, and the
        process's resident memory would grow with every file.
        """
        stepper = self._bound()
        self._wait(slot)                     # an earlier write of this slot finishes first
        while len(self._order) >= self.max_pending:
            self._wait(self._order[0])
        arrays = self._spare.pop() if self._spare else {
            name: np.empty(shape, dtype=dtype) for name, (shape, dtype) in self._spec.items()}
        stepper.export_state(step, arrays)
        assert self._pool is not None
        self._inflight[slot] = arrays
        self._pending[slot] = self._pool.submit(self._write, step, slot, arrays)
        self._order.append(slot)

    def flush(self) -> None:
        """Wait until every queued file is written (errors of the writer raise here)."""
        while self._order:
            self._wait(self._order[0])

    def _encode(self, arr: np.ndarray) -> tuple[memoryview, str, float]:
        """Bytes, stored dtype and scale (float16 holds ``arr / scale``: no underflow).

        Uncompressed, the bytes are a view of the array: no copy of a large state.
        """
        scale = 1.0
        if self.compression == "zfp" and arr.dtype.kind == "f" and arr.size:
            peak = float(np.abs(arr).max())
            if peak > 0 and np.isfinite(peak):
                bound = self.tolerance * peak
                block = _zfp_shape(arr.shape)
                packed = self._zfp.compress_numpy(np.ascontiguousarray(arr).reshape(block),
                                                  tolerance=bound)
                return memoryview(packed), "zfp", bound
            return np.ascontiguousarray(arr).data.cast("B"), str(arr.dtype), 1.0
        if self.compression == "float16":
            peak = float(np.abs(arr).max()) if arr.size else 0.0
            scale = peak if peak > 0 and np.isfinite(peak) else 1.0
            arr = (arr / scale).astype(np.float16)
        arr = np.ascontiguousarray(arr)
        if self.compression in (None, "zfp"):
            return arr.data.cast("B"), str(arr.dtype), scale
        packed = self._codec[1](_shuffle(arr.tobytes(), arr.dtype.itemsize))
        return memoryview(packed), str(arr.dtype), scale

    def _write(self, step: int, slot: int, arrays: dict[str, np.ndarray]) -> None:
        t0 = time.perf_counter()
        parts, meta = [], []
        crc = 0
        for name, arr in arrays.items():
            data, stored, scale = self._encode(arr)
            parts.append(data)
            crc = zlib.crc32(data, crc)
            meta.append([name, list(arr.shape), str(arr.dtype), stored, len(data), scale])
        codec = self._codec[0] if self.compression in ("lossless", "float16") else (
            self.compression)
        header = json.dumps({"token": self._token, "step": step, "slot": slot,
                             "codec": codec,
                             "arrays": meta, "crc32": crc}).encode()
        final = self._file(slot)
        tmp = final + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(_MAGIC + len(header).to_bytes(8, "little") + header)
            for data in parts:
                fh.write(data)
        os.replace(tmp, final)      # complete files only ever carry the final name
        with self._lock:
            self.stats["bytes_written"] += sum(len(d) for d in parts) + len(header) + 14
            self.stats["state_bytes"] += sum(a.nbytes for a in arrays.values())
            self.stats["files"] += 1
            self.stats["write_seconds"] += time.perf_counter() - t0

    def load(self, step: int, slot: int) -> None:
        """Make ``x[step]`` from the file of ``slot`` live (checked: run, step, CRC)."""
        stepper = self._bound()
        self._wait(slot)
        t0 = time.perf_counter()
        arrays = self._read(step, slot)
        self.stats["read_seconds"] += time.perf_counter() - t0
        stepper.import_state(step, arrays)

    def _read(self, step: int, slot: int) -> dict[str, np.ndarray]:
        path = self._file(slot)
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if len(self._buffer) < size:
                    self._buffer = bytearray(size)
                got = fh.readinto(memoryview(self._buffer)[:size])
                blob = memoryview(self._buffer)
        except FileNotFoundError:
            raise RuntimeError(f"checkpoint file {path} is missing: x[{step}] was never "
                               "saved to this store, or the file was removed") from None
        blob = blob[:got]
        self.stats["bytes_read"] += got

        def bad(why: str) -> RuntimeError:
            return RuntimeError(f"checkpoint file {path} does not hold x[{step}] of this run "
                                f"({why}); rerun the gradient (checkpoints are not reused "
                                "across runs)")

        if got < len(_MAGIC) + 8 or bytes(blob[:len(_MAGIC)]) != _MAGIC:
            raise bad("not a diffsim checkpoint file")
        n = int.from_bytes(blob[len(_MAGIC):len(_MAGIC) + 8], "little")
        try:
            head = json.loads(bytes(blob[len(_MAGIC) + 8:len(_MAGIC) + 8 + n]))
        except ValueError:
            raise bad("unreadable header") from None
        payload = blob[len(_MAGIC) + 8 + n:]    # views of one buffer: no copies
        if head.get("token") != self._token:
            raise bad("written by another run")
        if head.get("step") != step:
            raise bad(f"it holds x[{head.get('step')}]")
        if zlib.crc32(payload) != head.get("crc32"):
            raise bad("its data is truncated or corrupted: CRC32 mismatch")
        out, at = {}, 0
        for name, shape, dtype, stored, size, scale in head["arrays"]:
            data: Any = payload[at:at + size]
            at += size
            if stored == "zfp":
                zfp = self._zfp or _zfpy()
                out[name] = zfp.decompress_numpy(bytes(data)).reshape(shape).astype(dtype)
                continue
            if head["codec"] not in (None, "zfp"):
                decompress = self._codec[2] if head["codec"] == self._codec[0] else zlib.decompress
                data = _unshuffle(decompress(data), np.dtype(stored).itemsize)
            values = np.frombuffer(data, dtype=stored).reshape(shape)
            if stored != dtype or scale != 1.0:
                values = values.astype(dtype) * np.asarray(scale, dtype=dtype)
            out[name] = values
        return out

    @property
    def disk_bytes(self) -> int:
        """Bytes of this store's files now on disk."""
        if self._path is None or not os.path.isdir(self._path):
            return 0
        return sum(e.stat().st_size for e in os.scandir(self._path))

    def close(self) -> None:
        """Finish the pending writes, stop the writer, remove the directory."""
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()
        self._pending.clear()
        self._order.clear()
        self._inflight.clear()
        self._spare.clear()
        self._buffer = bytearray()
        self._pool = None
        self._path = None


_PREFIX = "diffsim-checkpoints-"
_OWNER = "owner"


def _sweep_orphans(directory: str) -> None:
    """Remove checkpoint folders that processes killed on this host left behind.

    Each store's folder names its host and process; a folder whose process no longer
    runs (``kill -9``, a crash: no ``close`` ran) is only disk space, never a state a new
    run would read (files carry their run's token), so the next store on this host
    removes it.
    """
    host = socket.gethostname()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(_PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            with open(os.path.join(entry.path, _OWNER), encoding="ascii") as fh:
                owner_host, pid_text = fh.read().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            continue    # not ours to judge (no owner file, or one being written)
        if owner_host != host or pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:
            continue    # alive under another user


def _remove(pool: ThreadPoolExecutor, path: str) -> None:
    pool.shutdown(wait=True)
    shutil.rmtree(path, ignore_errors=True)


class TieredStore(CheckpointStore):
    """Slots spread over tiers, each tier a store: memory, host RAM, disk.

    Slot numbers run through the tiers in the order given (fastest first): with tiers of
    4 and 10 slots, slots 0-3 are the first store's and 4-13 the second's. A tape binds
    a tiered store with the layout of its schedule (:meth:`Schedule.tier_slots`, e.g.
    :class:`~diffsim.checkpoint.TwoLevel`'s memory and disk slots) and builds one itself
    when the schedule needs more than its memory tier. For a single-tier schedule the
    ``slots`` given here decide the split (``None``: all remaining slots).

    Only the first tier may be read and written in place by the stepper's kernels
    (a :class:`DeviceStore`); the tape moves the other tiers' states through save and
    load around its runs of steps.

    Example::

        store = TieredStore(("memory", DeviceStore(), None), ("disk", DiskStore("/scratch"), None))
        store = TieredStore(("host", HostStore(), 8), ("disk", DiskStore(), None))

    Args:
        tiers: ``(name, store, slots)`` triples, fastest first; ``name`` one of
            ``memory``, ``host``, ``disk``; ``slots`` only for single-tier schedules.
    """

    name = "tiered"
    in_place = False

    def __init__(self, *tiers: tuple[str, CheckpointStore, int | None]) -> None:
        if not tiers:
            raise ValueError("TieredStore needs at least one (name, store, slots) tier")
        names = [t[0] for t in tiers]
        for k, (name, store, slots) in enumerate(tiers):
            if name not in ("memory", "host", "disk") or names.count(name) > 1:
                raise ValueError(f"tier name {name!r}: use each of 'memory', 'host', 'disk' "
                                 "at most once")
            if not isinstance(store, CheckpointStore) or isinstance(store, TieredStore):
                raise TypeError(f"tier {name!r}: {store!r} is not a single checkpoint store")
            if store.in_place and k:
                raise ValueError(f"tier {name!r}: an in-place store ({store.name}) can only be "
                                 "the first tier")
            if slots is not None and (isinstance(slots, bool) or not isinstance(slots, int)
                                      or slots < 0):
                raise ValueError(f"tier {name!r}: slots={slots!r} must be an int >= 0 or None")
        self.tiers = list(tiers)
        self.name = "+".join(store.name for _, store, _ in tiers)
        self._bounds: list[tuple[int, int, CheckpointStore]] = []
        self.layout: dict[str, int] = {}

    def store(self, name: str) -> CheckpointStore:
        """The store of tier ``name``."""
        for tier, store, _ in self.tiers:
            if tier == name:
                return store
        raise KeyError(f"no tier {name!r}; tiers are {[t[0] for t in self.tiers]}")

    def bind(self, stepper: Stepper, slots: int, tiers: dict[str, int] | None = None) -> None:
        """Bind every tier: ``tiers`` (slots per tier name) or the split given at creation."""
        if tiers is None:
            left, tiers = slots, {}
            for name, _, count in self.tiers:
                take = left if count is None else min(count, left)
                tiers[name] = take
                left -= take
            if left:
                raise ValueError(f"the tiers hold {slots - left} of the {slots} slots the "
                                 "schedule needs; give the last tier slots=None")
        unknown = set(tiers) - {t[0] for t in self.tiers}
        if unknown:
            raise ValueError(f"the schedule puts slots in tiers {sorted(unknown)} this store "
                             f"lacks (it has {[t[0] for t in self.tiers]})")
        self.layout = {name: tiers.get(name, 0) for name, _, _ in self.tiers}
        self._bounds = []
        start = 0
        for name, store, _ in self.tiers:
            self._bounds.append((start, start + self.layout[name], store))
            start += self.layout[name]
        # in-place tiers last: the others reset the stepper's own pool
        for name, store, _ in sorted(self.tiers, key=lambda t: t[1].in_place):
            store.bind(stepper, self.layout[name])

    def place(self, slot: int) -> tuple[CheckpointStore, int]:
        """The store holding ``slot`` and the slot's number in it."""
        for lo, hi, store in self._bounds:
            if lo <= slot < hi:
                return store, slot - lo
        raise IndexError(f"slot {slot} is outside the bound tiers {self.layout}")

    def in_place_slot(self, slot: int) -> bool:
        """Whether the stepper's kernels read and write ``slot`` themselves."""
        return self.place(slot)[0].in_place

    def save(self, step: int, slot: int) -> None:
        """Into the slot's tier."""
        store, k = self.place(slot)
        store.save(step, k)

    def load(self, step: int, slot: int) -> None:
        """From the slot's tier."""
        store, k = self.place(slot)
        store.load(step, k)

    @property
    def nbytes(self) -> int:
        """Bytes the tiers hold in RAM for states."""
        return sum(store.nbytes for _, store, _ in self.tiers)

    def close(self) -> None:
        """Close every tier that can be closed (the disk's files are removed)."""
        for _, store, _ in self.tiers:
            close = getattr(store, "close", None)
            if close is not None:
                close()


def checkpoint_directory(directory: str | os.PathLike[str] | None = None) -> str:
    """Where disk checkpoints go.

    ``directory``, else ``$DIFFSIM_CHECKPOINT_DIR``, else the system's temporary
    directory; it must exist.
    """
    where = os.fspath(directory) if directory is not None else (
        os.environ.get("DIFFSIM_CHECKPOINT_DIR") or tempfile.gettempdir())
    if not os.path.isdir(where):
        raise ValueError(f"checkpoint directory {where!r} does not exist; create it or pass "
                         "another (directory=..., dir:PATH on the command line, or "
                         "$DIFFSIM_CHECKPOINT_DIR)")
    return where


_BANDWIDTH: dict[str, float] = {}


def disk_bandwidth(directory: str | os.PathLike[str] | None = None, *,
                   nbytes: int = 64 * 2**20) -> float:
    """Sustained write bandwidth of ``directory``'s disk in bytes per second.

    Writes ``nbytes`` in 8 MiB blocks and waits for them to reach the disk (``fsync``),
    once per directory and process (later calls return the first figure); the planner of
    :class:`~diffsim.checkpoint.Budget` uses it for both writes and reads (reads of
    recent checkpoints often come from the page cache, so this errs slow).
    """
    where = checkpoint_directory(directory)
    key = os.path.realpath(where)
    if key not in _BANDWIDTH:
        block = np.random.default_rng(0).integers(0, 255, 8 * 2**20, dtype=np.uint8).tobytes()
        fd, path = tempfile.mkstemp(prefix="diffsim-bandwidth-", dir=where)
        try:
            t0 = time.perf_counter()
            written = 0
            while written < nbytes:
                written += os.write(fd, block)
            os.fsync(fd)
            _BANDWIDTH[key] = written / max(time.perf_counter() - t0, 1e-6)
        finally:
            os.close(fd)
            os.remove(path)
    return _BANDWIDTH[key]


def _meminfo(key: str) -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def checkpoint_tiers(directory: str | os.PathLike[str] | None = None, *,
                     measure: bool = True) -> dict[str, dict[str, Any]]:
    """The checkpoint tiers this machine offers, as ``diffsim info`` reports them.

    ``memory``: the stepper's device pool (on the CPU backend it is host RAM too);
    ``host``: RAM (total and available); ``disk``: the checkpoint directory, its free
    space and, with ``measure``, its write bandwidth (:func:`disk_bandwidth`); plus the
    lossless codec a :class:`DiskStore` would use.
    """
    from diffsim._runtime import info

    runtime = info()
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = None
    host = {"total_bytes": total, "available_bytes": _meminfo("MemAvailable")}
    where = checkpoint_directory(directory)
    disk: dict[str, Any] = {"directory": where, "free_bytes": shutil.disk_usage(where).free,
                            "lossless_codec": _codec()[0]}
    if measure:
        disk["write_bytes_per_second"] = round(disk_bandwidth(where))
    memory = {"store": "device", "arch": runtime.arch,
              "note": "the stepper's own pool, read in place by its kernels"
                      + ("; on the CPU backend this is host RAM" if runtime.arch == "cpu" else "")}
    return {"memory": memory, "host": host, "disk": disk}
