"""Load a pipeline config: YAML with line numbers, ${env:...}, --set overrides, validation."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aframe_dag import fanout, files, graph, schema, submit_commands
from aframe_dag.containers import ContainerMode
from aframe_dag.errors import ConfigError
from aframe_dag.schema import rule

GENERATORS = tuple(fanout.GENERATORS)  # the registry's names, in its order
NAME = r"[A-Za-z][A-Za-z0-9_]*"
QUANTITY = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT])i?B?", re.IGNORECASE)

# a submit command's value as YAML gives it (a number, `true`), written as text
SUBMIT_VALUES = dict[str, str | int | float | bool]

# Variables the data stages need on LIGO clusters, passed by name (never by value).
DATAFIND_ENV = [
    "KRB5_KTNAME",
    "X509_USER_PROXY",
    "GWDATAFIND_SERVER",
    "NDSSERVER",
    "LIGO_USERNAME",
    "DEFAULT_SEGMENT_SERVER",
    "AWS_ENDPOINT_URL",
]


def _quantity(value: Any) -> str:
    match = QUANTITY.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"must be a number with a unit (K, M, G, T), e.g. 16GB; got {value!r}")
    unit = match.group(2).upper()
    if not 0 < float(match.group(1)) * {"K": 1, "M": 2**10, "G": 2**20, "T": 2**30}[unit] <= 2**40:
        raise ValueError(f"must be more than 0 and at most 1024TB, got {value!r}")
    return f"{match.group(1)}{unit}B"


def _generator(foreach: dict[str, Any]) -> dict[str, Any]:
    if len(foreach) != 1:
        raise ValueError(f"pick exactly one generator of {', '.join(GENERATORS)}")
    (name,) = foreach
    if name not in GENERATORS:
        hint = difflib.get_close_matches(name, GENERATORS, n=1)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ValueError(
            f"unknown generator {name!r} (allowed: {', '.join(GENERATORS)}){suggestion}"
        )
    return foreach


def _stage_names(stages: dict[str, Any]) -> dict[str, Any]:
    if not stages:
        raise ValueError("the pipeline has no stages")
    for name in stages:
        if not re.fullmatch(NAME, name):
            raise schema.SchemaError(
                (name,), "a stage name must start with a letter and use only letters, digits and _"
            )
    clash = graph.name_clash(stages)
    if clash:
        raise schema.SchemaError((clash[0],), clash[1])
    for name, stage in stages.items():
        try:
            submit_commands.refuse_own(stage.submit, name)
        except schema.SchemaError as exc:
            raise schema.SchemaError((name, "submit", *exc.path), exc.message) from None
    return stages


def _variable_names(names: list[str]) -> list[str]:
    for name in names:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*\*?", name):
            raise ValueError(f"{name!r} is not an environment variable name (or NAME*)")
    return names


def _scopes(scopes: list[str]) -> list[str]:
    for scope in scopes:
        if not scope or any(c.isspace() for c in scope):
            raise ValueError(f"{scope!r} is not one scope (scopes are separate list items)")
    return scopes


def _handle(handle: str | None) -> str | None:
    if handle is not None and not re.fullmatch(r"[A-Za-z0-9]+", handle):
        raise ValueError(f"a handle is letters and digits (an _ reads as a Vault role): {handle!r}")
    return handle


def _port_names(names: list[str]) -> list[str]:
    for name in names:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ValueError(f"port name {name!r} must be lower-case letters, digits and _")
    if len(set(names)) != len(names):
        raise ValueError(f"port names repeat: {names}")
    return names


def _pipeline_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(f"must use only letters, digits, '_', '.' and '-', got {name!r}")
    return name


@dataclass(frozen=True, kw_only=True)
class Resources:
    cpus: int = rule(1, ge=1, le=1024)
    # an int is accepted so that `memory: 16` gets the "needs a unit" message; _quantity
    # stores each as a str such as 16GB
    memory: str = rule("2GB", check=_quantity, accepts=str | int)
    disk: str = rule("1GB", check=_quantity, accepts=str | int)
    gpus: int = rule(0, ge=0, le=64)
    # LIGO pattern: start at `memory`, retry held jobs at 3x their usage up to this
    max_memory: str | None = rule(None, check=_quantity, accepts=str | int | None)
    # memory each GPU must have (gpus_minimum_memory)
    gpu_memory: str | None = rule(None, check=_quantity, accepts=str | int | None)
    # a job that runs out of GPU memory is retried on a GPU with twice as much, up to this
    max_gpu_memory: str | None = rule(None, check=_quantity, accepts=str | int | None)


@dataclass(frozen=True, kw_only=True)
class Service:
    """A server the stage's nodes talk to (Triton): a SERVICE node of the stage's sub-DAG.

    The service wrapper picks a free port for each name in `ports` (the command says
    `{name}`), waits until `ready` answers (a URL) or the first port accepts connections,
    then publishes `host:port` of the first one in RUN/STAGE.address; each node's PRE
    script waits for that file, and `{{ service_address }}` in the stage's command is it.
    """

    description: str = ""
    image: str | None = None
    command: str | list[str]
    ports: list[str] = rule(["port"], min_length=1, check=_port_names)
    ready: str | None = None
    resources: Resources = field(default_factory=Resources)
    # interpreter that runs the wrapper inside the service's image
    python: str = "python3"
    # seconds between a node's checks for the address while the service starts
    poll: int = rule(30, ge=1, le=3600)


@dataclass(frozen=True, kw_only=True)
class OAuth:
    """A credential service's token: its scopes, audience and handle (manual: "Jobs That
    Require Credentials"); see tokens.py."""

    permissions: list[str] = rule([], check=_scopes)  # scopes, e.g. [gwdatafind.read]
    resource: str | None = None  # the audience, e.g. https://datafind.igwn.org
    handle: str | None = rule(None, check=_handle)  # a token of its own for these scopes


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """A job that resumes from the checkpoint its program writes as it goes, after an
    eviction or a restart of the same build's job (entry/resume.py)."""

    file: str  # a template: the checkpoint, e.g. "{{ dirs.train_run }}/last.ckpt"
    # words added to the command when this build's job wrote it; {checkpoint}: its path
    resume: list[str] = rule(min_length=1)
    # a remote job (no shared filesystem) hands HTCondor its newest checkpoint at most
    # this often, seconds: it stops the program, which starts again from it
    transfer_every: int = rule(3600, ge=0)


