"""``diffsim data``: models that cannot ship are fetched, checked and converted (no internet).

The source files are served from a local HTTP server or a ``file://`` URL; the registry
entry is pointed at a synthetic source of the right format, with its checksum.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import os
import pathlib
import subprocess
import sys
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from diffsim import downloads
from diffsim.models import load_model


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def server(tmp_path: pathlib.Path) -> Iterator[tuple[str, pathlib.Path]]:
    """A local HTTP server over a folder: ``(base URL, folder)``."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


def synthetic_marmousi(folder: pathlib.Path) -> tuple[pathlib.Path, np.ndarray]:
    """A source file in the SU ASCII layout (one value a line, depth fastest) and its model."""
    nz, nx = downloads.DOWNLOADS["marmousi"].shape
    model = (1500.0 + np.arange(nz)[:, None] * 20.0 + np.arange(nx)[None, :]).astype(np.float32)
    path = folder / "marmhard.dat"
    path.write_text("\n".join(f"{v:g}" for v in model.T.ravel()) + "\n")
    return path, model


def point_registry_at(monkeypatch: pytest.MonkeyPatch, source: pathlib.Path, url: str) -> None:
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    entry = dataclasses.replace(downloads.DOWNLOADS["marmousi"], url=url, sha256=digest,
                                sha256_npy=None)
    monkeypatch.setitem(downloads.DOWNLOADS, "marmousi", entry)


def test_get_downloads_checks_converts_and_load_model_reads_it(
        server: tuple[str, pathlib.Path], tmp_path: pathlib.Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    base, root = server
    source, model = synthetic_marmousi(root)
    point_registry_at(monkeypatch, source, f"{base}/marmhard.dat")
    lines: list[str] = []
    target = tmp_path / "data"
    npy = downloads.get("marmousi", target, echo=lines.append)
    assert npy == target / "marmousi_vp_24m.npy" and any("downloading" in x for x in lines)
    loaded = load_model("marmousi", target)          # the sidecar's checksum is verified
    np.testing.assert_array_equal(loaded.velocity, model)
    assert loaded.spacing == 24.0
    assert sorted(p.name for p in target.iterdir()) == ["marmousi_vp_24m.json",
                                                         "marmousi_vp_24m.npy"]
    # a file:// URL (a local copy) works the same
    again = downloads.get("marmousi", tmp_path / "again", url=source.as_uri())
    assert again.read_bytes() == npy.read_bytes()


def test_a_wrong_or_broken_download_writes_nothing(server: tuple[str, pathlib.Path],
                                                   tmp_path: pathlib.Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    base, root = server
    source, _ = synthetic_marmousi(root)
    point_registry_at(monkeypatch, source, f"{base}/marmhard.dat")
    (root / "other.dat").write_text("1\n2\n3\n")
    target = tmp_path / "data"
    with pytest.raises(ValueError, match="has SHA-256 .* not the expected .*nothing was written"):
        downloads.get("marmousi", target, url=f"{base}/other.dat")
    with pytest.raises(ValueError, match="could not download .*missing.dat"):
        downloads.get("marmousi", target, url=f"{base}/missing.dat")
    assert list(target.iterdir()) == []               # no partial file, no temporary left
    # the real registry: a file that is not the published source is refused
    monkeypatch.undo()
    with pytest.raises(ValueError, match="not the source marmousi_vp_24m was made from"):
        downloads.get("marmousi", target, url=source.as_uri())
    with pytest.raises(ValueError, match="unknown model 'salt'; choose one of"):
        downloads.get("salt", target)


def test_marmousi2_is_copied_from_the_package(tmp_path: pathlib.Path) -> None:
    npy = downloads.get("marmousi2", tmp_path)
    np.testing.assert_array_equal(load_model("marmousi2", tmp_path).velocity,
                                  load_model("marmousi2").velocity)
    assert npy.is_file() and (tmp_path / "marmousi2_vp_20m.json").is_file()


def test_cli_data_list_and_get(tmp_path: pathlib.Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DIFFSIM_DATA"}
    res = subprocess.run([sys.executable, "-m", "diffsim.cli", "data", "list"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "marmousi2" in res.stdout and "ships with diffsim" in res.stdout
    assert "not here: diffsim data get overthrust --to DIR" in res.stdout
    assert "raw.githubusercontent.com/slimgroup/JUDI.jl/" in res.stdout
    res = subprocess.run([sys.executable, "-m", "diffsim.cli", "data", "get", "marmousi",
                          "--to", str(tmp_path), "--url", (tmp_path / "none.dat").as_uri()],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "could not download" in res.stderr
    assert "Traceback" not in res.stderr and list(tmp_path.iterdir()) == []
