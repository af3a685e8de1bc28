"""Remake the gallery's committed figures by running the commands in ``docs/figures/figures.toml``.

The documentation build never runs an example; it shows the files this script copies
into ``docs/figures/``. Run it from the repository root after changing an example, then
commit the figures::

    .venv/bin/python docs/make_figures.py                  # every example with a command
    .venv/bin/python docs/make_figures.py wave_gradient    # only these

Entries marked ``refresh = false`` (runs that take most of an hour) are skipped unless
named. Each command runs in a fresh process with ``OUT`` replaced by a temporary folder
and ``python`` by this interpreter.
"""

from __future__ import annotations

import argparse
import pathlib
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
MANIFEST = DOCS / "figures" / "figures.toml"


def main(argv: list[str] | None = None) -> None:
    """Run the selected commands and copy their figures into place."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="examples to remake (default: all refreshable)")
    args = parser.parse_args(argv)
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    unknown = sorted(set(args.names) - set(manifest))
    if unknown:
        parser.error(f"not in {MANIFEST.relative_to(ROOT)}: {', '.join(unknown)}")
    names = args.names or [n for n, e in manifest.items() if e.get("refresh", True)]
    for name in names:
        entry = manifest[name]
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable if word == "python" else word.replace("OUT", tmp)
                       for word in shlex.split(entry["command"])]
            start = time.perf_counter()
            subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            print(f"{name}: {time.perf_counter() - start:.0f} s")
            for fig in entry.get("figure", []):
                target = DOCS / fig["file"]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(pathlib.Path(tmp) / fig["output"], target)
                print(f"  {fig['output']} -> {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
