"""Jinja rendering: command templates into argv tokens, and the .sub/.dag file templates.

Nothing here touches the disk except reading the packaged templates.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nativetypes

from aframe_dag.errors import RenderError
from aframe_dag.quoting import Macro, Part, check_value, submit_value

# Markers in rendered command text: \x01...\x02 wraps the output of an expression
# (never split, even if it holds spaces), \x03NAME\x04 is an item macro.
_OPEN, _CLOSE, _MACRO, _END = "\x01", "\x02", "\x03", "\x04"
_MARKERS = (_OPEN, _CLOSE, _MACRO, _END)


def template_dir() -> Path:
    """The packaged templates (wheel), or the repo's templates/ (source checkout)."""
    packaged = Path(__file__).parent / "templates"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "templates"


@functools.cache
def file_environment() -> jinja2.Environment:
    """The one Environment for the .sub and .dag templates."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dir()),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # `{{ value | submit("key.path") }}`: a config value written as a plain submit value
    env.filters["submit"] = submit_value
    return env


def render_file(name: str, **context: Any) -> str:
    """Render one of the templates in templates/."""
    return file_environment().get_template(name).render(**context)


def format_value(value: Any) -> str:
    """A value as a command-line word: lists as [a,b] (jsonargparse), null, true/false."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ",".join(f"{k}:{format_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    return str(value)


def _finalize(value: Any) -> str:
    text = format_value(value)
    if isinstance(value, ItemField):
        return text
    if any(m in text for m in _MARKERS):
        raise RenderError(f"value contains a control character: {text!r}")
    return _OPEN + text + _CLOSE


def dq_flags(ifos: list[str], flag: str) -> list[str]:
    """Aframe's data-quality flag names: DATA gives the GWOSC `H1_DATA`, else `H1:FLAG`."""
    return [f"{ifo}_DATA" if flag == "DATA" else f"{ifo}:{flag}" for ifo in ifos]


class _Text(str):
    """The text of a lone `{{ expr }}` in native rendering: a string stays that string."""

    __slots__ = ()


def _native_concat(values: Any) -> Any:
    # Jinja reads a string result as a Python literal ("'a'" -> a, "1e3" -> 1000.0): a
    # string param must arrive as it is; what a template assembles is still read so
    parts = list(values)
    if len(parts) == 1 and isinstance(parts[0], _Text):
        return str(parts[0])
    return nativetypes.native_concat(parts)


class _NativeEnvironment(nativetypes.NativeEnvironment):
    concat = staticmethod(_native_concat)


class _NativeTemplate(nativetypes.NativeTemplate):
    environment_class = _NativeEnvironment


_NativeEnvironment.template_class = _NativeTemplate


def _command_environment(native: bool = False) -> jinja2.Environment:
    cls = _NativeEnvironment if native else jinja2.Environment
    env = cls(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        finalize=(lambda v: _Text(v) if isinstance(v, str) else v) if native else _finalize,
    )
    env.filters["dq_flags"] = dq_flags
    return env


_COMMANDS = _command_environment()
_NATIVE = _command_environment(native=True)
_PLAIN = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)


class ItemField(str):
    """The text of an item macro inside rendered command text."""

    __slots__ = ()


def macro_text(name: str) -> ItemField:
    """A `$(name)` macro for a template's context (the file's own macro, not an item's)."""
    return ItemField(_MACRO + name + _END)


class ItemPlaceholder:
    """`item` in a stage's templates: each field becomes a `$(field)` macro."""

    def __init__(self, fields: list[str], stage: str):
        self._fields = fields
        self._stage = stage
        self.used: list[str] = []

    def __getattr__(self, name: str) -> ItemField:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._fields:
            raise RenderError(
                f"stage {self._stage}: item has no field {name!r} "
                f"(fields: {', '.join(self._fields)})"
            )
        if name not in self.used:
            self.used.append(name)
        return ItemField(_MACRO + name + _END)

    __getitem__ = __getattr__


def _render(env: jinja2.Environment, source: str, context: Mapping[str, Any], where: str) -> Any:
    try:
        return env.from_string(source).render(**context)
    except RenderError as exc:
        raise RenderError(f"{where}: {exc}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"{where}: template syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise RenderError(f"{where}: {exc.message}") from None
    except (TypeError, ValueError, ArithmeticError, RecursionError) as exc:
        raise RenderError(f"{where}: {exc}") from None


def render_text(source: str, context: Mapping[str, Any], where: str) -> str:
    """Render a template to plain text (paths, dirs), one that files can carry."""
    return check_value(str(_render(_PLAIN, source, context, where)), where)


def render_native(value: Any, context: Mapping[str, Any], where: str) -> Any:
    """Render templates inside a value; a lone `{{ expr }}` keeps its native type."""
    if isinstance(value, dict):
        return {k: render_native(v, context, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [render_native(v, context, f"{where}.{i}") for i, v in enumerate(value)]
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        return _render(_NATIVE, value, context, where)
    return value


def render_command(
    command: str | list[str], context: Mapping[str, Any], where: str
) -> list[list[Part]]:
    """Render a command template into argv tokens (each a list of text and macros).

    A string command is split on whitespace like a shell would, with '...' and
    "..." grouping; a value substituted by `{{ }}` is never split. A list command
    gives one argument per element.
    """
    if isinstance(command, list):
        return [
            _parts(_render(_COMMANDS, element, context, f"{where}.{i}"), where)
            for i, element in enumerate(command)
        ]
    return _split(_render(_COMMANDS, command, context, where), where)


def render_value(source: str, context: Mapping[str, Any], where: str) -> list[Part]:
    """Render a template into one word (environment values, outputs), one files can carry."""
    parts = _parts(_render(_COMMANDS, source, context, where), where)
    check_value("".join(p for p in parts if isinstance(p, str)), where)
    return parts


def _parts(text: str, where: str) -> list[Part]:
    tokens = _split(text, where, whole=True)
    return tokens[0] if tokens else [""]


def _split(text: str, where: str, whole: bool = False) -> list[list[Part]]:
    tokens: list[list[Part]] = []
    parts: list[Part] = []
    buffer: list[str] = []
    started = protected = False
    quote = ""
    i = 0

    def flush_text() -> None:
        if buffer:
            parts.append("".join(buffer))
            buffer.clear()

    while i < len(text):
        char = text[i]
        i += 1
        if char == _MACRO:
            end = text.index(_END, i)
            flush_text()
            parts.append(Macro(text[i:end]))
            i, started = end + 1, True
        elif char == _OPEN:
            protected = started = True
        elif char == _CLOSE:
            protected = False
        elif protected or whole:
            buffer.append(char)
            started = True
        elif quote:
            if char == quote:
                quote = ""
            else:
                buffer.append(char)
        elif char in "'\"":
            quote, started = char, True
        elif char.isspace():
            if started:
                flush_text()
                tokens.append(parts)
                parts, started = [], False
        else:
            buffer.append(char)
            started = True
    if quote:
        raise RenderError(f"{where}: unclosed {quote} quote in command")
    if started:
        flush_text()
        tokens.append(parts)
    return tokens
