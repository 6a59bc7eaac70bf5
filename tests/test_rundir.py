"""One reader for each run-dir record, and every command agrees on what a record means."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from aframe_dag import completion, rundir
from aframe_dag.picture import node_states
from aframe_dag.runner import Runner

# a key's events, in order, and what they mean: its last event decides
SEQUENCES = {
    "done": (["start", "done"], "done"),
    "done-then-failed": (["start", "done", "start", "failed"], "failed"),
    "done-then-started": (["start", "done", "start"], "unfinished"),
    "failed-then-done": (["start", "failed", "start", "done"], "done"),
    "done-then-torn": (["start", "done", "torn"], "unfinished"),
    "failed-torn-time": (["start", "failed-torn"], "failed"),
}


def record_text(key: str, events: list[str], when: float) -> str:
    lines = []
    for event in events:
        if event == "torn":  # a crash mid-write: the line ends early
            lines.append(f"done {key}")
        elif event == "failed-torn":
            lines.append(f"failed {key}")
        else:
            lines.append(f"{event} {key} {when:.3f}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    config = tmp_path / "one.yaml"
    stages = {"a": {"command": "true"}}
    pipeline = {"name": "one", "condor": {"container": "none"}, "stages": stages}
    config.write_text(yaml.safe_dump(pipeline))
    run = tmp_path / "run"
    code, _, err = run_cli("build", str(config), "--run-dir", str(run))
    assert code == 0, err
    past = time.time() - 60  # the DAG was written before the events below
    os.utime(run / rundir.DAG, (past, past))
    return run


@pytest.mark.parametrize("sample", SEQUENCES, ids=list(SEQUENCES))
def test_every_reader_of_run_locals_record_agrees(sample: str, run_dir: Path) -> None:
    events, meaning = SEQUENCES[sample]
    (run_dir / rundir.RECORD).write_text(record_text("aframe.dag:a", events, time.time()))
    done = meaning == "done"
    assert rundir.read_record(run_dir / rundir.RECORD)["aframe.dag:a"].state == meaning
    # completion (what a rebuild skips), run-local (what it does not run again), status
    # and the picture (what they show done) read it through the one reader
    assert (completion.local_events(run_dir / rundir.RECORD, 0)["a"] == "success") == done
    runner = Runner(run_dir, [], 1, lambda message, progress: None)
    assert ("aframe.dag:a" in runner.recorded) == done
    code, out, err = run_cli("status", str(run_dir), "--json")
    assert code == 0, err
    (stage,) = json.loads(out)["stages"]
    assert stage["done"] == (1 if done else 0), (out, err)
    assert stage["failed"] == (1 if meaning == "failed" else 0), (out, err)
    assert (node_states(run_dir).get("a") == "done") == done


def test_tasks_are_counted_at_newlines_only(tmp_path: Path) -> None:
    tasks = tmp_path / rundir.tasks_file("gen")
    tasks.write_text('gen-0 v="line\u2028separator"\ngen-1 v="next\x85line"\n', encoding="utf-8")
    assert rundir.count_tasks(tasks) == 2
    digests = completion.task_digests(tasks, "base", {"gen-0", "gen-1"})
    assert digests == {"gen-0": 'base/v="line\u2028separator"', "gen-1": 'base/v="next\x85line"'}


def test_the_runner_refuses_a_record_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / rundir.RECORD).mkdir()
    assert rundir.read_record(tmp_path / rundir.RECORD) == {}  # status: lenient
    with pytest.raises(IsADirectoryError):
        rundir.read_record(tmp_path / rundir.RECORD, strict=True)  # the runner: strict
