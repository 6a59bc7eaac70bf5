"""Errors a user can cause; the CLI prints their message as one line."""

from __future__ import annotations


class AframeDagError(Exception):
    """Base of every error caused by user input; its message is one line."""


class ConfigError(AframeDagError):
    """The YAML config, an override or an environment variable is invalid."""


class GraphError(AframeDagError):
    """Stage dependencies are inconsistent: unknown stage, cycle, bad target."""


class FanoutError(AframeDagError):
    """A fan-out generator cannot expand its inputs."""


class QuotingError(AframeDagError):
    """A value cannot be written into a submit or DAG file without changing it."""


class RenderError(AframeDagError):
    """A command or path template fails to render."""


class RunDirError(AframeDagError):
    """The run dir cannot be written, or holds state that a build would lose."""
