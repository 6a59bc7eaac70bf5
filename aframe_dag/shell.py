"""Shell completion of the names a user types: bundled config names, and the stage names
of the config or the run dir already on the command line (click completes the commands
and options). Enabled with `eval "$(_AFRAME_DAG_COMPLETE=bash_source aframe-dag)"`.

Nothing here runs unless the shell asks: `cli` imports this module, and its imports are
click's alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # imported when the shell asks, not at every start
    from click.shell_completion import CompletionItem


def configs(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The bundled configs by name (`sandbox`), and files, as a CONFIG argument takes them."""
    from click.shell_completion import CompletionItem

    from aframe_dag.config import bundled_configs

    names = sorted(p.stem for p in bundled_configs().glob("*.yaml"))
    found = [CompletionItem(name) for name in names if name.startswith(incomplete)]
    return [*found, CompletionItem(incomplete, type="file")]


def stages(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The stages of the CONFIG or RUN_DIR given before on the line; none if it cannot be
    read (completion never fails)."""
    from click.shell_completion import CompletionItem

    params = dict(ctx.params)
    first = next((p.name for p in ctx.command.params if isinstance(p, click.Argument)), None)
    if first and not params.get(first) and ctx.args:
        # an option waiting for its value (`--target <TAB>`) stops click's parsing before
        # the arguments: the command's first one is still among the words left
        params[first] = ctx.args[0]
    names = _stage_names(params)
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


def _stage_names(params: dict[str, Any]) -> list[str]:
    from aframe_dag.errors import AframeDagError

    try:
        if params.get("config"):  # as written, extends and all: no environment needed
            from aframe_dag.config import find_config, read_yaml

            data, _ = read_yaml(find_config(Path(params["config"])))
            return [str(name) for name in data.get("stages") or {}]
        if params.get("run_dir"):
            from aframe_dag import rundir
            from aframe_dag.status import read_stages

            return list(read_stages(Path(params["run_dir"]) / rundir.CONFIG))
    except (AframeDagError, OSError):
        pass
    return []
