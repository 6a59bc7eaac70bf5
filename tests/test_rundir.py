"""One reader for each run-dir record, and every command agrees on what a record means."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from aframe_dag import completion, rundir
from aframe_dag.entry import tasks
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


@pytest.mark.parametrize("sample", SEQUENCES, ids=list(SEQUENCES))
def test_the_tasks_wrapper_reads_its_record_by_the_same_rule(sample: str, tmp_path: Path) -> None:
    # entry/tasks.py runs inside the images (standard library only): its own reader
    events, meaning = SEQUENCES[sample]
    record = tmp_path / rundir.tasks_record("gen")
    record.write_text(record_text("gen-0", events, 1000.0))
    assert rundir.read_record(record)["gen-0"].state == meaning
    assert (tasks.done_since(record, since=999.0) == {"gen-0"}) == (meaning == "done")
    assert tasks.done_since(record, since=1001.0) == set()  # an older build's success


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


HOSTILE_VALUES = ["line\u2028separator", "next\x85line", "form\x0cfeed", 'a "quoted" \\ one']


@pytest.fixture
def fanned_run(tmp_path: Path) -> Path:
    """A built run dir whose fan-out values hold what str.splitlines() splits at."""
    config = tmp_path / "fan.yaml"
    stages = {
        "gen": {
            "command": "echo {{ item.v }}",
            "foreach": {"list": {"v": HOSTILE_VALUES}},
        }
    }
    pipeline = {"name": "fan", "condor": {"container": "none"}, "stages": stages}
    config.write_text(yaml.safe_dump(pipeline))  # escaped: YAML folds a raw U+0085
    run = tmp_path / "run"
    code, _, err = run_cli("build", str(config), "--run-dir", str(run))
    assert code == 0, err
    return run


def test_every_reader_of_a_dag_file_sees_the_same_nodes_and_values(fanned_run: Path) -> None:
    dag = fanned_run / rundir.DAG
    strict, lenient = rundir.parse_dag(dag), rundir.read_nodes(dag)
    names = [f"gen-{i}" for i in range(len(HOSTILE_VALUES))]
    assert list(strict.nodes) == list(lenient.nodes) == names
    for name, value in zip(names, HOSTILE_VALUES, strict=True):
        # as condor_submit gets it: quotes doubled for the single-quoted arguments
        written = value.replace('"', '""')
        assert strict.nodes[name].vars == lenient.nodes[name].vars == {"v": written}
    # the fingerprint's view: the VARS text as written, which parses to the same values
    texts = rundir.vars_texts(dag, set(names) | {"no-such-node"})
    assert sorted(texts) == names
    for name in names:
        assert rundir.vars_values(texts[name]) == strict.nodes[name].vars
    # the submit file, read strictly and leniently, and as the fingerprint splits it
    sub = fanned_run / "gen.sub"
    assert rundir.parse_submit(sub).commands == rundir.parse_submit(sub, strict=False).commands
    commands = {rundir.submit_command(line) for line in sub.read_text().split("\n")}
    assert set(rundir.parse_submit(sub).commands) <= commands


def test_a_rebuild_status_and_run_local_agree_on_hostile_values(fanned_run: Path) -> None:
    # every node succeeded under run-local: the rebuild must find each complete from the
    # digest it reads back out of the DAG file
    code, _, err = run_cli("run-local", str(fanned_run))
    assert code == 0, err
    code, out, err = run_cli("status", str(fanned_run), "--json")
    assert code == 0, err
    (stage,) = json.loads(out)["stages"]
    assert stage["done"] == len(HOSTILE_VALUES), out
    config = fanned_run.parent / "fan.yaml"
    code, out, err = run_cli("build", str(config), "--run-dir", str(fanned_run))
    assert code == 0, err
    assert f"{len(HOSTILE_VALUES)} nodes: {len(HOSTILE_VALUES)} complete" in out, out
    done = [n for n in rundir.parse_dag(fanned_run / rundir.DAG).nodes.values() if n.done]
    assert len(done) == len(HOSTILE_VALUES)


def test_status_reads_the_nodes_of_a_dag_as_run_local_does(tmp_path: Path) -> None:
    """`read_nodes` (status's quick read) finds each node's submit file, sub-DAG, DONE and
    VARS as `parse_dag` (run-local's) does, on the sandbox's DAG: sub-DAGs, PRE scripts,
    retries, categories, dependencies, with one node DONE on its JOB line and one by a
    DONE line."""
    text = (Path(__file__).parent / "golden" / "sandbox" / "aframe.dag").read_text()
    jobs = [line.split()[1] for line in text.splitlines() if line.startswith("JOB ")]
    assert len(jobs) >= 2 and "SUBDAG EXTERNAL" in text
    text = re.sub(rf"(?m)^(JOB {jobs[0]} \S+)$", r"\1 DONE", text) + f"DONE {jobs[1]}\n"
    dag = tmp_path / "aframe.dag"
    dag.write_text(text)
    full, quick = rundir.parse_dag(dag), rundir.read_nodes(dag)
    assert list(quick.nodes) == list(full.nodes)
    for name, node in full.nodes.items():
        seen = quick.nodes[name]
        assert (seen.submit, seen.subdag, seen.done, seen.dag) == (
            node.submit, node.subdag, node.done, node.dag,
        ), name  # fmt: skip
        assert seen.vars == node.vars, name
    assert quick.status_file == full.status_file is not None
    assert [n for n, node in quick.nodes.items() if node.done] == jobs[:2]


def test_node_status_file_is_read_ad_by_ad_as_classad2_reads_it_whole(tmp_path: Path) -> None:
    import classad2

    samples = Path(__file__).parent / "status_samples"
    files = sorted(samples.glob("pool_*/*.status*"))
    assert files
    variants = []
    for number, path in enumerate(files):  # and each with a NodeStatus ad classad2 must read
        extra = r'\1  Note = "a \\"b\\"";\n]'  # an escape, an attribute DAGMan 23 does not write
        text = re.sub(r"(  JobProcsHeld = \d+;\n)\]", extra, path.read_text(), count=1)
        assert text != path.read_text(), path
        variants.append(tmp_path / f"{number}-{path.name}")
        variants[-1].write_text(text)
    for path in [*files, *variants]:
        whole = [dict(ad) for ad in classad2.parseAds(path.read_text())]
        dag, nodes, end = rundir.read_node_status(path)
        assert dag == next(ad for ad in whole if ad["Type"] == "DagStatus"), path
        assert end == next((ad for ad in whole if ad["Type"] == "StatusEnd"), {}), path
        assert nodes == {ad["Node"]: ad for ad in whole if ad["Type"] == "NodeStatus"}, path


def test_jobstate_log_last_terminal_event_decides(tmp_path: Path) -> None:
    log = tmp_path / "aframe.jobstate.log"
    log.write_text(
        "100 INTERNAL *** DAGMAN_STARTED 1 ***\n"
        "101 a SUBMIT 1.0 - 1\n"
        "102 a JOB_SUCCESS 0 - 1\n"
        "103 b JOB_FAILURE 1 - 1\n"
        "104 b JOB_SUCCESS 0 - 2\n"
        "105 a JOB_ABORTED 0 - 2\n"
        "99 c JOB_SUCCESS 0 - 1\n"  # before `since`: an older build's
    )
    assert rundir.jobstate_log(tmp_path / "aframe.dag") == log
    assert rundir.jobstate_events(log, since=100) == {"a": "failure", "b": "success"}


def test_node_status_ads_read_fast_as_classad2_reads_them() -> None:
    """The exact reader of DAGMan's NodeStatus layout gives what classad2 gives, on every
    ad of the real status files of the samples (taken from a 23.9 pool), and reads all
    of them itself (none left to classad2)."""
    import classad2

    files = sorted((Path(__file__).parent / "status_samples").rglob("*.status"))
    matched = 0
    for path in files:
        for chunk in path.read_text().split("\n]"):
            if not chunk.strip():
                continue
            slow = dict(classad2.parseOne(f"{chunk}]"))
            assert rundir._node_ad(chunk) == slow, (path, chunk)
            if slow["Type"] == "NodeStatus":
                assert rundir._NODE_STATUS.fullmatch(chunk.strip()), (path, chunk)
                matched += 1
    assert len(files) >= 5 and matched >= 70


def test_an_escaped_or_unusual_node_status_ad_is_read_by_classad2() -> None:
    chunk = (
        '[\n  Type = "NodeStatus";\n  Node = "a";\n  NodeStatus = 6; /* "STATUS_ERROR" */\n'
        '  StatusDetails = "said \\"no\\"";\n  RetryCount = 0;\n  JobProcsQueued = 0;\n'
        "  JobProcsHeld = 0;\n  NewAttribute = 1;"
    )
    ad = rundir._node_ad(chunk)
    assert (ad["StatusDetails"], ad["NewAttribute"], ad["NodeStatus"]) == ('said "no"', 1, 6)


def test_a_vars_value_it_cannot_read_is_named_with_its_line(tmp_path: Path) -> None:
    dag = tmp_path / "x.dag"
    dag.write_text('JOB a a.sub\nVARS a ok="1" "x\\"y" bad=2\n')
    with pytest.raises(rundir.RunDirError) as caught:
        rundir.parse_dag(dag)
    assert str(caught.value) == f'{dag}:2: cannot read VARS value at \' "x\\\\"y" bad=2\''
    dag.write_text('JOB a a.sub\nVARS a ok="1" esc="say \\"hi\\" \\\\o/"\n')
    assert rundir.parse_dag(dag).nodes["a"].vars == {"ok": "1", "esc": 'say "hi" \\o/'}
