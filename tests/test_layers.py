"""Imports flow down the layers only: kernels <- core <- physics <- drivers/viz <- scenarios/cli.

Every ``import`` in the package (module level or inside a function) is read from the
source with :mod:`ast`; a module may import its own layer and the layers below it.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: Layer of every module, lowest first. A new module must be placed here.
LAYERS: dict[str, int] = {}
for rank, names in enumerate([
    ["kernels"],
    ["_runtime", "_parallel", "_fields", "_validate", "_tape", "_simulation", "checkpoint", "stores",
     "losses", "gradcheck", "diagnostics", "_plot", "io", "units", "segy", "models",
     "downloads", "__init__"],
    ["acoustic", "wave", "springs", "chain", "linear", "elastic"],
    ["optim", "fwi", "spring_design", "viz", "render", "_interop", "torch", "jax"],
    ["scenarios", "cli", "__main__"],
]):
    for name in names:
        LAYERS[name] = rank
NAMES = ["kernels", "core", "physics", "drivers and figures", "scenarios and the CLI"]


def modules() -> list[tuple[str, pathlib.Path]]:
    found = [(p.stem, p) for p in sorted((ROOT / "diffsim").glob("*.py"))]
    found += [(p.parent.name, p) for p in sorted((ROOT / "diffsim").glob("*/*.py"))]
    found += [("kernels", p) for p in sorted((ROOT / "kernels").rglob("*.py"))]
    found += [("scenarios", p) for p in sorted((ROOT / "scenarios").glob("*.py"))]
    return found


def imported(path: pathlib.Path) -> set[str]:
    """The diffsim modules ``path`` imports, by their layer key."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "diffsim" and len(parts) > 1 and parts[1] in LAYERS:
                out.add(parts[1])
    return out


@pytest.mark.parametrize("key,path", modules(),
                         ids=lambda v: str(v.relative_to(ROOT)) if isinstance(v, pathlib.Path) else v)
def test_imports_flow_down(key: str, path: pathlib.Path) -> None:
    # the package's __init__ re-exports the core only; the alias wave.py imports acoustic
    assert key in LAYERS, f"{path.name} is not placed in a layer (add it to LAYERS)"
    own = LAYERS[key]
    for target in imported(path):
        assert LAYERS[target] <= own, (
            f"{path.relative_to(ROOT)} ({NAMES[own]}) imports diffsim.{target} "
            f"({NAMES[LAYERS[target]]}): imports must flow down the layers")


def test_kernels_import_only_taichi_and_numpy() -> None:
    allowed = {"taichi", "numpy", "math", "__future__", "collections", "functools", "typing",
               "diffsim"}
    for path in sorted((ROOT / "kernels").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert roots <= allowed, f"kernels/{path.name} imports {roots - allowed}"


def test_every_package_is_installed() -> None:
    """A non-editable install ships exactly the packages pyproject lists: list every one."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {"diffsim", "diffsim.kernels", "diffsim.scenarios"}
    found |= {f"diffsim.{p.parent.name}" for p in (ROOT / "diffsim").glob("*/__init__.py")}
    found |= {f"diffsim.kernels.{p.parent.name}" for p in (ROOT / "kernels").glob("*/__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"
