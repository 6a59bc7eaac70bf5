"""The command line: parse options, make one core call, print the result.

Each command imports what it uses when it runs: `--help`, `--version` and a mistyped
option cost click's import and no more (no jinja2, yaml or htcondor).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from aframe_dag import __version__, shell
from aframe_dag.containers import MODES
from aframe_dag.errors import AframeDagError, one_line


class Group(click.Group):
    """Turns AframeDagError into a one-line error and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AframeDagError as exc:
            raise click.ClickException(str(exc)) from None


def _string(value: str) -> str:
    # --set values are YAML; a path such as `yes` or `1e5` must stay a string. Escaped
    # as YAML does (JSON's \u would split a character beyond U+FFFF in two)
    escaped = (c if " " <= c <= "~" and c not in '"\\' else f"\\U{ord(c):08x}" for c in value)
    return '"' + "".join(escaped) + '"'


def _pair(value: str, flag: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise click.BadParameter(f"expected STAGE=PATH, got {value!r}", param_hint=flag)
    return name, path


def _gpu_ids(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    """--gpus IDS as ids; a malformed one (an empty one, for build) is a bad flag (exit 2)."""
    if value is None:
        return None
    from aframe_dag import runner

    if not value.strip() and ctx.command.name != "run-local":  # run-local's "": no GPUs
        raise click.UsageError(f"--gpus: expected GPU ids such as 0,1, got {value!r}", ctx)
    try:
        return runner.parse_gpus(value)
    except AframeDagError as exc:
        raise click.UsageError(str(exc), ctx) from None


train_gpus = click.option(
    "--gpus",
    "gpu_ids",
    metavar="IDS",
    default=None,
    callback=_gpu_ids,
    help="Train on these GPUs, e.g. 0,1 (that many, DDP when more than one); run-local "
    "on the run dir uses them unless given --gpus.",
)


def config_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Options that change the config: --set and the seed's shorthands."""
    options = [
        click.option(
            "--set",
            "assignments",
            multiple=True,
            metavar="KEY=VALUE",
            help="Override any config key (dotted path; value parsed as YAML).",
        ),
        click.option("--data-dir", help="Base data directory (sets dirs.data)."),
        click.option("--image-dir", help="Directory of the .sif images (sets condor.image_dir)."),
        click.option(
            "--image",
            "images",
            multiple=True,
            metavar="STAGE=PATH",
            help="Image of one stage (sets stages.STAGE.image); repeatable.",
        ),
        click.option(
            "--config",
            "train_config",
            metavar="PATH",
            help="The train stage's own YAML config (sets params.train_config).",
        ),
        click.option(
            "--container",
            type=click.Choice(list(MODES)),
            help="How jobs run their images (sets condor.container).",
        ),
        click.option(
            "--use-wandb", is_flag=True, help="Log training to Weights & Biases (wandb.enabled)."
        ),
        click.option("--wandb-name", metavar="NAME", help="The W&B run name (wandb.name)."),
        click.option(
            "--dev",
            is_flag=True,
            help="Bind the local aframe checkout at /opt/aframe in every image (dev.enabled).",
        ),
        click.option(
            "--dev-path",
            metavar="PATH",
            help="The aframe checkout for --dev (dev.path; default: this git checkout).",
        ),
        click.option(
            "--train-remote",
            is_flag=True,
            help="Train on any GPU slot, inputs and outputs transferred (remote.enabled).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def overrides(
    assignments: Sequence[str],
    data_dir: str | None,
    image_dir: str | None,
    images: Sequence[str],
    train_config: str | None,
    container: str | None,
    use_wandb: bool = False,
    wandb_name: str | None = None,
    dev: bool = False,
    dev_path: str | None = None,
    train_remote: bool = False,
) -> list[str]:
    """Shorthand flags as --set assignments; explicit --set comes last and wins."""
    result = []
    if data_dir:
        result.append(f"dirs.data={_string(str(Path(data_dir).absolute()))}")
    if image_dir:
        result.append(f"condor.image_dir={_string(str(Path(image_dir).absolute()))}")
    for value in images:
        stage, path = _pair(value, "--image")
        result.append(f"stages.{stage}.image={_string(path)}")
    if train_config:
        result.append(f"params.train_config={_string(str(Path(train_config).absolute()))}")
    if container:
        result.append(f"condor.container={container}")
    if use_wandb:
        result.append("wandb.enabled=true")
    if wandb_name:
        result.append(f"wandb.name={_string(wandb_name)}")
    if dev or dev_path:
        result.append("dev.enabled=true")
    if dev_path:
        result.append(f"dev.path={_string(str(Path(dev_path).absolute()))}")
    if train_remote:
        result.append("remote.enabled=true")
    return result + list(assignments)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aframe-dag")
def cli() -> None:
    """Render Aframe pipeline configs into HTCondor DAGMan workflows."""


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False), shell_complete=shell.configs)
@click.option(
    "--run-dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory to write the DAG, submit files and logs into.",
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    shell_complete=shell.stages,
    metavar="STAGE",
    help="Build only this stage and what it needs; repeatable.",
)
@click.option(
    "--rerun",
    multiple=True,
    shell_complete=shell.stages,
    metavar="STAGE",
    help="Run this stage and everything after it again, complete or not; repeatable.",
)
@click.option(
    "--explain",
    multiple=True,
    shell_complete=shell.stages,
    metavar="STAGE",
    help="Say, for each node of this stage that runs again, each input that changed since "
    "its last success, old -> new; repeatable.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Start over in a run dir holding a rescue DAG or a DAGMan lock: move the last "
    "run's records aside to RUN_DIR/previous-N/.",
)
@click.option(
    "--check",
    "check_only",
    is_flag=True,
    help="Run every preflight check (images, accounting, inputs, GPUs, the pool) and "
    "write nothing.",
)
@train_gpus
@config_options
def build(
    config: str,
    run_dir: str,
    targets: tuple[str, ...],
    rerun: tuple[str, ...],
    explain: tuple[str, ...],
    force: bool,
    check_only: bool,
    gpu_ids: list[str] | None,
    **options: Any,
) -> None:
    """Write RUN_DIR/aframe.dag and one STAGE.sub per stage; complete nodes are DONE."""
    from aframe_dag import workflow as core

    ids = gpu_ids or []
    if check_only:
        checks = core.check(config, run_dir, overrides(**options), targets, gpus=ids)
        for check in checks:
            mark = "warn" if check.warning else ("ok  " if check.ok else "FAIL")
            click.echo(f"{mark}  {check.name}: {check.message}")
        failed = [c for c in checks if not c.ok and not c.warning]
        if failed:
            raise click.ClickException(f"{len(failed)} of {len(checks)} checks failed")
        click.echo(f"all {len(checks)} checks passed")
        return
    started = time.perf_counter()
    command = ["aframe-dag", *(click.get_current_context().find_root().obj or {}).get("argv", [])]
    summary = core.build(
        config, run_dir, overrides(**options), targets, force=force, rerun=rerun, command=command,
        gpus=ids,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    click.echo(f"Built {summary.pipeline} in {summary.run_dir} ({elapsed:.2f} s)")
    width = max(len(s.name) for s in summary.stages)
    total_nodes = total_jobs = 0
    for stage in summary.stages:
        if stage.runtime:
            nodes = f"decided at run time from {stage.waits_for}"
        else:
            count = len(stage.items) if stage.spec else 1
            jobs = len(stage.dag_names()) if not stage.subdag else count
            total_nodes, total_jobs = total_nodes + count, total_jobs + jobs
            nodes = f"{count} node{'s' if count != 1 else ''}"
            if stage.clustered:
                nodes = f"{count} tasks in {jobs} job{'s' if jobs != 1 else ''}"
            nodes += _completion(summary.judged[stage.name], stage)
        gpus = stage.stage.resources.gpus
        gpu_note = f", {gpus} GPU{'s' if gpus != 1 else ''} each" if gpus else ""
        click.echo(f"  {stage.name:<{width}}  {nodes}{gpu_note}")
    subs = sum(1 for f in summary.files if f.endswith(".sub"))
    clustered = f" ({total_jobs} jobs)" if total_jobs != total_nodes else ""
    click.echo(
        f"{len(summary.stages)} stages, {total_nodes} nodes known now{clustered}; wrote "
        f"aframe.dag, config.yaml and {subs} .sub files"
    )
    if summary.moved:
        click.echo(f"Moved the last run's records aside: {', '.join(summary.moved)}")
    if summary.moved_stages:
        click.echo(
            f"Moved the files of {', '.join(summary.stale)} (in the last build, not in this "
            f"one) aside: {', '.join(summary.moved_stages)}"
        )
    if ids:
        click.echo(f"run-local on it trains on GPUs {','.join(ids)} (unless given --gpus)")
    for warning in summary.warnings:
        click.echo(f"Warning: {warning}", err=True)
    _explain(summary, explain)
    click.echo("Submit with:")
    click.echo(f"  condor_submit_dag {summary.dag}")


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False), shell_complete=shell.configs)
@click.option(
    "--run-dir",
    default="run",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Run dir to check against (nothing is written).",
)
@train_gpus
@config_options
def validate(config: str, run_dir: str, gpu_ids: list[str] | None, **options: Any) -> None:
    """Check a config: keys, types, dependencies, templates and images."""
    from aframe_dag import workflow as core
    from aframe_dag.config import load_config

    loaded = core.with_gpus(load_config(config, overrides(**options)), gpu_ids or [])
    plan = core.make_plan(loaded, Path(run_dir).absolute())
    click.echo(f"{config}: OK ({len(plan.stages)} stages)")


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False), shell_complete=shell.configs)
@train_gpus
@config_options
def show(config: str, gpu_ids: list[str] | None, **options: Any) -> None:
    """Print the config after overrides and ${env:...} as YAML."""
    from aframe_dag import workflow as core
    from aframe_dag.config import dump_config, load_config

    loaded = core.with_gpus(load_config(config, overrides(**options)), gpu_ids or [])
    click.echo(dump_config(loaded.config), nl=False)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("stage")
