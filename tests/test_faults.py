"""Faults with real processes and real files: SIGKILL, full and read-only disks, races.

A node that writes partial output and then fails is not complete at the next build:
tests/test_completion.py::test_partial_output_of_a_failed_node_is_not_complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

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
            with contextlib.suppress(ProcessLookupError):  # it ended, and init reaped it
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
    """A config like test_runner's `build` writes (its pipeline is "local"), for a build in
    a process of its own."""
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
    done = build_cli(config_file(tmp_path, "local", many_stages(4)), run_dir)
    one_line_error(done, str(run_dir), "Read-only file system")
    assert snapshot(where) == before
    # nor can a new run dir be made there
    done = build_cli(config_file(tmp_path, "local", many_stages(4)), where / "new")
    one_line_error(done, str(where / "new"), "Read-only file system")
    assert snapshot(where) == before


def test_build_on_a_full_disk_fails_in_one_line_and_changes_nothing(
    tmp_path: Path, disk: Callable[[str], Path]
) -> None:
    # tmpfs gives each small file a page (4 KiB): the new build's files cannot all fit
    where = disk("64k")
    run_dir = build(where, many_stages(2), "run")
    before = snapshot(where)
    done = build_cli(config_file(tmp_path, "local", many_stages(12)), run_dir)
    one_line_error(done, str(run_dir), "No space left on device")
    assert snapshot(where) == before
    done = build_cli(config_file(tmp_path, "local", many_stages(12)), where / "new")
    one_line_error(done, str(where), "No space left on device")
    assert snapshot(where) == before


# --- two builds at once on one run dir -------------------------------------------------

BUSY = "another aframe-dag build is writing it"


def race_stages(tag: str, segments: Path) -> dict:
    """Stages whose every .sub says `tag`; the fan-out reads `segments` as the build plans."""
    return {
        "fetch": {
            "foreach": {"segments": {"file": str(segments), "max_duration": 100}},
            "command": f"{PY} record {{{{ dirs.out }}}}/f-{{{{ item.index }}}}.json {tag}",
        },
        **{
            f"stage{i}": {"command": f"{PY} record {{{{ dirs.out }}}}/{i}.json {tag}"}
            for i in range(3)
        },
        "train": {"after": ["fetch"], "command": f"{PY} record {{{{ dirs.out }}}}/t.json {tag}"},
    }


def open_for(fifo: Path, reader: subprocess.Popen[str]) -> TextIO:
    """`fifo` opened for writing once `reader` has opened it (a build planning waits there)."""
    fds: list[int] = []

    def opened() -> bool:
        assert reader.poll() is None, reader.communicate()
        try:
            fds.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # ENXIO: nobody reads it yet
            return False
        return True

    wait_for(opened, f"a build to read {fifo}")
    return open(fds[0], "w", encoding="utf-8")


def build_process(config: Path, run_dir: Path, *args: str) -> subprocess.Popen[str]:
    """`aframe-dag build` started in a process of its own, its output captured."""
    argv = [sys.executable, "-m", "aframe_dag", "build", str(config), "--run-dir", str(run_dir)]
    return subprocess.Popen(
        [*argv, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def race(tmp_path: Path, run_dir: Path, *args: str) -> tuple[str, str]:
    """Two builds of configs tagged tag-x and tag-y at once; returns (winner, loser) tags.

    The fan-out input both read is a FIFO, so a build that reads it stays inside its
    build until the test writes the segments: the other build certainly runs meanwhile,
    and must give up without waiting for it.
    """
    fifo = tmp_path / "segments.fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    builds = {
        tag: build_process(config, run_dir, *args)
        for tag, config in (
            (tag, config_file(tmp_path, tag, race_stages(tag, fifo))) for tag in ("tag-x", "tag-y")
        )
    }
    try:
        wait_for(lambda: any(b.poll() is not None for b in builds.values()), "a build to give up")
        (loser,) = [tag for tag, b in builds.items() if b.poll() is not None]
        (winner,) = set(builds) - {loser}
        out, err = builds[loser].communicate()
        one_line_error(subprocess.CompletedProcess([], builds[loser].returncode, out, err), BUSY)
        with open_for(fifo, builds[winner]) as handle:
            handle.write(SEGMENTS)
        out, err = builds[winner].communicate(timeout=60)
        assert builds[winner].returncode == 0, out + err
    finally:
        for b in builds.values():
            if b.poll() is None:
                b.kill()
                b.wait()
    return winner, loser


def check_written_by(run_dir: Path, winner: str, losers: list[str]) -> None:
    """Every DAG, submit file and config in the run dir is the winner's, whole."""
    files = [*run_dir.glob("*.sub"), *run_dir.glob("*.dag"), run_dir / "config.yaml"]
    assert len(files) == 7  # 5 stages, aframe.dag, config.yaml
    for path in files:
        text = path.read_text()
        assert f"aframe-dag {winner}" in text or f"name: {winner}" in text, path
        for loser in losers:
            assert loser not in text, f"{path} holds {loser}'s text: mixed with the winner's"
    assert [p.name for p in run_dir.parent.iterdir()] == ["run"]  # nothing beside it
    assert not list(run_dir.rglob("*.tmp")), "a temporary file was left"


def test_two_builds_racing_on_a_new_run_dir_one_wins_whole(tmp_path: Path) -> None:
    for attempt in range(3):
        run_dir = tmp_path / f"new-{attempt}" / "run"
        run_dir.parent.mkdir()
        winner, loser = race(tmp_path, run_dir)
        check_written_by(run_dir, winner, [loser])


