"""tasks_per_job: several items of a fan-out in one job, completion still per item."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

PROGRAMS = Path(__file__).parent / "pool_programs.py"
# each task: note that it ran, fail if it is item 5 and the marker is missing, else
# write its output (the item's value, exactly as received)
TASK = (
    "import sys,os,pathlib;"
    "out,index,value,marker=sys.argv[1:5];"
    "pathlib.Path(out).mkdir(parents=True,exist_ok=True);"
    "open(out+'/ran.log','a').write(index+'\\n');"
    "sys.exit(3) if index=='5' and not os.path.exists(marker) else None;"
    "pathlib.Path(out+'/item-'+index+'.txt').write_text(value)"
)


def pipeline(tmp_path: Path, foreach: dict, k: int = 4) -> Path:
    config = tmp_path / "clustered.yaml"
    stages = {
        "gen": {
            "foreach": foreach,
            "tasks_per_job": k,
            "retry": 0,
            "command": [
                sys.executable, "-c", TASK, "{{ dirs.out }}", "{{ item.index }}",
                "{{ item.value }}", "{{ dirs.out }}/marker",
            ],
            "outputs": ["{{ dirs.out }}/item-{{ item.index }}.txt"],
        },
        "merge": {
            "after": ["gen"],
            "command": f"{sys.executable} {PROGRAMS} record {{{{ dirs.out }}}}/merge.json",
            "outputs": ["{{ dirs.out }}/merge.json"],
        },
    }  # fmt: skip
    config.write_text(
        yaml.safe_dump(
            {
                "name": "clustered",
                "dirs": {"out": "{{ run_dir }}/out"},
                "condor": {"container": "none", "use_oauth_services": "", "getenv": ["PATH"]},
                "stages": stages,
            }
        )
    )
    return config


def build(config: Path, run_dir: Path) -> None:
    code, _, err = run_cli("build", str(config), "--run-dir", str(run_dir))
    assert code == 0, err


def local(run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aframe_dag", "run-local", str(run_dir), "--jobs", "2"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


VALUES = [f"v{i}" for i in range(10)]


def status(run_dir: Path) -> str:
    code, out, err = run_cli("status", str(run_dir))
    assert code == 0, err
    return out


def test_items_run_k_to_a_job_and_a_resume_redoes_only_incomplete_items(
    tmp_path: Path,
) -> None:
    config = pipeline(tmp_path, {"list": {"value": VALUES}})
    run_dir = tmp_path / "run"
    build(config, run_dir)
    dag = (run_dir / "aframe.dag").read_text()
    jobs = [line.split()[1] for line in dag.splitlines() if line.startswith("JOB gen")]
    assert jobs == ["gen-0-3", "gen-4-7", "gen-8-9"]  # 10 items, 3 jobs
    assert 'VARS gen-4-7 tasks="gen-4 gen-5 gen-6 gen-7"' in dag
    assert "PARENT gen-0-3 gen-4-7 gen-8-9 CHILD merge" in dag
    assert len((run_dir / "gen.tasks").read_text().splitlines()) == 10

    first = local(run_dir)
    assert first.returncode == 1  # item 5 failed: its job stopped there
    assert "2/3  jobs; 7/10 tasks" in status(run_dir)
    ran = (run_dir / "out/ran.log").read_text().split()
    assert sorted(ran, key=int) == ["0", "1", "2", "3", "4", "5", "8", "9"]  # not 6, 7
    assert not (run_dir / "out/item-5.txt").exists()

    (run_dir / "out/marker").touch()
    build(config, run_dir)
    dag = (run_dir / "aframe.dag").read_text()
    assert f"JOB gen-0-3 {run_dir}/gen.sub DONE" in dag
    assert f"JOB gen-8-9 {run_dir}/gen.sub DONE" in dag
    assert 'VARS gen-4-7 tasks="gen-5 gen-6 gen-7"' in dag  # gen-4 is complete
    (run_dir / "out/ran.log").unlink()
    second = local(run_dir)
    assert second.returncode == 0, second.stderr
    assert (run_dir / "out/ran.log").read_text().split() == ["5", "6", "7"]
    assert [(run_dir / f"out/item-{i}.txt").read_text() for i in range(10)] == VALUES
    assert "jobs; 10/10 tasks" in status(run_dir)  # 7 complete at the build, 3 since

    build(config, run_dir)  # all done now: every job DONE
    dag = (run_dir / "aframe.dag").read_text()
    assert all(line.endswith(" DONE") for line in dag.splitlines() if line.startswith("JOB "))


def test_values_reach_each_task_exactly(tmp_path: Path) -> None:
    values = [
        'a "quoted" value', "back\\slash", "spaces  and\ttab", "{index} stays", "ünï",
        "line\u2028separator", "next\x85line",
    ]  # fmt: skip
    config = pipeline(tmp_path, {"list": {"value": values}}, k=2)
    run_dir = tmp_path / "run"
    build(config, run_dir)
    (run_dir / "out").mkdir(parents=True, exist_ok=True)
    (run_dir / "out/marker").touch()
    done = local(run_dir)
    assert done.returncode == 0, done.stderr
    assert [(run_dir / f"out/item-{i}.txt").read_text() for i in range(7)] == values
    build(config, run_dir)  # and each task is complete: its fingerprint reads back
    dag = (run_dir / "aframe.dag").read_text()
    jobs = [line for line in dag.split("\n") if line.startswith("JOB gen")]
    assert len(jobs) == 4 and all(line.endswith(" DONE") for line in jobs), jobs


def test_run_time_fanout_clusters_when_its_sub_dag_is_written(tmp_path: Path) -> None:
    config = pipeline(tmp_path, {"segments": {"file": "{{ dirs.out }}/segments.txt",
                                              "max_duration": 100}}, k=3)  # fmt: skip
    text = yaml.safe_load(config.read_text())
    text["stages"]["gen"]["after"] = ["query"]
    text["stages"]["gen"]["command"][5] = "{{ item.start }}"
    text["stages"]["query"] = {
        "command": f"{sys.executable} {PROGRAMS} segments {{{{ dirs.out }}}}/segments.txt",
        "outputs": ["{{ dirs.out }}/segments.txt"],
    }
    config.write_text(yaml.safe_dump(text))
    run_dir = tmp_path / "run"
    build(config, run_dir)
    assert "SUBDAG EXTERNAL gen" in (run_dir / "aframe.dag").read_text()
    (run_dir / "out").mkdir(parents=True, exist_ok=True)
    (run_dir / "out/marker").touch()
    done = local(run_dir)
    assert done.returncode == 0, done.stderr
    sub = (run_dir / "gen.dag").read_text()
    jobs = [line.split()[1] for line in sub.splitlines() if line.startswith("JOB ")]
    assert jobs == ["gen-1-3", "gen-4-4"]  # 4 pieces of the segments (ids from 1), 3 a job
    assert sorted((run_dir / "out/ran.log").read_text().split()) == ["1", "2", "3", "4"]


def test_a_retried_job_skips_the_tasks_its_last_attempt_finished(tmp_path: Path) -> None:
    script = Path(__file__).parent.parent / "aframe_dag" / "entry" / "tasks.py"
    tasks = tmp_path / "gen.tasks"
    tasks.write_text('gen-0 index="0"\ngen-1 index="1"\ngen-2 index="2"\n')
    record = tmp_path / "gen.tasks.record"
    log = tmp_path / "ran.log"
    flag = str(tmp_path / "flag")  # gen-2 fails while it is missing
    command = [
        sys.executable, "-c",
        f"import sys,os;open({str(log)!r},'a').write(sys.argv[1]+'\\n');"
        f"sys.exit(4 if sys.argv[1]=='2' and not os.path.exists({flag!r}) else 0)",
        "{index}",
    ]  # fmt: skip
    run = [sys.executable, str(script), f"--tasks-file={tasks}", f"--record={record}",
           "--run=gen-0 gen-1 gen-2", "--", *command]  # fmt: skip
    assert subprocess.run(run, capture_output=True, check=False).returncode == 4
    (tmp_path / "flag").touch()
    assert subprocess.run(run, capture_output=True, check=False).returncode == 0
    assert log.read_text().split() == ["0", "1", "2", "2"]  # the retry ran gen-2 only
    events = [line.split()[:2] for line in record.read_text().splitlines()]
    assert events == [
        ["start", "gen-0"], ["done", "gen-0"], ["start", "gen-1"], ["done", "gen-1"],
        ["start", "gen-2"], ["failed", "gen-2"], ["start", "gen-2"], ["done", "gen-2"],
    ]  # fmt: skip


def test_literal_braces_in_the_command_reach_each_task_unchanged(tmp_path: Path) -> None:
    # the tasks wrapper fills {field} with each task's value: the command's own braces
    # (a literal {index} too) must not be taken for a field
    literal = ["{index}", "{{value}}", "{}", "}{", "pre{value}post", "{"]
    write = "import sys,pathlib; pathlib.Path(sys.argv[1]).write_text('|'.join(sys.argv[2:]))"
    config = pipeline(tmp_path, {"list": {"value": ["a", "b", "c"]}}, k=2)
    text = yaml.safe_load(config.read_text())
    text["stages"]["gen"]["command"] = [
        sys.executable, "-c", write, "{{ dirs.out }}/item-{{ item.index }}.txt",
        "{index}", "{{ '{{value}}' }}", "{}", "}{", "pre{value}post", "{", "{{ item.value }}",
    ]  # fmt: skip
    config.write_text(yaml.safe_dump(text))
    run_dir = tmp_path / "run"
    build(config, run_dir)
    done = local(run_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    for index, value in enumerate("abc"):
        received = (run_dir / f"out/item-{index}.txt").read_text().split("|")
        assert received == [*literal, value]


def test_status_reads_the_dag_once_whatever_the_clustered_stages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each clustered stage's tasks are counted from the DAG status read already, not from
    a new parse of aframe.dag per stage (10^5 nodes: half a second each)."""
    from aframe_dag import rundir

    config = pipeline(tmp_path, {"list": {"value": VALUES}})
    data = yaml.safe_load(config.read_text())
    data["stages"]["again"] = {**data["stages"]["gen"], "outputs": []}
    config.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "run"
    build(config, run_dir)
    parsed: list[str] = []
    for reader in ("parse_dag", "read_nodes"):
        real = getattr(rundir, reader)
        monkeypatch.setattr(
            rundir, reader, lambda path, real=real: parsed.append(path.name) or real(path)
        )
    text = status(run_dir)
    assert parsed == ["aframe.dag"], parsed
    assert text.count("0/3  jobs; 0/10 tasks") == 2, text
