"""Why a node runs again: each input that changed since its last success, old and new.

A build keeps, beside each stage's fingerprint, the inputs it was made of (the `params`
and `dirs` its templates name, its submit commands, its environment, its image's
identity), so that a later build can name what differs: `params.highpass 32 -> 25`,
`request_memory 4096 -> 8192`, `environment WANDB_NAME a -> b`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import fields, is_dataclass
from typing import Any

from aframe_dag import completion, quoting, render, rundir
from aframe_dag.errors import QuotingError
from aframe_dag.plan import StagePlan

_ROOTS = ("params", "dirs")  # the config sections whose keys a stage's templates name
_ENVIRONMENT = ("environment", "getenv")


def stage_inputs(
    submit_text: str, image: str, stage: Any, params: Mapping[str, Any], dirs: Mapping[str, Any]
) -> dict[str, Any]:
    """What a stage's fingerprint is made of, readable: the config keys its templates
    name (with their values), its submit commands and environment, its image's identity."""
    sections = {"params": params, "dirs": dirs}
    named = {}
    for key in sorted(render.referenced_keys(strings(stage), _ROOTS)):
        root, _, name = key.partition(".")
        values = sections[root]
        chosen = [name] if name else list(values)  # `params` alone: all of them
        named.update({f"{root}.{n}": _text(values[n]) for n in chosen if n in values})
    commands: dict[str, str] = {}
    for line in quoting.join_continuations(submit_text).split("\n"):
        key = rundir.submit_command(line)
        if key and not line.lstrip().startswith("#"):
            commands[key] = line.partition("=")[2].strip()
    return {"config": named, "submit": commands, "image": image}


def stage_changes(
    judgement: completion.Judgement, plan: StagePlan, every: bool = False
) -> dict[str, list[str]]:
    """The changed inputs of the stage's first node that runs again for them (`every`:
    of each such node), by node."""
    found = {}
    for node, item in zip(plan.node_names(), plan.vars_texts(), strict=True):
        verdict = judgement.verdicts[node]
        if verdict.complete or not verdict.reason.endswith(" changed"):
            continue
        changed = node_changes(judgement, node, item)
        if changed:
            found[node] = changed
            if not every:
                break
    return found


def node_changes(judgement: completion.Judgement, node: str, item: str) -> list[str]:
    """Each input of `node` (VARS `item` now) that differs from its last success, old ->
    new; [] when it has no success recorded, or its inputs were not kept then."""
    recorded = judgement.recorded.get(node)
    if recorded is None or recorded == completion.FAILED:
        return []
    base, _, before_item = recorded.partition("/")
    now = judgement.fingerprint
    found = []
    if base != now.base:
        before = judgement.inputs_seen.get(base)
        if before is None:  # recorded before inputs were kept: the parts that differ
            parts = judgement.bases_seen.get(base, {})
            return [f"{k} changed" for k, v in now.parts.items() if parts.get(k) != v]
        found = changes(before, now.inputs)
    old_vars, new_vars = rundir.vars_values(before_item), rundir.vars_values(item)
    for key in sorted(old_vars.keys() | new_vars.keys()):
        if old_vars.get(key) != new_vars.get(key):
            found.append(f"item {key} {_shown(old_vars.get(key))} -> {_shown(new_vars.get(key))}")
    return found


def changes(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """The inputs that differ between two `stage_inputs`, one line each."""
    found = _mapping_changes("", before.get("config", {}), now.get("config", {}))
    old, new = before.get("submit", {}), now.get("submit", {})
    for key in sorted(old.keys() | new.keys()):
        if old.get(key) == new.get(key):
            continue
        if key == "arguments":
            if not found:  # a named config key explains the command's words
                found += _word_changes("command", old.get(key, ""), new.get(key, ""))
        elif key == "environment":
            found += _mapping_changes(
                "environment ", _environment(old.get(key, "")), _environment(new.get(key, ""))
            )
        else:
            found.append(f"{key} {_shown(old.get(key))} -> {_shown(new.get(key))}")
    if before.get("image") != now.get("image"):
        found.append(f"image {_image(before.get('image'))} -> {_image(now.get('image'))}")
    return found


def summary(found: list[str], stage: str, shown: int = 3) -> str:
    """The first few changes for a build's summary line, and how to see the rest."""
    more = len(found) - shown
    tail = f"; {more} more: --explain {stage}" if more > 0 else ""
    return "; ".join(found[:shown]) + tail


def _mapping_changes(prefix: str, old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    return [
        f"{prefix}{key} {_shown(old.get(key))} -> {_shown(new.get(key))}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


def _word_changes(what: str, old: str, new: str) -> list[str]:
    """The words of a command that differ: `command --kernel-length=1.5 -> ...=2`."""
    before, after = _words(old), _words(new)
    found = []
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op != "equal":
            old_words = " ".join(before[i1:i2]) or "(none)"
            new_words = " ".join(after[j1:j2]) or "(none)"
            found.append(f"{what} {old_words} -> {new_words}")
    return found


def _words(value: str) -> list[str]:
    """A submit file's `arguments` as argv (a hand-edited one it cannot read: its words)."""
    try:
        return quoting.split_arguments(value)
    except QuotingError:
        return value.split()


def _environment(value: str) -> dict[str, str]:
    """A submit file's `environment` (a hand-edited one it cannot read: none of it)."""
    try:
        return quoting.split_environment(value)
    except QuotingError:
        return {}


def _image(identity: Any) -> str:
    """An image identity (`PATH:SIZE:MTIME_NS`) as a reader wants it."""
    if not identity:
        return "(none)"
    path, _, rest = str(identity).rpartition(":")
    path, _, size = path.rpartition(":")
    if not path or not size.isdigit() or not rest.isdigit():
        return str(identity)
    return f"{path} ({size} bytes, modified at {int(rest) / 1e9:.0f})"


def _shown(value: str | None) -> str:
    return "(unset)" if value is None else value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def strings(value: Any) -> Iterable[str]:
    """Every string of a stage's settings, or of YAML data (its templates among them)."""
    if isinstance(value, str):
        yield value
    elif is_dataclass(value) and not isinstance(value, type):
        for item in fields(value):
            yield from strings(getattr(value, item.name))
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from strings(item)