def expand(run_dir: str, stage: str) -> None:
    """Write RUN_DIR/STAGE.dag for a stage whose fan-out is decided at run time."""
    from aframe_dag import workflow as core

    path, count = core.expand(run_dir, stage)
    click.echo(f"wrote {path} ({count} nodes)")


@cli.command("run-local")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--gpus",
    metavar="IDS",
    default=None,
    callback=_gpu_ids,
    help="GPU ids for GPU nodes, e.g. 0,1 (default: those of `build --gpus`, else "
    "$CUDA_VISIBLE_DEVICES, else none).",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Run up to this many independent nodes at once.",
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    shell_complete=shell.stages,
    metavar="STAGE",
    help="Run only this stage's nodes and those they need; repeatable.",
)
@click.option("--dry-run", is_flag=True, help="Print each node's command and environment.")
def run_local(
    run_dir: str, gpus: list[str] | None, jobs: int, targets: tuple[str, ...], dry_run: bool
) -> None:
    """Run the DAG in RUN_DIR on this machine, as DAGMan would."""
    from aframe_dag import runner

    ids = gpus if gpus is not None else runner.default_gpus(run_dir)
    if dry_run:
        for line in runner.dry_run(run_dir, ids, targets):
            click.echo(line)
        return
    if sys.stderr.isatty():
        from aframe_dag.progress import bar

        with bar() as report:
            outcome = runner.run_local(run_dir, ids, jobs, report, targets)
    else:  # a line per node that ends (a log, not a display)

        def report(message: str, _: object) -> None:
            if message.startswith(runner.ENDED):
                click.echo(message)

        outcome = runner.run_local(run_dir, ids, jobs, report, targets)
    skipped = f", {outcome.skipped} already done" if outcome.skipped else ""
    not_run = f", {len(outcome.not_run)} not run" if outcome.not_run else ""
    nodes = "node" if len(outcome.done) == 1 else "nodes"
    click.echo(
        f"{len(outcome.done)} {nodes} succeeded, {len(outcome.failed)} failed{not_run}{skipped}"
    )
    for key, message in outcome.failed:
        click.echo(f"  failed {key}: {message}", err=True)
    if outcome.not_run:
        names = ", ".join(key.split(":", 1)[1] for key in outcome.not_run[:5])
        more = f" and {len(outcome.not_run) - 5} more" if len(outcome.not_run) > 5 else ""
        click.echo(f"  not run (a node they need failed): {names}{more}", err=True)
    if outcome.interrupted:
        raise click.ClickException("interrupted; run again to resume")
    if outcome.failed:
        raise click.ClickException(f"{len(outcome.failed)} node(s) failed")


