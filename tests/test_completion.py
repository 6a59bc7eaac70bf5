"""Completed work is never redone, changed work always is: fingerprints and records."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import run_cli

from aframe_dag import completion

PROGRAMS = Path(__file__).parent / "pool_programs.py"
PY = f"{sys.executable} {PROGRAMS}"
SAMPLES = Path(__file__).parent / "samples"


def pipeline(params: dict | None = None, **changes: dict) -> dict:
    stages = {
        "query": {
            "command": f"{PY} segments {{{{ dirs.out }}}}/segments.txt",
            "outputs": ["{{ dirs.out }}/segments.txt"],
        },
        "fetch": {
            "after": ["query"],
            "foreach": {"segments": {"file": "{{ dirs.out }}/segments.txt", "max_duration": 100}},
            "command": f"{PY} record {{{{ dirs.out }}}}/fetch-{{{{ item.index }}}}.json",
            "outputs": ["{{ dirs.out }}/fetch-{{ item.index }}.json"],
        },
        "parts": {
            "foreach": {"count": {"num_jobs": 3}},
            "command": f"{PY} record {{{{ dirs.out }}}}/part-{{{{ item.index }}}}.json "
            "{{ params.rate }}",
            "outputs": ["{{ dirs.out }}/part-{{ item.index }}.json"],
        },
        "merge": {
            "after": ["parts"],
            "command": f"{PY} consume {{{{ dirs.out }}}}/merged.json "
            + " ".join(f"{{{{ dirs.out }}}}/part-{i}.json" for i in range(3)),
            "outputs": ["{{ dirs.out }}/merged.json"],
        },
        "train": {
            "after": ["fetch", "merge"],
            "command": f"{PY} record {{{{ dirs.out }}}}/train.json",
            "outputs": ["{{ dirs.out }}/train.json"],
        },
        "other": {
            "command": f"{PY} record {{{{ dirs.out }}}}/other.json {{{{ params.other }}}}",
            "outputs": ["{{ dirs.out }}/other.json"],
        },
    }
    for name, change in changes.items():
        stages[name] = {**stages[name], **change}
    return {
        "name": "done",
        "params": {"rate": 1, "other": "x", **(params or {})},
        "dirs": {"out": "{{ run_dir }}/out"},
        "condor": {"container": "none", "use_oauth_services": "", "getenv": ["PATH"]},
        "stages": stages,
    }


def build(tmp_path: Path, config: dict, *extra: str) -> str:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    code, out, err = run_cli("build", str(path), "--run-dir", str(tmp_path / "run"), *extra)
    assert code == 0, err
    return out


def run(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aframe_dag", "run-local", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        check=False,
    )


def done_nodes(tmp_path: Path) -> set[str]:
    lines = (tmp_path / "run" / "aframe.dag").read_text().splitlines()
    return {line.split()[1] for line in lines if line.startswith("JOB ") and line.endswith(" DONE")}


def all_nodes(tmp_path: Path) -> set[str]:
    lines = (tmp_path / "run" / "aframe.dag").read_text().splitlines()
    return {line.split()[1] for line in lines if line.startswith(("JOB ", "SUBDAG "))}


def finished(tmp_path: Path) -> None:
    build(tmp_path, pipeline())
    done = run(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_unchanged_rebuild_of_a_finished_run_is_all_done(tmp_path: Path) -> None:
    finished(tmp_path)
    out = build(tmp_path, pipeline())
    # the run-time fan-out (fetch) is now static, its nodes DONE too
    assert done_nodes(tmp_path) == all_nodes(tmp_path)
    assert "fetch-4" in done_nodes(tmp_path)
    assert "  fetch  4 nodes: 4 complete" in out
    # and the merge consumed its inputs: their producers need not run again
    assert "  parts  3 nodes: 3 complete" in out
    assert not (tmp_path / "run/out/part-0.json").exists()


def test_an_expansion_after_the_nodes_ran_keeps_their_successes(tmp_path: Path) -> None:
    # DAGMan runs a sub-DAG's PRE script again when its node is retried or resubmitted:
    # the successes recorded under the fingerprints it replaces still count
    finished(tmp_path)
    for output in (tmp_path / "run/out").glob("fetch-*.json"):
        output.unlink()  # nothing to adopt: only the records can say they succeeded
    code, _, err = run_cli("expand", str(tmp_path / "run"), "fetch")
    assert code == 0, err
    assert "  fetch  4 nodes: 4 complete\n" in build(tmp_path, pipeline())
    assert "fetch-3" in done_nodes(tmp_path)


def test_changed_param_reruns_that_stage_and_everything_downstream(tmp_path: Path) -> None:
    finished(tmp_path)
    out = build(tmp_path, pipeline(params={"rate": 2}))
    assert done_nodes(tmp_path) == {"query", "fetch-1", "fetch-2", "fetch-3", "fetch-4", "other"}
    assert "  parts  3 nodes: 3 to run (params.rate 1 -> 2)" in out
    assert "  merge  1 node: 1 to run (parent stage parts runs)" in out
    assert "  train  1 node: 1 to run (parent stage merge runs)" in out


def test_unrelated_change_leaves_the_rest_done(tmp_path: Path) -> None:
    finished(tmp_path)
    build(tmp_path, pipeline(params={"other": "y"}))
    assert all_nodes(tmp_path) - done_nodes(tmp_path) == {"other"}


def test_image_change_is_named(tmp_path: Path) -> None:
    finished(tmp_path)
    out = build(tmp_path, pipeline(other={"image": "other-v2.sif"}))
    assert "  other  1 node: 1 to run (image (none) -> other-v2.sif)" in out


def test_rerun_forces_a_stage_and_its_descendants(tmp_path: Path) -> None:
    finished(tmp_path)
    build(tmp_path, pipeline(), "--rerun", "merge")
    # merge deleted its inputs when it ran: to run again it needs parts again
    assert all_nodes(tmp_path) - done_nodes(tmp_path) == {
        "merge",
        "train",
        "parts-0",
        "parts-1",
        "parts-2",
    }


def test_outputs_without_record_count_as_complete(tmp_path: Path) -> None:
    out_dir = tmp_path / "run" / "out"
    out_dir.mkdir(parents=True)
    (out_dir / "other.json").write_text("made by a colleague\n")
    out = build(tmp_path, pipeline())
    assert done_nodes(tmp_path) == {"other"}
    assert "  other  1 node: 1 complete (1 outputs without record)" in out


def test_partial_output_of_a_failed_node_is_not_complete(tmp_path: Path) -> None:
    config = pipeline(other={"command": f"{PY} partial {{{{ dirs.out }}}}/other.json"})
    build(tmp_path, config)
    assert run(tmp_path).returncode == 1
    assert (tmp_path / "run/out/other.json").read_text() == "half"
    # run-local records only successes; DAGMan's JOBSTATE_LOG records the failure:
    # either way the node is not taken as complete
    out = build(tmp_path, config)
    assert "other" not in done_nodes(tmp_path)
    assert "  other  1 node: 1 to run (outputs without record)" not in out


def _fingerprints(tmp_path: Path, names: list[str], written: float) -> str:
    """A built DAG of one-node stages `names`, as if built at time `written`; its base."""
    stage = completion.stage_fingerprint("recipe", "env", "image")
    (tmp_path / "aframe.dag").write_text(
        "".join(f'JOB {n} {tmp_path}/{n}.sub\nVARS {n} i="{n}"\n' for n in names)
    )
    fingerprints = dict.fromkeys(names, stage)
    completion.write_fingerprints(tmp_path / "fingerprints.json", fingerprints, [], "aframe.dag")
    data = json.loads((tmp_path / "fingerprints.json").read_text())
    data["written"] = written
    (tmp_path / "fingerprints.json").write_text(json.dumps(data))
    return stage.base


def test_harvest_reads_a_real_dagman_jobstate_log(tmp_path: Path) -> None:
    # written by DAGMan 23.9 on the personal pool: first and beside succeed, broken fails,
    # then (rescue run) broken and last succeed
    shutil.copy(SAMPLES / "rescue-run.jobstate.log", tmp_path / "aframe.jobstate.log")
    base = _fingerprints(tmp_path, ["first", "broken", "last"], written=0)  # before the run
    assert completion.harvest(tmp_path).nodes == {
        "first": f'{base}/i="first"',
        "broken": f'{base}/i="broken"',  # its last event is a success
        "last": f'{base}/i="last"',
    }  # beside is not a node of this build: ignored


def test_a_failure_after_the_build_is_recorded_as_failed(tmp_path: Path) -> None:
    (tmp_path / "aframe.jobstate.log").write_text(
        "100 n JOB_SUCCESS 0 - - 1\n200 n JOB_FAILURE 1 - - 2\n"
    )
    _fingerprints(tmp_path, ["n"], written=150)  # the success came from an older build's run
    state = completion.harvest(tmp_path)
    assert state.nodes == {"n": completion.FAILED}
    stage = completion.stage_fingerprint("r", "e", "i")
    assert completion.verdict("n", stage, "", [], state, completion.Outputs()) == (
        completion.Verdict(False, "failed last time")
    )


def test_a_newer_dag_s_failure_outweighs_an_older_sub_dag_s_success(tmp_path: Path) -> None:
    # infer ran as a run-time sub-DAG (infer.dag, its fingerprints file left behind), then a
    # rebuild wrote its node into aframe.dag, where it failed: whatever the files' names
    stage = completion.stage_fingerprint("recipe", "env", "image")
    (tmp_path / "infer.dag").write_text(f'JOB infer-0 {tmp_path}/infer.sub\nVARS infer-0 i="0"\n')
    completion.write_fingerprints(
        tmp_path / "infer.fingerprints.json", {"infer": stage}, [], "infer.dag"
    )
    data = json.loads((tmp_path / "infer.fingerprints.json").read_text())
    (tmp_path / "infer.fingerprints.json").write_text(json.dumps({**data, "written": 100}))
    (tmp_path / "infer.jobstate.log").write_text("150 infer-0 JOB_SUCCESS 0 - - 1\n")
    (tmp_path / "aframe.jobstate.log").write_text("250 infer-0 JOB_FAILURE 1 - - 2\n")
    _fingerprints(tmp_path, ["infer-0"], written=200)
    assert completion.harvest(tmp_path).nodes == {"infer-0": completion.FAILED}


def test_run_local_after_a_change_reruns_exactly_what_the_build_says(tmp_path: Path) -> None:
    finished(tmp_path)
    build(tmp_path, pipeline(params={"rate": 2}))
    done = run(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "run" / "out"
    # the old record said parts and merge succeeded, but for the old rate: they run again
    assert len((out / "merged.json").read_text().splitlines()) == 2
    assert len((out / "train.json").read_text().splitlines()) == 2
    # what did not change ran once
    assert len((out / "other.json").read_text().splitlines()) == 1
    assert len((out / "fetch-1.json").read_text().splitlines()) == 1
