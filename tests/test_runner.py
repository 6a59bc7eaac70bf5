"""run-local with real subprocesses (container mode none): order, GPUs, retries, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from aframe_dag import rundir
from aframe_dag.runner import RunError, run_local

PROGRAMS = Path(__file__).parent / "pool_programs.py"
PY = f"{sys.executable} {PROGRAMS}"


def build(tmp_path: Path, stages: dict, name: str = "run") -> Path:
    config = tmp_path / f"{name}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "local",
                "dirs": {"out": "{{ run_dir }}/out"},
                "condor": {"container": "none", "use_oauth_services": "", "getenv": ["PATH"]},
                "stages": stages,
            },
            sort_keys=False,
        )
    )
    run_dir = tmp_path / name
    code, _, err = run_cli("build", str(config), "--run-dir", str(run_dir))
    assert code == 0, err
    return run_dir


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def local(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aframe_dag", "run-local", str(run_dir), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_runs_in_dependency_order_with_runtime_fanout(tmp_path: Path) -> None:
    run_dir = build(
        tmp_path,
        {
            "query": {"command": f"{PY} segments {{{{ dirs.out }}}}/segments.txt"},
            "fetch": {
                "after": ["query"],
                "foreach": {
                    "segments": {"file": "{{ dirs.out }}/segments.txt", "max_duration": 100}
                },
                "command": f"{PY} record {{{{ dirs.out }}}}/order.json fetch {{{{ item.start }}}}",
            },
            "train": {
                "after": ["fetch"],
                "command": f"{PY} record {{{{ dirs.out }}}}/order.json train",
            },
        },
    )
    done = local(run_dir)
    assert done.returncode == 0, done.stderr
    order = [r["argv"] for r in records(run_dir / "out/order.json")]
    # the segments file (250 s and 80 s) written by the first node, split at 100 s
    assert order == [
        ["fetch", "1000"],
        ["fetch", "1100"],
        ["fetch", "1200"],
        ["fetch", "2000"],
        ["train"],
    ]
    assert (run_dir / "fetch.dag").exists()  # written by the PRE script, as under DAGMan
    assert (run_dir / "logs/fetch/fetch-1.out").exists()  # the .sub's own log paths


HOSTILE = ["it's", 'say "hi"', "back\\slash\\", "two  spaces", "x$(y)z", "ünïcödé ✓", "$HOME"]


def test_values_round_trip_from_build_to_execution(tmp_path: Path) -> None:
    run_dir = build(
        tmp_path,
        {
            "a": {
                "command": f"{PY} record {{{{ dirs.out }}}}/a.json {{{{ item.v }}}} fixed",
                "foreach": {"list": {"v": HOSTILE}},
            },
        },
    )
    assert local(run_dir).returncode == 0
    argv = sorted(tuple(r["argv"]) for r in records(run_dir / "out/a.json"))
    assert argv == sorted((v, "fixed") for v in HOSTILE)


def test_gpu_ids_are_assigned_from_gpus(tmp_path: Path) -> None:
    run_dir = build(
        tmp_path,
        {
            "one": {
                "resources": {"gpus": 1},
                "command": f"{PY} record {{{{ dirs.out }}}}/one.json",
            },
            "two": {
                "resources": {"gpus": 2},
                "command": f"{PY} record {{{{ dirs.out }}}}/two.json",
            },
            "none": {"command": f"{PY} record {{{{ dirs.out }}}}/none.json"},
        },
    )
    assert local(run_dir, "--gpus", "0,1,2").returncode == 0
    assert records(run_dir / "out/one.json")[0]["CUDA_VISIBLE_DEVICES"] == "0"
    assert records(run_dir / "out/two.json")[0]["CUDA_VISIBLE_DEVICES"] == "0,1"
    # as under HTCondor, a node that asked for no GPU sees none
    assert records(run_dir / "out/none.json")[0]["CUDA_VISIBLE_DEVICES"] == "10000"


def test_a_known_node_needing_more_gpus_than_given_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    run_dir = build(
        tmp_path,
        {
            "other": {"command": f"{PY} record {{{{ dirs.out }}}}/other.json"},
            "big": {
                "after": ["other"],
                "resources": {"gpus": 2},
                "foreach": {"count": {"num_jobs": 3}},
                "command": f"{PY} record {{{{ dirs.out }}}}/big.json",
            },
        },
    )
    done = local(run_dir, "--gpus", "0")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "Error: big-0 asks for 2 GPU(s) (as do 2 more nodes) but run-local was given 1 "
        "(--gpus 0); give it more\n"
    )
    assert not (run_dir / "out/other.json").exists()  # nothing ran
    assert local(run_dir, "--gpus", "0,1").returncode == 0


def test_a_run_time_node_needing_more_gpus_than_given_fails_by_name(tmp_path: Path) -> None:
    """Nodes decided at run time are not known at the start: each fails when it comes, and
    what does not need it goes on."""
    run_dir = build(
        tmp_path,
        {
            "query": {"command": f"{PY} segments {{{{ dirs.out }}}}/segments.txt"},
            "big": {
                "after": ["query"],
                "resources": {"gpus": 2},
                "foreach": {
                    "segments": {"file": "{{ dirs.out }}/segments.txt", "max_duration": 100}
                },
                "command": f"{PY} record {{{{ dirs.out }}}}/big.json",
            },
            "after": {"after": ["big"], "command": f"{PY} record {{{{ dirs.out }}}}/after.json"},
            "other": {"command": f"{PY} record {{{{ dirs.out }}}}/other.json"},
        },
    )
    done = local(run_dir, "--gpus", "0")
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == "2 nodes succeeded, 4 failed, 1 not run"
    assert (
        "failed big.dag:big-1: asks for 2 GPU(s) but run-local was given 1 (--gpus 0)"
        in done.stderr
    )
    assert "  not run (a node they need failed): after\n" in done.stderr
    assert not (run_dir / "out/big.json").exists()
    assert (run_dir / "out/other.json").exists()  # the rest of the DAG goes on


def test_jobs_runs_nodes_at_once_without_sharing_a_gpu(tmp_path: Path) -> None:
    run_dir = build(
        tmp_path,
        {
            "gpu": {
                "resources": {"gpus": 1},
                "foreach": {"count": {"num_jobs": 4}},
                "command": f"{PY} interval {{{{ dirs.out }}}}/gpu.json 0.4",
            },
        },
    )
    started = time.monotonic()
    assert local(run_dir, "--gpus", "0,1", "--jobs", "3").returncode == 0
    elapsed = time.monotonic() - started
    runs = [
        (float(r["argv"][0]), float(r["argv"][1]), r["CUDA_VISIBLE_DEVICES"])
        for r in records(run_dir / "out/gpu.json")
    ]
    assert len(runs) == 4
    overlapping = [(a, b) for a, b in combinations(runs, 2) if a[0] < b[1] and b[0] < a[1]]
    assert overlapping, "two GPUs and --jobs 3: some nodes ran at the same time"
    for a, b in overlapping:
        assert a[2] != b[2], f"GPU {a[2]} given to two running nodes"
    assert elapsed < 4 * 0.4 + 2  # concurrency actually happened


def test_maxjobs_limits_a_category(tmp_path: Path) -> None:
    run_dir = build(
        tmp_path,
        {
            "slow": {
                "foreach": {"count": {"num_jobs": 3}},
                "max_jobs": 1,
                "command": f"{PY} interval {{{{ dirs.out }}}}/slow.json 0.2",
            },
        },
    )
    assert local(run_dir, "--jobs", "3").returncode == 0
    runs = [(float(r["argv"][0]), float(r["argv"][1])) for r in records(run_dir / "out/slow.json")]
    assert not [(a, b) for a, b in combinations(runs, 2) if a[0] < b[1] and b[0] < a[1]]


def test_retry_then_success(tmp_path: Path) -> None:
    run_dir = build(
        tmp_path,
        {
            "flaky": {
                "retry": 1,
                "command": f"{PY} flaky {{{{ dirs.out }}}}/marker {{{{ dirs.out }}}}/flaky.json",
            },
        },
    )
    done = local(run_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "retry aframe.dag:flaky (exit 3, attempt 1)" in done.stdout
    assert len(records(run_dir / "out/flaky.json")) == 1


def test_failure_stops_descendants_and_names_stderr(tmp_path: Path) -> None:
    run_dir = build(
        tmp_path,
        {
            "broken": {"command": f"{PY} fail-unless /nonexistent {{{{ dirs.out }}}}/b.json"},
            "downstream": {
                "after": ["broken"],
                "command": f"{PY} record {{{{ dirs.out }}}}/c.json",
            },
        },
    )
    done = local(run_dir)
    assert done.returncode == 1
    stderr = run_dir / "logs/broken/broken.err"
    assert f"failed aframe.dag:broken: exit 4; see {stderr}" in done.stderr
    assert "/nonexistent is missing" in stderr.read_text()
    assert not (run_dir / "out/c.json").exists()


def test_resume_after_sigkill_skips_succeeded_nodes(tmp_path: Path) -> None:
    run_dir = build(
        tmp_path,
        {
            "first": {"command": f"{PY} record {{{{ dirs.out }}}}/first.json"},
            "slow": {
                "after": ["first"],
                "command": f"{PY} interval {{{{ dirs.out }}}}/slow.json 30",
            },
            "last": {"after": ["slow"], "command": f"{PY} record {{{{ dirs.out }}}}/last.json"},
        },
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "aframe_dag", "run-local", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not (run_dir / "logs/slow/slow.out").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    # kill the orphaned child too, as a dying machine would
    subprocess.run(["pkill", "-f", f"{run_dir}/out/slow.json"], check=False)
    lines = (run_dir / "run-local.record").read_text().splitlines()
    # then the time of each event
    assert [line.split()[:2] for line in lines] == [
        ["start", "aframe.dag:first"],
        ["done", "aframe.dag:first"],
        ["start", "aframe.dag:slow"],
    ]
    # a second run takes over the dead runner's lock and resumes
    (run_dir / "slow.sub").write_text(
        (run_dir / "slow.sub").read_text().replace("slow.json 30", "slow.json 0.1")
    )  # a hand edit of the .sub is honoured
    done = local(run_dir)
    assert done.returncode == 0, done.stderr
    assert len(records(run_dir / "out/first.json")) == 1  # not run twice
    assert len(records(run_dir / "out/slow.json")) == 1
    assert "2 nodes succeeded, 0 failed, 1 already done" in done.stdout


def test_sigterm_stops_children_and_records_no_end_for_them(tmp_path: Path) -> None:
    run_dir = build(
        tmp_path,
        {
            "slow": {"command": f"{PY} interval {{{{ dirs.out }}}}/slow.json 30"},
        },
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "aframe_dag", "run-local", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not (run_dir / "logs/slow/slow.out").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 1
    assert "interrupted; run again to resume" in err
    (line,) = (run_dir / "run-local.record").read_text().splitlines()
    assert line.split()[:2] == ["start", "aframe.dag:slow"]  # neither done nor failed
    running = subprocess.run(["pgrep", "-f", f"{run_dir}/out/slow.json"], capture_output=True)
    assert running.returncode == 1, "the child was left running"


def test_a_second_runner_is_refused(tmp_path: Path) -> None:
    run_dir = build(tmp_path, {"slow": {"command": f"{PY} interval {{{{ dirs.out }}}}/s.json 5"}})
    first = subprocess.Popen(
        [sys.executable, "-m", "aframe_dag", "run-local", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not (run_dir / "logs/slow/slow.out").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = local(run_dir)
        assert second.returncode == 1
        assert f"another run-local (pid {first.pid}) is running on this run dir" in second.stderr
    finally:
        first.kill()
        first.wait()


def test_missing_apptainer_is_an_error_before_anything_runs(
    tmp_path: Path, image_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "condor": {
                    "container": "apptainer",
                    "apptainer": "/nonexistent/apptainer",
                    "image_dir": str(image_dir),
                    "use_oauth_services": "",
                },
                "stages": {"a": {"image": "data.sif", "command": "touch {{ run_dir }}/ran"}},
            }
        )
    )
    run_dir = tmp_path / "run"
    assert run_cli("build", str(config), "--run-dir", str(run_dir))[0] == 0
    with pytest.raises(RunError, match=r"executable /nonexistent/apptainer not found \(install"):
        run_local(run_dir, [])
    assert not (run_dir / "ran").exists()


def test_unsupported_submit_command_names_file_and_line(tmp_path: Path) -> None:
    run_dir = build(tmp_path, {"a": {"command": "true"}})
    sub = run_dir / "a.sub"
    sub.write_text(sub.read_text().replace("queue", 'transfer_output_remaps = "x = y"\nqueue'))
    done = local(run_dir)
    assert done.returncode == 1
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(f"Error: {sub}:") and "transfer_output_remaps is not supported" in line


def test_dry_run_prints_commands_and_environment_without_running(tmp_path: Path) -> None:
    run_dir = build(
        tmp_path,
        {
            "a": {
                "command": f"{PY} record {{{{ dirs.out }}}}/a.json 'two words'",
                "environment": {"MODE": "test"},
            },
        },
    )
    done = local(run_dir, "--dry-run")
    assert done.returncode == 0
    assert "  MODE=test" in done.stdout
    assert f"/usr/bin/env {sys.executable} {PROGRAMS} record {run_dir}/out/a.json 'two words'" in (
        done.stdout
    )
    assert not (run_dir / "out/a.json").exists()
    assert not (run_dir / "run-local.record").exists()


def fake_apptainer(tmp_path: Path) -> tuple[Path, Path]:
    """An `apptainer` that records its argv (and GPUs) and runs nothing else."""
    bin_dir, log = tmp_path / "bin", tmp_path / "apptainer.json"
    bin_dir.mkdir()
    program = bin_dir / "apptainer"
    program.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write(json.dumps([sys.argv[1:], os.environ['CUDA_VISIBLE_DEVICES']]) + '\\n')\n"
    )
    program.chmod(0o755)
    return program, log


@pytest.mark.parametrize("mode", ["apptainer", "container-universe"])
def test_container_modes_run_through_apptainer(
    tmp_path: Path, image_dir: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    program, log = fake_apptainer(tmp_path)
    monkeypatch.setenv("PATH", f"{program.parent}:{os.environ['PATH']}")
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "condor": {
                    "container": mode,
                    "apptainer": str(program),
                    "image_dir": str(image_dir),
                    "use_oauth_services": "",
                    "getenv": ["PATH"],
                },
                "stages": {
                    "train": {
                        "image": "train.sif",
                        "resources": {"gpus": 1},
                        "command": "python -m train fit --data.ifos={{ ['H1', 'L1'] }}",
                    }
                },
            }
        )
    )
    run_dir = tmp_path / "run"
    assert run_cli("build", str(config), "--run-dir", str(run_dir))[0] == 0
    done = local(run_dir, "--gpus", "3")
    assert done.returncode == 0, done.stderr
    ((argv, gpus),) = [json.loads(line) for line in log.read_text().splitlines()]
    assert gpus == "3"
    command = ["python", "-m", "train", "fit", "--data.ifos=[H1,L1]"]
    image = str(image_dir / "train.sif")
    if mode == "apptainer":  # run as written in the .sub
        assert argv == ["exec", "--nv", "--bind", str(run_dir), image, *command]
    else:  # the container universe's job, as apptainer would start it
        assert argv == ["exec", "--nv", image, "/usr/bin/env", *command]


def test_a_torn_record_line_is_no_success_and_no_crash(tmp_path: Path) -> None:
    """A crash mid-write (power loss) can leave a line cut short or bytes that are not
    UTF-8: the node it names runs again, and nothing reading the record fails."""
    run_dir = build(tmp_path, {"a": {"command": f"{PY} record {{{{ dirs.out }}}}/a.json"}})
    assert local(run_dir).returncode == 0
    with open(run_dir / "run-local.record", "ab") as record:
        record.write(b"start aframe.dag:a 1.0\ndone aframe.dag:a 17\xff\xfe")
    done = local(run_dir)
    assert done.returncode == 0, done.stderr
    assert len(records(run_dir / "out/a.json")) == 2  # ran again: its last start never ended
    code, _, err = run_cli("build", str(tmp_path / "run.yaml"), "--run-dir", str(run_dir))
    assert code == 0, err
    code, out, err = run_cli("status", str(run_dir))
    assert code == 0, err
    assert "1/1" in out  # the rerun's success counts


def test_a_sub_dag_expands_while_the_job_slots_are_full(tmp_path: Path) -> None:
    """A sub-DAG node takes no job slot (as under DAGMan): with --jobs 1 and a long job
    running, a run-time fan-out whose input is ready expands before that job ends."""
    run_dir = build(
        tmp_path,
        {
            "query": {"command": f"{PY} segments {{{{ dirs.out }}}}/segments.txt"},
            "slow": {
                "after": ["query"],
                "command": f"{PY} interval {{{{ dirs.out }}}}/slow.json 2",
            },
            "fetch": {
                "after": ["query"],
                "foreach": {
                    "segments": {"file": "{{ dirs.out }}/segments.txt", "max_duration": 100}
                },
                "command": f"{PY} record {{{{ dirs.out }}}}/fetch.json {{{{ item.start }}}}",
            },
        },
    )
    done = local(run_dir, "--jobs", "1")
    assert done.returncode == 0, done.stderr
    (slow,) = records(run_dir / "out/slow.json")
    expanded = (run_dir / "fetch.dag").stat().st_mtime  # written by its PRE script
    assert float(slow["argv"][0]) < expanded < float(slow["argv"][1]), (slow, expanded)
    assert len(records(run_dir / "out/fetch.json")) == 4  # and its nodes ran after


def test_target_runs_a_stage_and_what_it_needs_and_nothing_else(tmp_path: Path) -> None:
    run_dir = build(
        tmp_path,
        {
            "query": {"command": f"{PY} segments {{{{ dirs.out }}}}/segments.txt"},
            "fetch": {
                "after": ["query"],
                "foreach": {
                    "segments": {"file": "{{ dirs.out }}/segments.txt", "max_duration": 100}
                },
                "command": f"{PY} record {{{{ dirs.out }}}}/order.json fetch {{{{ item.start }}}}",
            },
            "train": {
                "after": ["fetch"],
                "command": f"{PY} record {{{{ dirs.out }}}}/order.json train",
            },
            "other": {"command": f"{PY} record {{{{ dirs.out }}}}/order.json other"},
        },
    )
    planned = local(run_dir, "--target", "fetch", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert [line for line in planned.stdout.splitlines() if line.startswith("# ")][:2] == [
        f"# query: in {run_dir}, 0 GPU(s)",
        f"# fetch: sub-DAG {run_dir / 'fetch.dag'}, written at run time by: "
        + " ".join(rundir.parse_dag(run_dir / "aframe.dag").nodes["fetch"].pre),
    ]
    assert "other" not in planned.stdout and "train" not in planned.stdout
    done = local(run_dir, "--target", "fetch")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "5 nodes succeeded, 0 failed"  # query, 4 fetches
    assert [r["argv"][0] for r in records(run_dir / "out/order.json")] == ["fetch"] * 4
    rest = local(run_dir)  # the rest, and what ran is not run again
    assert rest.stdout.splitlines()[-1] == "2 nodes succeeded, 0 failed, 5 already done"
    assert sorted(r["argv"][0] for r in records(run_dir / "out/order.json")[4:]) == [
        "other",
        "train",
    ]


def test_an_unknown_target_is_named_with_the_nearest_stage(tmp_path: Path) -> None:
    run_dir = build(tmp_path, {"train": {"command": f"{PY} record {{{{ dirs.out }}}}/t.json"}})
    done = local(run_dir, "--target", "trian")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "Error: --target: unknown stage 'trian'; did you mean 'train'?\n"
