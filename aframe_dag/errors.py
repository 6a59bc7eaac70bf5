"""Errors a user can cause; the CLI prints their message as one line."""

from __future__ import annotations

import re

# what would end a line on a terminal or in a log (or hide text), were it printed raw
_BREAKS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def one_line(message: str) -> str:
    """`message` with line breaks and control characters escaped (\\n, \\x00)."""
    return _BREAKS.sub(lambda m: repr(m.group())[1:-1], message)


class AframeDagError(Exception):
    """Base of every error caused by user input; its message is one line."""

    def __str__(self) -> str:
        # a path or value quoted in the message may hold a newline: it stays one line
        return one_line(super().__str__())


class ConfigError(AframeDagError):
    """The YAML config, an override or an environment variable is invalid."""


class GraphError(AframeDagError):
    """Stage dependencies are inconsistent: unknown stage, cycle, bad target."""


class FanoutError(AframeDagError):
    """A fan-out generator cannot expand its inputs."""


class QuotingError(AframeDagError):
    """A value cannot be written into a submit or DAG file without changing it."""


class RenderError(AframeDagError):
    """A command or path template fails to render. `key` is the template's config key
    (`stages.train.command`), which the message starts with: where the config's source
    is known, its file:line is put before it."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


class RunDirError(AframeDagError):
    """The run dir cannot be written, or holds state that a build would lose."""