def test_two_builds_racing_on_an_existing_run_dir_one_wins_whole(tmp_path: Path) -> None:
    segments = tmp_path / "segments.txt"
    segments.write_text(SEGMENTS)
    run_dir = tmp_path / "existing" / "run"
    run_dir.parent.mkdir()
    done = build_cli(config_file(tmp_path, "tag-z", race_stages("tag-z", segments)), run_dir)
    assert done.returncode == 0, done.stderr
    for _ in range(3):
        # each config is another pipeline (named for its tag): --force builds over one
        winner, loser = race(tmp_path, run_dir, "--force")
        check_written_by(run_dir, winner, [loser, "tag-z"])


def test_run_local_and_a_build_refuse_each_other(tmp_path: Path) -> None:
    segments = tmp_path / "segments.txt"
    segments.write_text(SEGMENTS)
    run_dir = tmp_path / "run"
    done = build_cli(config_file(tmp_path, "tag-z", race_stages("tag-z", segments)), run_dir)
    assert done.returncode == 0, done.stderr
    # a build that stays inside its lock until the test writes the segments it reads
    fifo = tmp_path / "segments.fifo"
    os.mkfifo(fifo)
    config = config_file(tmp_path, "tag-x", race_stages("tag-x", fifo))
    builder = build_process(config, run_dir, "--force")  # tag-x over tag-z's run
    try:
        with open_for(fifo, builder) as handle:  # the build is inside its lock now
            refused = local(run_dir)
            one_line_error(refused, str(run_dir), "an aframe-dag build is writing it")
            handle.write(SEGMENTS)
        out, err = builder.communicate(timeout=60)
        assert builder.returncode == 0, out + err
    finally:
        if builder.poll() is None:
            builder.kill()
            builder.wait()
    assert not (run_dir / "run-local.record").exists()  # the refused runner ran nothing
    # and the other way round
    stages = {
        "slow": {
            "command": f"{PY} produce {{{{ dirs.out }}}}/s.txt {{{{ dirs.out }}}}/s.log 30 output"
        }
    }
    run_dir = build(tmp_path, stages, "slow")
    runner = subprocess.Popen(
        [sys.executable, "-m", "aframe_dag", "run-local", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        output = run_dir / "out" / "s.txt"
        wait_for(lambda: output.exists() and output.read_text(), "the node to start writing")
        before = snapshot(run_dir)
        refused = build_cli(tmp_path / "slow.yaml", run_dir)
        one_line_error(refused, str(run_dir), f"run-local (pid {runner.pid}) is running on it")
        assert snapshot(run_dir) == before
    finally:
        sigkill(runner, with_nodes=True)


# --- run-local's own files fail mid-run ------------------------------------------------

RECORD = "run-local.record"


def starts(run_dir: Path, node: str) -> int:
    """How many times run-local started `node`, by its record."""
    lines = (run_dir / RECORD).read_text().splitlines()
    return sum(1 for line in lines if line.split()[:2] == ["start", f"aframe.dag:{node}"])


def chain(first_command: str | list[str]) -> dict:
    """first -> second -> third; first runs `first_command`, the others record themselves."""
    return {
        "first": {"command": first_command},
        "second": {"after": ["first"], "command": f"{PY} record {{{{ dirs.out }}}}/second.json"},
        "third": {"after": ["second"], "command": f"{PY} record {{{{ dirs.out }}}}/third.json"},
    }


def test_run_local_on_a_disk_that_fills_mid_run_stops_in_one_line_and_resumes(
    disk: Callable[[str], Path],
) -> None:
    # inodes run out: the next node's log file cannot be made
    where = disk("4m,nr_inodes=64")
    fill = ["sh", "-c", "i=0; while touch {{ run_dir }}/../fill-$i; do i=$((i+1)); done"]
    run_dir = build(where, chain(fill), "run")
    done = local(run_dir)
    line = one_line_error(done, "No space left on device")
    assert f"{run_dir}/logs/second/second." in line  # the file it could not make
    assert starts(run_dir, "first") == 1 and not (run_dir / "out" / "second.json").exists()
    for path in where.glob("fill-*"):  # the cause, fixed
        path.unlink()
    again = local(run_dir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert starts(run_dir, "first") == 1  # its recorded success is not run again
    assert (run_dir / "out" / "third.json").exists()


def test_run_local_whose_record_turns_into_a_directory_stops_in_one_line_and_resumes(
    tmp_path: Path,
) -> None:
    record = f"{{{{ run_dir }}}}/{RECORD}"
    # the first node moves the record aside and leaves a directory in its place
    once = "{{ run_dir }}/moved-once"
    move = f"test -e {once} || {{ touch {once}; mv {record} {record}.moved; mkdir {record}; }}"
    run_dir = build(tmp_path, chain(["sh", "-c", move]))
    done = local(run_dir)
    one_line_error(done, f"{run_dir}/{RECORD}: Is a directory")
    assert not (run_dir / "out" / "second.json").exists()
    (run_dir / RECORD).rmdir()  # the cause, fixed: the record put back
    (run_dir / f"{RECORD}.moved").rename(run_dir / RECORD)
    again = local(run_dir)
    assert again.returncode == 0, again.stdout + again.stderr
    # first's success never reached the record (it ended as the record went): it runs
    # again, once; what the record holds is never run twice
    assert starts(run_dir, "first") == 2 and starts(run_dir, "second") == 1
    again = local(run_dir)
    assert again.returncode == 0 and starts(run_dir, "second") == 1
