"""`aframe-dag build` and `expand` on the sandbox config: golden files, HTCondor parsing."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import classad2
import htcondor2
import pytest
from conftest import SANDBOX, run_cli

GOLDEN = Path(__file__).parent / "golden" / "sandbox"
REGENERATE = "REGENERATE_GOLDEN=1 python -m pytest tests/test_build.py -k golden"
SEGMENTS = (
    "# seg\tstart\tstop\tduration\n"
    "0\t1241443783\t1241483783\t40000\n"
    "1\t1241500000\t1241510000\t10000\n"
)


def build(run_dir: Path, image_dir: Path, *extra: str) -> str:
    code, out, err = run_cli(
        "build", str(SANDBOX), "--run-dir", str(run_dir), "--image-dir", str(image_dir), *extra
    )
    assert code == 0, err
    # pytest's tmp_path is under /tmp, which DAGMan refuses: the build says so
    assert err == (
        f"Warning: {run_dir} is under /tmp, where DAGMan's strict mode refuses its node log: "
        "build elsewhere to submit with condor_submit_dag\n"
    )
    return out


def normalise(text: str, run_dir: Path, image_dir: Path) -> str:
    """Machine-specific paths as placeholders, so golden files hold on any machine."""
    return (
        text.replace(str(run_dir), "{RUN_DIR}")
        .replace(str(image_dir), "{IMAGE_DIR}")
        .replace(sys.executable, "{PYTHON}")
    )


def generated(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.iterdir() if p.suffix in (".dag", ".sub", ".yaml"))


def test_sandbox_matches_golden_files(tmp_path: Path, image_dir: Path, ligo_env: None) -> None:
    run_dir = tmp_path / "run"
    build(run_dir, image_dir)
    files = {p.name: normalise(p.read_text(), run_dir, image_dir) for p in generated(run_dir)}
    if os.environ.get("REGENERATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for old in GOLDEN.iterdir():
            old.unlink()
        for name, text in files.items():
            (GOLDEN / name).write_text(text)
    expected = {p.name: p.read_text() for p in sorted(GOLDEN.iterdir())}
    assert sorted(files) == sorted(expected), f"regenerate with: {REGENERATE}"
    for name, text in files.items():
        assert text == expected[name], f"{name} differs; if intended, regenerate: {REGENERATE}"


@pytest.mark.parametrize("mode", ["apptainer", "container-universe", "none"])
def test_every_submit_file_parses_with_htcondor(
    tmp_path: Path, image_dir: Path, ligo_env: None, mode: str
) -> None:
    run_dir = tmp_path / "run"
    build(run_dir, image_dir, "--container", mode)
    subs = sorted(run_dir.glob("*.sub"))
    assert len(subs) == 16  # 15 stages and infer's Triton service
    for sub in subs:
        submit = htcondor2.Submit(included(sub.read_text(), "SERVICE_ADDRESS = host:1"))
        assert submit["accounting_group"] == "ligo.dev.o4.cbc.allsky.aframe", sub.name
        assert submit["initialdir"] == str(run_dir)
        universe = "container" if mode == "container-universe" else "vanilla"
        assert submit["universe"] == universe
        if mode == "container-universe":
            assert submit["container_image"].startswith(str(image_dir))
    train = htcondor2.Submit((run_dir / "train.sub").read_text())
    assert train["request_gpus"] == "1"
    if mode == "apptainer":
        assert train.expand("arguments").startswith('"exec --nv --bind ')
    infer = htcondor2.Submit(included((run_dir / "infer.sub").read_text(), "SERVICE_ADDRESS = h:7"))
    assert "--client.address=h:7" in infer.expand("arguments")
    service = htcondor2.Submit((run_dir / "infer-service.sub").read_text())
    assert service["request_gpus"] == "1"
    assert "--ports=grpc,http,metrics" in service.expand("arguments")


def included(text: str, macros: str) -> str:
    """`text` with its `include :` lines replaced by what the file would hold: the Python
    bindings' Submit refuses includes (condor_submit reads them; the pool tests run it)."""
    return re.sub(r"(?m)^include : .*$", macros, text)


