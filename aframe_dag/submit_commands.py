"""Submit commands a config adds (`condor.submit`, `stages.NAME.submit`): the lines a
pool needs (`requirements`, `+DESIRED_Sites`, `priority`, ...), checked and written
verbatim after aframe-dag's own.

A command that aframe-dag writes itself is refused by key, naming the config key that
sets it; so is a job attribute (`+Attr`, `MY.Attr`) that one of those commands sets.
HTCondor reads command names without regard to case, and knows some by a second name
(`RequestMemory` for `request_memory`, `Iwd` for `initialdir`): keys are compared
lowercased and without underscores.
"""

from __future__ import annotations

import re
from typing import Any

from aframe_dag import quoting
from aframe_dag.errors import QuotingError
from aframe_dag.schema import SchemaError

# what aframe-dag writes, and the config key a user sets it with ({stage}: the stage)
OWN: dict[str, str] = {
    "universe": "condor.container",
    "container_image": "stages.{stage}.image",
    "executable": "condor.container (condor.apptainer)",
    "arguments": "stages.{stage}.command",
    "transfer_executable": "condor.container",
    "initialdir": "the run dir (build --run-dir)",
    "environment": "stages.{stage}.environment or condor.environment",
    "getenv": "stages.{stage}.getenv or condor.getenv",
    "include": "stages.{stage}.service",
    "should_transfer_files": "remote.stages (build --train-remote)",
    "when_to_transfer_output": "remote.stages (build --train-remote)",
    "preserve_relative_paths": "remote.stages (build --train-remote)",
    "transfer_input_files": "stages.{stage}.inputs (sent when remote)",
    "transfer_output_files": "stages.{stage}.outputs (brought back when remote)",
    "checkpoint_exit_code": "stages.{stage}.checkpoint (when remote)",
    "transfer_checkpoint_files": "stages.{stage}.checkpoint.file (when remote)",
    "output_destination": "remote.output_destination",
    "aws_access_key_id_file": "remote.aws_access_key_id_file",
    "aws_secret_access_key_file": "remote.aws_secret_access_key_file",
    "request_cpus": "stages.{stage}.resources.cpus",
    "request_memory": "stages.{stage}.resources.memory (and max_memory)",
    "request_disk": "stages.{stage}.resources.disk",
    "request_gpus": "stages.{stage}.resources.gpus",
    "require_gpus": "stages.{stage}.resources.max_gpu_memory",
    "gpus_minimum_memory": "stages.{stage}.resources.gpu_memory",
    "gpus_minimum_capability": "remote.gpus_minimum_capability",
    "on_exit_hold": "stages.{stage}.resources.max_gpu_memory",
    "on_exit_hold_subcode": "stages.{stage}.resources.max_gpu_memory",
    "on_exit_hold_reason": "stages.{stage}.resources.max_gpu_memory",
    "periodic_release": "stages.{stage}.resources.max_memory",
    "periodic_remove": "condor.remove_held_after",
    "log": "the run dir's logs/",
    "output": "the run dir's logs/",
    "error": "the run dir's logs/",
    "accounting_group": "condor.accounting_group",
    "accounting_group_user": "condor.accounting_group_user",
    "use_oauth_services": "condor.use_oauth_services or stages.{stage}.use_oauth_services",
    "SERVICE_oauth_permissions": "condor.oauth or stages.{stage}.oauth",
    "SERVICE_oauth_resource": "condor.oauth or stages.{stage}.oauth",
    "queue": "aframe-dag (one job per node)",
}
# the job attributes those commands set, and other names HTCondor knows them by
_ALIASES = {
    "jobuniverse": "universe", "containerimage": "container_image", "cmd": "executable",
    "args": "arguments", "iwd": "initialdir", "env": "environment",
    "transferinput": "transfer_input_files", "transferoutput": "transfer_output_files",
    "requestcpus": "request_cpus", "requestmemory": "request_memory",
    "requestdisk": "request_disk", "requestgpus": "request_gpus",
    "requiregpus": "require_gpus", "initialrequestmemory": "request_memory",
    "userlog": "log", "out": "output", "stdout": "output", "err": "error",
    "stderr": "error", "acctgroup": "accounting_group",
    "acctgroupuser": "accounting_group_user", "oauthservicesneeded": "use_oauth_services",
}  # fmt: skip
_OWN_BY_FORM = {
    **{name.replace("_", ""): name for name in OWN},
    **_ALIASES,
}
# commands that say only where, when and how often a pool runs a job: run-local, which
# runs each job here (again only by the DAG's RETRY), skips them, as it skips attributes
PLACEMENT = {
    "requirements", "rank", "priority", "nice_user", "max_retries", "retry_until",
    "periodic_hold", "periodic_hold_reason", "periodic_hold_subcode", "periodic_vacate",
    "concurrency_limits", "concurrency_limits_expr", "job_max_vacate_time",
    "allowed_execute_duration", "allowed_job_duration", "want_graceful_removal",
    "keep_claim_idle", "job_lease_duration",
}  # fmt: skip
# commands whose value is a ClassAd expression, as an attribute's (+Attr, MY.Attr) is
_EXPRESSIONS = {
    "requirements", "rank", "periodic_hold", "periodic_hold_reason", "periodic_hold_subcode",
    "periodic_vacate", "on_exit_remove",
}  # fmt: skip
_SCOPES = re.compile(r"_oauth_(permissions|resource)")
_KEY = re.compile(r"(\+|MY\.)?[A-Za-z_][A-Za-z0-9_]*", re.IGNORECASE)


