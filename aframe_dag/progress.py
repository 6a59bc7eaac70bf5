"""The run-local progress bar on a terminal (rich): done / running / failed / total."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from aframe_dag.runner import Progress as RunState
from aframe_dag.runner import Report


@contextmanager
def bar() -> Iterator[Report]:
    """A report callback that draws a live bar; failures and retries print above it."""
    columns = (
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]}"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("", total=None, failed="")

        def report(message: str, state: RunState) -> None:
            if message.startswith(("FAIL", "retry")):
                progress.console.print(message)
            running = ", ".join(state.running[:3]) + (" ..." if len(state.running) > 3 else "")
            failed = f"[red]{state.failed} failed[/red]" if state.failed else ""
            progress.update(
                task,
                completed=state.done,
                total=state.total,
                failed=failed,
                description=f"running: {running}" if running else "",
            )

        yield report
