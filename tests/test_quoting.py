"""HTCondor quoting: expected values from the manual's rules, and round trips."""

from __future__ import annotations

import htcondor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aframe_dag.errors import QuotingError
from aframe_dag.quoting import (
    Macro,
    arguments_value,
    dag_escape,
    dag_unescape,
    environment_value,
    expand_macros,
    join_continuations,
    split_arguments,
    split_environment,
    vars_value,
)


def args(*tokens: str) -> str:
    return arguments_value([[[t] for t in tokens]], "test")


# condor_submit manual, "arguments", new syntax examples:
#   arguments = "3 simple arguments"            -> 3 | simple | arguments
#   arguments = "one ""two"" 'spacey ''quoted'' argument'"
#                                            -> one | "two" | spacey 'quoted' argument
def test_manual_examples_decode() -> None:
    assert split_arguments('"3 simple arguments"') == ["3", "simple", "arguments"]
    assert split_arguments("\"one \"\"two\"\" 'spacey ''quoted'' argument'\"") == [
        "one",
        '"two"',
        "spacey 'quoted' argument",
    ]


def test_manual_examples_encode() -> None:
    assert args("3", "simple", "arguments") == '"3 simple arguments"'
    assert args("one", '"two"', "spacey 'quoted' argument") == (
        "\"one \"\"two\"\" 'spacey ''quoted'' argument'\""
    )


def test_empty_argument_is_kept() -> None:
    assert args("a", "", "b") == "\"a '' b\""
    assert split_arguments(args("a", "", "b")) == ["a", "", "b"]


def test_macro_is_single_quoted_and_literal_dollar_paren_escaped() -> None:
    value = arguments_value([[["--start=", Macro("start")], ["$(HOME)"]]], "test")
    assert value == "\"'--start=$(start)' $(DOLLAR)(HOME)\""


def test_environment_new_syntax() -> None:
    value = environment_value({"A": ["1"], "B": ["two words"], "C": ["it's"]}, "env")
    assert join_continuations(value) == "\"A=1 B='two words' C='it''s'\""
    assert split_environment(value) == {"A": "1", "B": "two words", "C": "it's"}


def test_bad_environment_name_is_refused() -> None:
    with pytest.raises(QuotingError, match="not a valid variable name"):
        environment_value({"1A": ["x"]}, "env")


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "x$$(y)", "$(DOLLAR)", "nul\x00"])
def test_unrepresentable_values_are_refused_by_name(value: str) -> None:
    with pytest.raises(QuotingError, match=r"params\.x"):
        vars_value(value, "params.x")
    with pytest.raises(QuotingError, match=r"params\.x"):
        arguments_value([[[value]]], "params.x")


def test_dag_escape_only_backslash_and_quote() -> None:
    # DAGMan manual, VARS: within the quoted value only \\ and \" are escapes
    assert dag_escape('a\\b"c$d') == 'a\\\\b\\"c$d'
    assert dag_unescape(dag_escape('a\\b"c$d')) == 'a\\b"c$d'


# Values the real pool measured as passing through VARS + arguments intact.
MEASURED = [
    " leading",
    "tab\there",
    "it's",
    'say "hi"',
    '\\"',
    "back\\slash\\",
    "ünïcödé ✓",
    ";rm -rf /",
    "$HOME",
    "$ENV(HOME)",
    "100%",
    "#hash",
    "a=b",
    "{braces}",
    "$",
    "end$",
    "$$",
    "a$$b",
    "$$$",
    "$(",
    "x$(y)z",
    "$((1))",
]
text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x00"),
    max_size=40,
).filter(lambda v: "$$(" not in v and "$(DOLLAR)" not in v)


def decode_node_value(vars_text: str, template: str) -> list[str]:
    """What a job sees: DAG unescape, macro expansion, then argument splitting."""
    value = dag_unescape(vars_text)
    return split_arguments(expand_macros(template, {"v": value}))


@pytest.mark.parametrize("value", MEASURED)
def test_measured_values_round_trip(value: str) -> None:
    template = arguments_value([[["argv.py"], [Macro("v")]]], "t")
    assert decode_node_value(vars_value(value, "v"), template) == ["argv.py", value]


@given(text)
def test_any_value_round_trips_through_vars_and_arguments(value: str) -> None:
    template = arguments_value([[["prog"], ["--x=", Macro("v"), "!"]]], "t")
    assert decode_node_value(vars_value(value, "v"), template) == ["prog", f"--x={value}!"]


@given(text)
def test_any_value_round_trips_through_vars_and_environment(value: str) -> None:
    template = environment_value({"V": [Macro("v")]}, "t")
    env = split_environment(expand_macros(template, {"v": dag_unescape(vars_value(value, "v"))}))
    assert env == {"V": value}


@given(st.lists(text, max_size=6))
def test_any_literal_argv_round_trips(argv: list[str]) -> None:
    value = arguments_value([[[a] for a in argv]], "t")
    assert split_arguments(expand_macros(value, {})) == argv


@given(text)
def test_htcondor_expands_escaped_literals_back(value: str) -> None:
    """The real submit parser's macro expansion undoes our $( escaping."""
    arguments = arguments_value([[[value]]], "t")
    submit = htcondor2.Submit(f"executable = /bin/true\narguments = {arguments}\nqueue\n")
    assert split_arguments(submit.expand("arguments")) == [value]


def test_htcondor_line_continuation_joins_argument_lines() -> None:
    arguments = arguments_value([[["prog"], ["a b"]], [["--x=1"]]], "t")
    assert "\\\n" in arguments
    submit = htcondor2.Submit(f"executable = /bin/true\narguments = {arguments}\nqueue\n")
    assert split_arguments(submit.expand("arguments")) == ["prog", "a b", "--x=1"]