@dataclass(frozen=True, kw_only=True)
class Stage:
    description: str = ""
    after: list[str] = rule([])
    image: str | None = None
    command: str | list[str]
    # values of this stage's own over `params` (its templates see them as params.KEY)
    params: dict[str, Any] = rule({})
    foreach: dict[str, dict[str, Any]] | None = rule(None, check=_generator)
    resources: Resources = field(default_factory=Resources)
    retry: int = rule(0, ge=0, le=100)
    max_jobs: int | None = rule(None, ge=1)
    # k consecutive items of a fan-out run in one job, one after another
    tasks_per_job: int = rule(1, ge=1, le=100_000)
    environment: dict[str, str] = rule({})
    getenv: list[str] = rule([], check=_variable_names)
    # host files or dirs to bind read-only at the same path (apptainer); one that does
    # not exist on the host is taken to be a path inside the image and skipped
    binds: list[str] = rule([])
    # files and dirs the stage reads (checked before a build, transferred when remote)
    inputs: list[str] = rule([])
    outputs: list[str] = rule([])
    service: Service | None = None
    checkpoint: Checkpoint | None = None
    # tokens of the stage's jobs (its service's too): unset, condor's
    use_oauth_services: str | None = None
    oauth: dict[str, OAuth] | None = None  # over condor.oauth, service by service
    # submit commands for the stage's jobs (its service's too), over condor.submit's
    submit: dict[str, str] = rule({}, check=submit_commands.check, accepts=SUBMIT_VALUES)


@dataclass(frozen=True, kw_only=True)
class Condor:
    container: ContainerMode = "apptainer"
    image_dir: str | None = None
    apptainer: str = "/usr/bin/apptainer"
    binds: list[str] = rule([])
    accounting_group: str | None = None
    accounting_group_user: str | None = None
    use_oauth_services: str = "scitokens"  # services, comma-separated
    oauth: dict[str, OAuth] = rule({})  # a service's scopes (see tokens.py)
    # a job held this long (s) is removed, so its node fails and RETRY or the rescue
    # DAG take over instead of the workflow waiting for ever; 0 keeps held jobs
    remove_held_after: int = rule(3600, ge=0)
    environment: dict[str, str] = rule({})
    getenv: list[str] = rule(DATAFIND_ENV, check=_variable_names)
    # submit commands for every job (requirements, +DESIRED_Sites, priority, ...)
    submit: dict[str, str] = rule({}, check=submit_commands.every_job, accepts=SUBMIT_VALUES)


