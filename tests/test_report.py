"""`aframe-dag report`: real run-local runs, real DAGMan samples, the page in Chromium."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import time
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from conftest import SANDBOX, run_cli

from aframe_dag import report, rundir
from aframe_dag.status import FAILED_RECORDED

SAMPLES = Path(__file__).parent / "status_samples"
PROGRAMS = Path(__file__).parent / "pool_programs.py"
PY = sys.executable
SHOUT = (
    "import sys; [print(f'line {i}', file=sys.stderr) for i in range(1, 7)];"
    "print('<b>not markup</b>', file=sys.stderr); sys.exit(2)"
)
COPY = "import shutil as s, sys; a = sys.argv; s.copy(a[1], a[3]); s.copy(a[2], a[4])"
SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4">'
    '<rect width="4" height="4"/></svg>'
)


def png() -> bytes:
    """A 1x1 grey PNG, written by hand (the format's own chunks)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x80")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def build(tmp_path: Path, stages: dict) -> Path:
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "report-test",
                "dirs": {"out": "{{ run_dir }}/out"},
                "condor": {"container": "none", "use_oauth_services": "", "getenv": ["PATH"]},
                "stages": stages,
            },
            sort_keys=False,
        )
    )
    run_dir = tmp_path / "run"
    code, _, err = run_cli("build", str(config), "--run-dir", str(run_dir))
    assert code == 0, err
    return run_dir


