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

from collections.abc import Callable

from diffsim.scenarios.chain import ChainScenario

__all__ = ["ChainScenario", "get", "names", "register"]

_REGISTRY: dict[str, Callable[[], object]] = {}


def register(name: str, factory: Callable[[], object]) -> None:
    """Register a scenario factory under ``name``."""
    if name in _REGISTRY:
        raise ValueError(f"scenario {name!r} is already registered")
    _REGISTRY[name] = factory


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


register("chain", ChainScenario)
register("chain-small", lambda: ChainScenario(masses=6, steps=60))
