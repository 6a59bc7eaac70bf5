"""Every command the README shows is run by a test. This file lists them, checks the list
against the README, and runs those no other test runs: the set-up line as written, the
worked example against the output the README prints, the commands table on a finished
demo run, and the pool table under real DAGMan (marked `condor`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import IMAGES, REPO
from test_import_law import readme_commands as coming_from_law_commands

README = (REPO / "README.md").read_text()
DEMO = REPO / "configs" / "demo.yaml"
BIN = Path(sys.executable).parent  # where the aframe-dag console script is installed

SETUP = [  # run as written in a copy of the checkout; the second is CI's own command
    'python3 -m venv .venv && .venv/bin/pip install -q ".[demo]" && .venv/bin/aframe-dag build'
    " configs/demo.yaml --run-dir runs/demo && .venv/bin/aframe-dag run-local runs/demo --gpus 0",
    'python3 -m venv .venv && .venv/bin/pip install -q -e ".[test]" && .venv/bin/python -m pytest',
]
WORKED_EXAMPLE = [
    "export LIGO_GROUP=ligo.dev.o4.cbc.allsky.aframe LIGO_USERNAME=albert.einstein",
    "export AFRAME_CONTAINER_ROOT=~/aframe/images",
    "aframe-dag build configs/sandbox.yaml --run-dir ~/runs/bbh",
    "aframe-dag build sandbox --run-dir ...",
]
ON_A_DEMO_RUN = [  # the commands table, and the commands the prose names with their arguments
    "aframe-dag status DIR [--json] [--watch SECONDS]",
    "aframe-dag graph DIR -o FILE.{svg,png,dot}",
    "aframe-dag report DIR -o report.html [--json FILE]",
    "aframe-dag report DIR -o report.html",
    "aframe-dag validate CONFIG [flags]",
    "aframe-dag show CONFIG [flags]",
    "aframe-dag build CONFIG --run-dir DIR --check [flags]",
    "aframe-dag expand DIR STAGE",
    "aframe-dag run-local DIR --gpus 0,1",
    "aframe-dag clean DIR STAGE... [--downstream] [--yes]",
    "aframe-dag build CONFIG --run-dir DIR [flags] [--rerun STAGE] [--force]",
    "aframe-dag run-local DIR [--gpus 0,1] [--jobs N] [--target STAGE] [--dry-run]",
]
ON_THE_POOL = [  # "Watch, stop, resume, rebuild", in its order
    "aframe-dag build CONFIG --run-dir DIR",
    "condor_submit_dag DIR/aframe.dag",
    "condor_q -dag -nobatch",
    "htcondor dag status DAGMAN_ID",
    "aframe-dag status DIR",
    "condor_q -better-analyze ID",
    "condor_release ID",
    "condor_rm DAGMAN_ID",
    "aframe-dag build CONFIG --run-dir DIR --force",
    "condor_submit_dag ~/aframe/my-first-run/aframe.dag",  # DIR is ~/aframe/my-first-run there
]
COMPLETION = ['eval "$(_AFRAME_DAG_COMPLETE=bash_source aframe-dag)"']  # tests/test_shell.py


def shown_commands() -> set[str]:
    """Each line of the README's bash blocks, and each inline `code` that is an aframe-dag
    or HTCondor command with its arguments. Aframe's and law's own commands (console
    blocks, `uv run ...`) are theirs."""
    commands = set()
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        commands |= {line for line in block.splitlines() if line and not line.startswith("#")}
    prose = re.sub(r"```.*?```", "", README, flags=re.S)
    for code in re.findall(r"`([^`\n]+)`", prose):
        if re.match(r"(aframe-dag [\w-]+|condor_\w+|htcondor \w+) \S", code):
            commands.add(code)
    return commands


def test_every_command_the_readme_shows_is_run_by_a_test() -> None:
    run_here = SETUP + WORKED_EXAMPLE + ON_A_DEMO_RUN + ON_THE_POOL + COMPLETION
    run = set(run_here) | set(coming_from_law_commands())  # tests/test_import_law.py
    assert len(run_here) == len(set(run_here))
    assert shown_commands() == run


def shell(command: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run one command line in bash; what it printed (stdout, then stderr). It must succeed."""
    done = subprocess.run(
        ["bash", "-c", command], cwd=cwd, capture_output=True, text=True, check=False,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})},
    )  # fmt: skip
    assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
    return done.stdout + done.stderr


# --- Set-up -------------------------------------------------------------------------------