def spans(record: Path) -> dict[str, list[tuple[float, float, str]]]:
    """Each node's attempts from run-local's record, read here on their own: a start ends
    at its done or failed, or at the node's next start (run-local retried it)."""
    found: dict[str, list[tuple[float, float, str]]] = {}
    open_: dict[str, float] = {}
    for line in record.read_text().splitlines():
        event, key, when = line.split()
        node = key.split(":")[1]
        if event == "start":
            if node in open_:
                found.setdefault(node, []).append((open_[node], float(when), "failure"))
            open_[node] = float(when)
        else:
            found.setdefault(node, []).append((open_.pop(node), float(when), event))
    return found


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run-local run: a fan-out of 2-cpu nodes, a node failing once then
    succeeding on its retry, a GPU node, a stage that draws a PNG and an SVG, a node
    that fails for good."""
    tmp_path = tmp_path_factory.mktemp("local")
    (tmp_path / "src.png").write_bytes(png())
    (tmp_path / "src.svg").write_text(SVG)
    out = "{{ dirs.out }}"
    run_dir = build(
        tmp_path,
        {
            "gen": {
                "foreach": {"list": {"v": [1, 2, 3]}},
                "command": [PY, "-c", "import time; time.sleep(0.1)", "{{ item.v }}"],
                "resources": {"cpus": 2, "memory": "300MB"},
            },
            "flaky": {
                "retry": 1,
                "command": [PY, str(PROGRAMS), "flaky", f"{out}/flaky.marker", f"{out}/f.json"],
            },
            "train": {
                "after": ["gen", "flaky"],
                "command": [PY, "-c", "import time; time.sleep(0.2)"],
                "resources": {"gpus": 1},
            },
            "plot": {
                "after": ["train"],
                "command": [PY, "-c", COPY, str(tmp_path / "src.png"), str(tmp_path / "src.svg"),
                            f"{out}/eff.png", f"{out}/eff.svg"],
                "outputs": [f"{out}/eff.png", f"{out}/eff.svg"],
            },
            "bad": {"command": [PY, "-c", SHOUT]},
        },
    )  # fmt: skip
    done = subprocess.run(
        [PY, "-m", "aframe_dag", "run-local", str(run_dir), "--gpus", "0"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # `bad` failed
    return run_dir


def test_local_run_figures_match_its_record(local_run: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    code, out, err = run_cli("report", str(local_run), "-o", str(page), "--json", "-")
    assert code == 0, err
    assert err == f"wrote {page}\n"  # stdout holds the JSON alone
    data = json.loads(out)
    assert "http://" not in out and "https://" not in out  # figures, paths: nothing to fetch
    assert (data["mode"], data["state"]) == ("local", "failed")
    stages = {s["name"]: s for s in data["stages"]}
    assert list(stages) == ["gen", "flaky", "train", "plot", "bad"]
    found = spans(local_run / rundir.RECORD)

    def seconds(node: str) -> list[float]:
        return [end - start for start, end, _ in found[node]]

    gen = stages["gen"]
    runs = [s for n in ("gen-0", "gen-1", "gen-2") for s in seconds(n)]
    assert (gen["total"], gen["done"], gen["attempts"], gen["retries"]) == (3, 3, 3, 0)
    assert gen["run_median"] == pytest.approx(statistics.median(runs))
    assert gen["run_max"] == pytest.approx(max(runs))
    assert gen["cpu_hours"] == pytest.approx(sum(runs) * 2 / 3600)  # request_cpus = 2
    assert (gen["gpu_hours"], gen["badput_hours"], gen["memory_requested"]) == (0, 0, [300])
    assert gen["wait_median"] is None  # run-local has no queue
    flaky = stages["flaky"]
    assert [how for *_, how in found["flaky"]] == ["failure", "done"]
    assert (flaky["done"], flaky["attempts"], flaky["retries"]) == (1, 2, 1)
    assert flaky["badput_hours"] == pytest.approx(seconds("flaky")[0] / 3600)
    train = stages["train"]
    assert train["gpu_hours"] == pytest.approx(seconds("train")[0] / 3600)  # 1 GPU
    bad = stages["bad"]
    assert (bad["failed"], bad["attempts"]) == (1, 1)
    assert bad["badput_hours"] == pytest.approx(seconds("bad")[0] / 3600)
    every = [span for spans_ in found.values() for span in spans_]
    totals = data["totals"]
    assert totals["wall_seconds"] == pytest.approx(
        max(e for _, e, _ in every) - min(s for s, _, _ in every)
    )
    assert totals["badput_hours"] == pytest.approx(
        sum(e - s for s, e, how in every if how != "done") / 3600
    )
    assert totals["cpu_hours"] == pytest.approx(sum(runs) * 2 / 3600 + sum(
        sum(seconds(n)) for n in ("flaky", "train", "plot", "bad")) / 3600)  # fmt: skip
    retried, failure = data["failures"]  # in stage order
    assert (retried["name"], retried["state"], retried["reason"]) == (
        "flaky", "failed, retried", "retried after a job: no exit code"  # run-local keeps none
    )  # fmt: skip
    assert (failure["name"], failure["state"], failure["reason"]) == ("bad", "failed",
                                                                      FAILED_RECORDED)  # fmt: skip
    assert failure["tail"][-1] == "<b>not markup</b>" and failure["exit_code"] is None
    # the pictures the plot stage declares, with what provenance says of each
    shown = [(p["stage"], Path(p["path"]).name) for p in data["pictures"]]
    assert shown == [("plot", "eff.png"), ("plot", "eff.svg")]
    for picture in data["pictures"]:
        content = Path(picture["path"]).read_bytes()
        assert picture["sha256"] == hashlib.sha256(content).hexdigest()
        assert picture["size"] == len(content)
    assert data == json.loads(report.json_text(report.make(local_run)))  # the same figures

    html = page.read_text()
    assert f"data:image/png;base64,{base64.b64encode(png()).decode()}" in html
    assert f"data:image/svg+xml;base64,{base64.b64encode(SVG.encode()).decode()}" in html
    assert "&lt;b&gt;not markup&lt;/b&gt;" in html and "<b>not markup</b>" not in html
    assert '<a class="bad" href="#failures-bad">1</a>' in html  # the stage table links...
    assert '<a class="retried" href="#failures-flaky">1</a>' in html
    assert '<div id="failures-bad">' in html and 'id="node-bad"' in html  # ...to the node
    assert "<details><summary>config.yaml" in html
    assert f"aframe-dag build {local_run.parent / 'run.yaml'} --run-dir {local_run}" in html


WAIT = "import os,sys,time; any(os.path.exists(sys.argv[1]) or time.sleep(.05) for _ in range(999))"


def test_a_run_local_run_still_running(tmp_path: Path) -> None:
    go = tmp_path / "go"
    run_dir = build(tmp_path, {
        "first": {"command": [PY, "-c", "pass"]},
        "waits": {"after": ["first"], "command": [PY, "-c", WAIT, str(go)]},
        "last": {"after": ["waits"], "command": [PY, "-c", "pass"]},
    })  # fmt: skip
    record = run_dir / rundir.RECORD
    runner = subprocess.Popen(
        [PY, "-m", "aframe_dag", "run-local", str(run_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "start aframe.dag:waits" not in (record.read_text() if record.exists() else ""):
            assert time.monotonic() < deadline and runner.poll() is None, "waits never started"
            time.sleep(0.05)
        time.sleep(0.3)
        page = tmp_path / "running.html"
        code, out, err = run_cli("report", str(run_dir), "-o", str(page), "--json", "-")
        assert code == 0, err
        running = json.loads(out)
        (started,) = spans(record).get("first", [])
        (waiting,) = [line for line in record.read_text().splitlines() if "waits" in line]
        stages = {s["name"]: s for s in running["stages"]}
        assert (running["mode"], running["state"]) == ("local", "running")
        assert [stages[n]["done"] for n in ("first", "waits", "last")] == [1, 0, 0]
        # the running node counts up to the report's time
        assert stages["waits"]["attempts"] == 1 and stages["waits"]["run_max"] >= 0.3
        assert running["as_of"] - float(waiting.split()[2]) == pytest.approx(
            stages["waits"]["run_max"]
        )
        assert running["totals"]["first"] == pytest.approx(started[0])
        assert "run-local run, running" in page.read_text()
    finally:
        go.touch()
        assert runner.wait(timeout=60) == 0
    code, out, _ = run_cli("report", str(run_dir), "--json", "-")
    assert (json.loads(out)["state"], json.loads(out)["totals"]["done"]) == ("done", 3)


class Page(HTMLParser):
    """What a page loads from elsewhere, and its scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        for name, value in attrs:
            local = not value or value.startswith(("data:", "#"))
            if name in ("src", "href", "xlink:href", "action") and not local:
                self.references.append(f"{tag} {name}={str(value)[:60]}")