def test_build_is_deterministic(tmp_path: Path, image_dir: Path, ligo_env: None) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    build(first, image_dir)
    build(second, image_dir)
    for path in generated(first):
        again = (second / path.name).read_text().replace(str(second), str(first))
        assert path.read_text() == again, path.name


def test_runtime_fanout_stages_become_subdags(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    run_dir = tmp_path / "run"
    out = build(run_dir, image_dir)
    dag = (run_dir / "aframe.dag").read_text().splitlines()
    segments = run_dir / "data/test/background/segments.txt"
    assert f"  fetch_test                     decided at run time from {segments}" in out
    assert f"SUBDAG EXTERNAL fetch_test {run_dir}/fetch_test.dag" in dag
    assert (
        f"SCRIPT PRE fetch_test {sys.executable} -m aframe_dag expand {run_dir} fetch_test" in dag
    )
    assert "PARENT fetch_test CHILD generate_testing_waveforms" in dag
    assert "PARENT export fetch_test merge_testing_waveforms CHILD infer" in dag
    assert "PARENT infer CHILD aggregate_infer" in dag
    assert not (run_dir / "fetch_test.dag").exists()


def test_expand_writes_the_subdag_line_by_line(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    run_dir = tmp_path / "run"
    build(run_dir, image_dir)
    (run_dir / "data/test/background/segments.txt").write_text(SEGMENTS)
    code, out, err = run_cli("expand", str(run_dir), "fetch_test")
    assert (code, err) == (0, "")
    # 40000 s in pieces of 20000 s, then 10000 s: three nodes, ids from 1
    assert out == f"wrote {run_dir}/fetch_test.dag (3 nodes)\n"
    lines = [
        line
        for line in (run_dir / "fetch_test.dag").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    sub = f"{run_dir}/fetch_test.sub"
    assert lines == [
        "ENV GET KRB5_KTNAME X509_USER_PROXY GWDATAFIND_SERVER NDSSERVER LIGO_USERNAME "
        "DEFAULT_SEGMENT_SERVER AWS_ENDPOINT_URL",
        f"JOBSTATE_LOG {run_dir}/fetch_test.jobstate.log",
        f"NODE_STATUS_FILE {run_dir}/fetch_test.status 30",
        f"JOB fetch_test-1 {sub}",
        'VARS fetch_test-1 start="1241443783" end="1241463783"',
        "RETRY fetch_test-1 5",
        f"JOB fetch_test-2 {sub}",
        'VARS fetch_test-2 start="1241463783" end="1241483783"',
        "RETRY fetch_test-2 5",
        f"JOB fetch_test-3 {sub}",
        'VARS fetch_test-3 start="1241500000" end="1241510000"',
        "RETRY fetch_test-3 5",
    ]


def test_expand_is_deterministic_and_throttles_inference(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    run_dir = tmp_path / "run"
    build(run_dir, image_dir)
    (run_dir / "data/test/background/segments.txt").write_text(SEGMENTS)
    assert run_cli("expand", str(run_dir), "infer")[0] == 0
    first = (run_dir / "infer.dag").read_text()
    assert run_cli("expand", str(run_dir), "infer")[0] == 0
    assert (run_dir / "infer.dag").read_text() == first
    lines = first.splitlines()
    assert 'VARS infer-0 segment="1241443783-20000" shift_tag="0-0" shifts="[0,0]"' in lines
    assert "CATEGORY infer-0 infer" in lines
    assert lines[-1] == "MAXJOBS infer 6"


def test_existing_input_expands_statically(tmp_path: Path, image_dir: Path, ligo_env: None) -> None:
    data = tmp_path / "data"
    (data / "test/background").mkdir(parents=True)
    (data / "test/background/segments.txt").write_text(SEGMENTS)
    run_dir = tmp_path / "run"
    out = build(run_dir, image_dir, "--data-dir", str(data))
    assert "  fetch_test                     3 nodes" in out
    dag = (run_dir / "aframe.dag").read_text().splitlines()
    assert "PARENT query_test CHILD fetch_test-1 fetch_test-2 fetch_test-3" in dag
    assert not any(line.startswith("SUBDAG EXTERNAL fetch_test ") for line in dag)


def test_target_builds_only_what_the_stage_needs(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    run_dir = tmp_path / "run"
    build(run_dir, image_dir, "--target", "train")
    subs = sorted(p.stem for p in run_dir.glob("*.sub"))
    assert subs == [
        "fetch_train",
        "generate_training_waveforms",
        "generate_validation_waveforms",
        "merge_training_waveforms",
        "merge_validation_waveforms",
        "query_train",
        "train",
    ]


def test_flags_are_shorthands_for_config_keys(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    run_dir = tmp_path / "run"
    custom = tmp_path / "custom-train.sif"
    custom.touch()
    train_yaml = tmp_path / "train.yaml"
    train_yaml.write_text("seed_everything: 1\n")
    build(
        run_dir,
        image_dir,
        "--image",
        f"train={custom}",
        "--config",
        str(train_yaml),
        "--set",
        "stages.train.resources.gpus=2",
    )
    sub = htcondor2.Submit((run_dir / "train.sub").read_text())
    arguments = sub.expand("arguments")
    assert f" {custom} " in arguments
    assert f"--config={train_yaml}" in arguments
    assert f"--bind {train_yaml}:{train_yaml}:ro" in arguments  # the host file, in the image
    assert "--trainer.strategy=ddp" in arguments
    assert sub["request_gpus"] == "2"


def test_entry_scripts_are_copied_into_the_run_dir(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    run_dir = tmp_path / "run"
    build(run_dir, image_dir)
    scripts = sorted(p.name for p in (run_dir / "entry").iterdir())
    assert scripts == [
        "aggregate_inference.py",
        "merge_testing_waveforms.py",
        "merge_training_waveforms.py",
        "merge_validation_waveforms.py",
        "oom.py",
        "resume.py",
        "service.py",
    ]
    arguments = htcondor2.Submit((run_dir / "aggregate_infer.sub").read_text())["arguments"]
    assert f"python {run_dir}/entry/aggregate_inference.py" in arguments


def test_memory_escalation_follows_the_ligo_pattern(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    run_dir = tmp_path / "run"
    build(run_dir, image_dir, "--set", "stages.fetch_train.resources.max_memory=64GB")
    submit = htcondor2.Submit((run_dir / "fetch_train.sub").read_text())
    request = classad2.ExprTree(submit["request_memory"])
    assert request.eval(classad2.ClassAd()) == 16384  # 16GB before any usage is known
    assert request.eval(classad2.ClassAd({"MemoryUsage": 20000})) == 60000
    assert request.eval(classad2.ClassAd({"MemoryUsage": 48000})) == 65536  # capped
    release = classad2.ExprTree(submit["periodic_release"])
    held = {"JobStatus": 5, "HoldReasonCode": 34, "MemoryUsage": 20000}
    assert release.eval(classad2.ClassAd(held)) is True
    assert release.eval(classad2.ClassAd({**held, "HoldReasonCode": 12})) is False
    assert release.eval(classad2.ClassAd({**held, "MemoryUsage": 65536})) is True
    assert release.eval(classad2.ClassAd({**held, "MemoryUsage": 65537})) is False
    remove = classad2.ExprTree(submit["periodic_remove"])
    now = int(time.time())
    for status in (1, 2, 5):  # idle, running, held
        ad = {"JobStatus": status, "EnteredCurrentStatus": now}
        assert remove.eval(classad2.ClassAd({**ad, "MemoryUsage": 65537})) is True
        assert remove.eval(classad2.ClassAd({**ad, "MemoryUsage": 65536})) is False
    assert remove.eval(classad2.ClassAd({"JobStatus": 1})) is False  # nothing used yet


def escalate(submit: htcondor2.Submit, need: int) -> tuple[str, list[int]]:
    """HTCondor's life of a job needing `need` MB under the .sub's memory policy: it runs
    at its request; past the request it is held (code 34) with what it used; the schedd
    evaluates periodic_remove (running, held, idle) and periodic_release. Returns how it
    ended and each request it made."""
    request = classad2.ExprTree(submit["request_memory"])
    release = classad2.ExprTree(submit["periodic_release"])
    remove = classad2.ExprTree(submit["periodic_remove"])
    ad = classad2.ClassAd({"JobStatus": 1, "EnteredCurrentStatus": int(time.time())})
    asked: list[int] = []
    for _ in range(20):
        asked.append(request.eval(ad))
        if remove.eval(ad) is True:
            return "removed while idle", asked
        ad["JobStatus"] = 2
        ad["MemoryUsage"] = min(need, asked[-1] + 1)
        if remove.eval(ad) is True:
            return "removed while running", asked
        if need <= asked[-1]:
            return "done", asked
        ad["JobStatus"], ad["HoldReasonCode"] = 5, 34
        if remove.eval(ad) is True:
            return "removed while held", asked
        if release.eval(ad) is not True:
            return "held", asked
        ad["JobStatus"] = 1
    return "never ended", asked


@pytest.mark.parametrize(
    ("need", "ends", "requests"),
    [
        (10_000, "done", [16384]),
        (40_000, "done", [16384, 49155]),
        (64_000, "done", [16384, 49155, 65536]),  # the last try asks for the ceiling
        (65_536, "done", [16384, 49155, 65536]),
        (70_000, "removed while running", [16384, 49155, 65536]),
        (10**7, "removed while running", [16384, 49155, 65536]),
    ],
)
def test_memory_escalation_never_asks_past_its_ceiling(
    tmp_path: Path, image_dir: Path, ligo_env: None, need: int, ends: str, requests: list[int]
) -> None:
    run_dir = tmp_path / "run"
    build(run_dir, image_dir, "--set", "stages.fetch_train.resources.max_memory=64GB")
    submit = htcondor2.Submit((run_dir / "fetch_train.sub").read_text())
    assert escalate(submit, need) == (ends, requests)


def test_memory_escalation_removes_a_job_held_at_its_ceiling_instead_of_releasing_it(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    # held at 48GB with a 64GB ceiling: released once asking 64GB (not 144GB, which no
    # slot offers: it would stay idle for ever), and removed if held again there
    run_dir = tmp_path / "run"
    build(run_dir, image_dir, "--set", "stages.fetch_train.resources.memory=48GB",
          "--set", "stages.fetch_train.resources.max_memory=64GB")  # fmt: skip
    submit = htcondor2.Submit((run_dir / "fetch_train.sub").read_text())
    held = classad2.ClassAd(
        {"JobStatus": 5, "HoldReasonCode": 34, "MemoryUsage": 49153,
         "EnteredCurrentStatus": int(time.time())}
    )  # fmt: skip
    assert classad2.ExprTree(submit["periodic_release"]).eval(held) is True
    assert classad2.ExprTree(submit["request_memory"]).eval(held) == 65536
    held["MemoryUsage"] = 65537
    assert classad2.ExprTree(submit["periodic_release"]).eval(held) is False
    assert classad2.ExprTree(submit["periodic_remove"]).eval(held) is True


def test_held_jobs_are_removed_after_a_bound(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    run_dir = tmp_path / "run"
    build(run_dir, image_dir, "--set", "condor.remove_held_after=600")
    remove = classad2.ExprTree(
        htcondor2.Submit((run_dir / "train.sub").read_text())["periodic_remove"]
    )
    held = {"JobStatus": 5, "EnteredCurrentStatus": int(time.time()) - 601}
    assert remove.eval(classad2.ClassAd(held)) is True
    held["EnteredCurrentStatus"] = int(time.time())
    assert remove.eval(classad2.ClassAd(held)) is False
    build(tmp_path / "keep", image_dir, "--set", "condor.remove_held_after=0")
    assert "periodic_remove" not in (tmp_path / "keep" / "train.sub").read_text()
