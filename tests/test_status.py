"""`aframe-dag status`: real DAGMan status files, hand-written ones, real run-local runs."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from aframe_dag import status as status_module
from aframe_dag.errors import RunDirError
from aframe_dag.status import (
    COUNTS,
    FAILED_RECORDED,
    FAILED_UNRECORDED,
    FailedNode,
    HeldJob,
    RunStatus,
    StageStatus,
    from_json,
    read_status,
    render,
    to_json,
)

SAMPLES = Path(__file__).parent / "status_samples"
PY = sys.executable
SEGMENTS = "# seg\tstart\tstop\tduration\n0\t1000\t1250\t250\n1\t2000\t2080\t80\n"


def stages(status: RunStatus) -> dict[str, StageStatus]:
    return {s.name: s for s in status.stages}


def counts(stage: StageStatus) -> dict[str, int]:
    """The non-zero counts of a stage, and its total."""
    found = {k: getattr(stage, k) for k in COUNTS if getattr(stage, k)}
    return {"total": stage.total, **found}


def done_in(path: Path) -> int:
    """STATUS_DONE nodes in a node status file, read as text (not through classad2)."""
    return len(re.findall(r"^\s*NodeStatus = 5;", path.read_text(), re.MULTILINE))


def build(tmp_path: Path, stage_specs: dict, name: str = "run") -> Path:
    config = tmp_path / f"{name}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "status",
                "dirs": {"out": "{{ run_dir }}/out"},
                "condor": {"container": "none", "use_oauth_services": ""},
                "stages": stage_specs,
            },
            sort_keys=False,
        )
    )
    run_dir = tmp_path / name
    code, _, err = run_cli("build", str(config), "--run-dir", str(run_dir))
    assert code == 0, err
    return run_dir


def run_local(run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aframe_dag", "run-local", str(run_dir)],
        capture_output=True,
        text=True,
        check=False,
    )


# --- real DAGMan records from the personal pool -----------------------------------------


def test_finished_demo_under_dagman_matches_its_status_files() -> None:
    sample = SAMPLES / "pool_demo"
    status = read_status(sample)
    assert (status.mode, status.state, status.failed) == ("dagman", "done", [])
    by_name = stages(status)
    assert list(by_name) == [
        "query_train", "fetch_train", "generate_waveforms", "merge_waveforms", "train",
        "export", "query_test", "fetch_test", "infer", "aggregate_infer", "sensitivity",
    ]  # fmt: skip
    # the run-time fan-outs count their sub-DAG's nodes, from STAGE.status
    for stage in ("fetch_train", "fetch_test", "infer"):
        in_file = done_in(sample / f"{stage}.status")
        assert counts(by_name[stage]) == {"total": in_file, "done": in_file}
    assert [by_name[s].total for s in ("fetch_train", "fetch_test", "infer")] == [3, 5, 35]
    # the other stages' nodes are aframe.status's 14 nodes but the 3 sub-DAG nodes
    others = [s for s in status.stages if s.name not in ("fetch_train", "fetch_test", "infer")]
    assert all(s.done == s.total for s in others)
    assert sum(s.done for s in others) == done_in(sample / "aframe.status") - 3 == 11
    assert counts(by_name["generate_waveforms"]) == {"total": 4, "done": 4}
    assert status.as_of == 1795647977.0  # the DagStatus ad's Timestamp


def test_finished_pipeline_with_a_retried_node() -> None:
    status = read_status(SAMPLES / "pool_pipeline")
    assert (status.mode, status.state) == ("dagman", "done")
    assert {s.name: (s.done, s.total) for s in status.stages} == {
        "query": (1, 1),
        "fetch": (4, 4),
        "flaky": (1, 1),  # failed once, done on its retry
        "train": (1, 1),
        "plain": (1, 1),
    }
    assert status.as_of == 1795648114.0  # the DagStatus ad's Timestamp


def test_real_midrun_tells_running_idle_and_held_apart() -> None:
    status = read_status(SAMPLES / "pool_midrun")
    assert (status.mode, status.state, status.failed) == ("dagman", "running", [])
    assert {name: counts(s) for name, s in stages(status).items()} == {
        "first": {"total": 1, "done": 1},
        "slow": {"total": 3, "running": 2, "idle": 1},  # "not_idle" x2, "idle"
        "hold_me": {"total": 1, "held": 1},
        "bad": {"total": 1, "idle": 1},  # in the queue, no free CPU
        "after_bad": {"total": 1, "waiting": 1},  # not ready: bad is not done
        "hungry": {"total": 1, "idle": 1},
        "fan": {"total": None},
    }
    fan = stages(status)["fan"]
    assert fan.waiting_for == "waiting for slow"
    lines = render(status, width=10)
    assert lines[0].startswith(f"{SAMPLES / 'pool_midrun'}: DAGMan run, running, as DAGMan's")
    assert lines[1:] == [
        "first      [##########]  1/1",
        "slow       [..........]  0/3  2 running, 1 idle",
        "hold_me    [..........]  0/1  1 held",
        "bad        [..........]  0/1  1 idle",
        "after_bad  [..........]  0/1  1 waiting (for nodes they need)",
        "hungry     [..........]  0/1  1 idle",
        "fan        [..........]  0/?  waiting for slow",
    ]


@pytest.fixture
def midrun(tmp_path: Path) -> Path:
    run_dir = tmp_path / "midrun"
    shutil.copytree(SAMPLES / "pool_midrun", run_dir)
    return run_dir


def watch(run_dir: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aframe_dag", "status", str(run_dir), "--watch", "1"],
        capture_output=True, text=True, check=False, timeout=timeout,
    )  # fmt: skip


def test_watch_ends_with_the_run_and_says_how_it_ended(tmp_path: Path, midrun: Path) -> None:
    done = tmp_path / "done"
    shutil.copytree(SAMPLES / "pool_demo", done)
    finished = watch(done, timeout=30)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.count("DAGMan run, done") == 1  # shown once, then it ends
    (midrun / "aframe.status").write_text((midrun / "aframe.status.removed").read_text())
    failed = watch(midrun, timeout=30)
    assert failed.returncode == 1, failed.stderr
    assert failed.stdout.count("DAGMan run, failed") == 1
    assert failed.stderr == ""  # the status says it; no error line besides


def test_watch_goes_on_while_the_run_runs(midrun: Path) -> None:
    with pytest.raises(subprocess.TimeoutExpired) as raised:
        watch(midrun, timeout=3.5)
    shown = raised.value.stdout
    shown = shown.decode() if isinstance(shown, bytes) else shown or ""
    assert shown.count("DAGMan run, running") >= 2  # refreshed


def test_real_failures_show_dagmans_reason_and_the_stderr_tail(midrun: Path) -> None:
    (midrun / "aframe.status").write_text((midrun / "aframe.status.failing").read_text())
    status = read_status(midrun)
    assert status.state == "running"  # DAGMan goes on with what does not need `bad`
    by_name = stages(status)
    assert counts(by_name["slow"]) == {"total": 3, "running": 1, "failed": 2}
    assert counts(by_name["bad"]) == {"total": 1, "failed": 1}
    assert counts(by_name["after_bad"]) == {"total": 1, "futile": 1}
    assert counts(by_name["fan"]) == {"total": None, "futile": 1}  # never to be expanded
    assert by_name["fan"].waiting_for is None
    assert [(f.name, f.stage) for f in status.failed] == [
        ("slow-0", "slow"),
        ("slow-2", "slow"),
        ("bad", "bad"),
    ]
    bad = status.failed[2]
    assert bad.reason == "Job proc (443.0.0) failed with status 3"
    # error = logs/bad/$(JOB).err under initialdir, read through this run dir's path
    assert bad.stderr == midrun / "logs/bad/bad.err"
    assert bad.tail == ["step 1 ok", "ValueError: no segments in range"]
    assert status.failed[0].tail == []  # removed before it wrote anything
    lines = render(status, width=10)
    start = lines.index("failed nodes (3):")
    assert lines[start + 5 :] == [
        "  bad: Job proc (443.0.0) failed with status 3",
        f"    stderr: {midrun}/logs/bad/bad.err",
        "    | step 1 ok",
        "    | ValueError: no segments in range",
    ]


def test_removed_dag_reads_as_failed(midrun: Path) -> None:
    (midrun / "aframe.status").write_text((midrun / "aframe.status.removed").read_text())
    status = read_status(midrun)
    assert status.state == "failed"
    failed = ["slow-0", "slow-1", "slow-2", "hold_me", "bad", "hungry"]
    assert [f.name for f in status.failed] == failed  # all that were in the queue, and `bad`
    assert status.failed[1].reason == "Was STATUS_SUBMITTED"


HELD = HeldJob("hold_me", "hold_me", "786.0", "testing hold (by user aframe)", 1, 0)


def test_real_held_job_is_named_with_its_id_and_reason() -> None:
    sample = SAMPLES / "pool_held"
    status = read_status(sample)
    assert (status.state, counts(status.stages[0])) == ("running", {"total": 1, "held": 1})
    assert status.held == [HELD]  # from logs/hold_me.log, read through this run dir's path
    assert render(status, width=4)[1:] == [
        "hold_me  [....]  0/1  1 held",
        "held nodes (1):",
        "  hold_me (job 786.0): testing hold (by user aframe)",
        "  why: condor_q -better-analyze 786.0   release: condor_release 786.0",
    ]
    data = to_json(status)
    assert data["held"] == [
        {"name": "hold_me", "stage": "hold_me", "job": "786.0",
         "reason": "testing hold (by user aframe)", "code": 1, "subcode": 0},
    ]  # fmt: skip
    assert from_json(json.loads(json.dumps(data))) == status
    del data["held"]  # as an aframe-dag before held jobs were named wrote it
    assert from_json(data).held == []


@pytest.fixture
def held(tmp_path: Path) -> Path:
    run_dir = tmp_path / "held"
    shutil.copytree(SAMPLES / "pool_held", run_dir)
    return run_dir


def test_held_details_only_from_a_log_that_still_shows_the_hold(held: Path) -> None:
    log = held / "logs/hold_me.log"
    # released since the node status file was written (it can be 30 s old)
    log.write_text((held / "logs/hold_me.log.released").read_text())
    status = read_status(held)
    assert (counts(status.stages[0]), status.held) == ({"total": 1, "held": 1}, [])
    assert "held nodes" not in "\n".join(render(status))
    # the hold event not yet whole, no log, what is not an event log, what the bindings
    # cannot read (an event type they do not know, text not UTF-8): none, and no traceback
    text = (SAMPLES / "pool_held/logs/hold_me.log").read_bytes()
    broken = [
        text[: text.index(b"Code 1")],
        b"garbage\n",
        text.replace(b"Job was held", b"Job was ???"),
        text.replace(b"012 (", b"099 ("),
        text.replace(b"testing", b"\xff\xfeting"),
    ]
    for data in broken:
        log.write_bytes(data)
        assert read_status(held).held == [], data
    log.unlink()
    log.mkdir()
    assert read_status(held).held == []
    log.rmdir()
    assert read_status(held).held == []


def test_no_log_is_read_when_no_node_is_held(held: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(log: Path) -> dict[str, HeldJob]:
        raise AssertionError(f"read {log}")

    monkeypatch.setattr(status_module, "read_holds", refuse)
    (held / "aframe.status").write_text((held / "aframe.status.done").read_text())
    status = read_status(held)  # the finished run (its node log shows the hold, released)
    assert (status.state, status.held) == ("done", [])
    assert read_status(SAMPLES / "pool_demo").held == []


def test_a_long_hold_reason_is_one_line() -> None:
    reason = "Error from slot1@node: Job has gone over\ncgroup memory limit " + "x" * 200
    status = RunStatus(Path("/run"), "dagman", "running", [], [], held=[
        HeldJob("train", "train", "12.0", reason, 34, 0),
        HeldJob("fetch-3", "fetch", "15.2", "", None, None),
    ])  # fmt: skip
    one_line = "Error from slot1@node: Job has gone over cgroup memory limit " + "x" * 200
    assert render(status)[1:] == [
        "held nodes (2):",
        f"  train (job 12.0): {one_line[:117]}...",  # 120 characters of it
        "  fetch-3 (job 15.2): (no reason given)",
        "  why: condor_q -better-analyze 12.0   release: condor_release 12.0",
    ]


# --- NODE_STATUS_FILE text written from the manual's format ---------------------------

NAMES = ["NOT_READY", "READY", "PRERUN", "SUBMITTED", "POSTRUN", "DONE", "ERROR", "FUTILE"]


def status_text(dag: Path, nodes: list[tuple], dag_status: int = 3, when: int = 1764100000) -> str:
    """A node status file as the manual shows it: DagStatus, NodeStatus ads, StatusEnd."""
    ads = [
        f'[\n  Type = "DagStatus";\n  DagFiles = {{\n    "{dag}"\n  }};\n'
        f"  Timestamp = {when};\n  DagStatus = {dag_status};\n  NodesTotal = {len(nodes)};\n]\n"
    ]
    for name, code, details, queued, held in nodes:
        ads.append(
            f'[\n  Type = "NodeStatus";\n  Node = "{name}";\n'
            f'  NodeStatus = {code}; /* "STATUS_{NAMES[code]}" */\n'
            f'  StatusDetails = "{details}";\n  RetryCount = 0;\n'
            f"  JobProcsQueued = {queued};\n  JobProcsHeld = {held};\n]\n"
        )
    ads.append(f'[\n  Type = "StatusEnd";\n  EndTime = {when};\n  NextUpdate = {when + 30};\n]\n')
    return "".join(ads)


def test_handwritten_midrun_with_an_expanded_and_an_unexpanded_subdag(tmp_path: Path) -> None:
    noop = [PY, "-c", "pass"]
    run_dir = build(
        tmp_path,
        {
            "query": {"command": noop},
            "fetch": {
                "after": ["query"],
                "foreach": {
                    "segments": {"file": "{{ dirs.out }}/segments.txt", "max_duration": 100}
                },
                "command": [*noop, "{{ item.start }}"],
            },
            "gen": {"foreach": {"list": {"v": [1, 2, 3]}}, "command": [*noop, "{{ item.v }}"]},
            "train": {"after": ["fetch", "gen"], "command": noop},
            "infer": {
                "after": ["train"],
                "foreach": {"segments": {"file": "{{ dirs.out }}/test.txt", "max_duration": 100}},
                "command": [*noop, "{{ item.start }}"],
            },
        },
    )
    # `query` ran and DAGMan's PRE script expanded `fetch` (4 pieces: 100+100+50, 80 s)
    (run_dir / "out/segments.txt").write_text(SEGMENTS)
    assert run_cli("expand", str(run_dir), "fetch")[0] == 0
    (run_dir / "aframe.status").write_text(
        status_text(
            run_dir / "aframe.dag",
            [
                ("query", 5, "", 0, 0),
                ("fetch", 3, "not_idle", 1, 0),  # the sub-DAG's own DAGMan job
                ("gen-0", 5, "", 0, 0),
                ("gen-1", 3, "idle", 1, 1),
                ("gen-2", 6, "Job proc (12.0.0) failed with status 1", 0, 0),
                ("train", 0, "", 0, 0),
                ("infer", 0, "", 0, 0),
            ],
        )
    )
    (run_dir / "fetch.status").write_text(
        status_text(
            run_dir / "fetch.dag",
            [
                ("fetch-1", 5, "", 0, 0),
                ("fetch-2", 3, "not_idle", 1, 0),
                ("fetch-3", 3, "idle", 1, 0),
                ("fetch-4", 3, "", 1, 0),  # no idle/not_idle: cannot be told
            ],
        )
    )
    (run_dir / "logs/gen/gen-2.err").write_text("".join(f"line {i}\n" for i in range(1, 8)))

    status = read_status(run_dir)
    assert (status.mode, status.state, status.as_of) == ("dagman", "running", 1764100000.0)
    assert {name: counts(s) for name, s in stages(status).items()} == {
        "query": {"total": 1, "done": 1},
        "fetch": {"total": 4, "done": 1, "running": 1, "idle": 1, "queued": 1},
        "gen": {"total": 3, "done": 1, "held": 1, "failed": 1},
        "train": {"total": 1, "waiting": 1},
        "infer": {"total": None},
    }
    assert stages(status)["infer"].waiting_for == "waiting for train"
    (failed,) = status.failed
    assert (failed.name, failed.stage, failed.stderr) == (
        "gen-2",
        "gen",
        run_dir / "logs/gen/gen-2.err",
    )
    assert failed.tail == ["line 3", "line 4", "line 5", "line 6", "line 7"]
    assert render(status, width=8)[1:] == [
        "query  [########]  1/1",
        "fetch  [##......]  1/4  1 running, 1 idle, 1 queued (running or idle: not recorded)",
        "gen    [##......]  1/3  1 held, 1 failed",
        "train  [........]  0/1  1 waiting (for nodes they need)",
        "infer  [........]  0/?  waiting for train",
        "failed nodes (1):",
        "  gen-2: Job proc (12.0.0) failed with status 1",
        f"    stderr: {run_dir}/logs/gen/gen-2.err",
        "    | line 3",
        "    | line 4",
        "    | line 5",
        "    | line 6",
        "    | line 7",
    ]


# --- run-local ----------------------------------------------------------------------


def test_local_run_not_started_then_finished(tmp_path: Path) -> None:
    # a segwizard file (escapes, as no HTCondor file can carry a newline)
    write_segments = (
        "import sys; open(sys.argv[1], 'w').write('0 1000 1250 250\\n1 2000 2080 80\\n')"
    )
    run_dir = build(
        tmp_path,
        {
            "query": {"command": [PY, "-c", write_segments, "{{ dirs.out }}/seg.txt"]},
            "fetch": {
                "after": ["query"],
                "foreach": {"segments": {"file": "{{ dirs.out }}/seg.txt", "max_duration": 100}},
                "command": [PY, "-c", "pass", "{{ item.start }}"],
            },
            "merge": {"after": ["fetch"], "command": [PY, "-c", "pass"]},
        },
    )
    before = read_status(run_dir)
    assert (before.mode, before.state) == ("not started", "not started")
    assert [counts(s) for s in before.stages] == [
        {"total": 1, "not_run": 1},
        {"total": None},
        {"total": 1, "not_run": 1},
    ]
    assert before.stages[1].waiting_for == "waiting for query"
    assert render(before, width=4)[1:] == [
        "query  [....]  0/1  1 not run",
        "fetch  [....]  0/?  waiting for query",
        "merge  [....]  0/1  1 not run",
    ]

    done = run_local(run_dir)
    assert done.returncode == 0, done.stderr
    after = read_status(run_dir)
    assert (after.mode, after.state, after.failed, after.runner_live) == (
        "local", "done", [], False
    )  # fmt: skip
    assert [(s.name, counts(s)) for s in after.stages] == [
        ("query", {"total": 1, "done": 1}),
        ("fetch", {"total": 4, "done": 4}),  # fetch-1..4, from fetch.dag and the record
        ("merge", {"total": 1, "done": 1}),
    ]
    assert render(after, width=4)[0] == f"{run_dir}: run-local run, done"


def test_local_expansion_failure_from_the_record(tmp_path: Path) -> None:
    run_dir = build(
        tmp_path,
        {
            "query": {"command": [PY, "-c", "pass"]},
            "fetch": {
                "after": ["query"],
                "foreach": {"segments": {"file": "{{ dirs.out }}/seg.txt", "max_duration": 100}},
                "command": [PY, "-c", "pass", "{{ item.start }}"],
            },
        },
    )
    # what run-local records when the PRE script finds no segments file
    (run_dir / "run-local.record").write_text(
        "done aframe.dag:query 1764100000.000\nfailed aframe.dag:fetch 1764100001.000\n"
    )
    status = read_status(run_dir)
    assert (status.mode, status.state) == ("local", "failed")
    fetch = stages(status)["fetch"]
    assert (counts(fetch), fetch.note, fetch.waiting_for) == (
        {"total": None, "failed": 1}, "expansion failed", None
    )  # fmt: skip
    assert status.failed == [FailedNode("fetch", "fetch", None, [], FAILED_RECORDED)]
    assert render(status, width=4)[2:] == [
        "fetch  [....]  0/?  1 failed, expansion failed",
        "failed nodes (1):",
        f"  fetch: {FAILED_RECORDED}",
    ]


def test_local_failed_node_and_a_live_runner(tmp_path: Path) -> None:
    shout = "import sys; [print(f'line {i}', file=sys.stderr) for i in range(1, 9)]; sys.exit(2)"
    run_dir = build(
        tmp_path,
        {
            "ok": {"command": [PY, "-c", "pass"]},
            "bad": {"after": ["ok"], "command": [PY, "-c", shout]},
            "downstream": {"after": ["bad"], "command": [PY, "-c", "pass"]},
            "side": {"command": [PY, "-c", "pass"]},
        },
    )
    assert run_local(run_dir).returncode == 1
    record = run_dir / "run-local.record"
    status = read_status(run_dir)
    assert (status.mode, status.state) == ("local", "failed")
    assert {name: counts(s) for name, s in stages(status).items()} == {
        "ok": {"total": 1, "done": 1},
        "bad": {"total": 1, "failed": 1},
        "downstream": {"total": 1, "not_run": 1},  # stopped by its failed parent
        "side": {"total": 1, "done": 1},
    }
    (failed,) = status.failed
    assert (failed.name, failed.stage) == ("bad", "bad")
    assert failed.stderr == run_dir / "logs/bad/bad.err"
    assert failed.tail == ["line 4", "line 5", "line 6", "line 7", "line 8"]
    # a runner that records failures says so; one that does not leaves the stderr file
    recorded = any(
        line.startswith("failed aframe.dag:bad") for line in record.read_text().splitlines()
    )
    assert failed.reason == (FAILED_RECORDED if recorded else FAILED_UNRECORDED)
    lines = render(status, width=4)
    assert lines[lines.index("failed nodes (1):") + 1 :] == [
        f"  bad: {failed.reason}",
        f"    stderr: {run_dir}/logs/bad/bad.err",
        *(f"    | line {i}" for i in range(4, 9)),
    ]

    # the record as a runner that records only successes leaves it
    now = time.time()  # successes count for the DAG built before them
    record.write_text(f"done aframe.dag:ok {now:.3f}\ndone aframe.dag:side {now:.3f}\n")
    (failed,) = read_status(run_dir).failed
    assert (failed.name, failed.reason) == ("bad", FAILED_UNRECORDED)

    # a runner holding the lock (as run-local does): what is not done may be running,
    # unless the record says it failed since that runner started
    with open(run_dir / ".run-local.lock", "a+", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.truncate(0)
        lock.write("4242\n")
        lock.flush()
        started = (run_dir / ".run-local.lock").stat().st_mtime
        record.write_text(
            f"done aframe.dag:ok {now:.3f}\nfailed aframe.dag:bad {started - 60:.3f}\n"
        )
        live = read_status(run_dir)
        record.write_text(
            f"done aframe.dag:ok {now:.3f}\nfailed aframe.dag:bad {started + 1:.3f}\n"
        )
        failing = read_status(run_dir)
    assert (live.state, live.runner_live, live.runner_pid, live.failed) == (
        "running", True, 4242, []
    )  # fmt: skip
    assert counts(stages(live)["bad"]) == {"total": 1, "unknown": 1}  # may be re-running
    assert counts(stages(live)["side"]) == {"total": 1, "unknown": 1}
    assert (
        render(live)[0] == f"{run_dir}: run-local run, running (run-local pid 4242 holds the lock)"
    )
    assert failing.state == "running"
    assert counts(stages(failing)["bad"]) == {"total": 1, "failed": 1}
    assert [(f.name, f.reason) for f in failing.failed] == [("bad", FAILED_RECORDED)]
    assert read_status(run_dir).runner_live is False  # the lock died with its holder

    # a new build over the run dir: the last run's lock and logs are not this build's
    code, _, err = run_cli(
        "build", str(tmp_path / "run.yaml"), "--run-dir", str(run_dir), "--force"
    )
    assert code == 0, err
    hour_ago = time.time() - 3600
    for path in [run_dir / ".run-local.lock", *run_dir.glob("logs/*/*")]:
        os.utime(path, (hour_ago, hour_ago))  # written before the build, as they were
    rebuilt = read_status(run_dir)
    assert (rebuilt.mode, rebuilt.failed) == ("not started", [])
    assert counts(stages(rebuilt)["bad"]) == {"total": 1, "not_run": 1}


# --- errors and JSON ----------------------------------------------------------------


def test_not_a_run_dir(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match=r"not a run dir \(no aframe.dag\)"):
        read_status(tmp_path)
    (tmp_path / "aframe.dag").write_text("JOB a a.sub\n")
    with pytest.raises(RunDirError, match=r"not a run dir \(no config.yaml\)"):
        read_status(tmp_path)
    (tmp_path / "config.yaml").write_text("name: x\n")
    with pytest.raises(RunDirError, match="no `stages:` mapping"):
        read_status(tmp_path)


def test_json_round_trip(midrun: Path) -> None:
    (midrun / "aframe.status").write_text((midrun / "aframe.status.failing").read_text())
    status = read_status(midrun)
    data = to_json(status)
    text = json.dumps(data)
    assert json.loads(text) == data
    assert from_json(json.loads(text)) == status
    assert data["stages"][-1] == {
        "name": "fan", "total": None, "done": 0, "running": 0, "idle": 0, "waiting": 0,
        "queued": 0,
        "held": 0, "failed": 0, "futile": 1, "not_run": 0, "unknown": 0,
        "waiting_for": None, "note": None, "tasks_done": None, "tasks": None,
    }  # fmt: skip
    assert data["failed"][2]["stderr"] == str(midrun / "logs/bad/bad.err")
    assert (data["mode"], data["state"], data["run_dir"]) == ("dagman", "running", str(midrun))