def _form(key: str) -> str:
    """A key as HTCondor tells keys apart: no `+`/`MY.`, any case, no underscores."""
    bare = key[1:] if key.startswith("+") else key[3:] if key.upper().startswith("MY.") else key
    return bare.lower().replace("_", "")


def identity(key: str) -> str:
    """What a key sets: `+Attr` and `MY.Attr` set the same attribute, a command itself."""
    attribute = key.startswith("+") or key.upper().startswith("MY.")
    return ("MY." if attribute else "") + _form(key)


def own_command(key: str) -> str | None:
    """The command of aframe-dag's own that `key` sets (or an attribute it sets), if any."""
    scoped = _SCOPES.search(key.lower())
    if scoped:  # SERVICE_oauth_permissions[_HANDLE]: the token's scopes
        return f"SERVICE_oauth_{scoped.group(1)}"
    return _OWN_BY_FORM.get(_form(key.strip()))


def check(commands: dict[str, Any]) -> dict[str, str]:
    """A config's submit commands as text, or a SchemaError naming the bad key (what
    aframe-dag writes itself is refused by `refuse_own`, which knows the stage)."""
    checked: dict[str, str] = {}
    seen: dict[str, str] = {}
    for key, value in commands.items():
        if not _KEY.fullmatch(key):
            raise SchemaError(
                (key,), "is not a submit command: a name, +Attr or MY.Attr (letters, digits, _)"
            )
        if identity(key) in seen:
            raise SchemaError((key,), f"sets what {seen[identity(key)]} sets: keep one")
        seen[identity(key)] = key
        if isinstance(value, bool):
            text = "true" if value else "false"  # ClassAd's booleans
        elif isinstance(value, int | float):
            text = repr(value)
        else:
            text = value
        if not text.strip():
            raise SchemaError((key,), "is empty: give the command a value")
        try:
            checked[key] = quoting.submit_value(text, "value")
        except QuotingError as exc:
            raise SchemaError((key,), str(exc).removeprefix("value: ")) from None
        if identity(key).startswith("MY.") or key.lower() in _EXPRESSIONS:
            _expression(key, text)
    return checked


def _expression(key: str, text: str) -> None:
    """Refuse a value that HTCondor cannot read as a ClassAd expression."""
    import classad2  # only configs with submit lines need it

    try:
        classad2.ExprTree(text)
    except Exception:  # classad2 raises its own ClassAdException
        if "$(" in text:
            hint = "; submit macros ($(...)) are not expanded in a config's submit lines"
        elif identity(key).startswith("MY.") and '"' not in text:
            hint = f"; a string needs double quotes: '\"{text}\"'"
        else:
            hint = ""
        raise SchemaError((key,), f"is not a ClassAd expression: {text!r}{hint}") from None


def refuse_own(commands: dict[str, str], stage: str | None) -> dict[str, str]:
    """`commands`, unless one sets what aframe-dag writes: a SchemaError naming the config
    key that sets it (of `stage`, or of any stage for `condor.submit`)."""
    for key in commands:
        own = own_command(key)
        if own is not None:
            sets = OWN[own].replace("{stage}", stage or "NAME")
            raise SchemaError(
                (key,), f"aframe-dag writes {own} itself: set it with {sets}, not a submit line"
            )
    return commands


def every_job(commands: dict[str, Any]) -> dict[str, str]:
    """`condor.submit`: checked, and refused if it sets what aframe-dag writes."""
    return refuse_own(check(commands), None)


def merged(every_job: dict[str, str], stage: dict[str, str]) -> dict[str, str]:
    """A stage's submit lines: the config's for every job, then the stage's (which win,
    also over the other form of the same attribute)."""
    lines = {identity(k): (k, v) for k, v in every_job.items()}
    lines.update({identity(k): (k, v) for k, v in stage.items()})
    return dict(lines.values())
