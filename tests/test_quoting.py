"""HTCondor quoting: expected values from the manual's rules, and round trips."""

from __future__ import annotations

import os
import re

import htcondor2
import pytest
from hypothesis import given, settings
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
    submit_value,
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


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "x$$(y)", "$(DOLLAR)", "nul\x00", "$$ENV(x)"])
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
).filter(lambda v: not re.search(r"\$\$\w*\(|\$\(dollar\)", v, re.IGNORECASE))


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


# Submit-language macro functions (manual, "Submit Description File Commands"): built
# from their pieces so that every $NAME( form, nested and doubled, is drawn often
MACRO_PIECES = [
    "$", "$$", "(", ")", "ENV", "env", "RANDOM_INTEGER", "RANDOM_CHOICE", "CHOICE", "INT",
    "REAL", "SUBSTR", "Fn", "Fqa", "BASENAME", "DIRNAME", "EVAL", "DOLLAR", "dollar",
    "AFRAME_TEST_SECRET", ",", "0", "1", "x", " ", "'", '"', ":",
]  # fmt: skip
macro_text = st.lists(st.sampled_from(MACRO_PIECES), max_size=12).map("".join)
UNCARRIED = re.compile(r"\$\$[A-Za-z0-9_]*\(|\$\(dollar\)", re.IGNORECASE)


def unclosed(value: str) -> bool:
    """Holds a `$NAME(` whose parenthesis is never closed."""
    for match in re.finditer(r"\$\w+\(", value):
        rest = value[match.end() :]
        depth = 1
        for char in rest:
            depth += (char == "(") - (char == ")")
            if not depth:
                break
        if depth:
            return True
    return False


def through_htcondor(value: str) -> tuple[list[str], list[str], dict[str, str]]:
    """`value` as condor_submit hands it to the job: a literal argument, a VARS value
    in an argument, and an environment value (macros and functions expanded)."""
    arguments = arguments_value([[["prog"], [value], ["--v=", Macro("v")], ["$(x)"]]], "t")
    environment = environment_value({"V": [value], "W": [Macro("v")]}, "t")
    submit = htcondor2.Submit(f"arguments = {arguments}\nenvironment = {environment}\n")
    submit["v"] = dag_unescape(vars_value(value, "v"))  # what DAGMan passes from VARS
    argv = split_arguments(submit.expand("arguments"))
    assert argv[3:] == ["$(x)"]  # what follows is still unescaped
    return argv[:2], argv[2:3], split_environment(submit.expand("environment"))


@settings(max_examples=400)
@given(macro_text)
def test_macro_functions_arrive_unexpanded_or_are_refused(value: str) -> None:
    os.environ["AFRAME_TEST_SECRET"] = "s3cret"  # what $ENV(...) would put in the job
    try:
        literal, from_vars, env = through_htcondor(value)
    except QuotingError:
        assert UNCARRIED.search(value) or unclosed(value), value
        return
    assert literal == ["prog", value]
    assert from_vars == [f"--v={value}"]
    assert env == {"V": value, "W": value}


@pytest.mark.parametrize(
    "value",
    ["$ENV(AFRAME_TEST_SECRET)", "$RANDOM_INTEGER(1,9)", "$RANDOM_CHOICE(a,b)", "$CHOICE(0,a)",
     "$INT(3)", "$REAL(3)", "$SUBSTR(abc,1)", "$Fn(/a/b.c)", "$BASENAME(/a/b)", "$DIRNAME(/a/b)",
     "$EVAL(1+2)", "a$ENV(AFRAME_TEST_SECRET)$ENV(X)", "$ENV($ENV(X))", "$(x$ENV(X))"],
)  # fmt: skip
def test_each_macro_function_arrives_unexpanded(value: str) -> None:
    os.environ["AFRAME_TEST_SECRET"] = "s3cret"
    assert through_htcondor(value) == (["prog", value], [f"--v={value}"], {"V": value, "W": value})
    assert submit_value(value, "k") == value.replace("$", "$(DOLLAR)")


@pytest.mark.parametrize(
    "value", ["$$ENV(X)", "a$$RANDOM_INTEGER(1,2)", "$$(x)", "$(dollar)", "$(Dollar)x"]
)
def test_match_time_and_escape_lookalikes_are_refused(value: str) -> None:
    with pytest.raises(QuotingError, match=r"^k: contains '.*', which HTCondor would expand"):
        submit_value(value, "k")


@pytest.mark.parametrize("value", ["$INT(", "$CHOICE(1,(a)", "x $Fn(a b"])
def test_unclosed_macro_functions_are_refused(value: str) -> None:
    with pytest.raises(QuotingError, match=r"^k: contains '\$\w+\(' with no closing '\)'"):
        submit_value(value, "k")
