"""Time `aframe-dag run-local`: its cost per node, and how --jobs speeds up a fan-out.

Overhead: a DAG of N (200) independent `/bin/true` nodes (a count fan-out, container mode
none), run with --jobs 1, against a baseline: a bare Python script that runs the same N
commands one after another with subprocess (the argv, environment and directory that
`run-local --dry-run` prints). Then a chain of 50 one-node stages, each after the previous
one, the same way; and a one-node DAG, run-local's fixed start-up.

--jobs: M (40) nodes that each `sleep 0.25`, run with --jobs 1, 2, 4 and 8, against the
ideal M*0.25/jobs seconds.

aframe-dag is the installed console script build.py finds (next to this Python, else on
PATH). Each DAG is built once into a fresh dir under benchmarks/.work/, where every child
runs (build time excluded).
Before each run its run-local.record is deleted, so every node runs again. Every run is
checked (the "N nodes succeeded, 0 failed" line, N done records) before its time counts.
Runs are interleaved; each figure is the best wall time of 3, with run-local's peak RSS.

    python benchmarks/run_local.py               # about 100 s
    python benchmarks/run_local.py --nodes 50    # quicker
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from build import WORK, installed_aframe  # benchmarks/build.py

REPEATS, JOBS = 3, (1, 2, 4, 8)
HEAD = 'name: bench\ncondor: {container: none, use_oauth_services: "", getenv: [PATH]}\nstages:\n'

# Runs argv[2:] with its stdout in the file argv[1]; prints wall seconds, its peak RSS (KB),
# exit code and CPU seconds (its own and its children's). Spawned from here, run-local's
# ru_maxrss would include this script's.
LAUNCH = """import os, sys, time
started = time.perf_counter()
out = (os.POSIX_SPAWN_OPEN, 1, sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ, file_actions=[out])
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - started, usage.ru_maxrss, os.waitstatus_to_exitcode(status),
      usage.ru_utime + usage.ru_stime)"""

# The baseline: the commands of a JSON file, one after another, as run-local starts them
# (argv, env, cwd, stdin from /dev/null) but with no scheduling, records or log files.
BASELINE = """import json, subprocess, sys
with open(sys.argv[1]) as f:
    commands = json.load(f)
