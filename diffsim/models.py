"""Velocity models: real ones from a data folder, built-in synthetic ones, crop/resample/smooth.

Real models are ``NAME.npy`` files (``[z, x]`` in m/s) with a JSON sidecar ``NAME.json``
that gives the spacing, the public source and the SHA-256 of the ``.npy``. The folder comes
from the caller (``--data DIR``) or the ``DIFFSIM_DATA`` environment variable. Marmousi2
(CC BY 4.0) ships inside the package (``diffsim/data``, with its attribution), so it loads
with no folder at all; the other models have no licence to redistribute and are read from
the folder only.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["KNOWN_MODELS", "file_sha256", "MODEL_SUFFIXES", "PACKAGED", "VelocityModel", "builtin_model",
           "is_model_file", "model_from_file", "ships_with_diffsim", "data_folder", "load_model",
           "smooth"]

#: The models shipped in the package (``diffsim/data``), by file stem.
PACKAGED = pathlib.Path(__file__).resolve().parent / "data"

#: Real models diffsim knows by name: file stem in the data folder.
KNOWN_MODELS = {
    "marmousi2": "marmousi2_vp_20m",
    "overthrust": "overthrust_vp_25m",
    "marmousi": "marmousi_vp_24m",
}


@dataclass(frozen=True)
class VelocityModel:
    """A 2D velocity model on a regular grid.

    Attributes:
        velocity: ``[z, x]`` in m/s, row 0 at the surface.
        spacing: grid spacing in m (the same on both axes).
        name: where it came from.
    """

    velocity: np.ndarray
    spacing: float
    name: str

    @property
    def extent(self) -> tuple[float, float]:
        """Depth and width in m, from the first to the last cell centre."""
        nz, nx = self.velocity.shape
        return (nz - 1) * self.spacing, (nx - 1) * self.spacing

    def crop(self, z: tuple[float, float] | None = None, x: tuple[float, float] | None = None
             ) -> VelocityModel:
        """The part between depths ``z`` and offsets ``x`` (m, inclusive of the cells inside)."""
        v = self.velocity
        sl = []
        for axis, rng in enumerate((z, x)):
            n = v.shape[axis]
            if rng is None:
                sl.append(slice(0, n))
                continue
            lo, hi = rng
            limit = (n - 1) * self.spacing
            if not 0 <= lo < hi <= limit:
                name = "z" if axis == 0 else "x"
                raise ValueError(f"crop {name}=({lo}, {hi}) m must satisfy 0 <= lo < hi <= "
                                 f"{limit:g} m (the model's extent on that axis)")
            sl.append(slice(int(np.ceil(lo / self.spacing - 1e-9)),
                            int(np.floor(hi / self.spacing + 1e-9)) + 1))
        return VelocityModel(v[tuple(sl)].copy(), self.spacing, self.name)

    def resample(self, spacing: float) -> VelocityModel:
        """The model on a grid of ``spacing`` m covering the same extent.

        Linear interpolation; a coarser grid is anti-alias smoothed first.
        """
        if not spacing > 0:
            raise ValueError(f"spacing={spacing!r} must be positive (metres)")
        if abs(spacing - self.spacing) < 1e-9 * self.spacing:
            return self
        v = self.velocity.astype(np.float64)
        ratio = spacing / self.spacing
        if ratio > 1:
            v = ndimage.gaussian_filter(v, sigma=0.5 * (ratio - 1) ** 0.5 * ratio ** 0.5,
                                        mode="nearest")
        depth, width = self.extent
        nz, nx = int(np.floor(depth / spacing + 1e-9)) + 1, int(np.floor(width / spacing + 1e-9)) + 1
        zz = np.arange(nz) * (spacing / self.spacing)
        xx = np.arange(nx) * (spacing / self.spacing)
        coords = np.meshgrid(zz, xx, indexing="ij")
        out = ndimage.map_coordinates(v, coords, order=1, mode="nearest")
        return VelocityModel(out, float(spacing), self.name)


def smooth(velocity: np.ndarray, sigma_cells: float, *, fixed_rows: int = 0) -> np.ndarray:
    """A Gaussian-smoothed copy (a starting model); the top ``fixed_rows`` rows are kept."""
    v = np.asarray(velocity, dtype=np.float64)
    out = ndimage.gaussian_filter(v, sigma=sigma_cells, mode="nearest") if sigma_cells > 0 else v.copy()
    out[:fixed_rows] = v[:fixed_rows]
    return out


def data_folder(data: os.PathLike | str | None) -> pathlib.Path | None:
    """The folder of real models: ``data``, else ``$DIFFSIM_DATA``, else ``None``."""
    if data is not None:
        return pathlib.Path(data)
    env = os.environ.get("DIFFSIM_DATA")
    return pathlib.Path(env) if env else None


def file_sha256(path: pathlib.Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(name: str, data: os.PathLike | str | None = None, *, verify: bool = True
               ) -> VelocityModel:
    """A real velocity model from the data folder, or from the package (Marmousi2).

    Args:
        name: ``marmousi2``, ``overthrust`` or ``marmousi`` (or a file stem in the folder).
        data: the folder; ``None`` reads ``$DIFFSIM_DATA``. A model the folder does not
            hold (or any model, with no folder) is read from the package when it ships
            there (``marmousi2_vp_20m``, ``marmousi2_vs_20m``, ``marmousi2_rho_20m``).
        verify: check the ``.npy`` against the sidecar's SHA-256.

    Raises:
        FileNotFoundError: no folder, or the files are missing (the message says how to get them).
        ValueError: a checksum or shape mismatch.
    """
    stem = KNOWN_MODELS.get(name, name)
    folder = data_folder(data)
    how = (f" `diffsim data get {name} --to DIR` downloads it from its public source and "
           "checks it." if name in KNOWN_MODELS and not ships_with_diffsim(name) else "")
    where = (f"Pass --data DIR (or set DIFFSIM_DATA) to a folder holding {stem}.npy and "
             f"{stem}.json.{how}")
    if ships_with_diffsim(name) and (folder is None or not (folder / f"{stem}.npy").is_file()):
        folder = PACKAGED
    if folder is None:
        raise FileNotFoundError(f"model {name!r} needs a data folder, and none was given. {where}")
    npy, sidecar = folder / f"{stem}.npy", folder / f"{stem}.json"
    for path in (npy, sidecar):
        if not path.is_file():
            raise FileNotFoundError(f"model {name!r}: {path} does not exist. {where}")
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    if verify and "sha256_npy" in meta and file_sha256(npy) != meta["sha256_npy"]:
        raise ValueError(f"model {name!r}: {npy} does not match the SHA-256 in {sidecar}; the "
                         "file is corrupt or a different version. Recreate it from the source "
                         "named in the sidecar (`diffsim data get NAME --to DIR`).")
    v = np.load(npy).astype(np.float64)
    if v.shape != (meta.get("nz", v.shape[0]), meta.get("nx", v.shape[1])):
        raise ValueError(f"model {name!r}: {npy} has shape {v.shape}, the sidecar says "
                         f"({meta.get('nz')}, {meta.get('nx')})")
    if meta.get("dz", meta.get("dx")) != meta.get("dx"):
        raise ValueError(f"model {name!r}: dz != dx in {sidecar}; only square cells are supported")
    return VelocityModel(v, float(meta["dx"]), name)


#: File suffixes :func:`model_from_file` reads.
MODEL_SUFFIXES = (".npy", ".sgy", ".segy")


def is_model_file(name: str) -> bool:
    """Whether ``name`` names a model file (by its suffix) rather than a known model."""
    return str(name).lower().endswith(MODEL_SUFFIXES)


def ships_with_diffsim(name: str) -> bool:
    """Whether the model ``name`` (or file stem) is in the package, so it needs no folder."""
    stem = KNOWN_MODELS.get(name, name)
    return (PACKAGED / f"{stem}.npy").is_file() and (PACKAGED / f"{stem}.json").is_file()


def model_from_file(path: os.PathLike | str, spacing: float) -> VelocityModel:
    """A user's velocity model: ``.npy`` (``[z, x]``, m/s) or SEG-Y (one trace per x).

    Args:
        path: the file. A SEG-Y model holds one trace per x position, its samples down
            in depth (read with segyio, headers not interpreted: depth sections store
            their cell size in the sample-interval field in different units, so give it).
        spacing: the cell size in m (the same in z and x).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a suffix other than .npy/.sgy/.segy, a missing spacing, not 2D, NaN or
            Inf, values <= 0, or values that look like km/s.
    """
    path = pathlib.Path(path)
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise ValueError(f"model file {path}: the suffix must be one of {', '.join(MODEL_SUFFIXES)}")
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist (looked in "
                                f"{path.resolve().parent})")
    if not (isinstance(spacing, (int, float)) and spacing > 0):
        raise ValueError(f"model file {path}: its cell size is needed; set model_spacing to the "
                         "spacing of the file's grid in m (e.g. model_spacing = 12.5)")
    if path.suffix.lower() == ".npy":
        v = np.load(path).astype(np.float64)
    else:
        import segyio

        try:
            with segyio.open(str(path), ignore_geometry=True) as f:
                v = f.trace.raw[:].astype(np.float64).T        # [trace, sample] -> [z, x]
        except Exception as exc:  # segyio raises RuntimeError/OSError on corrupt files
            raise ValueError(f"model file {path} is not a readable SEG-Y file ({exc})") from None
    if v.ndim != 2 or min(v.shape) < 2:
        raise ValueError(f"model file {path} holds an array of shape {v.shape}; expected a "
                         "2D velocity model [z, x] of at least 2 x 2 cells")
    if not np.all(np.isfinite(v)):
        i = tuple(int(k) for k in np.argwhere(~np.isfinite(v))[0])
        raise ValueError(f"model file {path}: NaN or Inf at [z, x] = {list(i)}")
    if v.min() <= 0:
        raise ValueError(f"model file {path}: velocities must be > 0 m/s; smallest "
                         f"{v.min():g}")
    if v.max() < 20.0:
        raise ValueError(f"model file {path}: the largest value is {v.max():g}; velocities are "
                         "in m/s, and these look like km/s (multiply by 1000)")
    return VelocityModel(v, float(spacing), path.stem)


def builtin_model(name: str, shape: tuple[int, int], spacing: float) -> VelocityModel:
    """A synthetic model that needs no data.

    ``layered``: four layers from 1.5 to 3.0 km/s with a dipping interface and a slow
    (-15 %) Gaussian lens. ``camembert``: a 2.0 km/s background with a 2.25 km/s disc
    (radius a fifth of the smaller extent) in the middle.
    """
    nz, nx = shape
    if nz < 8 or nx < 8:
        raise ValueError(f"shape={shape} is too small; at least 8 x 8 cells")
    z = np.arange(nz)[:, None] * spacing
    x = np.arange(nx)[None, :] * spacing
    depth, width = (nz - 1) * spacing, (nx - 1) * spacing
    if name == "layered":
        v = np.full((nz, nx), 1500.0)
        v = np.where(z > 0.2 * depth, 2000.0, v)
        v = np.where(z > 0.45 * depth + 0.1 * depth * (x / width - 0.5), 2500.0, v)
        v = np.where(z > 0.75 * depth, 3000.0, v)
        lens = np.exp(-(((z - 0.6 * depth) / (0.08 * depth)) ** 2
                        + ((x - 0.55 * width) / (0.12 * width)) ** 2))
        v = v * (1.0 - 0.15 * lens * (z > 0.2 * depth))
    elif name == "camembert":
        r = 0.2 * min(depth, width)
        disc = (z - 0.5 * depth) ** 2 + (x - 0.5 * width) ** 2 <= r * r
        v = np.where(disc, 2250.0, 2000.0) * np.ones((nz, nx))
    else:
        raise ValueError(f"built-in model {name!r} is unknown; choose 'layered' or 'camembert'")
    return VelocityModel(v.astype(np.float64), float(spacing), name)


def marmousi2_3d(shape: tuple[int, int, int], spacing: float,
                 data: os.PathLike | str | None = None) -> np.ndarray:
    """A 3D velocity model ``[z, y, x]`` (m/s) built from the packaged Marmousi2 section.

    Each ``y`` slice is the Marmousi2 P velocity sampled on the ``spacing`` grid
    (linear interpolation) from a window that slides along ``x`` as ``y`` grows (an
    oblique strike: 0.4 m of ``x`` per m of ``y``) and whose depth axis is stretched by
    up to 6 % along ``y``, so the structure varies laterally in both directions. The
    section is 3.5 km deep and 17 km wide: ``shape`` times ``spacing`` must fit (depth
    at most 3.5 km, ``x`` extent plus the slide at most 17 km).

    Args:
        shape: ``(nz, ny, nx)`` cells.
        spacing: cell size in m.
        data: a data folder holding ``marmousi2_vp_20m`` (default: the package's copy).
    """
    from scipy.ndimage import map_coordinates

    nz, ny, nx = (int(k) for k in shape)
    section = load_model("marmousi2", data).velocity.astype(np.float64)
    h0 = 20.0
    depth = (section.shape[0] - 1) * h0
    width = (section.shape[1] - 1) * h0
    z = np.arange(nz) * spacing
    y = np.arange(ny) * spacing
    x = np.arange(nx) * spacing
    slide = 0.4 * y
    if z[-1] * 1.06 > depth or x[-1] + slide[-1] > width:
        raise ValueError(f"shape={shape} at spacing={spacing} m does not fit in Marmousi2 "
                         f"({depth:.0f} m deep, {width:.0f} m wide; with the slide along y "
                         "the x extent grows by 0.4 x the y extent); use fewer cells or a "
                         "smaller spacing")
    x0 = 0.5 * (width - x[-1] - slide[-1])
    out = np.empty((nz, ny, nx))
    for j in range(ny):
        stretch = 1.0 + 0.06 * np.sin(np.pi * j / max(ny - 1, 1))
        zz, xx = np.meshgrid(z * stretch / h0, (x0 + slide[j] + x) / h0, indexing="ij")
        out[:, j, :] = map_coordinates(section, [zz, xx], order=1, mode="nearest")
    return out