def test_the_page_is_self_contained(local_run: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    assert run_cli("report", str(local_run), "-o", str(page))[0] == 0
    html = page.read_text()
    parser = Page()
    parser.feed(html)
    assert (parser.references, parser.scripts) == ([], 0)
    assert "@import" not in html and "url(" not in html
    assert html.count("<svg") == 2  # the timeline and the DAG (graphviz's), inline
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def chromium() -> str:
    """Debian's chromium: CI installs it (.ci/run), so there a missing one fails."""
    if CHROMIUM is None and os.environ.get("CI"):
        pytest.fail("chromium is not installed, and CI must run this test (.ci/run installs it)")
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (CI installs it: apt-get install chromium)")
    return CHROMIUM


def load(chromium: str, page: Path, profile: Path) -> tuple[str, list[str]]:
    """The page as headless Chromium renders it (its DOM after loading) and what it said
    on the console."""
    shown = subprocess.run(
        [chromium, "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr",
         "--v=0", f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-2000:]
    return shown.stdout, [line for line in shown.stderr.splitlines() if ":CONSOLE" in line]


def test_chromium_loads_the_page_without_errors_and_shows_every_stage(
    chromium: str, local_run: Path, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    assert run_cli("report", str(local_run), "-o", str(page))[0] == 0
    dom, console = load(chromium, page, tmp_path / "profile")
    assert console == []  # no error, no reference refused by the page's policy
    stages = ["gen", "flaky", "train", "plot", "bad"]
    assert re.findall(r"<tr><td>([^<]+)</td>", dom)[:5] == stages  # the stage table
    lanes = re.findall(r'<text x="[\d.]+" y="[\d.]+" text-anchor="end">([^<]+)<tspan', dom)
    assert lanes == stages  # a lane each in the timeline
    assert dom.count("<img ") == 2  # the plot stage's pictures

    # the check can fail: a page that loads anything from elsewhere is refused, and said so
    html = page.read_text()
    leaky = tmp_path / "leaky.html"
    leaky.write_text(html.replace("<h1>", '<img src="https://example.invalid/x.png"><h1>', 1))
    _, console = load(chromium, leaky, tmp_path / "profile")
    assert len(console) == 1 and "https://example.invalid/x.png" in console[0]
    assert "Content Security Policy" in console[0]


# --- provenance ---------------------------------------------------------------------


def git(checkout: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}  # fmt: skip
    done = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True,
                          env=env, check=True)  # fmt: skip
    return done.stdout.strip()


def test_provenance_of_a_sandbox_build(tmp_path: Path, image_dir: Path, ligo_env: None) -> None:
    checkout = tmp_path / "aframe"
    (checkout / "projects" / "train").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text('[tool.poetry]\nname = "aframe"\nversion = "0.1"\n')
    git(checkout, "init", "-q")
    git(checkout, "add", ".")
    git(checkout, "commit", "-q", "-m", "first")
    commit = git(checkout, "rev-parse", "HEAD")
    run_dir = tmp_path / "run"
    argv = ["build", str(SANDBOX), "--run-dir", str(run_dir), "--image-dir", str(image_dir),
            "--dev-path", str(checkout)]  # fmt: skip
    code, _, err = run_cli(*argv)
    assert code == 0, err

    made = report.make(run_dir)
    p = made.provenance
    assert p["command"] == "aframe-dag " + " ".join(argv)
    assert (p["cwd"], p["build_python"]) == (str(Path.cwd()), p["python"])
    assert p["dev"] == {"path": str(checkout), "commit": commit, "dirty": False}
    images = {Path(i["path"]).name: i for i in p["images"]}
    assert sorted(images) == sorted(path.name for path in image_dir.iterdir())
    empty = hashlib.sha256(b"").hexdigest()
    assert {i["sha256"] for i in images.values()} == {empty} and images["train.sif"]["size"] == 0
    assert made.state == "not started" and made.totals["attempts"] == 0

    # hashed once per size and mtime: a known hash is taken from the cache, as it is...
    cache = run_dir / rundir.IMAGE_HASHES
    known = json.loads(cache.read_text())
    known[str(image_dir / "train.sif")][2] = "taken-from-the-cache"
    cache.write_text(json.dumps(known))
    again = {Path(i["path"]).name: i for i in report.make(run_dir).provenance["images"]}
    assert again["train.sif"]["sha256"] == "taken-from-the-cache"
    # ...until the image changes
    (image_dir / "train.sif").write_bytes(b"new image")
    (checkout / "pyproject.toml").write_text("changed\n")
    changed = report.make(run_dir).provenance
    trained = next(i for i in changed["images"] if i["path"].endswith("train.sif"))
    assert trained["sha256"] == hashlib.sha256(b"new image").hexdigest()
    assert changed["dev"]["dirty"] is True


# --- DAGMan's records from the personal pool --------------------------------------------


def sample(tmp_path: Path, name: str) -> Path:
    run_dir = tmp_path / name
    shutil.copytree(SAMPLES / name, run_dir)
    return run_dir


def logged(text: str, code: str) -> list[float]:
    """The times of a node log's events of one type (`000`, `001`, ...), read as text."""
    stamps = re.findall(rf"^{code} \(\d+\.\d+\.\d+\) (\S+ \S+) ", text, re.M)
    return [time.mktime(time.strptime(s, "%Y-%m-%d %H:%M:%S")) for s in stamps]


def test_held_then_released_job_from_its_node_log(tmp_path: Path) -> None:
    run_dir = sample(tmp_path, "pool_held")
    held = report.read_run(run_dir)  # while held
    (failure,) = held.failures
    assert (failure.name, failure.state, failure.job) == ("hold_me", "held", "786.0")
    assert failure.reason == "testing hold (by user aframe)"  # HoldReason, from the log
    assert held.stages[0].holds == 1 and held.submit_hosts == ["vm (127.0.0.1:12931)"]

    log = run_dir / "logs/hold_me.log"
    log.write_text((run_dir / "logs/hold_me.log.released").read_text())
    (run_dir / "aframe.status").write_text((run_dir / "aframe.status.done").read_text())
    text = log.read_text()
    done = report.read_run(run_dir)
    (stage,) = done.stages
    assert (done.state, stage.done, stage.attempts) == ("done", 1, 1)
    released = report.Failure("hold_me", "hold_me", "held, released", failure.reason, job="786.0")
    assert done.failures == [released]  # why it was held, after its release
    assert (stage.holds, stage.evictions, stage.retries) == (1, 0, 0)
    (submitted,), (executed,), (ended,) = (
        logged(text, "000"),
        logged(text, "001"),
        logged(text, "005"),
    )
    assert stage.wait_median == stage.wait_max == executed - submitted  # held in between
    assert stage.run_max == ended - executed
    assert "(return value 0)" in text and "Memory (MB)          :        5     2048" in text
    assert (stage.memory_requested, stage.memory_used) == ([2048], 5)
    assert (stage.disk_used, stage.disk_requested) == (75, 1048576)  # KB, as logged
    (attempt,) = done.attempts["hold_me"]["hold_me"]
    assert (attempt.end, attempt.exit_code, attempt.holds) == (
        "success", 0, ["testing hold (by user aframe)"]
    )  # fmt: skip


def test_jobstate_log_only_a_failed_an_evicted_and_a_removed_node(tmp_path: Path) -> None:
    run_dir = sample(tmp_path, "pool_midrun")
    (run_dir / "aframe.status").write_text((run_dir / "aframe.status.failing").read_text())
    log = (run_dir / "aframe.jobstate.log.failing").read_text()
    (run_dir / "aframe.jobstate.log").write_text(log)
    made = report.read_run(run_dir)
    stages = {s.name: s for s in made.stages}
    times = {(w[1], w[2]): float(w[0]) for w in (line.split() for line in log.splitlines())}
    slow = stages["slow"]
    assert (slow.failed, slow.attempts, slow.evictions) == (2, 3, 1)
    # slow-0 ran until evicted (then removed); slow-2 never ran; slow-1 still runs
    evicted = times["slow-0", "JOB_EVICTED"] - times["slow-0", "EXECUTE"]
    assert slow.badput_hours == pytest.approx(evicted / 3600)
    bad = stages["bad"]
    assert (bad.failed, bad.attempts) == (1, 1)
    failures = {f.name: f for f in made.failures}
    assert failures["bad"].exit_code == 3  # JOB_FAILURE 3
    assert failures["bad"].tail == ["step 1 ok", "ValueError: no segments in range"]
    assert failures["slow-0"].exit_code is None  # removed, not ended with a code
    assert failures["hold_me"].reason == "(no reason: no node log)"
    assert made.attempts["slow"]["slow-0"][0].end == "removed"


def test_jobstate_history_of_a_rescued_run() -> None:
    events = rundir.jobstate_history(Path(__file__).parent / "samples/rescue-run.jobstate.log")
    found = report.attempts(events, live=False, as_of=0.0)
    assert sorted(found) == ["beside", "broken", "first", "last"]
    assert [(a.job, a.end, a.exit_code) for a in found["broken"]] == [
        ("17.0", "failure", 4), ("19.0", "success", 0)
    ]  # fmt: skip
    assert [a.badput() for a in found["broken"]] == [0.0, 0.0]  # whole seconds: 0 s each


def test_finished_demo_with_status_files_only(tmp_path: Path) -> None:
    run_dir = sample(tmp_path, "pool_demo")
    page = tmp_path / "demo.html"
    code, _, err = run_cli("report", str(run_dir), "-o", str(page))
    assert code == 0, err
    html = page.read_text()
    assert "DAGMan run, done" in html and "No job has executed yet." in html
    assert "54 of 54 nodes done" in html  # the DAG, as `graph` draws it
    assert "GPU memory" not in html  # no stage asks for any: no column of dashes


# --- errors -------------------------------------------------------------------------


def test_errors_are_one_line(tmp_path: Path) -> None:
    code, _, err = run_cli("report", str(tmp_path), "-o", str(tmp_path / "r.html"))
    assert code == 1 and err == (
        f"Error: {tmp_path}: not a run dir (no aframe.dag); build one with `aframe-dag build`\n"
    )
    code, _, err = run_cli("report", str(tmp_path))
    assert code == 2 and "give -o FILE.html, --json FILE" in err and err.count("\n") == 1
    run_dir = sample(tmp_path, "pool_held")
    (run_dir / "logs/hold_me.log").write_text("not an event log\n")
    code, _, err = run_cli("report", str(run_dir), "--json", str(tmp_path / "r.json"))
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(f"Error: {run_dir}/logs/hold_me.log: cannot read this job event log")
    assert not (tmp_path / "r.json").exists()


# --- GPU-memory retries -----------------------------------------------------------------

RELEASED = "013 ({job}) 2026-12-05 10:0{m}:45 Job was released.\n\tvia condor_release\n...\n"
OOM = (
    "012 ({job}) 2026-12-05 10:0{m}:30 Job was held.\n"
    "\tout of GPU memory: to be retried on a GPU with more\n\tCode 3 Subcode 86\n...\n"
)


def node_log(job: str, node: str, holds: int) -> str:  # job: CLUSTER.PROC.SUBPROC
    """A node log, as HTCondor writes one: a job submitted, out of GPU memory `holds` times
    (each time held by its .sub's on_exit_hold and released), then a success."""
    usage = "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Remote Usage\n" * 4
    execute = f"001 ({job}) 2026-12-05 10:0{{m}}:01 Job executing on host: <10.0.0.2:9618>\n...\n"
    text = (
        f"000 ({job}) 2026-12-05 10:00:00 Job submitted from host: <10.0.0.1:9618>\n"
        f"    DAG Node: {node}\n...\n"
    )
    for m in range(holds):
        text += (execute + OOM + RELEASED).format(job=job, m=m)
    return (
        text
        + execute.format(job=job, m=holds)
        + (
            f"005 ({job}) 2026-12-05 10:09:00 Job terminated.\n"
            f"\t(1) Normal termination (return value 0)\n{usage}...\n"
        )
    )


def test_the_stage_table_shows_the_gpu_memory_each_start_asked_for(tmp_path: Path) -> None:
    gpu = {"gpus": 1, "gpu_memory": "16GB", "max_gpu_memory": "80GB"}
    run_dir = build(tmp_path, {
        "train": {"command": [PY, "-c", "pass"], "resources": gpu},
        "export": {"command": [PY, "-c", "pass"], "resources": {"gpus": 1, "gpu_memory": "10GB"}},
        "plot": {"after": ["train"], "command": [PY, "-c", "pass"]},
    })  # fmt: skip
    logs = {
        s: run_dir / rundir.parse_submit(run_dir / f"{s}.sub").get("log")
        for s in ("train", "export")
    }
    # out of GPU memory on 16 GB, then on 32 GB (the .sub releases it twice), fits in 64 GB
    logs["train"].write_text(node_log("050.000.000", "train", holds=2))
    logs["export"].write_text(node_log("051.000.000", "export", holds=0))
    done = (SAMPLES / "pool_held/aframe.status.done").read_text()
    ad = done[done.index('[\n  Type = "NodeStatus"') : done.index('[\n  Type = "StatusEnd"')]
    ads = "".join(ad.replace('"hold_me"', f'"{node}"') for node in ("train", "export", "plot"))
    (run_dir / "aframe.status").write_text(done.replace(ad, ads))

    made = report.read_run(run_dir)
    stages = {s.name: s for s in made.stages}
    assert stages["train"].gpu_memory_requested == [16384, 32768, 65536]
    assert (stages["train"].holds, stages["train"].attempts) == (2, 1)
    asked = report.requests(run_dir / "train.sub")  # up to max_gpu_memory, 80 GB
    assert asked.gpu_memory_asked(5) == [16384, 32768, 65536, 81920, 81920]
    assert stages["export"].gpu_memory_requested == [10240]  # gpus_minimum_memory: no retries
    assert stages["plot"].gpu_memory_requested == []
    (failure,) = made.failures
    assert (failure.name, failure.state) == ("train", "held, released")
    assert failure.reason == "out of GPU memory: to be retried on a GPU with more"
    page = tmp_path / "report.html"
    assert run_cli("report", str(run_dir), "-o", str(page))[0] == 0
    html = page.read_text()
    assert "<th>GPU memory MB<br>asked</th>" in html
    assert "<td>16384 \u2192 32768 \u2192 65536</td>" in html
    assert "<td>10240</td>" in html


def test_log_times_that_go_back_are_shown_not_a_crash(tmp_path: Path) -> None:
    # a job that ended "before" it started (local time set back an hour, at a DST change)
    run_dir = build(tmp_path, {"train": {"command": [PY, "-c", "pass"]}})
    log = run_dir / rundir.parse_submit(run_dir / "train.sub").get("log")
    log.write_text(node_log("052.000.000", "train", holds=0).replace("10:09:00", "09:09:00"))
    done = (SAMPLES / "pool_held/aframe.status.done").read_text()
    (run_dir / "aframe.status").write_text(done.replace('"hold_me"', '"train"'))
    page = tmp_path / "report.html"
    code, _, err = run_cli("report", str(run_dir), "-o", str(page))
    assert code == 0, err
    (stage,) = report.read_run(run_dir).stages
    assert stage.cpu_hours < 0
    assert f"<td>-{stage.cpu_hours * -1:.2f}</td>" in page.read_text()
