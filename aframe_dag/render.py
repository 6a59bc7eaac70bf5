"""Jinja rendering: command templates into argv tokens, and the .sub/.dag file templates.

Nothing here touches the disk except reading the packaged templates.
"""

from __future__ import annotations

import contextvars
import difflib
import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import filters, nativetypes, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.visitor import NodeTransformer

from aframe_dag.errors import RenderError
from aframe_dag.quoting import Macro, Part, check_value, submit_list, submit_value

# Markers in rendered command text: \x01...\x02 wraps the output of an expression
# (never split, even if it holds spaces), \x03NAME\x04 is an item macro.
_OPEN, _CLOSE, _MACRO, _END = "\x01", "\x02", "\x03", "\x04"
_MARKERS = (_OPEN, _CLOSE, _MACRO, _END)


def template_dir() -> Path:
    """The packaged templates (wheel), or the repo's templates/ (source checkout)."""
    packaged = Path(__file__).parent / "templates"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "templates"


@functools.cache
def file_environment() -> ImmutableSandboxedEnvironment:
    """The one Environment for the .sub and .dag templates (the package's own; config
    values reach them as data, and a sandbox keeps them so)."""
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(template_dir()),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # `{{ value | submit("key.path") }}`: a config value written as a plain submit value
    env.filters["submit"] = submit_value
    env.filters["submit_list"] = submit_list
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


# --- the sandbox that config templates render in -------------------------------------
#
# A config is data from colleagues and environment variables: its templates may read the
# values they are given and compute with them, and nothing else. They render in Jinja's
# immutable sandbox (no attribute starting with _, no mutation of lists and dicts) with
# only `range` as a global, the filters below, a few string methods, no `{% set %}`,
# macros or includes, and bounded work: every value made, the output and the number of
# loop steps and calls have ceilings, checked before the work is done.

MAX_TEXT = 1_000_000  # characters (or list items) one value or one rendering may hold
MAX_STEPS = 1_000_000  # loop steps, calls and operators in one rendering
MAX_INT_BITS = 16_384  # about 4,900 digits: past Python's own int-to-text limit
MAX_RANGE = 100_000  # items of one range()

# Built-in filters that make nothing larger than their input (join and replace are
# checked below); the rest (center, indent, format, wordwrap, random, ...) are not there.
_FILTERS = (
    "abs", "capitalize", "count", "d", "default", "dictsort", "first", "float", "int",
    "items", "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr",
    "reverse", "round", "select", "selectattr", "sort", "string", "sum", "title", "trim",
    "truncate", "unique", "upper", "wordcount",
)  # fmt: skip
# String methods a template may call: each makes at most a copy of its string
_METHODS = frozenset((
    "lower", "upper", "title", "capitalize", "strip", "lstrip", "rstrip", "split", "rsplit",
    "startswith", "endswith", "removeprefix", "removesuffix", "count", "find", "rfind",
    "index", "rindex", "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper",
))  # fmt: skip
# Template statements a config may not use, and what they are called
_STATEMENTS: dict[type[nodes.Node], str] = {
    nodes.Assign: "{% set %}", nodes.AssignBlock: "{% set %}", nodes.Macro: "{% macro %}",
    nodes.CallBlock: "{% call %}", nodes.FilterBlock: "{% filter %}",
    nodes.Include: "{% include %}", nodes.Import: "{% import %}",
    nodes.FromImport: "{% from %}", nodes.Extends: "{% extends %}", nodes.Block: "{% block %}",
}  # fmt: skip
_steps: contextvars.ContextVar[list[int]] = contextvars.ContextVar("steps")


class TemplateLimit(RenderError):
    """A template would do more work, or make a larger value, than a config may ask for."""


def _spend() -> None:
    left = _steps.get()
    left[0] -= 1
    if left[0] < 0:
        raise TemplateLimit(f"the template takes more than {MAX_STEPS:,} steps")


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple) else 0


def _check_size(size: int) -> None:
    if size > MAX_TEXT:
        raise TemplateLimit(f"the template makes a value of more than {MAX_TEXT:,} characters")


