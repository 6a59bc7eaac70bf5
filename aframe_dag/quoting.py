"""HTCondor quoting as pure functions: submit-file arguments/environment and DAG VARS.

Rules (HTCondor manual, condor_submit, "arguments" and "environment", new syntax):
the whole value is in double quotes; whitespace separates arguments (or NAME=value
pairs); a literal double quote is written twice (""); single quotes group text
that contains whitespace, and a literal single quote inside them is written twice
(''). Every submit value then goes through macro expansion (manual, "Submit Description
File Commands", macros and macro functions), where "$(" starts a macro and "$NAME(" a
macro function: $ENV(VAR) reads the submitter's environment, $RANDOM_INTEGER(..),
$CHOICE(..), $INT(..), $REAL(..), $SUBSTR(..), $F[pdnxbqa](..), $BASENAME(..),
$DIRNAME(..), $EVAL(..) compute. The "$" of each is written "$(DOLLAR)", which expands
to "$" and is not expanded again, so any "$WORD(" arrives as it was written.
DAG files (manual, DAGMan "VARS"): a value is in double quotes and only \\ and \"
are escapes.

A value that cannot survive these layers (newlines, "$$(" or "$$WORD(", the text
"$(DOLLAR)" in any case, a "$WORD(" never closed) is refused by name instead of being
written altered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from aframe_dag.errors import QuotingError

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MACRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NEEDS_SINGLE_QUOTES = re.compile(r"[\s']")
_FORBIDDEN = ("\n", "\r", "\x00")
_SPECIAL = re.compile(r"[\"'$\\\n\r\x00]")
# the "$" that starts a macro "$(" or a macro function "$NAME(" (see the module's doc)
_MACRO_START = re.compile(r"\$(?=[A-Za-z0-9_]*\()")
# what no escape carries: "$$(" is expanded when the job matches a machine, after
# condor_submit, and "$(DOLLAR)" (macro names ignore case) would be read as the escape
_FUNCTION = re.compile(r"\$[A-Za-z0-9_]+\(")
_UNCARRIED = re.compile(r"\$\$[A-Za-z0-9_]*\(|\$\(DOLLAR\)", re.IGNORECASE)


@dataclass(frozen=True)
class Macro:
    """A `$(name)` reference whose value a DAG node supplies through VARS."""

    name: str


Part = str | Macro


def check_value(value: str, what: str) -> str:
    """Return `value` if it can pass through submit and DAG files intact, else raise."""
    for char in _FORBIDDEN:
        if char in value:
            raise QuotingError(
                f"{what}: contains a {char!r} character, which HTCondor files "
                f"cannot carry: {value!r}"
            )
    if "$" not in value:
        return value
    bad = _UNCARRIED.search(value)
    if bad:
        raise QuotingError(
            f"{what}: contains {bad.group()!r}, which HTCondor would expand: {value!r}"
        )
    unclosed = _unclosed_function(value)
    if unclosed:
        raise QuotingError(
            f"{what}: contains {unclosed!r} with no closing ')', which HTCondor's macro "
            f"expansion misreads: {value!r}"
        )
    return value


def _unclosed_function(value: str) -> str | None:
    # condor_submit, meeting an unclosed "$INT(" (a macro function's name), stops undoing
    # the "$(DOLLAR)" escapes after it (measured with htcondor2.Submit.expand)
    for match in _FUNCTION.finditer(value):
        depth = 0
        for char in value[match.end() - 1 :]:
            depth += (char == "(") - (char == ")")
            if depth == 0:
                break
        else:
            return match.group()
    return None


def submit_value(value: str, what: str) -> str:
    """A plain submit value (executable, container_image, accounting_group): `$(` escaped;
    refused if it cannot be written (see check_value) or starts or ends with whitespace,
    which condor_submit drops."""
    check_value(value, what)
    if value != value.strip():
        raise QuotingError(
            f"{what}: starts or ends with whitespace, which HTCondor would drop: {value!r}"
        )
    return escape_macros(value)


def submit_list(values: Iterable[str], what: str) -> str:
    """A submit file list (transfer_input_files): each value as `submit_value`, refused if
    it holds the ',' that separates them."""
    for value in values:
        if "," in value:
            raise QuotingError(
                f"{what}: {value!r} contains ',', which separates HTCondor's file lists"
            )
    return ", ".join(submit_value(value, what) for value in values)


def bind_path(path: str, what: str) -> str:
    """A path for apptainer's --bind SRC[:DEST[:OPTS]][,...], which has no escapes: one
    holding ',' or ':' is refused."""
    for char in ",:":
        if char in path:
            raise QuotingError(
                f"{what}: {path!r} contains {char!r}, which apptainer's --bind cannot carry "
                "(',' separates binds, ':' source and target)"
            )
    return path


def escape_macros(text: str) -> str:
    """Escape each `$(` and `$NAME(` so that submit-time expansion leaves the text as is."""
    return _MACRO_START.sub("$(DOLLAR)", text) if "$" in text else text


def _escape_quoted(text: str) -> str:
    # inside a single-quoted group within the double-quoted value
    return escape_macros(text.replace("'", "''").replace('"', '""'))


def quote_token(parts: Sequence[Part], what: str) -> str:
    """One argument (or environment value) in new syntax, without the outer quotes."""
    literal = "".join(p for p in parts if isinstance(p, str))
    check_value(literal, what)
    has_macro = any(isinstance(p, Macro) for p in parts)
    if not has_macro and literal and not _NEEDS_SINGLE_QUOTES.search(literal):
        return escape_macros(literal.replace('"', '""'))
    body = "".join(f"$({p.name})" if isinstance(p, Macro) else _escape_quoted(p) for p in parts)
    return f"'{body}'"


CONTINUATION = " \\\n    "


def arguments_value(lines: Iterable[Iterable[Sequence[Part]]], what: str) -> str:
    """The value of a submit `arguments` command; each group of tokens on its own line.

    Lines are joined by a trailing backslash, the submit language's continuation,
    which keeps one space between the last token of a line and the next.
    """
    text = CONTINUATION.join(" ".join(quote_token(t, what) for t in line) for line in lines)
    return f'"{text}"'


def environment_value(variables: Mapping[str, Sequence[Part]], what: str) -> str:
    """The value of a submit `environment` command (new syntax)."""
    pairs = []
    for name, parts in variables.items():
        if not ENV_NAME.fullmatch(name):
            raise QuotingError(f"{what}: {name!r} is not a valid variable name")
        pairs.append(f"{name}={quote_token(parts, f'{what}.{name}')}")
    return '"' + CONTINUATION.join(pairs) + '"'


def vars_value(value: str, what: str) -> str:
    """Escape a VARS value for a macro used inside single quotes in arguments/environment.

    Innermost first: single-quoted new syntax ('' and ""), submit macros ($(DOLLAR)(),
    then the DAG file's own escapes (\\\\ and \\").
    """
    check_value(value, what)
    return dag_escape(_escape_quoted(value))


def needs_escape(value: str) -> bool:
    """Whether `vars_value` would change or refuse `value` (most values: numbers, paths)."""
    return _SPECIAL.search(value) is not None


def dag_escape(value: str) -> str:
    """Escape a string for a double-quoted value in a DAG file."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


# --- decoders, written from the same manual sections (used by run-local and tests) ---


def dag_unescape(value: str) -> str:
    """Undo `dag_escape`: \\\\ -> \\ and \\" -> " ; other backslashes stay."""
    if "\\" not in value:
        return value
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value) and value[i + 1] in '\\"':
            out.append(value[i + 1])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


