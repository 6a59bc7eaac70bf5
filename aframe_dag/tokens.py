"""The credentials a job asks HTCondor for: `use_oauth_services` and each service's
scopes, as the manual's "Jobs That Require Credentials" writes them.

    use_oauth_services = igwn
    igwn_oauth_permissions_datafind = gwdatafind.read read:/ligo
    igwn_oauth_resource_datafind = https://datafind.igwn.org

`condor.use_oauth_services` names the services of every job, `condor.oauth` a service's
permissions (scopes), resource (audience) and handle; a stage's own `use_oauth_services`
and `oauth` replace them, service by service. The access point keeps one set of scopes
per user, service and handle, and refuses a job that asks for another one ("a new job
submission will fail"): two stages asking one service for different scopes need
different handles, which the build checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aframe_dag.config import Config, OAuth
from aframe_dag.errors import ConfigError

SERVICE = re.compile(r"[A-Za-z0-9]+(_[A-Za-z0-9]+)?")  # a name, or Vault's issuer_role


@dataclass(frozen=True)
class Token:
    service: str
    permissions: list[str]  # scopes; none: the service's default (often the widest)
    resource: str | None  # the audience
    handle: str | None

    @property
    def key(self) -> str:
        """`service` or `service_handle`: the name of its file in $_CONDOR_CREDS."""
        return f"{self.service}_{self.handle}" if self.handle else self.service

    def describe(self) -> str:
        scopes = " ".join(self.permissions) or "the service's default scopes"
        audience = f" for {self.resource}" if self.resource else ""
        return f"{self.key} ({scopes}{audience})"


def stage_tokens(config: Config, stage: str) -> list[Token]:
    """The tokens the jobs of `stage` ask for, in the order their services are named."""
    own = config.stages[stage]
    names = own.use_oauth_services
    listed = config.condor.use_oauth_services if names is None else names
    services = [s.strip() for s in listed.split(",") if s.strip()]
    settings = {**config.condor.oauth, **(own.oauth or {})}
    where = f"stages.{stage}" if names is not None else "condor"
    for service in services:
        if not SERVICE.fullmatch(service):
            raise ConfigError(
                f"{where}.use_oauth_services: {service!r} is not a credential service name "
                "(letters and digits, or issuer_role)"
            )
    for service in own.oauth or {}:
        if service not in services:
            raise ConfigError(
                f"stages.{stage}.oauth.{service}: {service} is not among the services stage "
                f"{stage} asks for ({where}.use_oauth_services: {listed!r}); name it there too"
            )
    empty = OAuth()
    return [
        Token(service, s.permissions, s.resource, s.handle)
        for service in services
        for s in [settings.get(service, empty)]
    ]


def check_scopes(config: Config, stages: list[str]) -> None:
    """Refuse two stages that ask one service and handle for different scopes, and
    scopes for a service that no stage asks for."""
    seen: dict[str, tuple[str, Token]] = {}
    asked: set[str] = set()
    for stage in stages:
        for token in stage_tokens(config, stage):
            asked.add(token.service)
            first = seen.setdefault(token.key, (stage, token))
            if first[1] != token:
                raise ConfigError(
                    f"stages {first[0]} and {stage} ask {token.service} for different scopes "
                    f"with one handle ({first[1].describe()} and {token.describe()}): the "
                    "access point keeps one set per handle and would refuse the second job; "
                    f"give one of them its own handle (stages.{stage}.oauth.{token.service}."
                    "handle)"
                )
    for service in config.condor.oauth:
        if service not in asked:
            raise ConfigError(
                f"condor.oauth.{service}: no stage asks for {service} "
                "(condor.use_oauth_services, stages.NAME.use_oauth_services)"
            )


def submit_lines(tokens: list[Token]) -> dict[str, str]:
    """The submit commands of `tokens`, after `use_oauth_services`."""
    lines: dict[str, str] = {}
    for token in tokens:
        suffix = f"_{token.handle}" if token.handle else ""
        if token.permissions or token.handle:  # a handle alone names a second token
            lines[f"{token.service}_oauth_permissions{suffix}"] = " ".join(token.permissions)
        if token.resource:
            lines[f"{token.service}_oauth_resource{suffix}"] = token.resource
    return lines
