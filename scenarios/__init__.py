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
from typing import Any

from diffsim.scenarios._base import Scenario
from diffsim.scenarios.chain import ChainScenario
from diffsim.scenarios.fwi import DensityFwiScenario, ElasticFwiScenario, FwiScenario
from diffsim.scenarios.fwi3d import Fwi3dScenario
from diffsim.scenarios.rtm import RtmScenario
from diffsim.scenarios.springs import BridgeDesign, SoftRobotWalk, SpringIdentification

__all__ = ["BridgeDesign", "ChainScenario", "DensityFwiScenario", "ElasticFwiScenario", "Fwi3dScenario",
           "FwiScenario", "RtmScenario", "Scenario", "SoftRobotWalk",
           "SpringIdentification", "get", "load", "names", "register", "resolve"]

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


def get(name: str) -> Scenario:
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
    if cls_name is None:
        raise ValueError(f"{path} has no 'class' key: add a line such as class = \"FwiScenario\" "
                         f"(one of {', '.join(sorted(_CLASSES))}), or start from "
                         "`diffsim show NAME > file.toml`, which writes it")
    if cls_name not in _CLASSES:
        raise ValueError(f"{path}: key 'class' is {cls_name!r}; allowed values: "
                         f"{', '.join(sorted(_CLASSES))}")
    try:
        return _CLASSES[cls_name].from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def resolve(name_or_path: str) -> Scenario:
    """A registered scenario by name, or one loaded from a ``.toml`` file.

    Raises:
        ValueError: an unknown name, a bad TOML file, or another kind of file (a model
            file gets the command that inverts it).
    """
    from diffsim.models import is_model_file

    path = pathlib.Path(name_or_path)
    if is_model_file(name_or_path):
        raise ValueError(f"{name_or_path} is a model file, not a scenario; invert it with an FWI "
                         f"scenario: diffsim run layered --set model={name_or_path} "
                         "--set model_spacing=CELL_SIZE_M (plus any other --set)")
    if name_or_path.endswith(".toml") or path.is_file():
        if path.suffix.lower() != ".toml":
            raise ValueError(f"{name_or_path} is not a .toml scenario file; give a registered "
                             f"name ({', '.join(names())}) or a .toml file "
                             "(`diffsim show NAME > my.toml` writes one)")
        return load(path)
    return get(name_or_path)


register("chain", ChainScenario)
register("chain-small", lambda: ChainScenario(masses=6, steps=60), ChainScenario)
register("layered", FwiScenario)
register("camembert", lambda: FwiScenario(model="camembert", shape=(60, 120), stages=(5.0, 8.0),
                                          start_model="background"), FwiScenario)
register("marmousi2", lambda: FwiScenario(
    model="marmousi2", spacing=40.0, shots=20, receivers=100, source_depth=20.0,
    receiver_depth=20.0, peak_frequency=5.0, duration=4.0, stages=(3.0, 5.0), iterations=15,
    start_smoothing=400.0, water_depth=440.0, vmin=1000.0, vmax=4800.0, order=4), FwiScenario)
register("overthrust", lambda: FwiScenario(
    model="overthrust", spacing=50.0, shots=16, receivers=100, source_depth=25.0,
    receiver_depth=25.0, peak_frequency=5.0, duration=3.5, stages=(3.0, 5.0), iterations=15,
    start_smoothing=400.0, water_depth=450.0, vmin=1400.0, vmax=6000.0), FwiScenario)
register("marmousi", lambda: FwiScenario(
    model="marmousi", spacing=48.0, shots=16, receivers=96, source_depth=24.0,
    receiver_depth=24.0, peak_frequency=5.0, duration=3.0, stages=(3.0, 5.0), iterations=15,
    start_smoothing=400.0, vmin=1400.0, vmax=5600.0), FwiScenario)
register("fwi-density-marmousi2", lambda: DensityFwiScenario(
    model="marmousi2", spacing=40.0, crop_x=(4000.0, 12000.0), shots=12, receivers=100,
    source_depth=20.0, receiver_depth=20.0, peak_frequency=5.0, duration=3.5, stages=(3.0, 5.0),
    iterations=8, start_smoothing=400.0, water_depth=440.0, vmin=1000.0, vmax=4800.0,
    density_min=1000.0, density_max=2700.0, order=4), DensityFwiScenario)
# Elastic FWI on the native 20 m grid (the soft sediment's S waves, vs 313-460 m/s, need
# it: 5 cells per S wavelength at 3 Hz with order 8), a 4 km x 2.5 km crop with a free
# surface on the water, 8 shots, 2.5 s, 2 stages x 6 iterations.
register("marmousi2-elastic", lambda: ElasticFwiScenario(
    model="marmousi2", spacing=20.0, crop_x=(4000.0, 8000.0), crop_z=(0.0, 2500.0), shots=8,
    receivers=100, source_depth=20.0, receiver_depth=20.0, peak_frequency=3.0, duration=2.5,
    stages=(2.0, 3.0), iterations=6, start_smoothing=400.0, water_depth=440.0, vmin=1000.0,
    vmax=4800.0, density_min=1000.0, density_max=2700.0, vs_min=0.0, vs_max=3000.0, order=8,
    free_surface=True), ElasticFwiScenario)
# 3D FWI: Marmousi2 extended along y (diffsim.models.marmousi2_3d), 32 x 32 x 48 cells at
# 50 m (6 cells per wavelength in the water at the 5 Hz peak), 2 x 2 shots, 12 x 12
# receivers, 2 s (480 steps), stages 3 and 5 Hz x 3 iterations; one state of the 4 shots
# is 23 MiB, so the 64 MiB memory budget holds two and the 1 GiB disk tier 44: every
# gradient runs a TwoLevel plan whose disk states the tape writes and reads back itself.
# About 5.5 min on 2 cores with a warm kernel cache.
register("marmousi2-3d", Fwi3dScenario)
register("rtm-marmousi2", RtmScenario)
register("lsrtm-marmousi2", lambda: RtmScenario(
    method="lsrtm", crop_x=(4000.0, 12000.0), shots=12, receivers=160, duration=2.5,
    iterations=5), RtmScenario)
register("spring-bridge", BridgeDesign)
register("spring-identify", SpringIdentification)
register("spring-robot", SoftRobotWalk)


def diagnosis_problem(toml_text: str, data: str | None = None) -> tuple[Any, Any, Any]:
    """``(simulation, loss, wrt)`` of a scenario given as TOML text (:meth:`Scenario.to_toml`).

    A module-level function, so ``functools.partial(diagnosis_problem, text, data)`` is the
    picklable problem factory the precision advice runs in fresh processes.
    """
    values = tomllib.loads(toml_text)
    cls_name = values.get("class")
    if cls_name not in _CLASSES:
        raise ValueError(f"scenario TOML names class {cls_name!r}; allowed values: "
                         f"{', '.join(sorted(_CLASSES))}")
    return _CLASSES[cls_name].from_dict(values).diagnosis(data)