@cli.command("import-law")
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write the config here (default: print it).",
)
@click.option("--force", is_flag=True, help="Replace the output file if it exists.")
def import_law(cfg: str, output: str | None, force: bool) -> None:
    """A law/luigi .cfg (with the files it inherits) as a config that extends the closest
    bundled one and sets only what differs."""
    from aframe_dag import lawcfg

    imported = lawcfg.import_law(cfg, output, force)
    if output is None:
        click.echo(imported.text, nl=False)
        return
    click.echo(
        f"wrote {output}: extends {imported.extends}, sets {imported.values} value"
        f"{'s' if imported.values != 1 else ''}, {imported.ignored} cfg keys not carried over"
    )


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="FILE.svg, FILE.png (graphviz's dot) or FILE.dot.",
)
@click.option(
    "--collapse",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Draw a stage with more nodes than this as one box, 'stage xN'.",
)
def graph(run_dir: str, output: str, collapse: int) -> None:
    """Draw the DAG in RUN_DIR: stages as boxes, complete nodes shaded, failed marked."""
    from aframe_dag import picture

    picture.render(picture.to_dot(Path(run_dir), collapse), Path(output))
    click.echo(f"wrote {output}")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.argument("stages", nargs=-1, required=True, shell_complete=shell.stages)
@click.option("--downstream", is_flag=True, help="Clean every stage after them too.")
@click.option("--yes", is_flag=True, help="Do not ask (needed when not on a terminal).")
def clean(run_dir: str, stages: tuple[str, ...], downstream: bool, yes: bool) -> None:
    """Remove STAGES' declared outputs and forget their successes, so that the next build
    runs them again. DAGMan's files are left alone."""
    from aframe_dag import clean as cleaning

    found = cleaning.plan_clean(run_dir, list(stages), downstream)
    what = (
        f"{len(found.outputs)} output file{'s' if len(found.outputs) != 1 else ''} and the "
        f"records of success of {', '.join(found.stages)}"
    )
    if not yes:
        if not sys.stdin.isatty():
            raise click.ClickException(f"would remove {what}: pass --yes to do it")
        for path in found.outputs[:5]:
            click.echo(f"  {path}")
        if len(found.outputs) > 5:
            click.echo(f"  ... and {len(found.outputs) - 5} more")
        click.confirm(f"Remove {what}?", abort=True)
    cleaning.clean(found)
    click.echo(f"removed {what}; build again to run them")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option(
    "--watch",
    type=click.IntRange(min=1),
    default=None,
    metavar="SECONDS",
    help="Refresh every SECONDS until the run ends (exit code 0 if it succeeded, 1 if not).",
)
def status(run_dir: str, as_json: bool, watch: int | None) -> None:
    """Where a DAGMan or local run stands, per stage; failed nodes with their stderr."""
    import json as json_module

    from aframe_dag import status as run_status

    while True:
        current = run_status.read_status(run_dir)
        if as_json:
            text = json_module.dumps(run_status.to_json(current), indent=2)
        else:
            text = "\n".join(run_status.render(current))
        if watch:
            click.clear()
        click.echo(text)
        if not watch:
            return
        if current.state in run_status.ENDED:
            raise click.exceptions.Exit(0 if current.state == "done" else 1)
        time.sleep(watch)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="The page: one self-contained HTML file.",
)
@click.option(
    "--json",
    "json_path",
    metavar="FILE",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="The same figures as JSON, to FILE (- for stdout).",
)
def report(run_dir: str, output: str | None, json_path: str | None) -> None:
    """What a run cost, what it made and how it was made: one HTML page, or JSON."""
    if not output and not json_path:
        raise click.UsageError("give -o FILE.html, --json FILE (- for stdout), or both")
    from aframe_dag import report as run_report
    from aframe_dag import report_html

    made = run_report.make(run_dir)
    to_stdout = json_path == "-"
    if output:
        report_html.write_page(made, Path(output))
        click.echo(f"wrote {output}", err=to_stdout)  # stdout is the JSON's
    if json_path:
        text = run_report.json_text(made)
        if to_stdout:
            click.echo(text, nl=False)
        else:
            run_report.write_json(made, Path(json_path))
            click.echo(f"wrote {json_path}")


