"""Generated DAGs under a real HTCondor pool (scripts/personal-pool): DAGMan is the arbiter.

Run inside the pool: `scripts/personal-pool run python -m pytest -m condor`.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import IMAGES, SANDBOX, run_cli

pytestmark = [pytest.mark.condor, pytest.mark.usefixtures("pool")]
PROGRAMS = Path(__file__).parent / "pool_programs.py"
DAG_TIMEOUT = 240


@pytest.fixture
def run_root(request: pytest.FixtureRequest) -> Path:
    """A fresh dir outside /tmp (DAGMan's strict mode refuses /tmp)."""
    name = re.sub(r"[^\w.-]", "-", request.node.name)  # test[param]: no brackets in paths
    root = Path(os.environ["AFRAME_DAG_RUNS_DIR"]) / f"{name}-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    return root


def build(config: Path, run_dir: Path, *extra: str) -> None:
    code, _, err = run_cli("build", str(config), "--run-dir", str(run_dir), *extra)
    assert code == 0, err


def submit_and_wait(dag: Path) -> str:
    """condor_submit_dag, then wait for DAGMan to exit; returns its .dagman.out."""
    done = subprocess.run(
        ["condor_submit_dag", "-batch-name", dag.parent.name, str(dag)],
        cwd=dag.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = dag.with_name(dag.name + ".dagman.out")
    start = out.stat().st_size if out.exists() else 0  # a resubmission appends
    deadline = time.monotonic() + DAG_TIMEOUT
    while time.monotonic() < deadline:
        text = out.read_text()[start:] if out.exists() else ""
        if "EXITING WITH STATUS" in text:
            return text
        time.sleep(1)
    raise AssertionError(f"DAGMan did not finish in {DAG_TIMEOUT} s:\n{out.read_text()[-3000:]}")


def node_status(path: Path) -> dict[str, int]:
    """Node name -> status name from a NODE_STATUS_FILE (ClassAds)."""
    import classad2

    statuses = {}
    for ad in classad2.parseAds(path.read_text()):
        if ad.get("Type") == "NodeStatus":
            statuses[ad["Node"]] = ad["NodeStatus"]
    return statuses


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- HTCondor accepts every file the sandbox build writes -----------------------------


@pytest.mark.parametrize("mode", ["apptainer", "container-universe", "none"])
def test_sandbox_submit_files_pass_condor_submit_dry_run(
    run_root: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = run_root / "images"
    images.mkdir()
    for name in IMAGES:
        (images / name).touch()  # dry-run never starts them
    run_dir = run_root / "run"
    monkeypatch.setenv("LIGO_GROUP", "ligo.dev.o4.cbc.allsky.aframe")
    monkeypatch.setenv("LIGO_USERNAME", "aframe")
    # the personal pool has no credd: scitokens requests would fail before the job ad
    build(
        SANDBOX,
        run_dir,
        "--image-dir",
        str(images),
        "--container",
        mode,
        "--set",
        "condor.use_oauth_services=",
    )
    subs = sorted(run_dir.glob("*.sub"))
    assert len(subs) == 16  # 15 stages and infer's service
    # what the service publishes once ready; condor_submit includes it into infer.sub
    (run_dir / "infer.address").write_text("SERVICE_ADDRESS = 10.0.0.7:8001\n")
    for sub in subs:
        done = subprocess.run(
            ["condor_submit", "-dry-run", "-", str(sub)],
            cwd=run_dir,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"{sub.name}: {done.stdout}{done.stderr}"
        assert 'AcctGroup="ligo.dev.o4.cbc.allsky.aframe"' in done.stdout
        if sub.name == "infer.sub":
            assert "--client.address=10.0.0.7:8001" in done.stdout
    done = subprocess.run(
        ["condor_submit_dag", "-no_submit", str(run_dir / "aframe.dag")],
        cwd=run_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # each run-time stage's sub-DAG, once expanded, is accepted too
    (run_dir / "data/train/background/segments.txt").write_text(
        "# seg\tstart\tstop\tduration\n0\t1240579783\t1240629783\t50000\n"
    )
    (run_dir / "data/test/background").mkdir(parents=True, exist_ok=True)
    (run_dir / "data/test/background/segments.txt").write_text(
        "# seg\tstart\tstop\tduration\n0\t1241443783\t1241483783\t40000\n"
    )
    for stage in (
        "fetch_train",
        "generate_validation_waveforms",
        "fetch_test",
        "generate_testing_waveforms",
        "infer",
    ):
        assert run_cli("expand", str(run_dir), stage)[0] == 0
        done = subprocess.run(
            ["condor_submit_dag", "-no_submit", f"{stage}.dag"],
            cwd=run_dir,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"{stage}: {done.stdout}{done.stderr}"


def test_remote_training_submit_file_passes_condor_submit_dry_run(
    run_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = run_root / "images"
    images.mkdir()
    for name in IMAGES:
        (images / name).touch()
    run_dir = run_root / "run"
    monkeypatch.setenv("LIGO_GROUP", "ligo.dev.o4.cbc.allsky.aframe")
    monkeypatch.setenv("LIGO_USERNAME", "aframe")
    monkeypatch.setenv("WANDB_MODE", "offline")
    build(
        SANDBOX, run_dir, "--image-dir", str(images), "--train-remote", "--use-wandb",
        "--set", "condor.use_oauth_services=",
    )  # fmt: skip
    done = subprocess.run(
        ["condor_submit", "-dry-run", "-", str(run_dir / "train.sub")],
        cwd=run_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ad = done.stdout
    assert 'ShouldTransferFiles="YES"' in ad and "PreserveRelativePaths=true" in ad
    assert f'TransferOutput="{str(run_dir).lstrip("/")}/training"' in ad
    assert "RequireGPUs=GlobalMemoryMb >= min({ 81920,16384 * pow(2,NumJobStarts) })" in ad
    assert "--trainer.logger+=WandbLogger" in ad


# --- a host-mode pipeline of the sandbox's shape runs to the end -------------------------


def pipeline(path: Path, stages: dict) -> Path:
    config = {
        "name": "pool",
        "params": {"prog": str(PROGRAMS)},
        "dirs": {"out": "{{ run_dir }}/out"},
        "condor": {"container": "none", "use_oauth_services": ""},
        "stages": stages,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


PY = f"{sys.executable} {{{{ params.prog }}}}"
SHAPE = {
    "query": {"command": f"{PY} segments {{{{ dirs.out }}}}/segments.txt"},
    "fetch": {
        "after": ["query"],
        "foreach": {"segments": {"file": "{{ dirs.out }}/segments.txt", "max_duration": 100}},
        "command": f"{PY} record {{{{ dirs.out }}}}/fetch-{{{{ item.index }}}}.json "
        "--start={{ item.start }} --end={{ item.end }}",
        "max_jobs": 1,
    },
    "flaky": {
        "after": ["query"],
        "retry": 2,
        "command": f"{PY} flaky {{{{ dirs.out }}}}/flaky.marker {{{{ dirs.out }}}}/flaky.json",
    },
    "train": {
        "after": ["fetch", "flaky"],
        "resources": {"gpus": 1},
        "command": f"{PY} record {{{{ dirs.out }}}}/train.json 'quoted arg' x$(y)z",
    },
    "plain": {
        "after": ["fetch"],
        "command": f"{PY} record {{{{ dirs.out }}}}/plain.json",
    },
}


def test_sandbox_shaped_pipeline_runs_to_completion(run_root: Path) -> None:
    run_dir = run_root / "run"
    build(pipeline(run_root / "pool.yaml", SHAPE), run_dir)
    dag = (run_dir / "aframe.dag").read_text()
    assert f"SUBDAG EXTERNAL fetch {run_dir}/fetch.dag" in dag  # fan-out at run time
    out = submit_and_wait(run_dir / "aframe.dag")
    assert out.rstrip().endswith("EXITING WITH STATUS 0"), out[-3000:]

    # DAGMan's own records: every node of both DAGs done
    assert set(node_status(run_dir / "aframe.status").values()) == {5}  # STATUS_DONE
    fetch_status = node_status(run_dir / "fetch.status")
    assert sorted(fetch_status) == ["fetch-1", "fetch-2", "fetch-3", "fetch-4"]
    assert set(fetch_status.values()) == {5}
    jobstate = (run_dir / "aframe.jobstate.log").read_text()
    for node in ("query", "flaky", "train", "plain"):
        assert re.search(rf"^\d+ {node} JOB_SUCCESS 0 ", jobstate, re.M), node
    # the retried node failed once, then succeeded
    assert re.search(r"^\d+ flaky JOB_FAILURE 3 ", jobstate, re.M)

    # the nodes' outputs: segments split at 100 s, ids from 1 (250 s -> 3, 80 s -> 1)
    spans = [records(run_dir / f"out/fetch-{i}.json")[0]["argv"] for i in (1, 2, 3, 4)]
    assert spans == [
        ["--start=1000", "--end=1100"],
        ["--start=1100", "--end=1200"],
        ["--start=1200", "--end=1250"],
        ["--start=2000", "--end=2080"],
    ]
    (train,) = records(run_dir / "out/train.json")
    assert train["argv"] == ["quoted arg", "x$(y)z"]
    # the GPU node saw the GPU HTCondor assigned it (simulated ids look like GPU-a0223334)
    assert train["CUDA_VISIBLE_DEVICES"] == train["_CONDOR_AssignedGPUs"]
    assert re.fullmatch(r"GPU-[0-9a-f]+", train["CUDA_VISIBLE_DEVICES"])
    # the throttled fan-out (MAXJOBS fetch 1) never had two fetch jobs in the queue:
    # DAGMan's own JOBSTATE_LOG shows each SUBMIT after the previous JOB_TERMINATED
    events: dict[str, dict[str, int]] = {}
    for line in (run_dir / "fetch.jobstate.log").read_text().splitlines():
        stamp, node, event = line.split()[:3]
        events.setdefault(node, {})[event] = int(stamp)
    spans = sorted((e["SUBMIT"], e["JOB_TERMINATED"]) for n, e in events.items() if n != "INTERNAL")
    assert len(spans) == 4
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))
    assert len(records(run_dir / "out/flaky.json")) == 1

    # DAGMan's own records make an unchanged rebuild all DONE, the fan-out stage included
    build(pipeline(run_root / "pool.yaml", SHAPE), run_dir)
    lines = (run_dir / "aframe.dag").read_text().splitlines()
    jobs = [line for line in lines if line.startswith("JOB ")]
    assert jobs and all(line.endswith(" DONE") for line in jobs), jobs
    assert "JOB fetch-4 " in "\n".join(jobs)  # expanded at build now: its input exists


def test_failed_node_leaves_a_rescue_dag_and_resubmit_skips_done_nodes(run_root: Path) -> None:
    run_dir = run_root / "run"
    fix = run_root / "fixed"
    stages = {
        "first": {"command": f"{PY} record {{{{ dirs.out }}}}/first.json"},
        "broken": {
            "after": ["first"],
            "command": f"{PY} fail-unless {fix} {{{{ dirs.out }}}}/broken.json",
        },
        "beside": {"command": f"{PY} record {{{{ dirs.out }}}}/beside.json"},
        "last": {"after": ["broken"], "command": f"{PY} record {{{{ dirs.out }}}}/last.json"},
    }
    build(pipeline(run_root / "pool.yaml", stages), run_dir)
    out = submit_and_wait(run_dir / "aframe.dag")
    assert "EXITING WITH STATUS 1" in out
    rescue = (run_dir / "aframe.dag.rescue001").read_text()
    assert "DONE first" in rescue and "DONE beside" in rescue
    assert "DONE broken" not in rescue
    assert not (run_dir / "out/last.json").exists()

    # a rebuild would lose DAGMan's state: refused
    code, _, err = run_cli("build", str(run_root / "pool.yaml"), "--run-dir", str(run_dir))
    assert code == 1 and "aframe.dag.rescue001" in err

    fix.touch()
    out = submit_and_wait(run_dir / "aframe.dag")
    assert out.rstrip().endswith("EXITING WITH STATUS 0"), out[-3000:]
    assert "Using rescue DAG file" in out or "rescue" in out.lower()
    # the nodes that had succeeded did not run again
    assert len(records(run_dir / "out/first.json")) == 1
    assert len(records(run_dir / "out/beside.json")) == 1
    assert len(records(run_dir / "out/broken.json")) == 1
    assert len(records(run_dir / "out/last.json")) == 1


# HTCondor's own variables, which run-local does not imitate (manual: "Environment
# variables set by HTCondor" for jobs), plus the GPU ids that differ by design.
CONDOR_OWN = {
    "_CHIRP_DELAYED_UPDATE_PREFIX", "BATCH_SYSTEM", "CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL",
    "CUBACORES", "GOMAXPROCS", "JULIA_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "OPENBLAS_NUM_THREADS", "PYTHON_CPU_COUNT",
    "ROCR_VISIBLE_DEVICES", "TF_LOOP_PARALLEL_ITERATIONS", "TF_NUM_THREADS", "TEMP", "TMP",
    "TMPDIR", "HOME", "PWD", "APPTAINER_CACHEDIR", "SINGULARITY_CACHEDIR",
    "NVIDIA_VISIBLE_DEVICES", "ROOT_MAX_THREADS",
}  # fmt: skip


def comparable(run_dir: Path) -> dict[str, list]:
    """Every output record with run-dir paths, GPU ids and HTCondor's variables taken out."""
    result = {}
    for path in sorted((run_dir / "out").glob("*.json")):
        entries = []
        for entry in records(path):
            env = {
                k: v
                for k, v in entry["env"].items()
                if k not in CONDOR_OWN and not k.startswith("_CONDOR")
            }
            text = json.dumps([entry["argv"], env, entry["cwd"]])
            entries.append(json.loads(text.replace(str(run_dir), "RUN")))
        result[path.name] = entries
    return result


def test_run_local_runs_the_same_nodes_as_dagman(
    run_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # passed by name (getenv) in both modes; under DAGMan only thanks to ENV GET
    monkeypatch.setenv("LIGO_USERNAME", "albert.einstein")
    config = pipeline(run_root / "pool.yaml", SHAPE)
    condor_dir, local_dir = run_root / "condor", run_root / "local"
    build(config, condor_dir)
    build(config, local_dir)
    out = submit_and_wait(condor_dir / "aframe.dag")
    assert out.rstrip().endswith("EXITING WITH STATUS 0"), out[-3000:]
    done = subprocess.run(
        [sys.executable, "-m", "aframe_dag", "run-local", str(local_dir), "--gpus", "7"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert comparable(local_dir) == comparable(condor_dir)
    # the same stdout/stderr paths (HTCondor's event logs, *.log, are its own)
    logs = {
        d: sorted(str(p.relative_to(d)) for p in (d / "logs").rglob("*") if p.suffix != ".log")
        for d in (condor_dir, local_dir)
    }
    assert logs[local_dir] == logs[condor_dir]
    (train,) = records(local_dir / "out/train.json")
    assert train["CUDA_VISIBLE_DEVICES"] == "7"
    for run_dir in (condor_dir, local_dir):
        (fetch,) = records(run_dir / "out/fetch-1.json")
        assert fetch["env"]["LIGO_USERNAME"] == "albert.einstein", run_dir.name


def test_demo_writes_the_same_files_under_dagman_and_run_local(run_root: Path) -> None:
    demo = Path(__file__).parent.parent / "configs" / "demo.yaml"
    condor_dir, local_dir = run_root / "condor", run_root / "local"
    # under DAGMan, train runs as on a pool without the shared filesystem: in HTCondor's
    # scratch dir, with what it reads sent and its outputs brought back
    build(demo, condor_dir, "--train-remote")
    build(demo, local_dir)
    train = (condor_dir / "train.sub").read_text()
    assert "should_transfer_files = YES" in train and "initialdir = /\n" in train
    arguments = train.partition("\narguments = ")[2].partition("\ntransfer_executable")[0]
    assert "--background_dir=" in arguments and str(condor_dir) not in arguments
    out = submit_and_wait(condor_dir / "aframe.dag")
    assert out.rstrip().endswith("EXITING WITH STATUS 0"), out[-3000:]
    done = subprocess.run(
        [sys.executable, "-m", "aframe_dag", "run-local", str(local_dir), "--gpus", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    def products(run_dir: Path) -> dict[str, bytes]:
        files = {}
        for top in ("data", "training", "results"):
            for path in sorted((run_dir / top).rglob("*")):
                if path.is_file() and path.name != "train.log":  # it records the GPU id
                    files[str(path.relative_to(run_dir))] = path.read_bytes().replace(
                        str(run_dir).encode(), b"RUN"
                    )
        return files

    condor, local = products(condor_dir), products(local_dir)
    assert sorted(local) == sorted(condor)
    differing = [name for name in condor if condor[name] != local[name]]
    assert differing == [], "run-local and DAGMan wrote different bytes"
    assert "results/plots/sensitivity.png" in condor
    logs = {
        d: sorted(str(p.relative_to(d)) for p in (d / "logs").rglob("*") if p.suffix != ".log")
        for d in (condor_dir, local_dir)
    }
    assert logs[local_dir] == logs[condor_dir]


# --- a stage's service and a remote stage, under DAGMan ------------------------------------

SERVED = {
    "model": {
        "command": f"{PY} segments {{{{ dirs.out }}}}/model.txt",
        "outputs": ["{{ dirs.out }}/model.txt"],
    },
    "shards": {
        "command": f"{PY} record {{{{ dirs.out }}}}/shards/a.json",
        "outputs": ["{{ dirs.out }}/shards/a.json"],
    },
    "train": {
        # no shared filesystem: a file and a directory are sent, the output dir comes back
        "after": ["model", "shards"],
        "resources": {"gpus": 1},
        "command": [
            sys.executable,
            "-c",
            "import pathlib,os,sys;"
            "out=pathlib.Path(sys.argv[3]);out.mkdir(parents=True);"
            "shards=sorted(p.name for p in pathlib.Path(sys.argv[2]).iterdir());"
            "(out/'weights.txt').write_text("
            "pathlib.Path(sys.argv[1]).read_text()+' '.join(shards)+'\\n'+os.getcwd())",
            "{{ dirs.out }}/model.txt",
            "{{ dirs.out }}/shards",
            "{{ dirs.out }}/training",
        ],
        "inputs": ["{{ dirs.out }}/model.txt", "{{ dirs.out }}/shards"],
        "outputs": ["{{ dirs.out }}/training/weights.txt"],
    },
    "infer": {
        "after": ["train"],
        "foreach": {"count": {"num_jobs": 3}},
        "max_jobs": 2,
        "command": f"{PY} client {{{{ dirs.out }}}}/infer-{{{{ item.index }}}}.txt "
        "{{ service_address }}",
        "outputs": ["{{ dirs.out }}/infer-{{ item.index }}.txt"],
        "service": {
            "command": f"{PY} serve {{{{ dirs.out }}}}/server.log {{http}}",
            "ports": ["http"],
            "ready": "http://127.0.0.1:{http}/ready",
            "resources": {"gpus": 1},
            "poll": 2,
        },
    },
}


def test_a_service_node_serves_the_stage_and_a_remote_stage_transfers(run_root: Path) -> None:
    run_dir = run_root / "run"
    config = pipeline(run_root / "served.yaml", SERVED)
    build(config, run_dir, "--set", "remote.enabled=true")
    out = submit_and_wait(run_dir / "aframe.dag")
    assert out.rstrip().endswith("EXITING WITH STATUS 0"), out[-3000:]
    # the remote stage ran in HTCondor's scratch dir, and its outputs came back
    weights = (run_dir / "out/training/weights.txt").read_text().splitlines()
    assert weights[0].startswith("# seg") and weights[-2] == "a.json"
    assert not weights[-1].startswith(str(run_dir))  # it ran in HTCondor's scratch dir
    # every client reached the one service, which ran on a (simulated) GPU
    answers = {(run_dir / f"out/infer-{i}.txt").read_text() for i in range(3)}
    assert len(answers) == 1 and re.search(r"on GPU GPU-[0-9a-f]+$", answers.pop())
    sub_out = (run_dir / "infer.dag.dagman.out").read_text()
    assert "Starting service node infer-service" in sub_out
    assert sub_out.rstrip().endswith("EXITING WITH STATUS 0"), sub_out[-2000:]
    # DAGMan removed the service when the clients were done: it stopped cleanly
    assert "stopped by signal 15" in (run_dir / "out/server.log").read_text()
    assert not (run_dir / "infer.address").exists()


CLUSTERED = {
    "query": {
        "command": f"{PY} segments {{{{ dirs.out }}}}/segments.txt",
        "outputs": ["{{ dirs.out }}/segments.txt"],
    },
    "fetch": {
        "after": ["query"],
        "foreach": {"segments": {"file": "{{ dirs.out }}/segments.txt", "max_duration": 100}},
        "tasks_per_job": 3,
        "command": f"{PY} record {{{{ dirs.out }}}}/fetch-{{{{ item.index }}}}.json "
        "--start={{ item.start }}",
        "outputs": ["{{ dirs.out }}/fetch-{{ item.index }}.json"],
    },
    "gen": {
        "foreach": {"count": {"num_jobs": 5}},
        "tasks_per_job": 2,
        "command": f"{PY} record {{{{ dirs.out }}}}/gen-{{{{ item.index }}}}.json",
        "outputs": ["{{ dirs.out }}/gen-{{ item.index }}.json"],
    },
}


def test_clustered_stages_run_their_tasks_under_dagman(run_root: Path) -> None:
    run_dir = run_root / "run"
    config = pipeline(run_root / "clustered.yaml", CLUSTERED)
    build(config, run_dir)
    out = submit_and_wait(run_dir / "aframe.dag")
    assert out.rstrip().endswith("EXITING WITH STATUS 0"), out[-3000:]
    # 4 fetch tasks in 2 jobs, 5 gen tasks in 3 jobs: each task ran once
    for name in [*(f"fetch-{i}" for i in range(1, 5)), *(f"gen-{i}" for i in range(5))]:
        assert len(records(run_dir / f"out/{name}.json")) == 1, name
    jobs = re.findall(r"^\d+ (\S+) JOB_SUCCESS", (run_dir / "fetch.jobstate.log").read_text(), re.M)
    assert sorted(jobs) == ["fetch-1-3", "fetch-4-4"]
    code, out, err = run_cli("status", str(run_dir))
    assert code == 0, err
    assert "jobs; 4/4 tasks" in out and "jobs; 5/5 tasks" in out  # fetch, gen
    # the tasks' own records make an unchanged rebuild all DONE
    build(config, run_dir)
    lines = (run_dir / "aframe.dag").read_text().splitlines()
    jobs = [line for line in lines if line.startswith("JOB ")]
    assert jobs and all(line.endswith(" DONE") for line in jobs), jobs


def test_a_gpu_job_out_of_gpu_memory_is_held_and_released_to_a_bigger_gpu(
    run_root: Path,
) -> None:
    # the simulated GPUs have 1024 MB: ask for 512 first, 1024 after running out
    marker = "{{ dirs.out }}/ran-once"
    program = (
        "import sys,os,pathlib;m=pathlib.Path(sys.argv[1]);first=not m.exists();"
        "m.parent.mkdir(parents=True,exist_ok=True);m.touch();"
        "print('RuntimeError: CUDA out of memory.',file=sys.stderr) if first else None;"
        "sys.exit(1 if first else 0)"
    )
    stages = {
        "train": {
            "command": [sys.executable, "-c", program, marker],
            "resources": {"gpus": 1, "gpu_memory": "512MB", "max_gpu_memory": "1GB"},
        }
    }
    run_dir = run_root / "run"
    build(pipeline(run_root / "gpu.yaml", stages), run_dir)
    out = submit_and_wait(run_dir / "aframe.dag")
    assert out.rstrip().endswith("EXITING WITH STATUS 0"), out[-3000:]
    log = (run_dir / "logs/train.log").read_text()
    assert "Job was held" in log and "out of GPU memory" in log
    assert "Job was released" in log and "NumJobStarts <= 1" in log
    assert log.count("Job executing") == 2  # the OOM, then the run on the bigger GPU


# --- config text is data: no submit macro runs, no memory request passes its ceiling ---

# condor_submit's macro functions and friends: each must reach the job as written
MACRO_TEXT = [
    "$ENV(HOSTILE)", "a$ENV(HOME)b", "$RANDOM_INTEGER(1,9)", "$RANDOM_CHOICE(a,b)",
    "$CHOICE(0,a)", "$INT(3)", "$REAL(2)", "$SUBSTR(abc,1)", "$Fn(/a/b.c)", "$Fqa(x)",
    "$BASENAME(/a/b)", "$DIRNAME(/a/b)", "$EVAL(1+2)", "$(x)", "$HOME", "it's", 'say "hi"',
]  # fmt: skip


def test_macro_functions_reach_the_job_as_written_under_dagman_and_run_local(
    run_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTILE", "leaked")  # what $ENV(HOSTILE) would put in the job
    count = len(MACRO_TEXT)
    stages = {
        "macros": {
            "foreach": {"list": {"v": MACRO_TEXT}},  # each node's through VARS
            "command": [
                sys.executable, str(PROGRAMS), "record", "{{ dirs.out }}/m-{{ item.index }}.json",
                *(f"{{{{ params.v[{i}] }}}}" for i in range(count)), "{{ item.v }}",
            ],
            "environment": {f"HOSTILE_{i}": f"{{{{ params.v[{i}] }}}}" for i in range(count)},
        }
    }  # fmt: skip
    config = pipeline(run_root / "macros.yaml", stages)
    text = yaml.safe_load(config.read_text())
    text["params"]["v"] = MACRO_TEXT
    config.write_text(yaml.safe_dump(text))
    condor_dir, local_dir = run_root / "condor", run_root / "local"
    build(config, condor_dir)
    build(config, local_dir)
    out = submit_and_wait(condor_dir / "aframe.dag")
    assert out.rstrip().endswith("EXITING WITH STATUS 0"), out[-3000:]
    done = subprocess.run(
        [sys.executable, "-m", "aframe_dag", "run-local", str(local_dir)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for run_dir in (condor_dir, local_dir):
        for index, value in enumerate(MACRO_TEXT):
            (job,) = records(run_dir / f"out/m-{index}.json")
            assert job["argv"] == [*MACRO_TEXT, value], run_dir.name
            assert [job["env"][f"HOSTILE_{i}"] for i in range(count)] == MACRO_TEXT


def test_a_job_past_its_memory_ceiling_is_removed_and_its_node_fails(run_root: Path) -> None:
    # 64 MB asked, 128 MB the ceiling; the job holds 400 MB: HTCondor sees its
    # MemoryUsage, periodic_remove ends it long before its sleep would
    program = "import time; b = bytearray(400 * 2**20); time.sleep(200)"
    stages = {
        "hungry": {
            "command": [sys.executable, "-c", program],
            "resources": {"memory": "64MB", "max_memory": "128MB"},
        }
    }
    run_dir = run_root / "run"
    build(pipeline(run_root / "memory.yaml", stages), run_dir)
    started = time.monotonic()
    out = submit_and_wait(run_dir / "aframe.dag")
    assert out.rstrip().endswith("EXITING WITH STATUS 1"), out[-3000:]
    assert time.monotonic() - started < 150
    log = (run_dir / "logs/hungry.log").read_text()
    assert "Job was aborted" in log and "PeriodicRemove" in log, log[-2000:]


def test_submit_lines_from_the_config_reach_the_job_ad(run_root: Path) -> None:
    # each job copies the job ad HTCondor gave it ($_CONDOR_JOB_AD) into the run dir
    copy_ad = ["/bin/sh", "-c", 'cp "$_CONDOR_JOB_AD" {{ dirs.out }}/{{ stage.name }}.ad']
    stages = {
        "placed": {
            "command": copy_ad,
            "submit": {
                "requirements": '(TARGET.OpSys == "LINUX")',
                "+DESIRED_Sites": '"site_a,site_b"',
                "priority": 7,
                "MY.ProjectName": '"stage.own"',  # wins over condor.submit's +ProjectName
            },
        },
        "plain": {"after": ["placed"], "command": copy_ad},
    }
    config = pipeline(run_root / "submit.yaml", stages)
    data = yaml.safe_load(config.read_text())
    data["condor"]["submit"] = {"+ProjectName": '"every.job"'}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    run_dir = run_root / "run"
    build(config, run_dir)
    out = submit_and_wait(run_dir / "aframe.dag")
    assert out.rstrip().endswith("EXITING WITH STATUS 0"), out[-3000:]
    import classad2

    placed = classad2.parseOne((run_dir / "out/placed.ad").read_text())
    assert '(TARGET.OpSys == "LINUX")' in str(placed.lookup("Requirements"))
    assert placed["DESIRED_Sites"] == "site_a,site_b"
    assert placed["JobPrio"] == 7
    assert placed["ProjectName"] == "stage.own"
    plain = classad2.parseOne((run_dir / "out/plain.ad").read_text())
    assert plain["ProjectName"] == "every.job"
    assert "DESIRED_Sites" not in plain and plain["JobPrio"] == 0


# --- a held job, named by `aframe-dag status` ------------------------------------------


def test_status_names_a_held_job_with_its_id_and_reason(run_root: Path) -> None:
    import getpass

    go = run_root / "go"
    # the job waits for `go`, so it is still in the queue when it is held
    wait = (
        "import os,sys,time;"
        "sys.exit(0 if any(os.path.exists(sys.argv[1]) or time.sleep(0.5) for _ in range(240))"
        " else 1)"
    )
    stages = {"hold_me": {"command": [sys.executable, "-c", wait, str(go)]}}
    run_dir = run_root / "run"
    build(pipeline(run_root / "held.yaml", stages), run_dir)
    dag = run_dir / "aframe.dag"
    submitted = subprocess.run(
        ["condor_submit_dag", "-batch-name", run_root.name, str(dag)],
        cwd=run_dir, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    dagman = re.findall(r"submitted to cluster (\d+)", submitted.stdout)[-1]
    out = dag.with_name(dag.name + ".dagman.out")
    log = run_dir / "logs/hold_me.log"
    try:
        deadline = time.monotonic() + 60
        job = None
        while job is None and time.monotonic() < deadline:
            # the node's job as its SUBMIT event in the node log names it
            found = re.search(
                r"^000 \((\d+)\.(\d+)\.\d+\)", log.read_text() if log.exists() else "", re.M
            )
            job = f"{int(found[1])}.{int(found[2])}" if found else None
            time.sleep(0.5)
        assert job is not None, "the node's job was not submitted in 60 s"
        held = subprocess.run(
            ["condor_hold", "-reason", "testing hold", job],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert held.returncode == 0, held.stdout + held.stderr

        # DAGMan rewrites its node status file at most every 30 s
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            code, text, err = run_cli("status", str(run_dir), "--json")
            assert code == 0, err
            data = json.loads(text)
            if data["held"]:
                break
            time.sleep(1)
        snapshot = run_root / "held"  # for tests/status_samples/pool_held
        snapshot.mkdir()
        for path in (run_dir / "aframe.status", log):
            shutil.copy2(path, snapshot / path.name)
        # condor_hold adds who held it to the reason
        reason = f"testing hold (by user {getpass.getuser()})"
        assert data["held"] == [
            {"name": "hold_me", "stage": "hold_me", "job": job, "reason": reason,
             "code": 1, "subcode": 0},  # CONDOR_HOLD_CODE::UserRequest
        ], data  # fmt: skip
        assert data["stages"][0]["held"] == 1
        code, text, err = run_cli("status", str(run_dir))
        assert code == 0, err
        lines = text.splitlines()
        assert lines[lines.index("held nodes (1):") + 1 :] == [
            f"  hold_me (job {job}): {reason}",
            f"  why: condor_q -better-analyze {job}   release: condor_release {job}",
        ]

        go.touch()
        released = subprocess.run(
            ["condor_release", job], capture_output=True, text=True, check=False
        )
        assert released.returncode == 0, released.stdout + released.stderr
        deadline = time.monotonic() + DAG_TIMEOUT
        while "EXITING WITH STATUS" not in (out.read_text() if out.exists() else ""):
            assert time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(1)
    finally:
        if "EXITING WITH STATUS" not in (out.read_text() if out.exists() else ""):
            subprocess.run(["condor_rm", dagman], capture_output=True, check=False)
    assert out.read_text().rstrip().endswith("EXITING WITH STATUS 0"), out.read_text()[-3000:]
    shutil.copy2(log, run_root / "held" / "hold_me.log.released")
    code, text, err = run_cli("status", str(run_dir), "--json")
    assert code == 0, err
    assert (json.loads(text)["state"], json.loads(text)["held"]) == ("done", [])


# shared: the checkpoint is in the run dir; remote: in the scratch dir, and the job hands
# each new one to HTCondor (self-checkpointing, exit 85), which sends it back after eviction
EVICTED = {
    "shared": ["--set", "params.epoch_seconds=2"],
    "remote": ["--train-remote", "--set", "params.epoch_seconds=2",
               "--set", "stages.train.checkpoint.transfer_every=0"],
}  # fmt: skip


@pytest.mark.parametrize("where", sorted(EVICTED))
def test_an_evicted_training_job_resumes_from_its_last_epoch(run_root: Path, where: str) -> None:
    demo = Path(__file__).parent.parent / "configs" / "demo.yaml"
    whole, evicted = run_root / "whole", run_root / "evicted"
    build(demo, whole, "--target", "train")
    done = subprocess.run(
        [sys.executable, "-m", "aframe_dag", "run-local", str(whole), "--gpus", "0"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    build(demo, evicted, "--target", "train", *EVICTED[where])
    dag = evicted / "aframe.dag"
    submitted = subprocess.run(
        ["condor_submit_dag", "-batch-name", run_root.name, str(dag)],
        cwd=evicted, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    dagman = re.findall(r"submitted to cluster (\d+)", submitted.stdout)[-1]
    out, log = evicted / "logs/train/train.out", evicted / "logs/train.log"

    def far_enough() -> bool:
        if where == "shared":  # its output is written where it runs
            return "epoch 3 done" in (out.read_text() if out.exists() else "")
        # two checkpoints taken by HTCondor (its output only comes back at the end)
        return (log.read_text() if log.exists() else "").count("Finished transferring output") >= 2

    try:
        deadline = time.monotonic() + 180
        while not far_enough():
            assert time.monotonic() < deadline, "training did not get far enough"
            time.sleep(0.5)
        (job,) = re.findall(r"^000 \((\d+\.\d+)\.\d+\)", log.read_text(), re.M)[-1:]
        job = ".".join(str(int(n)) for n in job.split("."))
        vacated = subprocess.run(
            ["condor_vacate_job", "-fast", job], capture_output=True, text=True, check=False
        )
        assert vacated.returncode == 0, vacated.stdout + vacated.stderr
        dagman_out = submit_wait(dag)
    except BaseException:
        subprocess.run(["condor_rm", dagman], capture_output=True, check=False)
        raise
    assert dagman_out.rstrip().endswith("EXITING WITH STATUS 0"), dagman_out[-3000:]
    events = log.read_text()
    assert re.search(r"^004 ", events, re.M), "the job was never evicted"  # ULOG_JOB_EVICTED
    text = out.read_text()
    if where == "shared":
        assert f"resumed from {evicted}/training/last.ckpt at step" in text, text[-2000:]
        assert int(text.split(" at step ")[1].split()[0]) >= 120
        assert "epoch 1 done" not in text
    else:  # one output across its restarts: no epoch HTCondor had taken was done again
        seen = f"{str(evicted).lstrip('/')}/training/last.ckpt"
        assert f"resumed from {seen} at step" in text, text[-2000:]
        assert text.count("epoch 1 done") == 1 and text.count("epoch 2 done") == 1, text
        assert "checkpoint_exit_code = 85" in (evicted / "train.sub").read_text()
    assert "epoch 10 done" in text
    for name in ("model.npz", "last.ckpt"):  # the bytes of a run never stopped
        assert (evicted / "training" / name).read_bytes() == (
            whole / "training" / name
        ).read_bytes()


def submit_wait(dag: Path) -> str:
    """Wait for an already submitted DAG's DAGMan to exit; its .dagman.out."""
    out = dag.with_name(dag.name + ".dagman.out")
    deadline = time.monotonic() + DAG_TIMEOUT
    while time.monotonic() < deadline:
        text = out.read_text() if out.exists() else ""
        if "EXITING WITH STATUS" in text:
            return text
        time.sleep(1)
    raise AssertionError(f"DAGMan did not finish in {DAG_TIMEOUT} s:\n{out.read_text()[-3000:]}")


# --- `aframe-dag report` of a real DAGMan run of the demo ---------------------------------

# wrappers around a demo stage's own command (no `$`, no `'`: submit-file safe)
WAIT_FOR = (  # wait for a file, then run the stage's command
    "import os,sys,time,pathlib;g=pathlib.Path(sys.argv[1]);"
    "any(g.exists() or time.sleep(0.5) for _ in range(480));os.execv(sys.argv[2],sys.argv[2:])"
)
FAIL_ONCE = (  # fail the first time, after 2 s (leaving a marker), then run the command
    "import os,sys,time,pathlib;m=pathlib.Path(sys.argv[1]);first=not m.exists();m.touch();"
    "first and (time.sleep(2) or sys.exit(7));os.execv(sys.argv[2],sys.argv[2:])"
)
ENDS = {"004": "evicted", "005": "terminated", "009": "aborted", "012": "held"}


def log_events(text: str) -> list[tuple[str, str, float, str]]:
    """A job event log read as text, on its own: (code, CLUSTER.PROC, epoch, body) each."""
    found = []
    for chunk in text.split("\n...\n"):
        head = re.match(r"(\d{3}) \((\d+)\.(\d+)\.\d+\) (\S+ \S+) ", chunk.strip("\n."))
        if head:
            when = time.mktime(time.strptime(head[4], "%Y-%m-%d %H:%M:%S"))
            found.append((head[1], f"{int(head[2])}.{int(head[3])}", when, chunk))
    return found


def jobs_of(log: Path) -> dict[str, dict]:
    """Each job in a node log: its node, submit time, executions (start, end, how it
    ended), exit code, holds and the memory it used, from the text alone."""
    jobs: dict[str, dict] = {}
    for code, job, when, body in log_events(log.read_text()):
        if code == "000":
            node = re.search(r"DAG Node: (\S+)", body)
            jobs[job] = {"node": node[1] if node else None, "submit": when, "runs": [],
                         "code": None, "holds": 0, "memory": None}  # fmt: skip
            continue
        this = jobs[job]
        if code == "001":
            this["runs"].append([when, None, None])
        elif code in ENDS and this["runs"] and this["runs"][-1][1] is None:
            exit_code = re.search(r"\(return value (\d+)\)", body)
            this["code"] = int(exit_code[1]) if exit_code else None
            how = "success" if code == "005" and this["code"] == 0 else ENDS[code]
            this["runs"][-1][1:] = [when, how]
        elif code == "012" and this["runs"] and this["runs"][-1][2] == "evicted":
            # an executing job's hold is logged as 004 then 012 in the same second
            this["runs"][-1][2] = "held" if when - this["runs"][-1][1] <= 1 else "evicted"
        if code == "012":
            this["holds"] += 1
        memory = re.search(r"Memory \(MB\)\s*:\s*(\d+)", body) if code == "005" else None
        if memory:
            this["memory"] = int(memory[1])
    return jobs


def test_report_of_a_demo_run_with_a_held_job_and_a_retried_one(run_root: Path) -> None:
    import getpass
    import statistics
    from collections.abc import Callable

    demo = yaml.safe_load((Path(__file__).parent.parent / "configs/demo.yaml").read_text())
    go, marker = run_root / "go", run_root / "failed-once"
    stages = demo["stages"]
    # query_test executes until it is held (and waits for `go` after its release)
    stages["query_test"]["command"] = (
        f"{{{{ python }}}} -c '{WAIT_FOR}' {go} {stages['query_test']['command']}"
    )
    # export fails once (exit 7), then its retry succeeds
    stages["export"]["command"] = (
        f"{{{{ python }}}} -c '{FAIL_ONCE}' {marker} {stages['export']['command']}"
    )
    stages["export"]["retry"] = 1
    config = run_root / "demo.yaml"
    config.write_text(yaml.safe_dump(demo, sort_keys=False))
    run_dir = run_root / "run"
    build(config, run_dir)
    dag = run_dir / "aframe.dag"
    submitted = subprocess.run(
        ["condor_submit_dag", "-batch-name", run_root.name, str(dag)],
        cwd=run_dir, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    dagman = re.findall(r"submitted to cluster (\d+)", submitted.stdout)[-1]
    held_log = run_dir / "logs/query_test.log"
    reason = f"testing hold (by user {getpass.getuser()})"  # condor_hold adds who held it

    def wait_for(what: str, ready: Callable[[], object], seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while not ready():
            assert time.monotonic() < deadline, f"{what}: not in {seconds} s"
            time.sleep(0.5)

    def logged(code: str) -> list[str]:
        text = held_log.read_text() if held_log.exists() else ""
        return [job for c, job, _, _ in log_events(text) if c == code]

    try:
        wait_for("query_test executing", lambda: logged("001"))
        time.sleep(2)  # whole seconds in the log: the held execution lasts some
        (job,) = logged("000")
        held = subprocess.run(
            ["condor_hold", "-reason", "testing hold", job],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert held.returncode == 0, held.stdout + held.stderr
        wait_for("the hold in the node log", lambda: logged("012"))

        # a report of the run while it runs, its job held
        code, text, err = run_cli("report", str(run_dir), "--json", "-")
        assert code == 0, err
        running = json.loads(text)
        assert (running["mode"], running["state"]) == ("dagman", "running")
        assert {"name": "query_test", "state": "held", "reason": reason, "job": job}.items() <= (
            next(f for f in running["failures"] if f["name"] == "query_test").items()
        )

        go.touch()
        released = subprocess.run(
            ["condor_release", job], capture_output=True, text=True, check=False
        )
        assert released.returncode == 0, released.stdout + released.stderr
        dagman_out = submit_wait(dag)
    except BaseException:
        subprocess.run(["condor_rm", dagman], capture_output=True, check=False)
        raise
    assert dagman_out.rstrip().endswith("EXITING WITH STATUS 0"), dagman_out[-3000:]

    page = run_root / "report.html"
    code, text, err = run_cli("report", str(run_dir), "-o", str(page), "--json", "-")
    assert code == 0, err
    data = json.loads(text)
    assert (data["mode"], data["state"]) == ("dagman", "done")
    assert [s["name"] for s in data["stages"]] == list(stages)

    # every figure, against the stages' node logs read here on their own
    every = []
    for stage in data["stages"]:
        jobs = jobs_of(run_dir / f"logs/{stage['name']}.log")
        every += jobs.values()
        nodes = {j["node"] for j in jobs.values()}
        spans = {job: [(end - start, how) for start, end, how in j["runs"]]
                 for job, j in jobs.items()}  # fmt: skip
        runs = [sum(s for s, _ in job_spans) for job_spans in spans.values()]
        waits = [j["runs"][0][0] - j["submit"] for j in jobs.values()]
        badput = sum(s for job_spans in spans.values() for s, how in job_spans if how != "success")
        gpus = 1 if stage["name"] == "train" else 0
        name = stage["name"]
        assert (stage["total"], stage["done"], stage["failed"], stage["held"]) == (
            len(nodes), len(nodes), 0, 0
        ), name  # fmt: skip
        assert stage["attempts"] == len(jobs), name
        assert stage["retries"] == len(jobs) - len(nodes), name
        assert stage["holds"] == sum(j["holds"] for j in jobs.values()), name
        assert stage["evictions"] == sum(how == "evicted" for s in spans.values() for _, how in s)
        assert stage["run_median"] == pytest.approx(statistics.median(runs)), name
        assert stage["run_max"] == pytest.approx(max(runs)), name
        assert stage["wait_median"] == pytest.approx(statistics.median(waits)), name
        assert stage["wait_max"] == pytest.approx(max(waits)), name
        assert stage["cpu_hours"] == pytest.approx(sum(runs) / 3600), name  # 1 cpu each
        assert stage["gpu_hours"] == pytest.approx(sum(runs) * gpus / 3600), name
        assert stage["badput_hours"] == pytest.approx(badput / 3600), name
        assert stage["memory_used"] == max(j["memory"] for j in jobs.values()), name
    stages_ = {s["name"]: s for s in data["stages"]}
    # the held job: held once while executing (badput), released, run again
    held_job = jobs_of(held_log)[job]
    assert [how for *_, how in held_job["runs"]] == ["held", "success"]
    assert (stages_["query_test"]["holds"], stages_["query_test"]["attempts"]) == (1, 1)
    assert stages_["query_test"]["badput_hours"] > 0
    # the retried node: two jobs, the first ending with exit code 7
    exported = jobs_of(run_dir / "logs/export.log")
    assert [j["code"] for j in exported.values()] == [7, 0]
    assert (stages_["export"]["attempts"], stages_["export"]["retries"]) == (2, 1)
    assert stages_["export"]["badput_hours"] > 0
    totals = data["totals"]
    assert (totals["holds"], totals["retries"], totals["evictions"]) == (1, 1, 0)
    assert totals["attempts"] == len(every)
    assert totals["wall_seconds"] == pytest.approx(
        max(r[1] for j in every for r in j["runs"]) - min(j["submit"] for j in every)
    )
    assert totals["badput_hours"] == pytest.approx(sum(s["badput_hours"] for s in data["stages"]))
    retried, released = data["failures"]  # in stage order: what went wrong, after the run
    first_job = next(iter(exported))
    assert (retried["name"], retried["state"], retried["exit_code"], retried["job"]) == (
        "export", "failed, retried", 7, first_job
    )  # fmt: skip
    assert (released["name"], released["state"], released["reason"], released["job"]) == (
        "query_test", "held, released", reason, job
    )  # fmt: skip
    (plot,) = data["pictures"]
    assert (plot["stage"], Path(plot["path"]).name) == ("sensitivity", "sensitivity.png")
    version = subprocess.run(["condor_version"], capture_output=True, text=True, check=True)
    assert data["provenance"]["htcondor"] in version.stdout.split()
    html = page.read_text()
    assert "DAGMan run, done" in html and 'href="#failures-query_test"' in html
    assert '<a class="retried" href="#failures-export">1</a>' in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
