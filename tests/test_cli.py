"""The CLI on bad input: one line on stderr, exit code 1 or 2, nothing half-written."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import htcondor2
import pytest
import yaml
from conftest import SANDBOX, run_cli

from aframe_dag.quoting import dag_unescape, expand_macros, split_arguments


def host_config(tmp_path: Path, stages: dict, params: dict | None = None) -> Path:
    path = tmp_path / "pipeline.yaml"
    config = {"name": "t", "params": params or {}, "condor": {"container": "none"}}
    path.write_text(yaml.safe_dump({**config, "stages": stages}, allow_unicode=True))
    return path


def fails(*args: str, code: int = 1) -> str:
    exit_code, out, err = run_cli(*args)
    assert exit_code == code, (out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_help_names_the_keys_behind_the_shorthands() -> None:
    code, out, _ = run_cli("build", "--help")
    assert code == 0
    for text in ("dirs.data", "stages.STAGE.image", "params.train_config", "condor.image_dir"):
        assert text in out.replace("\n", " ").replace("  ", " ")


def test_summary_lists_stages_nodes_gpus_and_the_submit_command(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    run_dir = tmp_path / "run"
    code, out, err = run_cli(
        "build", str(SANDBOX), "--run-dir", str(run_dir), "--image-dir", str(image_dir)
    )
    assert code == 0, err
    assert "  generate_training_waveforms    10 nodes" in out
    assert "  train                          1 node, 1 GPU each" in out
    assert out.endswith(f"Submit with:\n  condor_submit_dag {run_dir}/aframe.dag\n")


def test_validate_and_show(tmp_path: Path, image_dir: Path, ligo_env: None) -> None:
    code, out, _ = run_cli("validate", str(SANDBOX), "--image-dir", str(image_dir))
    assert (code, out) == (0, f"{SANDBOX}: OK (15 stages)\n")
    code, out, _ = run_cli("show", str(SANDBOX), "--set", "params.seed=7")
    shown = yaml.safe_load(out)
    assert shown["params"]["seed"] == 7
    assert shown["condor"]["accounting_group"] == "ligo.dev.o4.cbc.allsky.aframe"


def test_malformed_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nstages: {a: [\n")
    assert fails("build", str(path), "--run-dir", str(tmp_path / "r")).startswith(
        f"Error: {path}:3: invalid YAML"
    )
    assert not (tmp_path / "r").exists()


def test_unknown_key(tmp_path: Path) -> None:
    path = host_config(tmp_path, {"a": {"command": "echo", "retries": 2}})
    line = fails("build", str(path), "--run-dir", str(tmp_path / "r"))
    assert line.endswith("stages.a.retries: unknown key; did you mean 'retry'?")
    assert not (tmp_path / "r").exists()


def test_wrong_type(tmp_path: Path) -> None:
    path = host_config(tmp_path, {"a": {"command": "echo", "retry": "often"}})
    line = fails("build", str(path), "--run-dir", str(tmp_path / "r"))
    assert line.endswith("stages.a.retry: must be an integer, got 'often'")


def test_unknown_stage_in_dependency(tmp_path: Path) -> None:
    path = host_config(
        tmp_path, {"fetch": {"command": "echo"}, "b": {"command": "echo", "after": ["fecth"]}}
    )
    line = fails("build", str(path), "--run-dir", str(tmp_path / "r"))
    # the place of the `after` that names it, then the key
    assert re.fullmatch(
        rf"Error: {re.escape(str(path))}:\d+: stages\.b\.after: unknown stage 'fecth'; "
        r"did you mean 'fetch'\?",
        line,
    )


def test_unknown_target(tmp_path: Path) -> None:
    path = host_config(tmp_path, {"train": {"command": "echo"}})
    line = fails("build", str(path), "--run-dir", str(tmp_path / "r"), "--target", "trian")
    assert line == "Error: --target: unknown stage 'trian'; did you mean 'train'?"


def test_dependency_cycle_is_listed(tmp_path: Path) -> None:
    stages = {
        "a": {"command": "echo", "after": ["c"]},
        "b": {"command": "echo", "after": ["a"]},
        "c": {"command": "echo", "after": ["b"]},
    }
    path = host_config(tmp_path, stages)
    line = fails("build", str(path), "--run-dir", str(tmp_path / "r"))
    assert re.fullmatch(
        rf"Error: {re.escape(str(path))}:\d+: dependency cycle: a -> c -> b -> a", line
    )


def test_self_dependency(tmp_path: Path) -> None:
    path = host_config(tmp_path, {"a": {"command": "echo", "after": ["a"]}})
    line = fails("build", str(path), "--run-dir", str(tmp_path / "r"))
    assert line.startswith(f"Error: {path}:")
    assert line.endswith(": stages.a.after: a stage cannot depend on itself")


def test_missing_ligo_group(
    tmp_path: Path, image_dir: Path, ligo_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIGO_GROUP")
    line = fails(
        "build", str(SANDBOX), "--run-dir", str(tmp_path / "r"), "--image-dir", str(image_dir)
    )
    assert "condor.accounting_group: environment variable LIGO_GROUP is not set" in line
    assert "--set condor.accounting_group=VALUE" in line
    assert not (tmp_path / "r").exists()


def test_missing_image(tmp_path: Path, image_dir: Path, ligo_env: None) -> None:
    (image_dir / "train.sif").unlink()
    line = fails(
        "build", str(SANDBOX), "--run-dir", str(tmp_path / "r"), "--image-dir", str(image_dir)
    )
    assert line.endswith(f"stages.train.image: no such image: {image_dir}/train.sif")
    assert f"{SANDBOX}:" in line


def test_every_missing_image_is_named_in_one_error(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    for name in ("train.sif", "tritonserver.sif", "plots.sif"):
        (image_dir / name).unlink()
    line = fails(
        "build", str(SANDBOX), "--run-dir", str(tmp_path / "r"), "--image-dir", str(image_dir)
    )
    lines = SANDBOX.read_text().split("\n")
    train = next(n for n, text in enumerate(lines, 1) if text.strip() == "image: train.sif")
    assert line == (
        f"Error: {SANDBOX}:{train}: stages.train.image: no such image: {image_dir}/train.sif; "
        f"also missing: {image_dir}/tritonserver.sif (stages.infer.service.image), "
        f"{image_dir}/plots.sif (stages.sensitive_volume.image)"
    )


def test_no_image_dir(tmp_path: Path, ligo_env: None) -> None:
    line = fails("build", str(SANDBOX), "--run-dir", str(tmp_path / "r"))
    assert "no image dir is set (--image-dir, condor.image_dir or AFRAME_CONTAINER_ROOT)" in line


def test_bad_shorthand_flag_is_a_usage_error(tmp_path: Path) -> None:
    line = fails(
        "build", str(SANDBOX), "--run-dir", str(tmp_path / "r"), "--image", "train", code=2
    )
    assert "expected STAGE=PATH" in line


def test_run_dir_with_spaces_is_refused(tmp_path: Path) -> None:
    path = host_config(tmp_path, {"a": {"command": "echo"}})
    line = fails("build", str(path), "--run-dir", str(tmp_path / "my run"))
    assert "contains ' ', which DAGMan's JOB and SCRIPT lines cannot carry" in line
    assert not (tmp_path / "my run").exists()


def command_line(path: Path) -> int:
    """The line of a host_config's only command."""
    return next(n for n, line in enumerate(path.read_text().split("\n"), 1) if "command:" in line)