def _bounded_loop(iterable: Any) -> Iterator[Any]:
    """Each step of a `{% for %}` loop spends one step."""
    for value in iterable:
        _spend()
        yield value


def _concat(values: list[Any]) -> str:
    """`a ~ b`, bounded."""
    texts = [str(v) for v in values]
    _check_size(sum(map(len, texts)))
    return "".join(texts)


def _join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    items = list(value)
    _check_size(sum(len(str(i)) for i in items) + len(str(d)) * max(len(items) - 1, 0))
    return filters.do_join(eval_ctx, items, d, attribute)


def _replace(eval_ctx: Any, s: Any, old: str, new: str, count: int | None = None) -> str:
    text, old, new = str(s), str(old), str(new)
    times = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        times = min(times, count)
    _check_size(len(text) + times * max(len(new) - len(old), 0))
    return filters.do_replace(eval_ctx, text, old, new, count)


_join = jinja2.pass_eval_context(_join)
_replace = jinja2.pass_eval_context(_replace)


def _safe_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise TemplateLimit(f"range() of more than {MAX_RANGE:,} items")
    return numbers


def _format_widths(text: str) -> int:
    """The widest field of a printf-style format (* counts as too wide to tell)."""
    widest = 0
    for width, precision in re.findall(r"%[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?", text):
        for number in (width, precision):
            widest = max(widest, MAX_TEXT + 1 if number == "*" else int(number or 0))
    return widest


class _Bounds(NodeTransformer):
    """Refuses the statements above; wraps each loop and `~` in a bounded helper."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "__loop", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        items = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(items, "__concat", [], [], None, None, lineno=node.lineno)

    def generic_visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> nodes.Node:
        if type(node) in _STATEMENTS:
            raise RenderError(
                f"line {node.lineno}: {_STATEMENTS[type(node)]} is not allowed in a config template"
            )
        return super().generic_visit(node, *args, **kwargs)


class ConfigSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, narrowed to reading values and bounded computing."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(undefined=jinja2.StrictUndefined, autoescape=False, **options)
        self.globals.clear()
        self.globals["range"] = _safe_range
        self.filters = {name: self.filters[name] for name in _FILTERS}
        self.filters.update(
            join=_join, replace=_replace, dq_flags=dq_flags, __loop=_bounded_loop, __concat=_concat
        )

    def from_config(self, source: str) -> jinja2.Template:
        """A config's template, checked and bounded (see _Bounds)."""
        tree = _Bounds().visit(self.parse(source))
        return self.from_string(tree)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # params.items is the param named items (never the dict's method)
        if isinstance(obj, Mapping | ItemPlaceholder | jinja2.Undefined):
            return self.getitem(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, jinja2.Undefined):
            str(obj)  # what is undefined is named: "'cycler' is undefined" (StrictUndefined)
        if isinstance(obj, Mapping | ItemPlaceholder):
            try:
                return obj[argument]
            except (KeyError, TypeError, AttributeError):
                return self.undefined(obj=obj, name=argument)
        return super().getitem(obj, argument)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if callable(value) and isinstance(obj, str | list | tuple | int | float):
            return isinstance(obj, str) and attr in _METHODS
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> None:
        return None  # str.format is no method a template may call (its widths are unbounded)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _spend()
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _spend()
        if operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and abs(left) > 1 and right * abs(left).bit_length() > MAX_INT_BITS:
                raise TemplateLimit(f"{left} ** {right} is too large a number")
        elif operator == "*":
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise TemplateLimit("the template makes too large a number")
            elif isinstance(right, int):
                _check_size(_size(left) * right)
            elif isinstance(left, int):
                _check_size(_size(right) * left)
        elif operator == "+":
            _check_size(_size(left) + _size(right))
        elif operator == "%" and isinstance(left, str):
            _check_size(len(left) + _format_widths(left))
        return super().call_binop(context, operator, left, right)


class _NativeSandbox(nativetypes.NativeEnvironment, ConfigSandbox):
    concat = staticmethod(_native_concat)


class _NativeTemplate(nativetypes.NativeTemplate):
    # mypy cannot tell that a class with two Environment bases is a NativeEnvironment
    environment_class = _NativeSandbox  # type: ignore[assignment]