_CONTINUED = re.compile(r"\\\n[ \t]*")
_DOLLAR = re.compile(r"\$\(DOLLAR\)", re.IGNORECASE)
_MACRO_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.]*)\)")


def expand_macros(text: str, macros: Mapping[str, str]) -> str:
    """Submit-time macro expansion of `$(name)`, unknown names giving "".

    Expanded values are expanded again (as HTCondor does); `$(DOLLAR)` becomes "$"
    only once that is done, so an escaped "$(" is never expanded.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return match.group(0) if name.upper() == "DOLLAR" else macros.get(name, "")

    for _ in range(32):
        expanded = _MACRO_REF.sub(replace, text)
        if expanded == text:
            break
        text = expanded
    return _DOLLAR.sub("$", text)


def join_continuations(text: str) -> str:
    """Join submit-file lines ended by a backslash, dropping the next line's indent."""
    return _CONTINUED.sub("", text)


def split_arguments(value: str) -> list[str]:
    """Split a new-syntax `arguments` value (outer double quotes included) into argv."""
    value = join_continuations(value).strip()
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        raise QuotingError(f"arguments must be in double quotes: {value!r}")
    body = value[1:-1]
    args: list[str] = []
    current: list[str] = []
    started = quoted = False
    i = 0
    while i < len(body):
        char = body[i]
        if char == '"':
            if body[i : i + 2] != '""':
                raise QuotingError(f"lone double quote in arguments: {value!r}")
            current.append('"')
            started = True
            i += 2
            continue
        if char == "'":
            if quoted and body[i : i + 2] == "''":
                current.append("'")
                i += 2
                continue
            quoted = not quoted
            started = True
        elif char.isspace() and not quoted:
            if started:
                args.append("".join(current))
                current, started = [], False
        else:
            current.append(char)
            started = True
        i += 1
    if quoted:
        raise QuotingError(f"unbalanced single quote in arguments: {value!r}")
    if started:
        args.append("".join(current))
    return args


def split_environment(value: str) -> dict[str, str]:
    """Parse a new-syntax `environment` value into a mapping."""
    env = {}
    for pair in split_arguments(value):
        name, sep, val = pair.partition("=")
        if not sep or not ENV_NAME.fullmatch(name):
            raise QuotingError(f"environment entry is not NAME=value: {pair!r}")
        env[name] = val
    return env