def test_unknown_item_field_names_the_stage_and_its_line(tmp_path: Path) -> None:
    stages = {"a": {"command": "echo {{ item.strat }}", "foreach": {"count": {"num_jobs": 2}}}}
    path = host_config(tmp_path, stages)
    line = fails("build", str(path), "--run-dir", str(tmp_path / "r"))
    assert line == (
        f"Error: {path}:{command_line(path)}: stages.a.command: stage a: item has no field "
        "'strat' (fields: index)"
    )


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ params.missing }}", "params.missing is undefined"),
        ("{{ params.highpas }}", "params.highpas is undefined; did you mean params.highpass?"),
        ("{{ params.band.lowx }}", "params.band.lowx is undefined; did you mean params.band.low?"),
        ("{{ param.highpass }}", "'param' is undefined; did you mean params?"),
        ("{{ params['nope'] }}", "'dict object' has no attribute 'nope'"),  # as Jinja says it
    ],
)
def test_an_undefined_name_is_named_with_its_file_line_and_nearest_name(
    tmp_path: Path, template: str, message: str
) -> None:
    params = {"highpass": 32, "band": {"low": 20, "high": 500}}
    path = host_config(tmp_path, {"a": {"command": f"echo {template}"}}, params)
    line = fails("build", str(path), "--run-dir", str(tmp_path / "r"))
    assert line == f"Error: {path}:{command_line(path)}: stages.a.command: {message}"