def test_the_set_up_commands_are_the_readme_s_and_the_first_runs_the_demo(tmp_path: Path) -> None:
    setup = re.search(r"## Set-up\n.*?```bash\n(.*?)```", README, re.S)[1]
    assert [line for line in setup.splitlines() if line and line[0] != "#"] == SETUP
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert SETUP[1] in ci  # CI runs the test command as the README gives it
    # the first, as written, in a copy of the checkout (pip installs from the index)
    checkout = tmp_path / "aframe-dag"
    checkout.mkdir()
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, tracked):
        if (REPO / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, checkout / name)
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp_path))}
    done = subprocess.run(
        ["bash", "-c", SETUP[0]], cwd=checkout, capture_output=True, text=True, check=False,
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == "54 nodes succeeded, 0 failed"
    assert (checkout / "runs/demo/results/plots/sensitivity.png").stat().st_size > 10_000


# --- The worked example of "Build and submit" ---------------------------------------------


def matches(shown: str, written: str, home: Path) -> None:
    """The README's excerpt `shown` is `written`, line for line from where its first line
    is, where a line `...` stands for any lines, /home/albert.einstein for `home`, the
    build's time for any and /path/to/python for the interpreter."""
    lines = iter(written.splitlines())
    skip = True  # the excerpt may start anywhere
    for line in shown.strip("\n").splitlines():
        if line.strip() == "...":
            skip = True
            continue
        pattern = re.escape(line.replace("/home/albert.einstein", str(home)))
        pattern = pattern.replace(r"\(0\.12\ s\)", r"\(\d+\.\d\d\ s\)").replace(
            "/path/to/python", r"\S+"
        )
        for found in lines:
            if re.fullmatch(pattern, found):
                break
            assert skip, f"the README shows {line!r} where it wrote {found!r}"
        else:
            raise AssertionError(f"the README shows {line!r}, not written:\n{written}")
        skip = False


def test_the_worked_example_writes_what_the_readme_shows(tmp_path: Path) -> None:
    section = README.split("\n### Build and submit\n", 1)[1].split("\n### ", 1)[0]
    command, output, sub, dag = re.findall(r"```\w*\n(.*?)```", section, re.S)[:4]
    assert command.splitlines() == WORKED_EXAMPLE[:3]
    home = tmp_path / "albert.einstein"
    (home / "aframe" / "images").mkdir(parents=True)
    for name in IMAGES:
        (home / "aframe" / "images" / name).touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AFRAME_", "LIGO_"))}
    env.update(HOME=str(home), PATH=f"{BIN}:{env['PATH']}")
    done = subprocess.run(
        ["bash", "-c", command], cwd=REPO, capture_output=True, text=True, check=False, env=env
    )
    assert done.returncode == 0, done.stderr
    run_dir = home / "runs" / "bbh"
    matches(output, done.stdout, home)
    matches(sub, (run_dir / "fetch_train.sub").read_text(), home)
    matches(dag, (run_dir / "aframe.dag").read_text(), home)

    # the PRE script, as the DAG holds it, once query_train has written its segments
    segments = run_dir / "data/train/background/segments.txt"
    segments.parent.mkdir(parents=True, exist_ok=True)
    segments.write_text("0 1240579783 1240599783 20000\n")
    pre = next(x for x in dag.splitlines() if x.startswith("SCRIPT PRE"))
    written_pre = next(
        x for x in (run_dir / "aframe.dag").read_text().splitlines() if x.startswith(pre[:22])
    )
    subprocess.run(written_pre.split()[3:], cwd=run_dir, check=True, env=env)
    expanded = (run_dir / "fetch_train.dag").read_text().splitlines()
    assert f"JOB fetch_train-1 {run_dir}/fetch_train.sub" in expanded
    assert 'VARS fetch_train-1 start="1240579783" end="1240599783"' in expanded

    # a bundled config named without its path
    exported = {"LIGO_GROUP": "ligo.dev.o4.cbc.allsky.aframe", "LIGO_USERNAME": "albert.einstein",
                "AFRAME_CONTAINER_ROOT": str(home / "aframe" / "images")}  # fmt: skip
    shell("aframe-dag build sandbox --run-dir ~/runs/named", tmp_path, {**env, **exported})
    named = (home / "runs/named/aframe.dag").read_text()
    assert named == (run_dir / "aframe.dag").read_text().replace("/runs/bbh", "/runs/named")


# --- The commands table, on a finished demo run --------------------------------------------


def test_the_commands_table_on_a_finished_demo_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "demo"
    shell(f"aframe-dag build {DEMO} --run-dir {run_dir}", tmp_path)
    shell(f"aframe-dag run-local {run_dir} --gpus 0 --jobs 2", tmp_path)
    ran = []

    def run(shown: str, *concrete: str) -> list[str]:
        """The README's `shown` command, as each of the `concrete` lines it stands for."""
        ran.append(shown)
        line = {"CONFIG": str(DEMO), "DIR": str(run_dir)}
        return [shell(c.format(**line), tmp_path) for c in concrete]

    _, as_json, _ = run(
        ON_A_DEMO_RUN[0],
        "aframe-dag status {DIR}", "aframe-dag status {DIR} --json",
        "aframe-dag status {DIR} --watch 1",  # a finished run: ends at once, exit code 0
    )  # fmt: skip
    assert json.loads(as_json)["state"] == "done"
    run(
        ON_A_DEMO_RUN[1],
        *(f"aframe-dag graph {{DIR}} -o dag.{kind}" for kind in ("svg", "png", "dot")),
    )
    assert (tmp_path / "dag.svg").read_text().rstrip().endswith("</svg>")
    assert (tmp_path / "dag.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "dag.dot").read_text().startswith("digraph")
    run(ON_A_DEMO_RUN[2], "aframe-dag report {DIR} -o report.html --json report.json")
    figures = json.loads((tmp_path / "report.json").read_text())
    assert [stage["name"] for stage in figures["stages"]][-1] == "sensitivity"
    run(ON_A_DEMO_RUN[3], "mkdir -p alone && cd alone && aframe-dag report {DIR} -o report.html")
    assert (tmp_path / "alone/report.html").read_text().startswith("<!DOCTYPE html>")
    run(
        ON_A_DEMO_RUN[4],
        "aframe-dag validate {CONFIG}",
        "aframe-dag validate {CONFIG} --gpus 0,1",
    )
    (shown,) = run(ON_A_DEMO_RUN[5], "aframe-dag show {CONFIG} --set params.kernel_length=2")
    assert yaml.safe_load(shown)["params"]["kernel_length"] == 2
    outside = Path(tempfile.mkdtemp(dir="/var/tmp"))  # DAGMan refuses a node log under /tmp
    try:
        run(ON_A_DEMO_RUN[6], f"aframe-dag build {{CONFIG}} --run-dir {outside}/run --check")
        assert not (outside / "run").exists()
    finally:
        outside.rmdir()
    before = (run_dir / "infer.dag").read_text()
    (run_dir / "infer.dag").unlink()
    run(ON_A_DEMO_RUN[7], "aframe-dag expand {DIR} infer")
    jobs = [line.split()[:2] for line in before.splitlines() if line.startswith("JOB ")]
    again = [line.split() for line in (run_dir / "infer.dag").read_text().splitlines()]
    assert [line[:2] for line in again if line[0:1] == ["JOB"]] == jobs
    assert all(line[-1] == "DONE" for line in again if line[0:1] == ["JOB"])  # done: DONE
    (nothing,) = run(ON_A_DEMO_RUN[8], "aframe-dag run-local {DIR} --gpus 0,1")
    assert "54 already done" in nothing.splitlines()[-1], nothing

    summary = run_dir / "results" / "summary.txt"
    was = summary.read_bytes()
    run(ON_A_DEMO_RUN[9], "aframe-dag clean {DIR} aggregate_infer --downstream --yes")
    assert not summary.exists() and not (run_dir / "results" / "background.hdf5").exists()
    (rebuilt, _) = run(
        ON_A_DEMO_RUN[10],
        "aframe-dag build {CONFIG} --run-dir {DIR}",
        "aframe-dag build {CONFIG} --run-dir {DIR} --rerun sensitivity --force",
    )  # fmt: skip
    assert re.search(r"^  aggregate_infer +1 node$", rebuilt, re.M), rebuilt  # to run
    (dry,) = run(
        ON_A_DEMO_RUN[11],
        "aframe-dag run-local {DIR} --gpus 0,1 --jobs 2 --target aggregate_infer --dry-run",
    )  # fmt: skip
    listed = [x for x in dry.splitlines() if x.startswith("# ")]
    assert [x for x in listed if "(done)" not in x] == [
        f"# aggregate_infer: in {run_dir}, 0 GPU(s)"
    ]
    assert len(listed) == 53  # and the nodes it needs, done; not sensitivity
    (target,) = run(ON_A_DEMO_RUN[11], "aframe-dag run-local {DIR} --target aggregate_infer")
    assert target.splitlines()[-1] == "1 node succeeded, 0 failed, 52 already done", target
    assert not summary.exists()
    (rest,) = run(ON_A_DEMO_RUN[11], "aframe-dag run-local {DIR} --gpus 0")
    assert rest.splitlines()[-1] == "1 node succeeded, 0 failed, 53 already done", rest
    assert summary.read_bytes() == was  # seeded: the same result again
    assert list(dict.fromkeys(ran)) == ON_A_DEMO_RUN


# --- "Watch, stop, resume, rebuild" under real DAGMan --------------------------------------

WAIT_FOR_GO = (  # a node that waits for ~/go, so that it can be held and removed
    "import os,sys,time;any(os.path.exists(sys.argv[1]) or time.sleep(0.5) for _ in range(480))"
)


def wait_for(what: str, ready: Callable[[], Any], seconds: float = 240) -> Any:
    """What `ready` returns once it is true, asked every 0.5 s."""
    deadline = time.monotonic() + seconds
    while not (found := ready()):
        assert time.monotonic() < deadline, f"no {what} in {seconds} s"
        time.sleep(0.5)
    return found


@pytest.mark.condor
@pytest.mark.usefixtures("pool")
def test_the_pool_table_under_dagman() -> None:
    # HOME outside /tmp (DAGMan's strict mode), the run dir where the README's law
    # section has it
    home = Path(os.environ["AFRAME_DAG_RUNS_DIR"]) / f"readme-{time.time_ns()}"
    run_dir = home / "aframe" / "my-first-run"
    config = home / "pipeline.yaml"
    record = f"{sys.executable} {REPO}/tests/pool_programs.py record {{{{ dirs.out }}}}"

    def write_config(value: int) -> None:
        wait = [sys.executable, "-c", WAIT_FOR_GO, str(home / "go")]
        stages = {
            "first": {"command": f"{record}/first.json"},
            "wait": {"after": ["first"], "command": wait},
            "last": {"after": ["wait"], "command": f"{record}/last.json --value {value}"},
        }
        condor = {"container": "none", "use_oauth_services": ""}
        pipeline = {"name": "readme", "dirs": {"out": "{{ run_dir }}/out"}, "condor": condor}
        config.write_text(yaml.safe_dump({**pipeline, "stages": stages}, sort_keys=False))

    home.mkdir(parents=True)
    write_config(1)
    ran = []

    def run(shown: str, **values: str) -> str:
        ran.append(shown)
        line = shown
        for name, value in {
            "CONFIG": str(config),
            "DIR": "~/aframe/my-first-run",
            **values,
        }.items():
            line = re.sub(rf"\b{name}\b", value, line)
        return shell(line, home, {"HOME": str(home)})

    def records(name: str) -> int:
        path = run_dir / "out" / name
        return len(path.read_text().splitlines()) if path.exists() else 0

    dagman_out = run_dir / "aframe.dag.dagman.out"

    def dagman_exit(start: int) -> str:
        """DAGMan's last line once it exits, its log read from `start`."""
        text = lambda: dagman_out.read_text()[start:] if dagman_out.exists() else ""  # noqa: E731
        return wait_for("DAGMan exit", lambda: re.search(r"EXITING WITH STATUS \d+", text()))[0]

    run(ON_THE_POOL[0])
    dagman = re.findall(r"submitted to cluster (\d+)", run(ON_THE_POOL[1]))[-1]
    try:
        log = run_dir / "logs" / "wait.log"
        submit = r"^000 \((\d+)\.(\d+)\.\d+\)"  # the wait node's job, in its node log
        found = wait_for(
            "wait job", lambda: log.exists() and re.search(submit, log.read_text(), re.M)
        )
        job = f"{int(found[1])}.{int(found[2])}"
        queue = run(ON_THE_POOL[2])
        assert re.search(rf"^{dagman}\.0 .*condor_dagman", queue, re.M), queue
        assert re.search(rf"^{job} .*\|-wait", queue, re.M), queue
        dag_status = run(ON_THE_POOL[3], DAGMAN_ID=dagman)
        assert f"DAG {dagman} [aframe.dag] has been running" in dag_status, dag_status
        watched = run(ON_THE_POOL[4])
        assert watched.startswith(f"{run_dir}: DAGMan run, running"), watched
        shell(f"condor_hold {job}", home)  # what a pool may do to a job
        why = run(ON_THE_POOL[5], ID=job)
        assert "held" in why.lower(), why
        run(ON_THE_POOL[6], ID=job)
        run(ON_THE_POOL[7], DAGMAN_ID=dagman)  # stop
        dagman_exit(0)
        rescue = (run_dir / "aframe.dag.rescue001").read_text()
        assert "DONE first" in rescue and "DONE wait" not in rescue
    finally:
        subprocess.run(["condor_rm", dagman], capture_output=True, check=False)
    # resume: only what was not done runs
    (home / "go").touch()
    start = len(dagman_out.read_text())
    run(ON_THE_POOL[1])
    assert dagman_exit(start) == "EXITING WITH STATUS 0"
    assert (records("first.json"), records("last.json")) == (1, 1)
    # change and rebuild: the changed node runs, and those below it
    write_config(2)
    run(ON_THE_POOL[8])
    run(ON_THE_POOL[9])  # DAGMan's files of the last run went to previous-1/
    assert dagman_exit(0) == "EXITING WITH STATUS 0"
    assert (records("first.json"), records("last.json")) == (1, 2)
    assert list(dict.fromkeys(ran)) == ON_THE_POOL
