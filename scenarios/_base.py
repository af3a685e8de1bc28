"""What every scenario shares: typed fields, checked changes, TOML round trips, ``run``.

A scenario is a frozen dataclass deriving from :class:`Scenario`. Its fields are plain
values (numbers, strings, booleans, tuples of numbers), so it writes to and reads from
TOML, and ``diffsim run NAME --set key=value`` can change any field with a typed check.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tomllib
import types
import typing
from typing import TYPE_CHECKING, Any, ClassVar, Self

from diffsim._runtime import Precision
from diffsim.io import RunOptions, atomic_write, dump_toml

__all__ = ["Scenario"]


def _type_name(hint: object) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce(key: str, value: object, hint: object) -> object:
    """``value`` checked (and converted where lossless) against the type ``hint``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise ValueError(errors[0] if len(errors) == 1 else
                         f"{key}={value!r} is not a {_type_name(hint)}")
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}={value!r} must be a list, e.g. {key}=[1, 2]")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{key}={value!r} must have {len(args)} entries")
        return tuple(_coerce(f"{key}[{i}]", v, a) for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ValueError(f"{key}={value!r} is not allowed; choose one of "
                             f"{', '.join(repr(a) for a in allowed)}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{key}={value!r} must be true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"{key}={value!r} must be an integer")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"{key}={value!r} must be a number")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{key}={value!r} must be a string")
    return value


def _parse_setting(text: str) -> tuple[str, object]:
    """``key=value`` with the value read as TOML (a bare word is a string)."""
    if "=" not in text:
        raise ValueError(f"--set {text!r}: expected key=value, e.g. --set iterations=20")
    key, raw = (s.strip() for s in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


class Scenario:
    """Base of every registered scenario (a frozen dataclass).

    Subclasses set ``kind`` (a short word shown by ``diffsim list``) and implement
    :meth:`run`; they may override :meth:`check` (value ranges) and :meth:`smoke`.
    """

    kind: ClassVar[str] = "scenario"
    #: precision ``diffsim run`` uses unless ``--precision`` says otherwise.
    precision: ClassVar[Precision] = "f64"

    if TYPE_CHECKING:
        # Every scenario is a dataclass (its subclass is); this tells the type checker, so
        # that ``dataclasses.fields``/``replace``/``asdict`` accept a Scenario.
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _coerce(f.name, getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
        self.check()

    def check(self) -> None:
        """Raise ``ValueError`` naming the field when a value is out of range."""

    def describe(self) -> str:
        """One line for ``diffsim list`` (default: the first line of the class docstring)."""
        return (type(self).__doc__ or type(self).__name__).strip().splitlines()[0].rstrip(".")

    def data_needed(self) -> str:
        """What the scenario needs beyond diffsim: ``""`` for nothing, else a short note."""
        return ""

    # -- changes and round trips ------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        """The scenario's field names."""
        return [f.name for f in dataclasses.fields(cls)]

    def with_(self, **changes: object) -> Self:
        """A copy with some fields changed (unknown names and wrong types raise)."""
        known = self.field_names()
        for key in changes:
            if key not in known:
                raise ValueError(f"{type(self).__name__} has no field {key!r}; fields: "
                                 f"{', '.join(known)}")
        return dataclasses.replace(self, **changes)

    def with_settings(self, settings: list[str]) -> Self:
        """A copy changed by ``key=value`` strings (``diffsim run --set``)."""
        return self.with_(**dict(_parse_setting(s) for s in settings))

    def as_dict(self) -> dict[str, object]:
        """The fields as a plain dict (tuples become lists)."""
        def plain(v: object) -> object:
            return [plain(x) for x in v] if isinstance(v, (list, tuple)) else v
        return {k: plain(v) for k, v in dataclasses.asdict(self).items()}

    def to_toml(self) -> str:
        """TOML text: a ``kind`` line, then the fields."""
        return dump_toml({"kind": self.kind, "class": type(self).__name__, **self.as_dict()})

    def save(self, path: pathlib.Path) -> None:
        """Write :meth:`to_toml` to ``path`` atomically."""
        text = self.to_toml()
        atomic_write(pathlib.Path(path), lambda h: h.write(text))

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Self:
        """Build from a dict such as :meth:`as_dict` gives (unknown keys raise)."""
        data = {k: v for k, v in data.items() if k not in ("kind", "class")}
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown key(s) {', '.join(map(repr, unknown))}; "
                             f"allowed keys: {', '.join(cls.field_names())}")
        return cls(**data)

    def smoke(self) -> Self:
        """A tiny version of this scenario for tests (default: itself)."""
        return self

    def run(self, options: RunOptions) -> dict[str, object]:
        """Run the scenario's job, writing into ``options.out``; returns the summary."""
        raise NotImplementedError(f"{type(self).__name__} has no run()")

    def diagnosis(self, data: os.PathLike[str] | str | None = None
                  ) -> tuple[Any, Any, tuple[str, ...]]:
        """``(simulation, loss, wrt)`` at the scenario's starting point, for ``diffsim diagnose``.

        Args:
            data: the folder of real models (``--data``), for scenarios that read one.
        """
        raise ValueError(
            f"{type(self).__name__} cannot be diagnosed yet; diffsim diagnose runs on the FWI "
            "scenarios (layered, camembert, marmousi2, ...), the spring scenarios "
            "(spring-robot, spring-bridge, spring-identify) and the chain scenarios")