def _completion(judged: Any, stage: Any) -> str:
    """': 3 complete (1 with outputs but no record), 2 to run (params.highpass 32 -> 25)':
    the changes named are the first changed node's."""
    from aframe_dag import explain

    verdicts = judged.verdicts
    done = [v for v in verdicts.values() if v.complete]
    if not done and all(v.reason in ("never run", "outputs missing") for v in verdicts.values()):
        return ""
    parts = []
    if done:
        adopted = sum(v.reason == "outputs without record" for v in done)
        note = f" ({adopted} outputs without record)" if adopted else ""
        parts.append(f"{len(done)} complete{note}")
    stale = [v.reason for v in verdicts.values() if not v.complete]
    if stale:
        reasons = sorted(set(stale))
        first = next(iter(explain.stage_changes(judged, stage).values()), None)
        if first:  # what changed, rather than which part of the fingerprint
            named = explain.summary(first, stage.name)
            reasons = [named if r.endswith(" changed") else r for r in reasons]
        parts.append(f"{len(stale)} to run ({', '.join(dict.fromkeys(reasons))})")
    return ": " + ", ".join(parts)


def _explain(summary: Any, stages: tuple[str, ...]) -> None:
    """`build --explain STAGE`: each changed input of each node of STAGE that runs again."""
    from aframe_dag import explain, graph

    plans = {plan.name: plan for plan in summary.stages}
    for name in stages:
        if name not in plans:
            raise graph.unknown_stage(name, plans, "--explain")
        if name not in summary.judged:
            click.echo(f"{name}: decided at run time; its nodes are judged when it expands")
            continue
        found = explain.stage_changes(summary.judged[name], plans[name], every=True)
        if not found:
            click.echo(f"{name}: no node runs again for a changed input")
        for node, changed in found.items():
            click.echo(f"{node}: " + "; ".join(changed))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (for tests and console scripts)."""
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        code = cli.main(  # click returns an Exit's code here, else what the command did
            args=args,
            prog_name="aframe-dag",
            standalone_mode=False,
            obj={"argv": args},  # `build` records its command line
        )
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:
        # one line, like every other error; --help has the usage
        command = exc.ctx.command_path if exc.ctx else "aframe-dag"
        click.echo(f"Error: {one_line(exc.format_message())} (see {command} --help)", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return 1
    return code if isinstance(code, int) else 0
