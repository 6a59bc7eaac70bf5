"""Load a pipeline config: YAML with line numbers, ${env:...}, --set overrides, validation."""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aframe_dag.errors import ConfigError

Generator = Literal["count", "list", "product", "segments", "timeslides"]
ContainerMode = Literal["apptainer", "container-universe", "none"]
GENERATORS = typing.get_args(Generator)
CONTAINER_MODES = typing.get_args(ContainerMode)
NAME = r"[A-Za-z][A-Za-z0-9_]*"
QUANTITY = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT])i?B?", re.IGNORECASE)

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


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _quantity(value: str) -> str:
    match = QUANTITY.fullmatch(str(value).strip())
    if not match:
        raise ValueError(f"must be a number with a unit (K, M, G, T), e.g. 16GB; got {value!r}")
    return f"{match.group(1)}{match.group(2).upper()}B"


class Resources(StrictModel):
    cpus: int = Field(1, ge=1, le=1024)
    memory: str = "2GB"
    disk: str = "1GB"
    gpus: int = Field(0, ge=0, le=64)
    # LIGO pattern: start at `memory`, retry held jobs at 3x their usage up to this
    max_memory: str | None = None

    _units = field_validator("memory", "disk", "max_memory", mode="before")(
        lambda v: None if v is None else _quantity(v)
    )


class Stage(StrictModel):
    description: str = ""
    after: list[str] = []
    image: str | None = None
    command: str | list[str]
    foreach: dict[Generator, dict[str, Any]] | None = None
    resources: Resources = Resources()
    retry: int = Field(0, ge=0, le=100)
    max_jobs: int | None = Field(None, ge=1)
    environment: dict[str, str] = {}
    getenv: list[str] = []
    outputs: list[str] = []

    @field_validator("foreach")
    @classmethod
    def _one_generator(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"pick exactly one generator of {', '.join(GENERATORS)}")
        return value


class Condor(StrictModel):
    container: ContainerMode = "apptainer"
    image_dir: str | None = None
    apptainer: str = "/usr/bin/apptainer"
    binds: list[str] = []
    accounting_group: str | None = None
    accounting_group_user: str | None = None
    use_oauth_services: str = "scitokens"
    # a job held this long (s) is removed, so its node fails and RETRY or the rescue
    # DAG take over instead of the workflow waiting for ever; 0 keeps held jobs
    remove_held_after: int = Field(3600, ge=0)
    environment: dict[str, str] = {}
    getenv: list[str] = DATAFIND_ENV