for c in commands:
    subprocess.run(c["argv"], env=c["env"], cwd=c["cwd"], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
print(f"{len(commands)} nodes succeeded, 0 failed")"""


def run(cmd: list[str], out: Path, err: Path) -> tuple[float, float, float]:
    """Run cmd, its stdout to `out`; return (wall seconds, peak RSS in MB, CPU seconds with
    its children's); exit on failure."""
    with open(err, "wb") as log:
        launch = [sys.executable, "-I", "-S", "-c", LAUNCH, str(out), *cmd]
        done = subprocess.run(launch, stdout=subprocess.PIPE, stderr=log, text=True)
    wall, rss, code, cpu = done.stdout.split() or ["0", "0", str(done.returncode), "0"]
    if int(code) or done.returncode:
        shown = " ".join([*cmd[:2], "CODE", *cmd[3:]] if cmd[1:2] == ["-c"] else cmd)
        sys.exit(f"failed ({code}): {shown}\n{out.read_text()}{err.read_text()}")
    return float(wall), int(rss) / 1024, float(cpu)


def build(aframe: str, work: Path, name: str, stages: str) -> Path:
    """Write the config, build its run dir; return the run dir."""
    config, run_dir = work / f"{name}.yaml", work / name
    config.write_text(HEAD + stages)
    done = subprocess.run(
        [aframe, "build", str(config), "--run-dir", str(run_dir)], capture_output=True, text=True
    )
    if done.returncode:
        sys.exit(f"build {name} failed:\n{done.stderr}")
    return run_dir


def commands(aframe: str, run_dir: Path) -> list[dict]:
    """Each node's argv, env and cwd, from `run-local --dry-run` (as run-local would run it)."""
    done = subprocess.run(
        [aframe, "run-local", str(run_dir), "--dry-run"], capture_output=True, text=True
    )
    blocks: list[list[str]] = []
    for line in done.stdout.splitlines():
        if line.startswith("# "):
            blocks.append([line.split(": in ", 1)[1].rsplit(",", 1)[0]])  # the cwd
        elif blocks:
            blocks[-1].append(line.strip())
    return [
        {
            "cwd": cwd,
            "env": {**dict(e.split("=", 1) for e in env), "CUDA_VISIBLE_DEVICES": "10000"},
            "argv": shlex.split(argv),
        }
        for cwd, *env, argv in blocks
    ]


def records(run_dir: Path) -> list[tuple[str, str, float]]:
    """run-local.record's (event, node, time) lines."""
    lines = (run_dir / "run-local.record").read_text().splitlines()
    return [(event, key, float(when)) for event, key, when in map(str.split, lines)]


def check(label: str, out: Path, n: int, run_dir: Path | None = None) -> None:
    """Exit unless the run says all n nodes succeeded (and recorded n done, for run-local)."""
    lines = out.read_text().splitlines()
    done = run_dir and sum(e == "done" for e, _, _ in records(run_dir))
    if lines[-1:] != [f"{n} nodes succeeded, 0 failed"] or (run_dir and done != n):
        sys.exit(f"{label}: not all {n} nodes ran ({lines[-1:]}, {done} done records)")


def peak_running(events: list[tuple[str, str, float]]) -> int:
    """The most nodes running at once, from the record's start/done lines (in file order)."""
    running = peak = 0
    for event, _, _ in events:
        running += 1 if event == "start" else -1
        peak = max(peak, running)
    return peak


def gaps(events: list[tuple[str, str, float]]) -> tuple[float, float]:
    """Median ms from a node's start to its done, and from a done to the next start."""
    starts = {key: when for event, key, when in events if event == "start"}
    ran = [when - starts[key] for event, key, when in events if event == "done"]
    pairs = itertools.pairwise(events)
    between = [b[2] - a[2] for a, b in pairs if (a[0], b[0]) == ("done", "start")]
    return statistics.median(ran) * 1000, statistics.median(between or [0]) * 1000


def machine() -> str:
    with open("/proc/cpuinfo") as info:
        models = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    cpu = models[0] if models else platform.machine()
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200, help="independent /bin/true nodes")
    parser.add_argument("--chain", type=int, default=50, help="stages in the chain")
    parser.add_argument("--sleepers", type=int, default=40, help="nodes of the --jobs runs")
    parser.add_argument("--sleep", type=float, default=0.25, help="seconds each of them sleeps")
    args = parser.parse_args()
    if min(args.nodes, args.chain, args.sleepers) < 2:
        parser.error("--nodes, --chain and --sleepers must be at least 2")
    aframe, _ = installed_aframe()  # the console script, not a pyenv shim; exits if none
    WORK.mkdir(parents=True, exist_ok=True)
    os.chdir(WORK)  # every child runs here, whatever the caller's directory holds
    work = Path(tempfile.mkdtemp(prefix="run-local-", dir=WORK))  # left behind if a check fails
    out, err = work / "stdout", work / "stderr"

    print(f"machine: {machine()}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}; load average {load}; run dirs in {work}")
    print(f"aframe-dag: {aframe}")
    n, chain, m, sleep = args.nodes, args.chain, args.sleepers, args.sleep
    fan = "  node:\n    foreach: {count: {num_jobs: %d}}\n    command: %s\n"
    links = [f"  s{i}:\n    after: [s{i - 1}]\n    command: /bin/true\n" for i in range(1, chain)]
    configs = {
        "flat": (fan % (n, "/bin/true"), n),
        "chain": ("".join(["  s0:\n    command: /bin/true\n", *links]), chain),
        "one": ("  node:\n    command: /bin/true\n", 1),
        "sleep": (fan % (m, f"sleep {sleep}"), m),
    }
    dags = {
        name: (build(aframe, work, name, text), count) for name, (text, count) in configs.items()
    }
    baselines = {}
    for name in ("flat", "chain", "one"):
        baselines[name] = work / f"{name}-commands.json"
        found = commands(aframe, dags[name][0])
        if len(found) != dags[name][1]:
            sys.exit(f"{name}: --dry-run showed {len(found)} commands, not {dags[name][1]}")
        baselines[name].write_text(json.dumps(found))

    # (label, DAG, --jobs or 0 for the baseline); interleaved, best of REPEATS
    runs = [
        (f"{d} {kind}", d, j) for d in baselines for kind, j in (("baseline", 0), ("run-local", 1))
    ]
    runs += [(f"sleep -j{j}", "sleep", j) for j in JOBS]
    best: dict[str, tuple[float, float, float]] = {}
    events: dict[str, list[tuple[str, str, float]]] = {}  # the best run's record
    for _ in range(REPEATS):
        for label, name, jobs in runs:
            run_dir, count = dags[name]
            if jobs:
                (run_dir / "run-local.record").unlink(missing_ok=True)  # so every node reruns
                cmd = [aframe, "run-local", str(run_dir), "--jobs", str(jobs)]
            else:
                cmd = [sys.executable, "-c", BASELINE, str(baselines[name])]
            wall, rss, cpu = run(cmd, out, err)
            check(label, out, count, run_dir if jobs else None)
            if wall < best.get(label, (float("inf"), 0, 0))[0]:
                best[label] = (wall, rss, cpu)
                if jobs:
                    events[label] = records(run_dir)

    print(f"\noverhead: run-local --jobs 1 against the same commands one by one, best of {REPEATS}")
    head = ["DAG", "nodes", "run-local s (MB)", "baseline s", "run-local ms/node",
            "baseline ms/node", "overhead ms/node", "overhead CPU ms/node"]  # fmt: skip
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for name, about in (("flat", "independent"), ("chain", "chain"), ("one", "one node")):
        count = dags[name][1]
        (local, rss, cpu), (base, _, base_cpu) = best[f"{name} run-local"], best[f"{name} baseline"]
        cells = [about, f"{count}", f"{local:.3f} ({rss:.0f})", f"{base:.3f}",
                 f"{local / count * 1000:.1f}", f"{base / count * 1000:.1f}",
                 f"{(local - base) / count * 1000:.1f}",
                 f"{(cpu - base_cpu) / count * 1000:.2f}"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    one = best["one run-local"][0] - best["one baseline"][0]  # start-up, reading the DAG, one node
    print(f"\none-node DAG, run-local above the baseline: {one:.3f} s (start-up, and one node)")
    for name in ("flat", "chain"):
        count = dags[name][1]
        extra = best[f"{name} run-local"][0] - best[f"{name} baseline"][0] - one
        ran, between = gaps(events[f"{name} run-local"])
        print(
            f"{name}: overhead per node above that {extra / (count - 1) * 1000:.1f} ms; "
            f"record: start to done {ran:.1f} ms, done to next start {between:.1f} ms (medians)"
        )

    print(f"\n--jobs: {m} nodes of `sleep {sleep}` (best of {REPEATS}; ideal = {m}*{sleep}/jobs)")
    head = ["--jobs", "run-local s (MB)", "ideal s", "speed-up", "ideal speed-up",
            "peak running", "above ideal s", "/ ideal"]  # fmt: skip
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    one_job = best["sleep -j1"][0]
    for jobs in JOBS:
        wall, rss, _ = best[f"sleep -j{jobs}"]
        ideal = m * sleep / jobs
        cells = [f"{jobs}", f"{wall:.3f} ({rss:.0f})", f"{ideal:.2f}", f"{one_job / wall:.2f}",
                 f"{min(jobs, m)}", f"{peak_running(events[f'sleep -j{jobs}'])}",
                 f"{wall - ideal:.3f}", f"{wall / ideal:.2f}"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
