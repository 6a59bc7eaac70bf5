"""A stage's service (the Triton server's place): a SERVICE node, its address, run-local."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from conftest import run_cli

PROGRAMS = Path(__file__).parent / "pool_programs.py"
PY = f"{sys.executable} {PROGRAMS}"


def service_pipeline(tmp_path: Path, server: str) -> Path:
    config = tmp_path / "service.yaml"
    stages = {
        "export": {
            "command": f"{PY} segments {{{{ dirs.out }}}}/model.txt",
            "outputs": ["{{ dirs.out }}/model.txt"],
        },
        "infer": {
            "after": ["export"],
            "foreach": {"count": {"num_jobs": 3}},
            "max_jobs": 2,
            "command": f"{PY} client {{{{ dirs.out }}}}/infer-{{{{ item.index }}}}.txt "
            "{{ service_address }}",
            "outputs": ["{{ dirs.out }}/infer-{{ item.index }}.txt"],
            "service": {
                "command": server,
                "ports": ["http"],
                "ready": "http://127.0.0.1:{http}/ready",
                "resources": {"gpus": 1},
            },
        },
    }
    config.write_text(
        yaml.safe_dump(
            {
                "name": "served",
                "dirs": {"out": "{{ run_dir }}/out"},
                "condor": {"container": "none", "use_oauth_services": "", "getenv": ["PATH"]},
                "stages": stages,
            }
        )
    )
    run_dir = tmp_path / "run"
    code, _, err = run_cli("build", str(config), "--run-dir", str(run_dir))
    assert code == 0, err
    return run_dir


def local(run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "aframe_dag",
            "run-local",
            str(run_dir),
            "--gpus",
            "0",
            "--jobs",
            "3",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_service_is_a_service_node_of_the_stage_subdag(tmp_path: Path) -> None:
    run_dir = service_pipeline(tmp_path, f"{PY} serve {{{{ dirs.out }}}}/server.log {{http}}")
    top = (run_dir / "aframe.dag").read_text()
    assert f"SUBDAG EXTERNAL infer {run_dir}/infer.dag" in top  # known items, still a sub-DAG
    sub = (run_dir / "infer.sub").read_text()
    assert f"include : {run_dir}/infer.address" in sub
    assert "$(SERVICE_ADDRESS)" in sub
    service = (run_dir / "infer-service.sub").read_text()
    assert "request_gpus = 1" in service and "--ports=http" in service
    assert "DAGMAN_USE_STRICT = 0" in (run_dir / "infer.dagman.config").read_text()


def test_run_local_starts_the_service_feeds_its_address_and_stops_it(tmp_path: Path) -> None:
    run_dir = service_pipeline(tmp_path, f"{PY} serve {{{{ dirs.out }}}}/server.log {{http}}")
    done = local(run_dir)
    assert done.returncode == 0, done.stderr
    answers = {(run_dir / f"out/infer-{i}.txt").read_text() for i in range(3)}
    assert len(answers) == 1  # one server answered every client
    (answer,) = answers
    assert answer.startswith("served by ") and answer.endswith("on GPU 0")  # pinned to --gpus
    sub_dag = (run_dir / "infer.dag").read_text()
    assert "SERVICE infer-service" in sub_dag and "SCRIPT DEFER 75 30 PRE infer-0" in sub_dag
    log = (run_dir / "out/server.log").read_text()
    assert "stopped by signal 15" in log  # stopped once the clients were done
    assert not (run_dir / "infer.address").exists()
    assert "stop  infer.dag:infer-service" in done.stdout + done.stderr


def test_a_failed_service_fails_the_nodes_that_need_it_with_its_reason(tmp_path: Path) -> None:
    run_dir = service_pipeline(tmp_path, f"{sys.executable} -c 'raise SystemExit(7)'")
    done = local(run_dir)
    assert done.returncode == 1
    assert "the service failed" in done.stdout + done.stderr
    assert "exited with 7" in (run_dir / "infer.address.failed").read_text()
    assert not list((run_dir / "out").glob("infer-*.txt"))


def test_the_graph_names_the_service_beside_its_stage(tmp_path: Path) -> None:
    run_dir = service_pipeline(tmp_path, f"{PY} serve {{{{ dirs.out }}}}/server.log {{http}}")
    dot = tmp_path / "g.dot"
    code, _, err = run_cli("graph", str(run_dir), "-o", str(dot))
    assert code == 0, err
    text = dot.read_text()
    assert 'label="infer (and its service, infer-service)"' in text
    assert 'label="export"' in text
