"""Ready-made problems as data (import name ``diffsim.scenarios``).

A scenario is a frozen dataclass with explicit typed fields, built by a named factory
and registered by name; tests, examples and the CLI all import them from here.
Nothing in ``diffsim`` imports this package.

Example::

    from diffsim import scenarios
    scenario = scenarios.get("chain")            # a ChainScenario
    chain = scenario.build()                     # an OscillatorChain stepper
"""

from __future__ import annotations

import pathlib
import tomllib
from collections.abc import Callable

from diffsim.scenarios._base import Scenario
from diffsim.scenarios.chain import ChainScenario
from diffsim.scenarios.springs import BridgeDesign, SoftRobotWalk, SpringIdentification

__all__ = ["BridgeDesign", "ChainScenario", "Scenario", "SoftRobotWalk", "SpringIdentification",
           "get", "load", "names", "register", "resolve"]

_REGISTRY: dict[str, Callable[[], Scenario]] = {}
_CLASSES: dict[str, type[Scenario]] = {}


def register(name: str, factory: Callable[[], Scenario], cls: type[Scenario] | None = None) -> None:
    """Register a scenario factory under ``name``.

    Args:
        name: the name ``diffsim run NAME`` takes.
        factory: returns a fresh scenario.
        cls: its class, for :func:`load` (default: ``factory`` itself when it is a class).
    """
    if name in _REGISTRY:
        raise ValueError(f"scenario {name!r} is already registered")
    _REGISTRY[name] = factory
    cls = cls or (factory if isinstance(factory, type) else None)
    if cls is not None:
        _CLASSES[cls.__name__] = cls


def names() -> list[str]:
    """Registered scenario names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> object:
    """A fresh instance of the scenario registered as ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown scenario {name!r}; known scenarios: {', '.join(names())}")
    return _REGISTRY[name]()


def load(path: pathlib.Path) -> Scenario:
    """A scenario read from a TOML file (as :meth:`Scenario.save` writes).

    Raises:
        ValueError: unreadable TOML, an unknown ``class``, unknown keys or wrong types.
    """
    path = pathlib.Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None
    cls_name = data.get("class")
    if cls_name not in _CLASSES:
        raise ValueError(f"{path}: key 'class' is {cls_name!r}; allowed values: "
                         f"{', '.join(sorted(_CLASSES))}")
    try:
        return _CLASSES[cls_name].from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def resolve(name_or_path: str) -> Scenario:
    """A registered scenario by name, or one loaded from a ``.toml`` file."""
    if name_or_path.endswith(".toml") or pathlib.Path(name_or_path).is_file():
        return load(pathlib.Path(name_or_path))
    return get(name_or_path)


register("chain", ChainScenario)
register("chain-small", lambda: ChainScenario(masses=6, steps=60), ChainScenario)
register("spring-bridge", BridgeDesign)
register("spring-identify", SpringIdentification)
register("spring-robot", SoftRobotWalk)
