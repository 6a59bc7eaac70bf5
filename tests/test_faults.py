"""Faults with real processes and real files: SIGKILL, full and read-only disks, races.

A node that writes partial output and then fails is not complete at the next build:
tests/test_completion.py::test_partial_output_of_a_failed_node_is_not_complete.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from pool_programs import SEGMENTS
from test_runner import PY, build, local

# --- SIGKILL of run-local at random points ---------------------------------------------

SEED = 20240607
TRIALS = 20
SECONDS = 0.03  # how long each node's output stays half-written

STAGES = {
    "query": {
        "command": f"{PY} segments {{{{ dirs.out }}}}/segments.txt {{{{ dirs.out }}}}/query.log "
        "query",
        "outputs": ["{{ dirs.out }}/segments.txt"],
    },
    "fetch": {  # a fan-out decided at run time: its PRE script runs again on resume
        "after": ["query"],
        "foreach": {"segments": {"file": "{{ dirs.out }}/segments.txt", "max_duration": 100}},
        "command": f"{PY} produce {{{{ dirs.out }}}}/fetch-{{{{ item.index }}}}.txt "
        f"{{{{ dirs.out }}}}/fetch-{{{{ item.index }}}}.log {SECONDS} fetch-{{{{ item.start }}}}",
        "outputs": ["{{ dirs.out }}/fetch-{{ item.index }}.txt"],
    },
    "parts": {
        "foreach": {"count": {"num_jobs": 3}},
        "command": f"{PY} produce {{{{ dirs.out }}}}/parts-{{{{ item.index }}}}.txt "
        f"{{{{ dirs.out }}}}/parts-{{{{ item.index }}}}.log {SECONDS} part-{{{{ item.index }}}}",
        "outputs": ["{{ dirs.out }}/parts-{{ item.index }}.txt"],
    },
    "train": {
        "after": ["fetch", "parts"],
        "command": f"{PY} produce {{{{ dirs.out }}}}/train.txt {{{{ dirs.out }}}}/train.log "
        f"{SECONDS} trained",
        "outputs": ["{{ dirs.out }}/train.txt"],
    },
    "other": {
        "command": f"{PY} produce {{{{ dirs.out }}}}/other.txt {{{{ dirs.out }}}}/other.log "
        f"{SECONDS} other",
        "outputs": ["{{ dirs.out }}/other.txt"],
    },
}
# each job node: its output file, what the output must hold, and the text its log line records
OUTPUTS = {
    "query": ("segments.txt", SEGMENTS, "query"),
    **{
        f"fetch-{i}": (f"fetch-{i}.txt", f"fetch-{start}\n", f"fetch-{start}")
        for i, start in enumerate([1000, 1100, 1200, 2000], 1)
    },
    **{f"parts-{i}": (f"parts-{i}.txt", f"part-{i}\n", f"part-{i}") for i in range(3)},
    "train": ("train.txt", "trained\n", "trained"),
    "other": ("other.txt", "other\n", "other"),
}


def recorded_successes(run_dir: Path) -> set[str]:
    """Job nodes whose success run-local recorded (a sub-DAG's own node is not a job)."""
    path = run_dir / "run-local.record"
    lines = path.read_text().splitlines() if path.exists() else []
    nodes = {line.split()[1].split(":", 1)[1] for line in lines if line.startswith("done ")}
    return nodes & set(OUTPUTS)


def runs(run_dir: Path, node: str) -> list[list[str]]:
    """The argv each run of `node` recorded when it ran to its end."""
    log = run_dir / "out" / f"{node}.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [json.loads(line)["argv"] for line in lines]


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def children(pid: int) -> list[int]:
    """Live processes whose parent is `pid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()  # after the command name
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"  # an orphan's zombie may never be reaped here


def sigkill(runner: subprocess.Popen[bytes], with_nodes: bool) -> None:
    """SIGKILL the runner (and, as a dying machine would, its nodes); its orphans end first.

    Nodes run in sessions of their own, so a runner's death does not stop them: those
    left running are waited for, so that nothing of this trial runs into the next step.
    """
    os.kill(runner.pid, signal.SIGSTOP)  # it starts nothing more while its nodes are listed
    nodes = children(runner.pid)
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    if with_nodes:
        for pid in nodes:
            os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(alive(pid) for pid in nodes), f"the killed runner's nodes {nodes}")


def check_outputs(run_dir: Path, where: str) -> None:
    """Every node's output is there and whole, and every run of it ran it for itself."""
    for node, (name, text, argv) in OUTPUTS.items():
        path = run_dir / "out" / name
        assert path.exists(), f"{where}: {node}'s output {name} is lost"
        assert path.read_text() == text, f"{where}: {node}'s output {name} is not whole"
        assert runs(run_dir, node), f"{where}: {node} never ran to its end"
        assert all(a == [argv] for a in runs(run_dir, node)), f"{where}: {node}'s log"


def test_sigkill_at_random_points_reruns_no_recorded_success_and_loses_no_output(
    tmp_path: Path,
) -> None:
    rng = random.Random(SEED)
    # an uninterrupted run: the span the kills fall in, and the outputs to expect
    run_dir = build(tmp_path, STAGES, "whole")
    started = time.monotonic()
    done = local(run_dir, "--jobs", "2")
    span = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    check_outputs(run_dir, "an uninterrupted run")
    assert recorded_successes(run_dir) == set(OUTPUTS)
    interrupted = 0
    for trial in range(TRIALS):
        with_nodes = rng.random() < 0.5
        rebuild = trial % 2 == 1  # resume by run-local again, or by build then run-local
        where = f"trial {trial} ({'nodes killed too' if with_nodes else 'nodes left'}, "
        where += "rebuilt)" if rebuild else "run-local again)"
        run_dir = build(tmp_path, STAGES, f"trial-{trial}")
        runner = subprocess.Popen(
            [sys.executable, "-m", "aframe_dag", "run-local", str(run_dir), "--jobs", "2"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0, span))  # the kill falls at a random point of the run
        sigkill(runner, with_nodes)
        recorded = recorded_successes(run_dir)
        interrupted += 0 < len(recorded) < len(OUTPUTS)

        if rebuild:
            build(tmp_path, STAGES, f"trial-{trial}")
        done = local(run_dir, "--jobs", "2")
        assert done.returncode == 0, f"{where}: {done.stdout}{done.stderr}"
        check_outputs(run_dir, where)
        rerun = sorted(node for node in recorded if len(runs(run_dir, node)) != 1)
        assert not rerun, f"{where}: recorded successes ran again: {rerun}"
    # the kills fell between nodes' successes, not only before or after the whole run
    assert interrupted >= TRIALS // 4, f"only {interrupted} of {TRIALS} kills fell mid-run"


def test_what_a_killed_node_half_wrote_is_not_taken_for_complete(tmp_path: Path) -> None:
    stages = {
        "slow": {
            "command": f"{PY} produce {{{{ dirs.out }}}}/slow.txt {{{{ dirs.out }}}}/slow.log "
            "30 whole-output",
            "outputs": ["{{ dirs.out }}/slow.txt"],
        }
    }
    run_dir = build(tmp_path, stages)
    output = run_dir / "out" / "slow.txt"
    runner = subprocess.Popen(
        [sys.executable, "-m", "aframe_dag", "run-local", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: output.exists() and output.read_text(), "the node to start writing")
    sigkill(runner, with_nodes=True)
    assert output.read_text() == "whole-"
    # the output exists and nothing recorded its end: not a colleague's, a killed node's
    build(tmp_path, stages)
    assert f"JOB slow {run_dir}/slow.sub\n" in (run_dir / "aframe.dag").read_text()
    sub = run_dir / "slow.sub"
    sub.write_text(sub.read_text().replace(" 30 ", " 0 "))  # the build has judged: no waiting
    done = local(run_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert output.read_text() == "whole-output\n"


# --- a read-only or full disk under the run dir --------------------------------------


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mounts a tmpfs of a given size: a real filesystem that fills up or goes read-only."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        where = tmp_path / f"disk-{len(mounts)}"
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounts.append(where)
        return where

    yield mount
    for where in reversed(mounts):
        subprocess.run(["umount", str(where)], check=True)


def read_only(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every directory (None) under `root`, hidden ones too."""
    return {
        str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in root.rglob("*")
    }


def build_cli(config: Path, run_dir: Path) -> subprocess.CompletedProcess[str]:
    """`aframe-dag build` as a user runs it: its own process, its real stderr."""
    return subprocess.run(
        [sys.executable, "-m", "aframe_dag", "build", str(config), "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        check=False,
    )


def one_line_error(done: subprocess.CompletedProcess[str], *parts: str) -> str:
    """The failed command's stderr: exit 1, one `Error:` line holding every part."""
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("Error: "), line
    for part in parts:
        assert part in line, line
    return line


def many_stages(count: int) -> dict:
    return {
        f"stage{i}": {"command": f"{PY} record {{{{ dirs.out }}}}/{i}.json {'x' * 200}"}
        for i in range(count)
    }


def config_file(tmp_path: Path, name: str, stages: dict) -> Path:
    """A config like test_runner's `build` writes, for a build in a process of its own."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "dirs": {"out": "{{ run_dir }}/out"},
                "condor": {"container": "none", "use_oauth_services": "", "getenv": ["PATH"]},
                "stages": stages,
            },
            sort_keys=False,
        )
    )
    return path


def test_build_on_a_read_only_disk_fails_in_one_line_and_changes_nothing(
    tmp_path: Path, disk: Callable[[str], Path]
) -> None:
    where = disk("1m")
    run_dir = build(where, many_stages(2), "run")
    before = snapshot(where)
    read_only(where)
    # a build that would change every file, and add some
    done = build_cli(config_file(tmp_path, "bigger", many_stages(4)), run_dir)
    one_line_error(done, str(run_dir), "Read-only file system")
    assert snapshot(where) == before
    # nor can a new run dir be made there
    done = build_cli(config_file(tmp_path, "bigger", many_stages(4)), where / "new")
    one_line_error(done, str(where), "Read-only file system")
    assert snapshot(where) == before


def test_build_on_a_full_disk_fails_in_one_line_and_changes_nothing(
    tmp_path: Path, disk: Callable[[str], Path]
) -> None:
    # tmpfs gives each small file a page (4 KiB): the new build's files cannot all fit
    where = disk("64k")
    run_dir = build(where, many_stages(2), "run")
    before = snapshot(where)
    done = build_cli(config_file(tmp_path, "bigger", many_stages(12)), run_dir)
    one_line_error(done, str(run_dir), "No space left on device")
    assert snapshot(where) == before
    done = build_cli(config_file(tmp_path, "bigger", many_stages(12)), where / "new")
    one_line_error(done, str(where), "No space left on device")
    assert snapshot(where) == before