class Config(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    params: dict[str, Any] = {}
    dirs: dict[str, str] = {}
    condor: Condor = Condor()
    stages: dict[str, Stage]

    @field_validator("stages")
    @classmethod
    def _stage_names(cls, stages: dict[str, Stage]) -> dict[str, Stage]:
        for name in stages:
            if not re.fullmatch(NAME, name):
                raise ValueError(
                    f"stage name {name!r} must start with a letter and use only "
                    "letters, digits and _"
                )
        return stages


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


class LoadedConfig:
    """A validated config and where its keys came from."""

    def __init__(self, config: Config, source: Source):
        self.config = config
        self.source = source

    def error(self, keys: Sequence[Any], message: str) -> ConfigError:
        """A ConfigError naming the file:line and key path of `keys`."""
        path = ".".join(map(str, keys))
        return ConfigError(f"{self.source.where(keys)}: {path}: {message}")


# --- YAML with line numbers -------------------------------------------------


def _line_map(node: yaml.Node, path: str) -> dict[tuple[Any, ...], str]:
    lines: dict[tuple[Any, ...], str] = {}

    def walk(node: yaml.Node, keys: tuple[Any, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = key.value
                if name in seen:
                    raise ConfigError(f"{path}:{key.start_mark.line + 1}: duplicate key {name!r}")
                seen.add(name)
                lines[(*keys, name)] = f"{path}:{key.start_mark.line + 1}"
                walk(value, (*keys, name))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[(*keys, index)] = f"{path}:{item.start_mark.line + 1}"
                walk(item, (*keys, index))

    walk(node, ())
    return lines


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


def read_yaml(path: Path, children: tuple[Path, ...] = ()) -> tuple[dict[str, Any], Source]:
    """Parse a YAML mapping (and the config it `extends`); errors name `file:line`."""
    path = find_config(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{path}{line}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a YAML mapping of keys")
    source = Source(str(path), _line_map(node, str(path)) if node else {})
    parent = data.pop("extends", None)
    if parent is None:
        return data, source
    if not isinstance(parent, str):
        raise ConfigError(f"{source.where(('extends',))}: extends: must be a config file name")
    base_path = find_config(path.parent / parent)
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
            f"{source.where(keys)}: {key}: environment variable {name} is not set "
            f"(export it, pass --set {key}=VALUE, or write ${{env:{name}:-default}})"
        )

    result = ENV_REF.sub(replace, data)
    if "${env:" in result:
        raise ConfigError(
            f"{source.where(keys)}: {'.'.join(map(str, keys))}: malformed "
            f"${{env:...}} reference in {data!r}"
        )
    return result


# --- --set dotted.key=value --------------------------------------------------


def apply_override(data: dict[str, Any], assignment: str, source: Source) -> None:
    """Apply one `dotted.key=value` override; the value is parsed as YAML."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {assignment!r}: expected dotted.key=value")
    keys = key.strip().split(".")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: value is not valid YAML: {raw!r}") from None
    node: Any = data
    path: list[Any] = []
    for name in keys[:-1]:
        node, name = _step(node, name, key)
        path.append(name)
        if isinstance(node, dict) and not isinstance(node.get(name), dict | list):
            node[name] = {}
        node = node[name]
    node, last = _step(node, keys[-1], key)
    node[last] = value
    source.overridden.add((*path, last))


def _step(node: Any, name: str, key: str) -> tuple[Any, Any]:
    if isinstance(node, list):
        if not name.isdigit() or int(name) >= len(node):
            raise ConfigError(f"--set {key}: {name!r} is not an index of the list")
        return node, int(name)
    if not isinstance(node, dict):
        raise ConfigError(f"--set {key}: cannot set a key inside a non-mapping value")
    return node, name


# --- validation ---------------------------------------------------------------


def _allowed_keys(loc: Sequence[Any]) -> list[str]:
    """Field names of the model that holds the last key of `loc`."""
    annotation: Any = Config
    for key in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(key))
            if field is None:
                return []
            annotation = field.annotation
        elif typing.get_origin(annotation) in (dict, list):
            annotation = typing.get_args(annotation)[-1]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                return arg
    return annotation


def _format(error: Any) -> tuple[tuple[Any, ...], str]:
    loc = tuple(k for k in error["loc"] if not (isinstance(k, str) and "[" in k))
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        message = "unknown key"
        if hint:
            message += f"; did you mean {hint[0]!r}?"
        elif allowed:
            message += f"; allowed keys: {', '.join(allowed)}"
        return loc, message
    if kind == "missing":
        return loc, "required key is missing"
    if kind == "literal_error" and loc and loc[-2:-1] == ("foreach",):
        hint = difflib.get_close_matches(str(loc[-1]), GENERATORS, n=1)
        message = f"unknown generator; allowed: {', '.join(GENERATORS)}"
        return loc, message + (f" (did you mean {hint[0]!r}?)" if hint else "")
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    message = message[0].lower() + message[1:]
    if "input" in error and kind not in ("value_error",):
        message += f", got {error['input']!r}"
    return loc, message


def validate(data: dict[str, Any], source: Source) -> Config:
    """Validate a config mapping; the first error names file:line and key path."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        loc, message = _format(errors[0])
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        where = source.where(loc)
        raise ConfigError(f"{where}: {'.'.join(map(str, loc))}: {message}{more}") from None


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


def dump_config(config: Config) -> str:
    """The config as YAML, keys in declaration order."""
    data = config.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
