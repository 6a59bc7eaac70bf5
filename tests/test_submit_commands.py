"""Submit commands from the config (`condor.submit`, `stages.NAME.submit`): written after
aframe-dag's own lines, read by HTCondor's own parser, never one that aframe-dag writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import htcondor2
import pytest
import yaml
from conftest import SANDBOX, run_cli

from aframe_dag import rundir, submit_commands
from aframe_dag.errors import RunDirError

PLACEMENT = {
    "requirements": "(OpSysMajorVer == 9) && (TARGET.HAS_CVMFS_oasis_opensciencegrid_org =?= true)",
    "+DESIRED_Sites": '"site_a,site_b"',
    "priority": 7,
    "nice_user": True,
}


def sandbox(tmp_path: Path, image_dir: Path, data: dict, *args: str) -> tuple[int, str, str]:
    config = tmp_path / "placed.yaml"
    config.write_text(yaml.safe_dump({"extends": str(SANDBOX), **data}))
    run = tmp_path / "run"
    return run_cli(
        "build", str(config), "--run-dir", str(run), "--image-dir", str(image_dir), *args
    )


def submit_lines(path: Path) -> list[str]:
    """Lines that set a command, in order (`arguments` continuations are one)."""
    text = path.read_text().replace("\\\n", "")
    return [line for line in text.split("\n") if line and not line.startswith("#")]


def test_every_job_gets_condors_lines_and_a_stage_its_own_after_aframe_dags(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    data = {
        "condor": {"submit": {"+ProjectName": '"every.job"', "priority": 1}},
        "stages": {"fetch_train": {"submit": {**PLACEMENT, "MY.ProjectName": '"own"'}}},
    }
    code, _, err = sandbox(tmp_path, image_dir, data)
    assert code == 0, err
    run = tmp_path / "run"
    placed = htcondor2.Submit((run / "fetch_train.sub").read_text())
    assert placed["requirements"] == PLACEMENT["requirements"]
    assert placed["MY.DESIRED_Sites"] == '"site_a,site_b"'  # htcondor2 says MY. for +
    assert placed["priority"] == "7"  # the stage's wins
    assert placed["nice_user"] == "true"  # YAML's true, as ClassAd writes it
    # the stage's MY.ProjectName replaces condor's +ProjectName: one attribute, two forms
    assert placed["MY.ProjectName"] == '"own"'
    assert (run / "fetch_train.sub").read_text().count("ProjectName") == 1
    lines = submit_lines(run / "fetch_train.sub")
    assert lines[-1] == "queue"
    own = [i for i, line in enumerate(lines) if submit_commands.own_command(line.split("=")[0])]
    added = [i for i, line in enumerate(lines[:-1]) if i not in own]
    assert len(added) == 5 and min(added) > max(own[:-1])  # after aframe-dag's, before queue
    for name in ("train", "export", "infer-service"):  # condor.submit alone
        other = htcondor2.Submit((run / f"{name}.sub").read_text())
        assert other["MY.ProjectName"] == '"every.job"' and other["priority"] == "1", name
        assert "requirements" not in other and "MY.DESIRED_Sites" not in other, name


VARIANTS = [
    (mode, variant)
    for mode in ("apptainer", "container-universe", "none")
    for variant in ("plain", "remote", "escalation")
    if (mode, variant) != ("none", "remote")  # a remote job runs an image
]


@pytest.mark.parametrize(("mode", "variant"), VARIANTS)
def test_every_command_aframe_dag_writes_is_one_a_config_cannot_set(
    tmp_path: Path, image_dir: Path, ligo_env: None, mode: str, variant: str
) -> None:
    args = {
        "plain": [],
        "remote": ["--train-remote"],
        "escalation": [
            "--set", "stages.train.resources.max_memory=64GB",
            "--set", "stages.train.resources.gpu_memory=16GB",
            "--set", "stages.train.resources.max_gpu_memory=64GB",
        ],
    }[variant]  # fmt: skip
    code, _, err = sandbox(tmp_path, image_dir, {}, "--container", mode, *args)
    assert code == 0, err
    subs = sorted((tmp_path / "run").glob("*.sub"))
    assert len(subs) == 16
    for sub in subs:
        for line in submit_lines(sub):
            key = line.split("=", 1)[0].split(":", 1)[0].strip()
            assert submit_commands.own_command(key) is not None, (sub.name, line)


@pytest.mark.parametrize(
    ("key", "names"),
    [
        ("request_memory", "stages.train.resources.memory"),
        ("RequestMemory", "stages.train.resources.memory"),
        ("+RequestMemory", "stages.train.resources.memory"),
        ("MY.Iwd", "the run dir"),
        ("arguments", "stages.train.command"),
        ("Request_GPUs", "stages.train.resources.gpus"),
        ("queue", "one job per node"),
        ("executable", "condor.container"),
        ("log", "logs/"),
        ("use_oauth_services", "condor.use_oauth_services"),
    ],
)
def test_a_command_aframe_dag_writes_is_refused_naming_its_key(
    tmp_path: Path, image_dir: Path, ligo_env: None, key: str, names: str
) -> None:
    code, out, err = sandbox(tmp_path, image_dir, {}, "--set", f"stages.train.submit.{key}=1")
    assert code == 1 and not out
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"stages.train.submit.{key}: aframe-dag writes" in err, err
    assert names in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("condor.submit.request_memory=4GB", "set it with stages.NAME.resources.memory"),
        ("condor.submit.bad-key=1", "is not a submit command"),
        ("condor.submit.priority=", "is empty"),
        ("condor.submit.+DESIRED_Sites=a,b", """a string needs double quotes: '"a,b"'"""),
        ("condor.submit.requirements=a &&", "is not a ClassAd expression"),
        ("condor.submit.requirements=$(FOO) > 1", "submit macros ($(...)) are not expanded"),
        ("condor.submit.+x=' 1'", "starts or ends with whitespace"),
    ],
)
def test_bad_submit_lines_are_one_line_errors(
    tmp_path: Path, image_dir: Path, ligo_env: None, setting: str, message: str
) -> None:
    code, _, err = sandbox(tmp_path, image_dir, {}, "--set", setting)
    assert code == 1 and err.count("\n") == 1, err
    assert message in err, err


def test_a_newline_or_two_forms_of_one_key_are_refused(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    data = {"condor": {"submit": {"priority": 1, "Priority": 2}}}
    code, _, err = sandbox(tmp_path, image_dir, data)
    assert code == 1 and "sets what" in err and "priority" in err and "Priority" in err, err
    data = {"condor": {"submit": {"requirements": "true\nqueue 100"}}}
    code, _, err = sandbox(tmp_path, image_dir, data)
    assert code == 1 and "condor.submit.requirements: contains a '\\n'" in err, err


def test_set_takes_a_dotted_attribute_as_one_key(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    code, _, err = sandbox(
        tmp_path, image_dir, {}, "--set", """stages.train.submit.MY.SingularityBind='"/cvmfs"'"""
    )
    assert code == 0, err
    sub = htcondor2.Submit((tmp_path / "run/train.sub").read_text())
    assert sub["MY.SingularityBind"] == '"/cvmfs"'


def test_a_macro_in_a_submit_line_is_written_as_text(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    code, _, err = sandbox(tmp_path, image_dir, {}, "--set", "condor.submit.+Home=$ENV(HOME)")
    assert code == 1 and "is not a ClassAd expression" in err, err
    quoted = """condor.submit.+Home='"$ENV(HOME)"'"""
    code, _, err = sandbox(tmp_path, image_dir, {}, "--set", quoted)
    assert code == 0, err
    sub = htcondor2.Submit((tmp_path / "run/train.sub").read_text())
    assert sub.expand("MY.Home") == '"$ENV(HOME)"'  # not this machine's HOME


def test_run_local_runs_a_stage_with_submit_lines(tmp_path: Path) -> None:
    out = tmp_path / "ran"
    config = tmp_path / "local.yaml"
    stage = {"command": f"{sys.executable} -c \"open('{out}', 'w')\"", "submit": PLACEMENT}
    pipeline = {"name": "local", "condor": {"container": "none"}, "stages": {"a": stage}}
    config.write_text(yaml.safe_dump(pipeline))
    run = tmp_path / "run"
    code, _, err = run_cli("build", str(config), "--run-dir", str(run))
    assert code == 0, err
    assert rundir.parse_submit(run / "a.sub").get("priority") == ""  # the pool's business
    done = subprocess.run(
        [sys.executable, "-m", "aframe_dag", "run-local", str(run)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.exists()
    # a command that does more than place the job: run-local cannot honour it, and says so
    stage["submit"] = {**PLACEMENT, "transfer_output_remaps": '"a = b"'}
    config.write_text(yaml.safe_dump(pipeline))
    code, _, err = run_cli("build", str(config), "--run-dir", str(run))
    assert code == 0, err
    out.unlink()
    done = subprocess.run(
        [sys.executable, "-m", "aframe_dag", "run-local", str(run)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1 and not out.exists()
    assert "transfer_output_remaps is not supported by run-local" in done.stderr
    with pytest.raises(RunDirError, match=r"a\.sub:\d+: transfer_output_remaps"):
        rundir.parse_submit(run / "a.sub")