_NativeSandbox.template_class = _NativeTemplate


def _command_environment(native: bool = False) -> ConfigSandbox:
    cls = _NativeSandbox if native else ConfigSandbox
    return cls(
        keep_trailing_newline=False,
        finalize=(lambda v: _Text(v) if isinstance(v, str) else v) if native else _finalize,
    )


_COMMANDS = _command_environment()
_NATIVE = _command_environment(native=True)
_PLAIN = ConfigSandbox()


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


def _render(env: ConfigSandbox, source: str, context: Mapping[str, Any], where: str) -> Any:
    """Render a config's template in `env`: checked, bounded, its errors naming `where`."""
    token = _steps.set([MAX_STEPS])
    try:
        template = env.from_config(source)
        chunks = template.root_render_func(template.new_context(dict(context)))
        return env.concat(_bounded_output(chunks))
    except RenderError as exc:
        raise RenderError(f"{where}: {exc}", where) from None
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"{where}: template syntax error: {exc.message}", where) from None
    except jinja2.UndefinedError as exc:
        raise RenderError(f"{where}: {_undefined(source, context, exc)}", where) from None
    except SecurityError as exc:
        raise RenderError(f"{where}: {exc.message}", where) from None
    except (TypeError, ValueError, ArithmeticError, RecursionError) as exc:
        raise RenderError(f"{where}: {exc}", where) from None
    except MemoryError:
        raise TemplateLimit(f"{where}: the template needs more memory than there is") from None
    finally:
        _steps.reset(token)


def referenced_keys(sources: Iterable[str], roots: Iterable[str]) -> set[str]:
    """The `ROOT.KEY`s that templates name (`params.highpass`, `params['x']`), and ROOT
    alone where a template takes the whole of it (`params | tojson`, `for k in dirs`)."""
    names = set(roots)
    found: set[str] = set()
    for source in sources:
        if "{" not in source:
            continue
        try:
            tree = _PLAIN.parse(source)
        except jinja2.TemplateSyntaxError:
            continue  # it rendered, or the build said why not
        whole: dict[str, int] = {}
        for name in tree.find_all(nodes.Name):
            if name.name in names:
                whole[name.name] = whole.get(name.name, 0) + 1
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            assert isinstance(node, nodes.Getattr | nodes.Getitem)
            root = node.node
            if isinstance(root, nodes.Name) and root.name in names:
                key = node.attr if isinstance(node, nodes.Getattr) else None
                if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
                    key = str(node.arg.value)
                if key is not None:
                    found.add(f"{root.name}.{key}")
                    whole[root.name] -= 1
        found.update(name for name, left in whole.items() if left > 0)
    return found


def _undefined(source: str, context: Mapping[str, Any], exc: jinja2.UndefinedError) -> str:
    """Jinja's message for an undefined name, with the name as the template spells it
    (`params.nn`) and the nearest name that is defined."""
    message = exc.message or "undefined"
    if match := re.fullmatch(r"'(\w+)' is undefined", message):
        hint = difflib.get_close_matches(match[1], [str(k) for k in context], n=1)
        return f"{message}; did you mean {hint[0]}?" if hint else message
    match = re.search(r"has no (?:attribute|element) '(\w+)'$", message)
    found = match and re.search(rf"\b((?:[A-Za-z_]\w*\.)+){match[1]}\b", source)
    if not match or not found:
        return message
    parent = found[1].rstrip(".")
    value: Any = context
    for step in parent.split("."):
        value = value.get(step) if isinstance(value, Mapping) else None
    known = [str(k) for k in value] if isinstance(value, Mapping) else []
    hint = difflib.get_close_matches(match[1], known, n=1)
    suggestion = f"; did you mean {parent}.{hint[0]}?" if hint else ""
    return f"{parent}.{match[1]} is undefined{suggestion}"


def _bounded_output(chunks: Iterator[Any]) -> Iterator[Any]:
    total = 0
    for chunk in chunks:
        total += _size(chunk) if isinstance(chunk, str) else 1
        _check_size(total)
        yield chunk


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