@dataclass(frozen=True, kw_only=True)
class Wandb:
    """Weights & Biases logging of the training stages (`build --use-wandb`).

    Unset values come from WANDB_NAME, WANDB_ENTITY, WANDB_PROJECT, WANDB_RUN_GROUP and
    WANDB_TAGS; the group defaults to the pipeline run (NAME-RUNDIR), so every run of
    one analysis groups together. WANDB_API_KEY reaches the job by name only.
    """

    enabled: bool = False
    stages: list[str] = rule(["train"])
    name: str | None = None
    entity: str | None = None
    project: str | None = None
    group: str | None = None
    tags: list[str] = rule([])
    # the logger's save_dir (a template), as Aframe's train CLI takes it
    save_dir: str | None = None


@dataclass(frozen=True, kw_only=True)
class Dev:
    """`build --dev`: bind a local aframe checkout over the code in every image."""

    enabled: bool = False
    # the checkout; default: the git checkout holding the working directory
    path: str | None = None
    target: str = "/opt/aframe"


@dataclass(frozen=True, kw_only=True)
class Remote:
    """`build --train-remote`: the stages run on any GPU slot, without a shared filesystem.

    Inputs go with the job (HTCondor file transfer, or its URL plugins for s3:// and
    osdf:// paths); outputs come back to their paths, or go to `output_destination`.
    """

    enabled: bool = False
    stages: list[str] = rule(["train"])
    gpus_minimum_memory: int | None = rule(None, ge=1)  # MB per GPU
    gpus_minimum_capability: float | None = rule(None, gt=0)
    output_destination: str | None = None
    # files holding the S3 key id and secret, for s3:// inputs (HTCondor reads them)
    aws_access_key_id_file: str | None = None
    aws_secret_access_key_file: str | None = None
    # an AWS credentials file sent with the job, for code that reads s3:// itself
    aws_credentials_file: str | None = None


@dataclass(frozen=True, kw_only=True)
class Config:
    name: str = rule(check=_pipeline_name)
    params: dict[str, Any] = rule({})
    dirs: dict[str, str] = rule({})
    condor: Condor = field(default_factory=Condor)
    wandb: Wandb = field(default_factory=Wandb)
    dev: Dev = field(default_factory=Dev)
    remote: Remote = field(default_factory=Remote)
    stages: dict[str, Stage] = rule(check=_stage_names)

    def stage_params(self, stage: str) -> dict[str, Any]:
        """The params a stage's templates see: `params`, the stage's own over them."""
        own = self.stages[stage].params
        return {**self.params, **own} if own else self.params


class Source:
    """Where each key path of a config came from (`file:line`), for error messages."""

    def __init__(self, path: str, lines: dict[tuple[Any, ...], str]):
        self.path = path
        self.lines = lines
        self.overridden: set[tuple[Any, ...]] = set()

    def where(self, keys: Sequence[Any]) -> str:
        """`file:line` of the nearest known key on the path, or the file alone."""
        keys = tuple(keys)
        for n in range(len(keys), 0, -1):
            if keys[:n] in self.overridden:
                return f"--set {'.'.join(map(str, keys[:n]))}"
            if keys[:n] in self.lines:
                return self.lines[keys[:n]]
        return self.path

    def at(self, keys: Sequence[Any]) -> str:
        """`file:line: key.path` of `keys`, or `--set key.path` alone when that set it."""
        where, path = self.where(keys), ".".join(map(str, keys))
        return where if where == f"--set {path}" else f"{where}: {path}"


class LoadedConfig:
    """A validated config and where its keys came from."""

    def __init__(self, config: Config, source: Source):
        self.config = config
        self.source = source

    def error(self, keys: Sequence[Any], message: str) -> ConfigError:
        """A ConfigError naming the file:line and key path of `keys`."""
        return ConfigError(f"{self.source.at(keys)}: {message}")


# --- YAML with line numbers -------------------------------------------------

MAX_VALUES = 500_000
MAX_DEPTH = 64
MAX_CONFIG_BYTES = 16 * 2**20  # a config (or a file it extends) is read up to this size


