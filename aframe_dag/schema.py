"""Validate plain YAML data into frozen dataclasses, with key paths in every error.

A small replacement for a validation library: the config types are a handful of
dataclasses whose fields are int, float, str, bool, Literal, lists, str-keyed dicts,
optional values and other dataclasses. It costs nothing at import (every CLI call,
DAGMan's PRE scripts included, starts faster) and its messages name the key path,
the allowed values and the near miss of an unknown key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, TypeVar

T = TypeVar("T")
Path = tuple[Any, ...]


class SchemaError(ValueError):
    """Invalid data at `path`; the message says what is wrong."""

    def __init__(self, path: Path, message: str):
        super().__init__(message)
        self.path = path
        self.message = message


def rule(
    default: Any = dataclasses.MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    min_length: int | None = None,
    check: Callable[[Any], Any] | None = None,
    accepts: Any = None,
) -> Any:
    """A dataclass field with bounds and an optional `check(value) -> value` (raises
    ValueError). With `accepts`, the value given may be of that wider type; the check
    turns it into the declared one (so `memory: 16` gets the check's own message)."""
    metadata = {
        "ge": ge, "gt": gt, "le": le, "min_length": min_length, "check": check, "accepts": accepts
    }  # fmt: skip
    if isinstance(default, list | dict):
        factory = (lambda d: lambda: type(d)(d))(default)
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def validate(cls: type[T], data: Any, path: Path = ()) -> T:
    """Build `cls` from `data`, or raise SchemaError naming the first wrong key path."""
    if not isinstance(data, dict):
        raise SchemaError(path, f"must be a mapping of keys, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            raise SchemaError((*path, key), unknown_key(str(key), list(fields)))
    hints = typing.get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        if name not in data:
            if (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                raise SchemaError((*path, name), "required key is missing")
            continue
        given = field.metadata.get("accepts") or hints[name]
        value = convert(given, data[name], (*path, name))
        values[name] = _constrain(value, field.metadata, (*path, name))
    instance = cls(**values)
    check = getattr(instance, "check", None)
    if check is not None:
        try:
            check()
        except ValueError as exc:
            raise SchemaError(path, str(exc)) from None
    return instance


def unknown_key(key: str, allowed: list[str]) -> str:
    """'unknown key' with the near miss, or the list of allowed keys."""
    hint = difflib.get_close_matches(key, allowed, n=1)
    if hint:
        return f"unknown key; did you mean {hint[0]!r}?"
    return f"unknown key; allowed keys: {', '.join(allowed)}"


def convert(kind: Any, value: Any, path: Path) -> Any:
    """Check `value` against the type `kind`, converting int to float where one is wanted."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return _text(value, path)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return convert(option, value, path)
            except SchemaError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        names = " or ".join(_name(o) for o in options)
        raise SchemaError(path, f"must be {names}, got {_show(value)}")
    if origin is Literal:
        if value in args:
            return value
        shown = [repr(a) for a in args]
        allowed = ", ".join(shown[:-1]) + f" or {shown[-1]}" if len(shown) > 1 else shown[0]
        raise SchemaError(path, f"must be one of {allowed}, got {_show(value)}")
    if origin is list:
        if not isinstance(value, list):
            raise SchemaError(path, f"must be a list, got {_show(value)}")
        return [convert(args[0], item, (*path, i)) for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SchemaError(path, f"must be a mapping, got {_show(value)}")
        return {
            convert(args[0], k, (*path, k)): convert(args[1], v, (*path, k))
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(kind):
        return validate(kind, value, path)  # type: ignore[arg-type]
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer of hundreds of digits
            number = math.inf
        if not math.isfinite(number):
            raise SchemaError(path, f"must be a finite number, got {_show(value)}")
        return number
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return _text(value, path)
    raise SchemaError(path, f"must be {_name(kind)}, got {_show(value)}")


def _text(value: Any, path: Path) -> Any:
    """`value`, if every string in it is Unicode that UTF-8 can write (YAML's "\\udcff"
    escape and undecodable bytes in a command-line argument make ones that it cannot)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = value[exc.start]
            raise SchemaError(path, f"is not UTF-8 text (holds {bad!r}): {_show(value)}") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _text(key, path)
            _text(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _text(item, (*path, index))
    return value


def _constrain(value: Any, metadata: Any, path: Path) -> Any:
    if value is None or not metadata:
        return value
    bounds = (
        ("ge", ">=", lambda v, b: v >= b),
        ("gt", ">", lambda v, b: v > b),
        ("le", "<=", lambda v, b: v <= b),
    )
    for key, sign, ok in bounds:
        bound = metadata.get(key)
        if bound is not None and not ok(value, bound):
            raise SchemaError(path, f"must be {sign} {bound}, got {_show(value)}")
    if metadata.get("min_length") is not None and len(value) < metadata["min_length"]:
        raise SchemaError(path, f"must have at least {metadata['min_length']} item(s)")
    if metadata.get("check") is not None:
        try:
            return metadata["check"](value)
        except SchemaError as exc:  # a check that names a key inside the value
            raise SchemaError((*path, *exc.path), exc.message) from None
        except ValueError as exc:
            raise SchemaError(path, str(exc)) from None
    return value


def dump(instance: Any) -> Any:
    """A dataclass tree as plain dicts and lists, fields in declaration order."""
    if dataclasses.is_dataclass(instance):
        return {f.name: dump(getattr(instance, f.name)) for f in dataclasses.fields(instance)}
    if isinstance(instance, dict):
        return {k: dump(v) for k, v in instance.items()}
    if isinstance(instance, list | tuple):
        return [dump(v) for v in instance]
    return instance


def _name(kind: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if dataclasses.is_dataclass(kind):
        return "a mapping"
    if typing.get_origin(kind) is list:
        return "a list"
    if typing.get_origin(kind) is dict:
        return "a mapping"
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
