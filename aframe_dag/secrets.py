"""Secrets pass by name, never by value: find the ones a run dir must not contain."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping

from aframe_dag.errors import ConfigError

# Environment variables whose values are credentials: jobs get them through `getenv`
# (by name); no generated file, config.yaml included, may hold their values.
SECRET_NAMES = ("*TOKEN*", "*SECRET*", "*PASSWORD*", "*KEY*", "AWS_ACCESS_KEY_ID")
# ... but a name for a file or place holding a credential is a path, not the credential
NOT_SECRET = ("*_FILE", "*_PATH", "*_DIR", "*_URL")
# shorter values (say KEYRING_ENABLED=1) would match everywhere and prove nothing
MIN_LENGTH = 6
HIDDEN = "<hidden>"


def is_secret(name: str) -> bool:
    """Whether an environment variable of this name holds a credential."""
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, p) for p in SECRET_NAMES) and not any(
        fnmatch.fnmatchcase(upper, p) for p in NOT_SECRET
    )


def secret_values(env: Mapping[str, str]) -> dict[str, str]:
    """The credentials in `env` worth looking for: name -> value."""
    return {k: v for k, v in env.items() if is_secret(k) and len(v) >= MIN_LENGTH}


def check_files(files: Mapping[str, str], env: Mapping[str, str]) -> None:
    """Refuse to write files holding the value of any secret in `env`."""
    secrets = secret_values(env)
    if not secrets:
        return
    for name, text in files.items():
        for variable, value in secrets.items():
            if value in text:
                raise ConfigError(
                    f"{name} would hold the value of ${variable}, a secret: pass it by "
                    f"name (getenv: [{variable}]) instead of writing it into the config"
                )


def check_environment(values: Iterable[tuple[str, str]]) -> None:
    """Refuse `environment:` entries (key path, name) that set a secret in a file."""
    for where, name in values:
        if is_secret(name):
            raise ConfigError(
                f"{where}: {name} is a secret and would be written into the .sub file: "
                f"remove it and list {name} under getenv (it is passed by name)"
            )


def hide(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with secret values replaced, for printing."""
    return {k: HIDDEN if is_secret(k) else v for k, v in env.items()}