def _line_map(node: yaml.Node, path: str) -> dict[tuple[Any, ...], str]:
    lines: dict[tuple[Any, ...], str] = {}
    inside: set[int] = set()  # the nodes being walked: an alias may point back to one

    def walk(node: yaml.Node, keys: tuple[Any, ...]) -> None:
        if id(node) in inside:
            line = node.start_mark.line + 1
            raise ConfigError(f"{path}:{line}: a YAML alias refers to a value that holds it")
        if len(keys) > MAX_DEPTH:
            line = node.start_mark.line + 1
            raise ConfigError(f"{path}:{line}: values nest more than {MAX_DEPTH} deep")
        if len(lines) > MAX_VALUES:  # aliases of aliases: a few lines, 10^9 values
            raise ConfigError(f"{path}: more than {MAX_VALUES} values once aliases are expanded")
        inside.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    raise ConfigError(
                        f"{path}:{key.start_mark.line + 1}: a key must be a plain value, "
                        "not a mapping or list (quote a value that starts with `{{`)"
                    )
                name = key.value
                if name in seen:
                    raise ConfigError(f"{path}:{key.start_mark.line + 1}: duplicate key {name!r}")
                seen.add(name)
                here = (*keys, name)
                lines[here] = f"{path}:{key.start_mark.line + 1}"
                walk(value, here)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                here = (*keys, index)
                lines[here] = f"{path}:{item.start_mark.line + 1}"
                walk(item, here)
        inside.discard(id(node))

    walk(node, ())
    return lines


def _parse(text: str, path: str) -> tuple[Any, dict[tuple[Any, ...], str]]:
    """The data of one YAML document and the `file:line` of each key path, parsed once.

    PyYAML's own parser, not libyaml's (CSafeLoader, ten times quicker): libyaml accepts
    what this one refuses (tabs after a value) and reads some values otherwise (`key: !`
    is '' there, null here): a config would mean one thing with libyaml, another without.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:  # an empty document
            return None, {}
        lines = _line_map(node, path)
        return loader.construct_document(node), lines
    finally:
        loader.dispose()


def bundled_configs() -> Path:
    """The configs shipped with the package (wheel), or the repo's configs/."""
    packaged = Path(__file__).parent / "configs"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "configs"


def find_config(path: Path) -> Path:
    """`path` itself, or a bundled config named like it (`sandbox`, `sandbox.yaml`)."""
    if path.exists() or path.parent != Path():
        return path
    for candidate in (path.name, f"{path.name}.yaml"):
        bundled = bundled_configs() / candidate
        if bundled.is_file():
            return bundled
    return path


def read_user_file(path: Path, limit: int, what: str) -> str:
    """The text of a file the user names (a config, a law cfg: `what`); ConfigError saying
    why not, with the line of a byte that is not UTF-8."""
    try:
        return files.read_text(path, limit)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except UnicodeDecodeError as exc:
        number = exc.object[: exc.start].count(b"\n") + 1
        byte = exc.object[exc.start]
        raise ConfigError(f"{path}:{number}: not UTF-8 text (byte {byte:#04x})") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise ConfigError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None


def read_yaml(path: Path, children: tuple[Path, ...] = ()) -> tuple[dict[str, Any], Source]:
    """Parse a YAML mapping (and the config it `extends`); errors name `file:line`."""
    path = find_config(path)
    text = read_user_file(path, MAX_CONFIG_BYTES, "config file")
    try:
        data, lines = _parse(text, str(path))
        source = Source(str(path), lines)
    except yaml.reader.ReaderError as exc:
        number = text[: exc.position].count("\n") + 1
        raise ConfigError(
            f"{path}:{number}: invalid YAML: character {chr(exc.character)!r} is not allowed"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        problem = ", ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise ConfigError(f"{path}{line}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: values nest too deep") from None
    except ValueError as exc:  # a date such as 2024-13-01, an int of 5000 digits
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a YAML mapping of keys")
    parent = data.pop("extends", None)
    if parent is None:
        return data, source
    if not isinstance(parent, str) or not parent:
        raise ConfigError(f"{source.where(('extends',))}: extends: must be a config file name")
    base_path = find_config(path.parent / parent)
    if not base_path.exists():
        where = source.where(("extends",))
        raise ConfigError(f"{where}: extends: no such config file {str(base_path)!r}")
    chain = (*children, path.resolve())
    if base_path.resolve() in chain:
        raise ConfigError(f"{source.where(('extends',))}: extends: {parent} makes a cycle")
    base, base_source = read_yaml(base_path, chain)
    base_source.lines.update(source.lines)
    return _merge(base, data), Source(str(path), base_source.lines)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# --- ${env:VAR} and ${env:VAR:-default} --------------------------------------

ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-((?:[^{}]|\{\{[^{}]*\}\})*))?\}")