def test_an_undefined_name_in_a_set_command_is_named_with_the_set(tmp_path: Path) -> None:
    path = host_config(tmp_path, {"a": {"command": "echo"}}, {"highpass": 32})
    args = ("--run-dir", str(tmp_path / "r"), "--set", "stages.a.command=echo {{ params.hp }}")
    line = fails("build", str(path), *args)
    assert line == "Error: --set stages.a.command: params.hp is undefined"


def test_a_set_naming_a_stage_that_is_not_there_suggests_the_nearest(tmp_path: Path) -> None:
    path = host_config(tmp_path, {"train": {"command": "echo"}})
    run = ("--run-dir", str(tmp_path / "r"))
    line = fails("build", str(path), *run, "--set", "stages.trian.resources.gpus=2")
    suggestion = "no stage 'trian'; did you mean 'train'?"
    assert line == f"Error: --set stages.trian.resources.gpus: {suggestion}"
    line = fails("build", str(path), *run, "--rerun", "trian")
    assert line == "Error: --rerun: unknown stage 'trian'; did you mean 'train'?"
    # a new stage is made by its command first, then set like any other
    new = ["--set", "stages.trains.command=echo", "--set", "stages.trains.retry=1"]
    code, _, err = run_cli("build", str(path), *run, *new)
    assert code == 0, err
    assert "RETRY trains 1" in (tmp_path / "r" / "aframe.dag").read_text()


def test_a_template_that_yaml_reads_as_a_mapping_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = host_config(tmp_path, {"a": {"command": "echo"}})
    args = ("--run-dir", str(tmp_path / "r"), "--set", "stages.a.command={{ params.x }}")
    line = fails("build", str(path), *args)
    assert line == (
        "Error: --set stages.a.command:1: a key must be a plain value, not a mapping or list "
        "(quote a value that starts with `{{`)"
    )


def test_empty_fanout_is_a_clear_error(tmp_path: Path) -> None:
    segments = tmp_path / "segments.txt"
    segments.write_text("# seg\tstart\tstop\tduration\n")
    stages = {
        "a": {"command": "echo {{ item.start }}", "foreach": {"segments": {"file": str(segments)}}}
    }
    line = fails("build", str(host_config(tmp_path, stages)), "--run-dir", str(tmp_path / "r"))
    assert line == f"Error: stage a: fan-out is empty (no nodes from {segments})"


def test_failed_build_leaves_an_existing_run_dir_as_it_was(tmp_path: Path) -> None:
    good = host_config(tmp_path, {"a": {"command": "echo one"}})
    run_dir = tmp_path / "r"
    assert run_cli("build", str(good), "--run-dir", str(run_dir))[0] == 0
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    bad = host_config(tmp_path, {"a": {"command": "echo {{ params.nope }}"}})
    fails("build", str(bad), "--run-dir", str(run_dir))
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_dagman_state_is_never_overwritten(tmp_path: Path) -> None:
    config = host_config(tmp_path, {"a": {"command": "echo"}})
    run_dir = tmp_path / "r"
    assert run_cli("build", str(config), "--run-dir", str(run_dir))[0] == 0
    (run_dir / "aframe.dag.rescue001").write_text("DONE a\n")
    line = fails("build", str(config), "--run-dir", str(run_dir))
    assert "holds DAGMan state (aframe.dag.rescue001)" in line
    assert f"condor_submit_dag {run_dir}/aframe.dag (it picks the rescue DAG up)" in line
    assert "--force" in line
    assert (run_dir / "aframe.dag.rescue001").read_text() == "DONE a\n"


def test_a_dagman_lock_is_refused_too(tmp_path: Path) -> None:
    config = host_config(tmp_path, {"a": {"command": "echo"}})
    run_dir = tmp_path / "r"
    assert run_cli("build", str(config), "--run-dir", str(run_dir))[0] == 0
    (run_dir / "aframe.dag.lock").write_text("pid 1\n")
    assert "holds DAGMan state (aframe.dag.lock)" in fails(
        "build", str(config), "--run-dir", str(run_dir)
    )


def test_force_moves_the_last_run_aside_and_says_so(tmp_path: Path) -> None:
    config = host_config(tmp_path, {"a": {"command": "echo"}})
    run_dir = tmp_path / "r"
    assert run_cli("build", str(config), "--run-dir", str(run_dir))[0] == 0
    left = ["aframe.dag.rescue001", "aframe.dag.dagman.out", "aframe.dag.nodes.log",
            "aframe.jobstate.log", "aframe.status", "run-local.record"]  # fmt: skip
    for name in left:
        (run_dir / name).write_text(f"{name}\n")
    code, out, err = run_cli("build", str(config), "--run-dir", str(run_dir), "--force")
    assert code == 0, err
    moved = ", ".join(f"previous-1/{name}" for name in sorted(left))
    assert f"Moved the last run's records aside: {moved}" in out
    for name in left:
        assert not (run_dir / name).exists()
        assert (run_dir / "previous-1" / name).read_text() == f"{name}\n"  # nothing lost
    assert (run_dir / "aframe.dag").exists()


