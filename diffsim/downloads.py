"""Real models that cannot ship with diffsim: fetched from their public source and verified.

Marmousi2 ships inside the package (CC BY 4.0). The Overthrust and original Marmousi
models have no licence that allows redistribution, so diffsim never copies them; instead
:func:`get` downloads each from the public repository file it was made from (a fixed
commit), checks the SHA-256 of what arrived, converts it to the ``[z, x]`` ``.npy`` that
:func:`diffsim.models.load_model` reads, checks the SHA-256 of the result and writes the
JSON sidecar beside it. Nothing is left behind when a check fails or the transfer breaks
(everything goes through temporary files in the target folder). ``diffsim data list``
and ``diffsim data get NAME --to DIR`` are the command-line forms.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from diffsim.io import atomic_write
from diffsim.models import KNOWN_MODELS, PACKAGED, data_folder, file_sha256, ships_with_diffsim

__all__ = ["DOWNLOADS", "Download", "available", "get"]


@dataclass(frozen=True)
class Download:
    """Where a model comes from and how it becomes ``STEM.npy``.

    Attributes:
        stem: the file stem (``overthrust_vp_25m``).
        url: the source file at a fixed commit.
        sha256: SHA-256 of the source file.
        sha256_npy: SHA-256 of the converted ``.npy`` (``None``: not checked).
        shape: ``(nz, nx)`` of the result.
        spacing: grid spacing in m.
        convert: the source format: ``"ascii-columns"`` (one value a line, depth fastest)
            or ``"hdf5-slowness"`` (JUDI's HDF5, dataset ``m`` = squared slowness in
            s^2/km^2, ``[x, z]``).
        licence: what the source says about reuse.
    """

    stem: str
    url: str
    sha256: str
    sha256_npy: str | None
    shape: tuple[int, int]
    spacing: float
    convert: str
    licence: str


_RAW = "https://raw.githubusercontent.com"

#: The models diffsim can fetch, by name (see :data:`diffsim.models.KNOWN_MODELS`).
DOWNLOADS: dict[str, Download] = {
    "overthrust": Download(
        stem="overthrust_vp_25m",
        url=f"{_RAW}/slimgroup/JUDI.jl/73c8e8290608b1157160f275b03d7f6bc57357c0/"
            "data/overthrust_model.h5",
        sha256="8cbb0e2a5925782d9fcfcb4420d5d709a1b2074106282655ec092e5c6fac5493",
        sha256_npy="6f5ae4c19f38cd5aa3633e5d4a798ffd2e4954f3daf8d6749415c84270ebf806",
        shape=(121, 401), spacing=25.0, convert="hdf5-slowness",
        licence="SEG/EAGE copyright; no explicit licence text in the source repository"),
    "marmousi": Download(
        stem="marmousi_vp_24m",
        url=f"{_RAW}/pablombarros/SeisUnix/a45da02732aab37fbbaede9e44700eaa29b01818/"
            "src/demos/Velocity_Profiles/Marmousi/marmhard.dat",
        sha256="5b1486bf182f33b7f9848e185f9f1453a11f6ccd1816f92f5bcce93b92c4d525",
        sha256_npy="c38fa002300b8c243c68ae793a463f5fa1e95a6bc37d8870ea425bc04c8d356a",
        shape=(122, 384), spacing=24.0, convert="ascii-columns",
        licence="no explicit licence for the model data; redistributed inside Seismic Un*x "
                "(CWP/SU licence, BSD-style, Colorado School of Mines)"),
}


def available(data: os.PathLike[str] | str | None = None) -> list[dict[str, str]]:
    """Every real model diffsim knows: name, file stem, and where it is (or comes from).

    Args:
        data: a data folder to look in (default ``$DIFFSIM_DATA``).

    Returns:
        One dict per model: ``name``, ``stem``, ``status`` (``"ships with diffsim"``,
        ``"found in DIR"`` or ``"not here: diffsim data get NAME --to DIR"``) and
        ``source`` (the URL, or the packaged folder).
    """
    folder = data_folder(data)
    rows = []
    for name, stem in KNOWN_MODELS.items():
        if folder is not None and (folder / f"{stem}.npy").is_file():
            status = f"found in {folder}"
        elif ships_with_diffsim(name):
            status = "ships with diffsim"
        else:
            status = f"not here: diffsim data get {name} --to DIR"
        source = DOWNLOADS[name].url if name in DOWNLOADS else str(PACKAGED)
        rows.append({"name": name, "stem": stem, "status": status, "source": source})
    return rows


def _write_bytes(path: pathlib.Path, content: bytes) -> None:
    atomic_write(path, lambda h: h.write(content), binary=True)


def _fetch(url: str, target: pathlib.Path, timeout: float) -> None:
    """Stream ``url`` into ``target`` (a file or HTTP(S) URL)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as f:
            shutil.copyfileobj(response, f, length=1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ValueError(f"could not download {url} ({exc}); check the network (or pass "
                         "--url with a local copy of the file)") from None


def _convert(spec: Download, source: pathlib.Path) -> np.ndarray:
    """The source file as float32 ``[z, x]`` in m/s."""
    nz, nx = spec.shape
    if spec.convert == "ascii-columns":
        values = np.loadtxt(source, dtype=np.float64).ravel()
        if values.size != nz * nx:
            raise ValueError(f"{source} holds {values.size} values; {spec.stem} needs "
                             f"{nz} x {nx} = {nz * nx}")
        return np.ascontiguousarray(values.reshape(nx, nz).T, dtype=np.float32)
    if spec.convert == "hdf5-slowness":
        try:
            import h5py  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise ValueError(f"{spec.stem} comes as HDF5: reading it needs h5py "
                             "(pip install h5py), then run the command again") from None
        with h5py.File(source, "r") as f:
            m = np.asarray(f["m"], dtype=np.float64)
        v = 1000.0 / np.sqrt(m)
        if v.shape == (nx, nz):
            v = v.T
        return np.ascontiguousarray(v, dtype=np.float32)
    raise ValueError(f"unknown conversion {spec.convert!r}")


def get(name: str, to: os.PathLike[str] | str, *, url: str | None = None, timeout: float = 60.0,
        echo: Callable[[str], None] | None = None) -> pathlib.Path:
    """Put model ``name``'s ``STEM.npy`` and ``STEM.json`` into folder ``to``.

    Args:
        name: ``"overthrust"`` or ``"marmousi"`` (downloaded), or ``"marmousi2"`` (copied
            from the package).
        to: the data folder to fill (created when missing); pass it later as ``--data``.
        url: fetch the source from here instead (a mirror, or ``file://`` a local copy);
            its SHA-256 must still match.
        timeout: seconds to wait for the server.
        echo: progress lines.

    Returns:
        The path of the ``.npy``.

    Raises:
        ValueError: an unknown name, a failed download, a checksum that does not match
            (nothing is written then), or a result of the wrong shape.
    """
    say = echo or (lambda text: None)
    folder = pathlib.Path(to)
    if name not in KNOWN_MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(KNOWN_MODELS)} "
                         "(`diffsim data list`)")
    stem = KNOWN_MODELS[name]
    folder.mkdir(parents=True, exist_ok=True)
    if name not in DOWNLOADS:   # it ships: copy the packaged files
        for suffix in (".npy", ".json"):
            _write_bytes(folder / f"{stem}{suffix}", (PACKAGED / f"{stem}{suffix}").read_bytes())
        say(f"{name}: copied {stem}.npy and {stem}.json from the package into {folder}")
        return folder / f"{stem}.npy"
    spec = DOWNLOADS[name]
    source_url = url or spec.url
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=".download")
    os.close(fd)
    tmp = pathlib.Path(tmp_name)
    try:
        say(f"{name}: downloading {source_url}")
        _fetch(source_url, tmp, timeout)
        digest = file_sha256(tmp)
        if digest != spec.sha256:
            raise ValueError(f"{name}: the file from {source_url} has SHA-256 {digest}, not the "
                             f"expected {spec.sha256}; it is not the source {stem} was made "
                             "from (nothing was written)")
        velocity = _convert(spec, tmp)
    finally:
        tmp.unlink(missing_ok=True)
    if velocity.shape != spec.shape or not np.all(np.isfinite(velocity)):
        raise ValueError(f"{name}: the converted model has shape {velocity.shape} (expected "
                         f"{spec.shape}) or non-finite values (nothing was written)")
    buffer = io.BytesIO()
    np.save(buffer, velocity)
    npy_bytes = buffer.getvalue()
    npy_digest = hashlib.sha256(npy_bytes).hexdigest()
    if spec.sha256_npy is not None and npy_digest != spec.sha256_npy:
        raise ValueError(f"{name}: the converted model's SHA-256 is {npy_digest}, not the "
                         f"expected {spec.sha256_npy} (nothing was written)")
    sidecar = {
        "name": stem, "file": f"{stem}.npy", "nz": spec.shape[0], "nx": spec.shape[1],
        "dz": spec.spacing, "dx": spec.spacing, "spacing_units": "m", "units": "m/s",
        "axis_order": "[z, x]: row 0 is the top (z = 0), column 0 is x = 0",
        "quantity": "P-wave velocity", "sha256_npy": npy_digest, "source_url": spec.url,
        "downloaded_from": source_url, "source_sha256": spec.sha256,
        "conversion": spec.convert, "license": spec.licence,
    }
    _write_bytes(folder / f"{stem}.npy", npy_bytes)
    atomic_write(folder / f"{stem}.json", lambda h: json.dump(sidecar, h, indent=2))
    say(f"{name}: wrote {folder / stem}.npy ({spec.shape[0]} x {spec.shape[1]} at "
        f"{spec.spacing:g} m) and its sidecar; use --data {folder}")
    return folder / f"{stem}.npy"