def interpolate_env(
    data: Any, env: Mapping[str, str], source: Source, keys: tuple[Any, ...] = ()
) -> Any:
    """Replace `${env:VAR}` / `${env:VAR:-default}` in every string of `data`."""
    if isinstance(data, dict):
        return {k: interpolate_env(v, env, source, (*keys, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate_env(v, env, source, (*keys, i)) for i, v in enumerate(data)]
    if not isinstance(data, str) or "${" not in data:
        return data

    key = ".".join(map(str, keys))

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{source.at(keys)}: environment variable {name} is not set "
            f"(export it, pass --set {key}=VALUE, or write ${{env:{name}:-default}})"
        )

    result = ENV_REF.sub(replace, data)
    if "${env:" in result:
        raise ConfigError(f"{source.at(keys)}: malformed ${{env:...}} reference in {data!r}")
    return result


# --- --set dotted.key=value --------------------------------------------------


def apply_override(data: dict[str, Any], assignment: str, source: Source) -> None:
    """Apply one `dotted.key=value` override; the value is parsed as YAML."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {assignment!r}: expected dotted.key=value")
    keys = key.strip().split(".")
    # a submit command may hold a dot (MY.Attr): all after condor.submit or
    # stages.NAME.submit is one key
    at = {"condor": 1, "stages": 2}.get(keys[0])  # where `submit` would be
    if at is not None and len(keys) > at + 1 and keys[at] == "submit":
        keys = [*keys[: at + 1], ".".join(keys[at + 1 :])]
    if not all(keys):
        raise ConfigError(f"--set {assignment!r}: empty key in the dotted path")
    try:
        parsed = yaml.compose(raw, Loader=yaml.SafeLoader)
        if parsed is not None:
            _line_map(parsed, f"--set {key}")  # refuses aliases that never end
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError, RecursionError):
        raise ConfigError(f"--set {key}: value is not valid YAML: {raw!r}") from None
    _check_stage_name(data, keys, key)
    node: Any = data
    path: list[Any] = []
    for name in keys[:-1]:
        node, name = _step(node, name, key)
        path.append(name)
        if isinstance(node, dict) and node.get(name) is None:
            node[name] = {}
        node = node[name]
    node, last = _step(node, keys[-1], key)
    node[last] = value
    source.overridden.add((*path, last))


def _check_stage_name(data: dict[str, Any], keys: list[str], key: str) -> None:
    """`--set stages.NAME.KEY` naming no stage but one near it is a typo: a new stage
    starts with its command (`--set stages.NEW.command=...`)."""
    stages = data.get("stages")
    if keys[0] != "stages" or len(keys) < 3 or keys[2] == "command":
        return
    if not isinstance(stages, dict) or keys[1] in stages:
        return
    hint = difflib.get_close_matches(keys[1], [str(name) for name in stages], n=1)
    if hint:
        raise ConfigError(f"--set {key}: no stage {keys[1]!r}; did you mean {hint[0]!r}?")


def _step(node: Any, name: str, key: str) -> tuple[Any, Any]:
    if isinstance(node, list):
        if not name.isdigit() or int(name) >= len(node):
            raise ConfigError(f"--set {key}: {name!r} is not an index of the list")
        return node, int(name)
    if not isinstance(node, dict):
        raise ConfigError(f"--set {key}: cannot set a key inside a non-mapping value")
    return node, name


# --- validation ---------------------------------------------------------------


def validate(data: dict[str, Any], source: Source) -> Config:
    """Validate a config mapping; the error names file:line and key path."""
    try:
        config = schema.validate(Config, data)
    except schema.SchemaError as exc:
        raise ConfigError(f"{source.at(exc.path)}: {exc.message}") from None
    for name, stage in config.stages.items():
        for key in stage.params:
            if key not in config.params:  # a stage's value replaces one, never adds one
                hint = difflib.get_close_matches(key, list(config.params), n=1)
                near = f"; did you mean {hint[0]!r}?" if hint else ""
                where = source.at(("stages", name, "params", key))
                raise ConfigError(f"{where}: no params.{key} to replace{near}")
    return config


def load_config(
    path: str | Path,
    overrides: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Read, override, interpolate and validate a pipeline config."""
    data, source = read_yaml(Path(path))
    for assignment in overrides:
        apply_override(data, assignment, source)
    data = interpolate_env(data, os.environ if env is None else env, source)
    return LoadedConfig(validate(data, source), source)


class _Dumper(yaml.SafeDumper):
    """PyYAML writes U+0085 raw into a quoted string, where its own loader reads a space:
    strings holding one are written double-quoted, where it is escaped."""


_Dumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style='"' if "\x85" in text else None
    ),
)


def dump_config(config: Config) -> str:
    """The config as YAML, keys in declaration order; a stage's `params` only when it
    has some (a run dir's config.yaml reads as it did before stages had them)."""
    data = schema.dump(config)
    for stage in data["stages"].values():
        if not stage["params"]:
            del stage["params"]
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
