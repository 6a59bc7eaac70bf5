"""`aframe-dag clean`: a stage's outputs and successes go, so the next build runs it again."""

from __future__ import annotations

import fcntl
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from aframe_dag import rundir


def host_pipeline(tmp_path: Path) -> tuple[Path, Path, Path]:
    """a (3 nodes) -> b -> c, each touching its declared outputs; built and run once."""
    out = tmp_path / "out"
    stages = {
        "a": {
            "foreach": {"count": {"num_jobs": 3}},
            "command": "touch {{ dirs.out }}/a-{{ item.index }}.txt",
            "outputs": ["{{ dirs.out }}/a-{{ item.index }}.txt"],
        },
        **{
            name: {
                "after": [parent],
                "command": f"touch {{{{ dirs.out }}}}/{name}.txt",
                "outputs": [f"{{{{ dirs.out }}}}/{name}.txt"],
            }
            for name, parent in (("b", "a"), ("c", "b"))
        },
    }
    config = tmp_path / "pipeline.yaml"
    pipeline = {"name": "p", "dirs": {"out": str(out)}, "condor": {"container": "none"}}
    config.write_text(yaml.safe_dump({**pipeline, "stages": stages}))
    run = tmp_path / "run"
    build(config, run)
    code, _, err = run_cli("run-local", str(run))
    assert code == 0, err
    return config, run, out


def build(config: Path, run: Path) -> str:
    code, out, err = run_cli("build", str(config), "--run-dir", str(run))
    assert code == 0, err
    return out


def test_clean_makes_the_next_build_run_the_stage_and_what_follows(tmp_path: Path) -> None:
    config, run, out = host_pipeline(tmp_path)
    assert "4 complete" not in build(config, run)  # every node DONE now
    code, said, err = run_cli("clean", str(run), "a", "--yes")
    assert code == 0, err
    assert said == (
        "removed 3 output files and the records of success of a; build again to run them\n"
    )
    assert sorted(p.name for p in out.iterdir()) == ["b.txt", "c.txt"]
    summary = build(config, run)
    dag = rundir.parse_dag(run / rundir.DAG)
    # a runs again, and b and c after it (their parent runs), though their outputs stay
    assert [n for n, node in dag.nodes.items() if node.done] == [], summary
    code, said, err = run_cli("run-local", str(run))
    assert code == 0, err
    assert "5 nodes succeeded, 0 failed" in said
    assert sorted(p.name for p in out.iterdir()) == [
        "a-0.txt",
        "a-1.txt",
        "a-2.txt",
        "b.txt",
        "c.txt",
    ]


def test_downstream_cleans_every_stage_after_them(tmp_path: Path) -> None:
    config, run, out = host_pipeline(tmp_path)
    build(config, run)
    code, said, err = run_cli("clean", str(run), "b", "--downstream", "--yes")
    assert code == 0, err
    assert said.startswith("removed 2 output files and the records of success of b, c;")
    assert sorted(p.name for p in out.iterdir()) == ["a-0.txt", "a-1.txt", "a-2.txt"]
    build(config, run)
    dag = rundir.parse_dag(run / rundir.DAG)
    assert [n for n, node in dag.nodes.items() if node.done] == ["a-0", "a-1", "a-2"]


def test_a_dagman_success_does_not_bring_a_cleaned_stage_back(tmp_path: Path) -> None:
    """The records stay as DAGMan and run-local wrote them: a success of a cleaned node in
    either must not count again."""
    config, run, _ = host_pipeline(tmp_path)
    build(config, run)  # every node DONE; its fingerprints written now
    later = time.time() + 1
    log = "".join(f"{later:.0f} a-{i} JOB_SUCCESS 0 - 1\n" for i in range(3))
    (run / "aframe.jobstate.log").write_text(log)
    dagman_files = {"aframe.jobstate.log": log, "aframe.dag.rescue001": "DONE a-0\n"}
    (run / "aframe.dag.rescue001").write_text(dagman_files["aframe.dag.rescue001"])
    code, _, err = run_cli("clean", str(run), "a", "--yes")
    assert code == 0, err
    for name, text in dagman_files.items():  # DAGMan's files are left as they were
        assert (run / name).read_text() == text
    (run / "aframe.dag.rescue001").unlink()  # else the build refuses (a resumable run)
    build(config, run)
    dag = rundir.parse_dag(run / rundir.DAG)
    assert not any(node.done for node in dag.nodes.values())


def test_clean_asks_first_and_refuses_without_yes_off_a_terminal(tmp_path: Path) -> None:
    _, run, out = host_pipeline(tmp_path)
    before = sorted(p.name for p in out.iterdir())
    done = subprocess.run(
        [sys.executable, "-m", "aframe_dag", "clean", str(run), "a"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == (
        "Error: would remove 3 output files and the records of success of a: pass --yes to do it\n"
    )
    assert sorted(p.name for p in out.iterdir()) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["aa"], "clean: unknown stage 'aa'; did you mean 'a'?"),
        (["a", "--downstream", "x"], "clean: unknown stage 'x'"),
    ],
)
def test_an_unknown_stage_is_named(tmp_path: Path, args: list[str], message: str) -> None:
    _, run, out = host_pipeline(tmp_path)
    code, _, err = run_cli("clean", str(run), *args, "--yes")
    assert (code, err) == (1, f"Error: {message}\n")
    assert len(list(out.iterdir())) == 5


def test_clean_is_refused_while_dagman_or_run_local_runs(tmp_path: Path) -> None:
    _, run, out = host_pipeline(tmp_path)
    (run / "aframe.dag.lock").write_text("")  # as DAGMan holds it while it runs
    code, _, err = run_cli("clean", str(run), "a", "--yes")
    assert code == 1
    assert err.startswith(f"Error: {run}: DAGMan is running on it (aframe.dag.lock)")
    (run / "aframe.dag.lock").unlink()
    (run / rundir.LOCK).write_text(f"{os.getpid()}\n")
    with open(run / rundir.LOCK) as held:  # run-local holds its lock as it runs
        fcntl.flock(held, fcntl.LOCK_EX)
        code, _, err = run_cli("clean", str(run), "a", "--yes")
    assert code == 1 and "run-local (pid" in err, err
    assert len(list(out.iterdir())) == 5


@pytest.mark.parametrize(("answer", "left"), [("n", 5), ("y", 2)])
def test_on_a_terminal_clean_lists_the_files_and_asks(
    tmp_path: Path, answer: str, left: int
) -> None:
    _, run, out = host_pipeline(tmp_path)
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "aframe_dag", "clean", str(run), "a"],
        stdin=follower, stdout=follower, stderr=follower,
    ) as process:  # fmt: skip
        os.close(follower)
        said = b""
        while b"[y/N]" not in said:
            said += os.read(leader, 4096)
        os.write(leader, f"{answer}\n".encode())
        assert process.wait(timeout=30) == (0 if answer == "y" else 1)
    os.close(leader)
    text = said.decode().replace("\r\n", "\n")
    assert f"  {out / 'a-0.txt'}\n" in text
    assert "Remove 3 output files and the records of success of a? [y/N]" in text
    assert len(list(out.iterdir())) == left