HOSTILE = [
    "it's",
    'say "hi"',
    "back\\slash\\",
    "two  spaces",
    " lead",
    "x$(y)z",
    "ünïcödé ✓",
    "$HOME",
    "100%",
    "#hash",
    "",
]


def test_hostile_params_round_trip_into_arguments_and_environment(tmp_path: Path) -> None:
    params = {f"p{i}": v for i, v in enumerate(HOSTILE)}
    command = ["prog", *(f"{{{{ params.p{i} }}}}" for i in range(len(HOSTILE)))]
    stages = {"a": {"command": command, "environment": {"V": "{{ params.p0 }}{{ params.p5 }}"}}}
    run_dir = tmp_path / "r"
    code, _, err = run_cli(
        "build", str(host_config(tmp_path, stages, params)), "--run-dir", str(run_dir)
    )
    assert code == 0, err
    submit = htcondor2.Submit((run_dir / "a.sub").read_text())
    assert split_arguments(submit.expand("arguments")) == ["prog", *HOSTILE]
    assert submit["environment"] == "\"V='it''sx$(DOLLAR)(y)z'\""


def test_hostile_items_round_trip_through_vars(tmp_path: Path) -> None:
    values = [v for v in HOSTILE if v]
    stages = {"a": {"command": "prog {{ item.v }}", "foreach": {"list": {"v": values}}}}
    run_dir = tmp_path / "r"
    assert run_cli("build", str(host_config(tmp_path, stages)), "--run-dir", str(run_dir))[0] == 0
    arguments = htcondor2.Submit((run_dir / "a.sub").read_text())["arguments"]
    vars_lines = [
        line
        for line in (run_dir / "aframe.dag").read_text().splitlines()
        if line.startswith("VARS")
    ]
    assert len(vars_lines) == len(values)
    for line, value in zip(vars_lines, values, strict=True):
        raw = line.split(' v="', 1)[1][:-1]
        argv = split_arguments(expand_macros(arguments, {"v": dag_unescape(raw)}))
        assert argv == ["prog", value]


@pytest.mark.parametrize("value", ["two\nlines", "a$$(b)", "$(DOLLAR)"])
def test_unrepresentable_params_are_refused_by_name(tmp_path: Path, value: str) -> None:
    stages = {"a": {"command": "prog {{ params.x }}"}}
    path = host_config(tmp_path, stages, {"x": value})
    line = fails("build", str(path), "--run-dir", str(tmp_path / "r"))
    assert line.startswith("Error: stages.a.command: contains")
    assert not (tmp_path / "r").exists()


def test_run_dir_files_follow_the_umask(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    old = os.umask(0o022)
    try:
        assert (
            run_cli(
                "build",
                str(host_config(tmp_path, {"a": {"command": "echo"}})),
                "--run-dir",
                str(run_dir),
            )[0]
            == 0
        )
    finally:
        os.umask(old)
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o755
    for name in ("aframe.dag", "a.sub", "config.yaml"):
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o644, name


# what a command that only talks (help, version, a usage error) must not import
HEAVY = ("jinja2", "yaml", "htcondor2", "classad2", "wandb", "rich", "matplotlib", "numpy")
IMPORTED = """
import sys
from aframe_dag.cli import main
code = main(sys.argv[1:])
heavy = {HEAVY!r}
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))
ours = sorted(m for m in sys.modules if m.startswith("aframe_dag."))
print(code, loaded, ours)
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["build", "--help"], ["build"]])
def test_talking_commands_import_click_and_no_more(args: list[str]) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", IMPORTED.format(HEAVY=HEAVY), *args],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    code, loaded, ours = done.stdout.strip().splitlines()[-1].split(" ", 2)
    assert code == ("2" if args == ["build"] else "0")  # build without CONFIG: a usage error
    assert loaded == "[]", done.stdout
    # aframe_dag.shell: completion callbacks, importing nothing until the shell asks
    expected = ["aframe_dag.cli", "aframe_dag.containers", "aframe_dag.errors", "aframe_dag.shell"]
    assert ours == str(expected), ours


def test_the_version_is_the_installed_distributions() -> None:
    from importlib.metadata import version

    code, out, _ = run_cli("--version")
    assert (code, out) == (0, f"aframe-dag, version {version('aframe-dag')}\n")
